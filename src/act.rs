//! The element-wise functions the kernels apply in registers, named once.
//!
//! [`MathFn`] is the one list of them (public: [`crate::map`] takes it);
//! [`MathFn::apply`] is the one place a name becomes its [`crate::math`]
//! function. Kernels take them in two forms of the same choice:
//!
//! - [`Act`] — at run time, `MathFn` or none: the epilogues of the matmul
//!   paths, applied once per finished vector, where a predictable branch
//!   costs nothing next to the function itself (the microkernels compile
//!   twice per level, without and with an activation, not once per
//!   function);
//! - [`Fixed`] — at compile time (`Fixed<{ MathFn::X as u8 }>`, built by
//!   [`with_fixed!`]): the element-wise passes, where the function is the
//!   whole loop body and a `match` inside a four-vector loop would be
//!   compiled (and, in the fuzz build, SLP-vectorised for minutes) as one
//!   giant function; and [`Identity`], the no-function case of both.
//!
//! [`GeluKind`] is the public name of the GELU choice (PyTorch's
//! `approximate`); it maps into `MathFn`.

use crate::math;
use pulp::Simd;

/// Which GELU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GeluKind {
    /// Exact `0.5·x·(1 + erf(x/√2))` (PyTorch `approximate='none'`).
    #[default]
    Erf,
    /// `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))` (PyTorch `approximate='tanh'`,
    /// GPT-2's `gelu_new`). Differs from `Erf` by up to 4.7e-4.
    Tanh,
}

/// The vector functions of [`crate::math`], by name, for [`crate::map`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MathFn {
    /// [`math::exp`]
    Exp,
    /// [`math::erf`]
    Erf,
    /// [`math::erfc`]
    Erfc,
    /// [`math::tanh`]
    Tanh,
    /// [`math::gelu_erf`]
    GeluErf,
    /// [`math::gelu_tanh`]
    GeluTanh,
    /// [`math::silu`]
    Silu,
}

impl MathFn {
    /// Every function, in declaration order (`ALL[f as usize] == f`).
    pub const ALL: [MathFn; 7] = [
        MathFn::Exp,
        MathFn::Erf,
        MathFn::Erfc,
        MathFn::Tanh,
        MathFn::GeluErf,
        MathFn::GeluTanh,
        MathFn::Silu,
    ];

    /// The function on one vector (a `match`; constant-folded when `self`
    /// is a constant, as in [`Fixed`]).
    #[inline(always)]
    pub(crate) fn apply<S: Simd>(self, s: S, x: S::f32s) -> S::f32s {
        match self {
            MathFn::Exp => math::exp(s, x),
            MathFn::Erf => math::erf(s, x),
            MathFn::Erfc => math::erfc(s, x),
            MathFn::Tanh => math::tanh(s, x),
            MathFn::GeluErf => math::gelu_erf(s, x),
            MathFn::GeluTanh => math::gelu_tanh(s, x),
            MathFn::Silu => math::silu(s, x),
        }
    }

    /// The function on K vectors with their operations interleaved
    /// ([`math::each`]; the same bits as `apply` on each).
    #[inline(always)]
    pub(crate) fn apply_n<S: Simd, const K: usize>(self, s: S, x: [S::f32s; K]) -> [S::f32s; K] {
        match self {
            MathFn::Exp => math::exp_n(s, x),
            MathFn::GeluErf => math::gelu_erf_n(s, x),
            MathFn::GeluTanh => math::gelu_tanh_n(s, x),
            MathFn::Silu => math::silu_n(s, x),
            // Not on a kernel's hot path: one vector after another.
            f => math::each!(s, K, |k| f.apply(s, x[k])),
        }
    }
}

// `Fixed` indexes `ALL` by discriminant.
const _: () = {
    let mut i = 0;
    while i < MathFn::ALL.len() {
        assert!(MathFn::ALL[i] as usize == i);
        i += 1;
    }
};

impl From<GeluKind> for MathFn {
    fn from(kind: GeluKind) -> MathFn {
        match kind {
            GeluKind::Erf => MathFn::GeluErf,
            GeluKind::Tanh => MathFn::GeluTanh,
        }
    }
}

