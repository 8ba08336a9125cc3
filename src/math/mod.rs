//! Vector math, written once over [`pulp::Simd`] and shared by every kernel:
//! `exp` (softmax), `erf`/`erfc`/`tanh` and the two GELUs (activation and the
//! matmul epilogue).
//!
//! Only FMAs, multiplies, one division where stated, compares/selects and a
//! bit shift are used, so every level (scalar, AVX2, AVX-512, NEON) runs the
//! same algorithm; the scalar level computes `a*b+c` unfused. AVX-512 swaps
//! two steps for its own instructions: `2ⁿ` by `vscalefps` in the lean
//! `exp2`, and GELU's one reciprocal by `vrcp14ps` and a Newton step.
//!
//! Accuracy, measured by `tests/math.rs` against f64 (`libm`) over 2²⁰+ points
//! on every available level; the bounds there are what the tests assert:
//!
//! | function | method | bound asserted |
//! |---|---|---|
//! | [`exp`] | Cody–Waite reduction + degree-5 polynomial (Cephes) | ≤ 2 ULP on [−87.3, 88.7] |
//! | [`erfc`] | `t·exp(−z² + P)`, `t = 1/(1+z/2)`, P the Numerical Recipes fit (rel. 1.2e-7) re-expanded in `1 − t` | ≤ (8 + 2z²) ULP: the rounding of the exp argument −z² grows with z² |
//! | [`erf`] | `x·P(x²)` for \|x\| < 1 (Cephes), `1 − erfc` above | ≤ 3 ULP |
//! | [`tanh`] | odd polynomial for \|x\| < 0.625 (Cephes), `1 − 2/(e^{2x}+1)` above | ≤ 3 ULP |
//! | [`gelu_erf`], [`gelu_tanh`] | below | ≤ 4 ULP + 1e-7 absolute |
//! | [`silu`] | `x / (1 + exp(−x))` | ≤ 4 ULP + 3e-37 absolute |
//!
//! Special values: NaN → NaN everywhere; `exp(−∞) = 0`, `exp(+∞) = +∞`,
//! `exp(x) = 0` for x < −87.3 (results below 1.2e-38 are flushed: no lane ever
//! computes a subnormal, which costs a microcode assist on Intel cores);
//! `erf(±∞) = ±1`, `tanh(±∞) = ±1`; `gelu(+∞) = +∞`, `gelu(−∞) = −0.0`.
//! No function reads or changes MXCSR; subnormal inputs are computed as the
//! CPU computes them (the results are at most a ULP-scale different under
//! FTZ/DAZ).

// Coefficients keep the digits of their published sources.
#![allow(clippy::excessive_precision)]

use pulp::Simd;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5·2²³ puts round(x) in the low mantissa bits; +127 makes those bits
/// n + 127, the exponent field of 2ⁿ once shifted left by 23.
const MAGIC: f32 = 12_582_912.0 + 127.0;

/// `[e(0), …, e(K−1)]`: one step of K independent evaluations, written as a
/// loop LLVM unrolls (a macro, not a closure: closures are compiled without
/// the caller's target features when they are not inlined).
///
/// The `_n` forms below run a function on K vectors with their operations
/// interleaved step by step. A GELU is one ~110-cycle dependency chain of
/// ~40 vector operations; evaluated vector after vector, the core's
/// scheduler holds only three or four such chains and the unit sits idle
/// waiting on latencies (~40 cycles a vector on AMD Zen 3). Interleaved,
/// it sees K chains at once. The results are bit-identical to `K = 1`.
macro_rules! each {
    ($s:expr, $K:expr, |$k:ident| $e:expr) => {{
        let mut out = [$s.splat_f32s(0.0); $K];
        #[allow(clippy::needless_range_loop)]
        for $k in 0..$K {
            out[$k] = $e;
        }
        out
    }};
}
pub(crate) use each;

/// `(t, y)` with `t = n + MAGIC`, `n = round(x·log2 e)` and `y ≈ e^{x − n·ln 2}`
/// for `x` already clamped to [−87.3, 88.8], on K vectors.
#[inline(always)]
fn exp_reduced<S: Simd, const K: usize>(s: S, xc: [S::f32s; K]) -> ([S::f32s; K], [S::f32s; K]) {
    const LN2_HI: f32 = 0.693_359_4; // 0.693359375, exact in 9 bits
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5.000_000_1e-1,
    ];
    let (log2e, magic) = (s.splat_f32s(LOG2E), s.splat_f32s(MAGIC));
    let t = each!(s, K, |k| s.mul_add_e_f32s(xc[k], log2e, magic));
    // r = x − n·ln 2 in two steps (Cody–Waite); n·LN2_HI is exact.
    let r = each!(s, K, |k| {
        let n = s.sub_f32s(t[k], magic);
        let r = s.mul_add_e_f32s(n, s.splat_f32s(-LN2_HI), xc[k]);
        s.mul_add_e_f32s(n, s.splat_f32s(-LN2_LO), r)
    });
    let mut p = [s.splat_f32s(P[0]); K];
    for &c in &P[1..] {
        p = each!(s, K, |k| s.mul_add_e_f32s(p[k], r[k], s.splat_f32s(c)));
    }
    let y = each!(s, K, |k| {
        let r2 = s.mul_f32s(r[k], r[k]);
        s.add_f32s(s.mul_add_e_f32s(p[k], r2, r[k]), s.splat_f32s(1.0))
    });
    (t, y)
}

/// 2ⁿ from `t = n + MAGIC` (n in [−126, 127]).
#[inline(always)]
fn pow2_from_magic<S: Simd>(s: S, t: S::f32s) -> S::f32s {
    let bits = s.wrapping_dyn_shl_u32s(s.transmute_u32s_f32s(t), s.splat_u32s(23));
    s.transmute_f32s_u32s(bits)
}

/// `e^x` for `x ≤ 88` without special-value handling, for callers whose
/// argument is never NaN and never large: inputs below −87.3 give
/// e^−87.3 ≈ 1.2e-38 instead of 0. Same accuracy as [`exp`] otherwise.
#[inline(always)]
pub(crate) fn exp_nonpos<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let xc = s.max_f32s(x, s.splat_f32s(-87.3));
    let ([t], [y]) = exp_reduced(s, [xc]);
    s.mul_f32s(y, pow2_from_magic(s, t))
}

/// `2^f` on [−½, ½], highest degree first (shared with the AVX-512 form,
/// `arch::x86::exp2_nonpos_v4`).
const EXP2_POLY: [f32; 7] = [
    1.546_144_5e-4,
    1.340_042_8e-3,
    9.618_057e-3,
    5.550_327e-2,
    2.402_265_1e-1,
    6.931_472e-1,
    1.0,
];

/// `2^x` for `x ≤ 0`, the softmax numerator in log2 units (scores
/// pre-multiplied by log2 e): `x = n + f` with `n = round(x)` and |f| ≤ ½
/// exact, `2^f` by a degree-6 polynomial (Chebyshev interpolation on
/// [−½, ½], 0.32 ULP before rounding), `2ⁿ` built in the exponent field.
/// Results for `x < −126.5` (`x < −126` on AVX-512, where `2ⁿ` is applied
/// by `vscalefps`: `arch::x86::exp2_nonpos_v4`) and `x = −∞` are 0; NaN
/// stays NaN; ≤ 2 ULP (`tests/internals.rs`). Half the operations of
/// [`exp`]: no Cody–Waite split, no overflow or large-argument handling.
#[inline(always)]
pub(crate) fn exp2_nonpos<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    exp2_nonpos_n(s, [x])[0]
}