/// How many vectors the matmul epilogue hands to [`VecFn::apply_n`] at once:
/// a third of the 6×64 tile. Measured on 512×3072·768 with the erf-GELU
/// (Intel Xeon, AVX-512, one thread, fused over plain): 4 +9.4–10.5%, 8
/// +5.7–7.7%, 12 +7.6–8.0%, 24 (the whole tile) +13–16%.
pub(crate) const INTERLEAVE: usize = 8;

/// An element-wise function on vectors, applied inside a kernel's registers.
pub(crate) trait VecFn: Copy + Send + Sync {
    /// Whether `apply` returns its input (lets callers pick code that
    /// would be too large to duplicate for a real activation).
    const IDENTITY: bool = false;
    fn apply<S: Simd>(self, s: S, x: S::f32s) -> S::f32s;

    /// `apply` on K vectors, their operations interleaved: the same bits,
    /// K dependency chains in flight at once (see [`math::each`]).
    fn apply_n<S: Simd, const K: usize>(self, s: S, x: [S::f32s; K]) -> [S::f32s; K];

    /// How many vectors the element-wise loops hand to `apply_n` at once
    /// (8 or 4; constant for a [`Fixed`] function).
    #[inline(always)]
    fn interleave(&self) -> usize {
        8
    }

    /// Whether this value returns its input (at run time: [`Act::NONE`]).
    #[inline(always)]
    fn is_identity(&self) -> bool {
        Self::IDENTITY
    }
}

/// No function, at compile time.
#[derive(Clone, Copy)]
pub(crate) struct Identity;

impl VecFn for Identity {
    const IDENTITY: bool = true;
    #[inline(always)]
    fn apply<S: Simd>(self, _s: S, x: S::f32s) -> S::f32s {
        x
    }
    #[inline(always)]
    fn apply_n<S: Simd, const K: usize>(self, _s: S, x: [S::f32s; K]) -> [S::f32s; K] {
        x
    }
}

/// A [`MathFn`] or none, chosen at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Act(pub Option<MathFn>);

impl Act {
    pub(crate) const NONE: Act = Act(None);
    pub(crate) const SILU: Act = Act(Some(MathFn::Silu));

    pub(crate) fn gelu(kind: GeluKind) -> Act {
        Act(Some(kind.into()))
    }
}

impl VecFn for Act {
    #[inline(always)]
    fn is_identity(&self) -> bool {
        self.0.is_none()
    }

    #[inline(always)]
    fn apply<S: Simd>(self, s: S, x: S::f32s) -> S::f32s {
        match self.0 {
            None => x,
            Some(f) => f.apply(s, x),
        }
    }

    #[inline(always)]
    fn apply_n<S: Simd, const K: usize>(self, s: S, x: [S::f32s; K]) -> [S::f32s; K] {
        match self.0 {
            None => x,
            Some(f) => f.apply_n(s, x),
        }
    }
}

/// One [`MathFn`] fixed at compile time: `ID` is `MathFn::X as u8`.
#[derive(Clone, Copy)]
pub(crate) struct Fixed<const ID: u8>;

impl<const ID: u8> VecFn for Fixed<ID> {
    #[inline(always)]
    fn apply<S: Simd>(self, s: S, x: S::f32s) -> S::f32s {
        // Constant-folded to the one function.
        MathFn::ALL[ID as usize].apply(s, x)
    }
    #[inline(always)]
    fn apply_n<S: Simd, const K: usize>(self, s: S, x: [S::f32s; K]) -> [S::f32s; K] {
        MathFn::ALL[ID as usize].apply_n(s, x)
    }
    #[inline(always)]
    fn interleave(&self) -> usize {
        // SiLU measured 5% slower at 8 (AVX-512, Intel Xeon; `gelu.rs`).
        if matches!(MathFn::ALL[ID as usize], MathFn::Silu) {
            4
        } else {
            8
        }
    }
}

/// Runs `$body` with `$k` bound to the [`Fixed`] form of the [`MathFn`]
/// `$f` (one arm per function, so each `$body` compiles with its own).
macro_rules! with_fixed {
    ($f:expr, $k:ident => $body:expr) => {
        with_fixed!(@ $f, $k, $body; Exp Erf Erfc Tanh GeluErf GeluTanh Silu)
    };
    (@ $f:expr, $k:ident, $body:expr; $($v:ident)*) => {
        match $f {
            $($crate::act::MathFn::$v => {
                let $k = $crate::act::Fixed::<{ $crate::act::MathFn::$v as u8 }>;
                $body
            })*
        }
    };
}
pub(crate) use with_fixed;