/// [`exp2_nonpos`] on K vectors, interleaved (see [`each`]).
#[inline(always)]
pub(crate) fn exp2_nonpos_n<S: Simd, const K: usize>(s: S, x: [S::f32s; K]) -> [S::f32s; K] {
    #[cfg(target_arch = "x86_64")]
    if crate::arch::x86::is_v4::<S>() {
        // SAFETY: the V4 token proves AVX-512F; its f32 vector is __m512.
        return unsafe {
            core::mem::transmute_copy(&crate::arch::x86::exp2_nonpos_v4(
                core::mem::transmute_copy::<_, [core::arch::x86_64::__m512; K]>(&x),
                EXP2_POLY,
            ))
        };
    }
    let magic = s.splat_f32s(MAGIC);
    let xc = each!(s, K, |k| s.max_f32s(x[k], s.splat_f32s(-127.0)));
    let t = each!(s, K, |k| s.add_f32s(xc[k], magic));
    let f = each!(s, K, |k| s.sub_f32s(xc[k], s.sub_f32s(t[k], magic)));
    let mut p = [s.splat_f32s(EXP2_POLY[0]); K];
    for &c in &EXP2_POLY[1..] {
        p = each!(s, K, |k| s.mul_add_e_f32s(p[k], f[k], s.splat_f32s(c)));
    }
    // n = −127 (x < −126.5) makes the exponent field 0: 2ⁿ reads as 0.
    // NaN in, NaN out (x86 max drops NaN).
    each!(s, K, |k| {
        let y = s.mul_f32s(p[k], pow2_from_magic(s, t[k]));
        s.select_f32s(s.equal_f32s(x[k], x[k]), y, x[k])
    })
}

/// `e^x` per lane. See the module docs for accuracy and special values.
#[inline(always)]
pub fn exp<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    exp_n(s, [x])[0]
}

/// [`exp`] on K vectors, interleaved (see [`each`]).
#[inline(always)]
pub(crate) fn exp_n<S: Simd, const K: usize>(s: S, x: [S::f32s; K]) -> [S::f32s; K] {
    // Clamped at −87.3, not at the last normal result (−87.34): the
    // product below then never rounds to a subnormal (on Intel cores a
    // microcode assist of ~100 cycles per instruction: inputs below −87.5
    // used to make exp, SiLU and tanh-GELU 2–3× slower).
    let xc = each!(s, K, |k| s
        .min_f32s(s.max_f32s(x[k], s.splat_f32s(-87.3)), s.splat_f32s(88.8)));
    let (t, y) = exp_reduced(s, xc);
    // 2^min(n, 127): n = 128 (x just below ln FLT_MAX) gets its last factor 2
    // by a multiply so the exponent field never overflows.
    let lim = s.splat_f32s(MAGIC + 127.0);
    each!(s, K, |k| {
        let (x, t) = (x[k], t[k]);
        let mut y = s.mul_f32s(y[k], pow2_from_magic(s, s.min_f32s(t, lim)));
        y = s.select_f32s(s.greater_than_f32s(t, lim), s.add_f32s(y, y), y);
        y = s.select_f32s(
            s.less_than_f32s(x, s.splat_f32s(-87.3)),
            s.splat_f32s(0.0),
            y,
        );
        // NaN in, NaN out (x86 min/max drop NaN).
        s.select_f32s(s.equal_f32s(x, x), y, x)
    })
}

/// `k·Q(u)`, the erfc fit's polynomial (see [`erfc_nonneg`]), highest
/// degree first; `k` scales the coefficients (log2 e for [`gelu_erf`]).
#[inline(always)]
fn erfc_q<S: Simd, const K: usize>(s: S, u: [S::f32s; K], scale: f32) -> [S::f32s; K] {
    const Q: [f32; 9] = [
        -0.170_872_77,
        0.715_702_7,
        -1.062_717_8,
        0.617_457_35,
        -0.215_921_6,
        0.257_360_96,
        0.152_923_71,
        -0.302_672_3,
        -1.256_772_6,
    ];
    let mut q = [s.splat_f32s(Q[0] * scale); K];
    for &c in &Q[1..] {
        q = each!(s, K, |k| s.mul_add_e_f32s(
            q[k],
            u[k],
            s.splat_f32s(c * scale)
        ));
    }
    q
}

/// `erfc(z)` for `z ≥ 0` without the final NaN/sign handling (shared core).
///
/// Numerical Recipes' `erfcc` (Chebyshev fit, fractional error < 1.2e-7):
/// `erfc(z) = t·exp(−z² + P(t))`, `t = 1/(1 + z/2)`. Near z = 0 its P(t) sums
/// terms up to 1.5 in magnitude to about 0, which costs several ULP; here P is
/// re-expanded exactly in `u = 1 − t = (z/2)·t` (computed without
/// cancellation), so `P = u·Q(u)` is relative-accurate at small z and the
/// largest coefficient is 1.07. The constant term (3e-8) is dropped, which
/// makes erfc(0) exactly 1.
#[inline(always)]
fn erfc_nonneg<S: Simd>(s: S, z: S::f32s) -> S::f32s {
    let one = s.splat_f32s(1.0);
    // erfc(10) = 2e-45: clamping keeps z = ∞ from making u = ∞·0 = NaN (x86
    // min/max would hide that NaN, NEON's would not).
    let z = s.min_f32s(z, s.splat_f32s(10.0));
    let h = s.mul_f32s(z, s.splat_f32s(0.5));
    let t = s.div_f32s(one, s.add_f32s(h, one));
    let u = s.mul_f32s(h, t);
    let p = s.mul_f32s(erfc_q(s, [u], 1.0)[0], u);
    // exp(−z² + P): −z·z + P as one FMA keeps z² unrounded. The argument is
    // ≤ 0 and, for z = NaN, the product below is NaN anyway.
    let arg = s.mul_add_e_f32s(s.neg_f32s(z), z, p);
    s.mul_f32s(t, exp_nonpos(s, arg))
}

/// Complementary error function `1 − erf(x)` per lane, relative-accurate for
/// large x (no cancellation). `erfc(−∞) = 2`, `erfc(+∞) = 0`; results below
/// 1e-38 (x > 9.3) are flushed to 0.
#[inline(always)]
pub fn erfc<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let z = s.abs_f32s(x);
    // Below 1e-38 (z > 9.3) the lean exp floors instead of flushing: flush.
    let e = s.select_f32s(
        s.greater_than_f32s(z, s.splat_f32s(9.3)),
        s.splat_f32s(0.0),
        erfc_nonneg(s, z),
    );
    let neg = s.less_than_f32s(x, s.splat_f32s(0.0));
    let r = s.select_f32s(neg, s.sub_f32s(s.splat_f32s(2.0), e), e);
    s.select_f32s(s.equal_f32s(x, x), r, x)
}

/// `a·P(a²)` ≈ erf(a) for |a| < 1 (Cephes erff), odd in `a`.
#[inline(always)]
fn erf_small<S: Simd>(s: S, a: S::f32s) -> S::f32s {
    let z = s.mul_f32s(a, a);
    let mut p = s.splat_f32s(7.853_861_4e-5);
    p = s.mul_add_e_f32s(p, z, s.splat_f32s(-8.010_193_6e-4));
    p = s.mul_add_e_f32s(p, z, s.splat_f32s(5.188_327_7e-3));
    p = s.mul_add_e_f32s(p, z, s.splat_f32s(-2.685_381_2e-2));
    p = s.mul_add_e_f32s(p, z, s.splat_f32s(1.128_358_5e-1));
    p = s.mul_add_e_f32s(p, z, s.splat_f32s(-3.761_262_6e-1));
    p = s.mul_add_e_f32s(p, z, s.splat_f32s(std::f32::consts::FRAC_2_SQRT_PI));
    s.mul_f32s(a, p)
}

/// Error function per lane.
#[inline(always)]
pub fn erf<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let a = s.abs_f32s(x);
    let small = erf_small(s, a);
    let large = s.sub_f32s(s.splat_f32s(1.0), erfc_nonneg(s, a));
    let r = s.select_f32s(s.less_than_f32s(a, s.splat_f32s(1.0)), small, large);
    // Restore the sign bit of x (also turns NaN back into NaN below).
    let sign = s.and_u32s(s.transmute_u32s_f32s(x), s.splat_u32s(0x8000_0000));
    let r = s.transmute_f32s_u32s(s.or_u32s(s.transmute_u32s_f32s(r), sign));
    s.select_f32s(s.equal_f32s(x, x), r, x)
}

/// Hyperbolic tangent per lane.
#[inline(always)]
pub fn tanh<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let a = s.abs_f32s(x);
    // |x| < 0.625: x + x·z·P(z), z = x² (Cephes tanhf).
    let z = s.mul_f32s(a, a);
    let mut p = s.splat_f32s(-5.704_988_7e-3);
    p = s.mul_add_e_f32s(p, z, s.splat_f32s(2.063_908_9e-2));
    p = s.mul_add_e_f32s(p, z, s.splat_f32s(-5.373_971_6e-2));
    p = s.mul_add_e_f32s(p, z, s.splat_f32s(1.333_144_2e-1));
    p = s.mul_add_e_f32s(p, z, s.splat_f32s(-3.333_328_2e-1));
    let small = s.mul_add_e_f32s(s.mul_f32s(a, z), p, a);
    // Above: 1 − 2/(e^{2a} + 1); e^{2a} = ∞ gives exactly 1.
    let e = exp(s, s.add_f32s(a, a));
    let two = s.splat_f32s(2.0);
    let large = s.sub_f32s(
        s.splat_f32s(1.0),
        s.div_f32s(two, s.add_f32s(e, s.splat_f32s(1.0))),
    );
    let r = s.select_f32s(s.less_than_f32s(a, s.splat_f32s(0.625)), small, large);
    let sign = s.and_u32s(s.transmute_u32s_f32s(x), s.splat_u32s(0x8000_0000));
    let r = s.transmute_f32s_u32s(s.or_u32s(s.transmute_u32s_f32s(r), sign));
    s.select_f32s(s.equal_f32s(x, x), r, x)
}

/// `1/d` for `d ≥ 1` (finite): a division, or on AVX-512 the 14-bit
/// reciprocal estimate and one Newton step (`arch::x86::recip_v4`: within
/// 1 ULP; the 512-bit division is the slowest instruction of a GELU).
#[inline(always)]
fn recip_n<S: Simd, const K: usize>(s: S, d: [S::f32s; K]) -> [S::f32s; K] {
    #[cfg(target_arch = "x86_64")]
    if crate::arch::x86::is_v4::<S>() {
        // SAFETY: the V4 token proves AVX-512F; its f32 vector is __m512.
        return unsafe {
            core::mem::transmute_copy(&crate::arch::x86::recip_v4(core::mem::transmute_copy::<
                _,
                [core::arch::x86_64::__m512; K],
            >(&d)))
        };
    }
    each!(s, K, |k| s.div_f32s(s.splat_f32s(1.0), d[k]))
}

/// Exact GELU `x·Φ(x) = 0.5·x·(1 + erf(x/√2))` per lane.
///
/// `Φ(x) = 1 − q` for x ≥ 0 and `q` for x < 0 with `q = erfc(|x|/√2)/2`,
/// relative-accurate: the `1 + erf` form cancels for negative x and misses
/// the absolute bound below about x = −2. `q` is the [`erfc`] fit evaluated
/// in log2 units — `t·2^(log2 e·(P(u) − x²/2))` with `t = ½/(1 + z/2)`, the
/// `log2 e` folded into P's coefficients and the halving into t — so one lean
/// `exp2_nonpos` replaces the exp with its Cody–Waite split: a quarter
/// fewer multiply-class operations, which is what the MLP's fused epilogue
/// pays per element.
#[inline(always)]
pub fn gelu_erf<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    gelu_erf_n(s, [x])[0]
}

/// [`gelu_erf`] on K vectors, interleaved (see [`each`]).
#[inline(always)]
pub(crate) fn gelu_erf_n<S: Simd, const K: usize>(s: S, x: [S::f32s; K]) -> [S::f32s; K] {
    let one = s.splat_f32s(1.0);
    // z = |x|/√2, clamped (erfc(10) = 2e-45) so that |x| = ∞ never makes
    // u = ∞·0; t = ½/(1 + z/2) = 1/(2 + z) carries erfc's halving, u = z·t
    // = 1 − 2t.
    let z = each!(s, K, |k| s.min_f32s(
        s.mul_f32s(
            s.abs_f32s(x[k]),
            s.splat_f32s(std::f32::consts::FRAC_1_SQRT_2)
        ),
        s.splat_f32s(10.0),
    ));
    let t = recip_n(s, each!(s, K, |k| s.add_f32s(z[k], s.splat_f32s(2.0))));
    let u = each!(s, K, |k| s.mul_f32s(z[k], t[k]));
    // The erfc_nonneg polynomial with its coefficients times log2 e.
    let q = erfc_q(s, u, LOG2E);
    // log2 e·P(u), then − log2 e·x²/2 (x unclamped: −∞ for |x| = ∞, which
    // exp2_nonpos maps to 0). The argument is ≤ 0.
    let arg = each!(s, K, |k| {
        let p = s.mul_f32s(q[k], u[k]);
        s.mul_add_e_f32s(s.mul_f32s(x[k], s.splat_f32s(-0.5 * LOG2E)), x[k], p)
    });
    let e = exp2_nonpos_n(s, arg);
    each!(s, K, |k| {
        let x = x[k];
        let q = s.mul_f32s(t[k], e[k]);
        let neg = s.less_than_f32s(x, s.splat_f32s(0.0));
        let phi = s.select_f32s(neg, q, s.sub_f32s(one, q));
        let g = s.mul_f32s(x, phi);
        // x < −20: Φ(x) < 3e-89, the product is −0.0 (and −∞·0 would be NaN).
        s.select_f32s(
            s.less_than_f32s(x, s.splat_f32s(-20.0)),
            s.splat_f32s(-0.0),
            g,
        )
    })
}

/// Tanh-approximated GELU `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))` per lane.
///
/// Computed as `x / (1 + e^{−2u})`, the same value without the `1 + tanh`
/// cancellation for negative x.
#[inline(always)]
pub fn gelu_tanh<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    gelu_tanh_n(s, [x])[0]
}

/// [`gelu_tanh`] on K vectors, interleaved (see [`each`]).
#[inline(always)]
pub(crate) fn gelu_tanh_n<S: Simd, const K: usize>(s: S, x: [S::f32s; K]) -> [S::f32s; K] {
    const K0: f32 = 0.797_884_6; // √(2/π)
    const K1: f32 = 0.044_715;
    let m2u = each!(s, K, |k| {
        let x = x[k];
        let x2 = s.mul_f32s(x, x);
        let inner = s.mul_add_e_f32s(x2, s.splat_f32s(K1), s.splat_f32s(1.0));
        s.mul_f32s(s.mul_f32s(x, s.splat_f32s(-2.0 * K0)), inner)
    });
    let e = exp_n(s, m2u);
    each!(s, K, |k| {
        let x = x[k];
        let g = s.div_f32s(x, s.add_f32s(e[k], s.splat_f32s(1.0)));
        s.select_f32s(
            s.less_than_f32s(x, s.splat_f32s(-20.0)),
            s.splat_f32s(-0.0),
            g,
        )
    })
}

/// SiLU (swish) `x·σ(x) = x / (1 + e^{−x})` per lane: one [`exp`] (2 ULP,
/// relative), one add and one division, so ≤ 4 ULP wherever the result is
/// a normal f32. For x < −88.7, `e^{−x}` overflows to +∞ and the result is
/// −0.0 (the exact value is below 2.6e-37 in magnitude); `silu(−∞) = −0.0`
/// by a final select (∞/∞ would be NaN); `silu(+∞) = +∞`, NaN → NaN.
#[inline(always)]
pub fn silu<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    silu_n(s, [x])[0]
}

/// [`silu`] on K vectors, interleaved (see [`each`]).
#[inline(always)]
pub(crate) fn silu_n<S: Simd, const K: usize>(s: S, x: [S::f32s; K]) -> [S::f32s; K] {
    let e = exp_n(s, each!(s, K, |k| s.neg_f32s(x[k])));
    each!(s, K, |k| {
        let x = x[k];
        let y = s.div_f32s(x, s.add_f32s(e[k], s.splat_f32s(1.0)));
        s.select_f32s(
            s.less_than_f32s(x, s.splat_f32s(-100.0)),
            s.splat_f32s(-0.0),
            y,
        )
    })
}
