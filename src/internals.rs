//! Crate-private helpers reachable from the crate's own integration tests
//! (`tests/internals.rs`), so the library is never compiled a second time
//! as a unit-test harness (`[lib] test = false`: that second compile of
//! every kernel was a quarter of CI's build). Hidden from the docs and not
//! part of the API: no stability, any release may change or remove them.
//! The generic ones are `#[inline(always)]`, so inside a pulp token's
//! `vectorize` they compile with that level's features, as in the kernels.

use crate::quant::simd;
use half::{bf16, f16};
use pulp::Simd;

/// [`crate::math`]'s `exp2_nonpos` over `xs` (a tail shorter than a vector
/// through a partial load), into `out` (same length).
///
/// # Panics
/// If the lengths differ.
#[inline(always)]
pub fn exp2_nonpos_slice<S: Simd>(s: S, xs: &[f32], out: &mut [f32]) {
    assert_eq!(xs.len(), out.len());
    let lanes = S::F32_LANES;
    for (xi, oi) in xs.chunks(lanes).zip(out.chunks_mut(lanes)) {
        let y = crate::math::exp2_nonpos(s, s.partial_load_f32s(xi));
        s.partial_store_f32s(oi, y);
    }
}

/// The online softmax's row step (`attention::softmax::softmax_row`):
/// `row[..visible]` becomes `2^(row − m_use)`; returns `(m_new, sum)`.
#[inline(always)]
pub fn softmax_row<S: Simd>(s: S, row: &mut [f32], visible: usize, m_old: f32) -> (f32, f32) {
    crate::attention::softmax::softmax_row(s, row, visible, m_old)
}

macro_rules! widen_slice {
    ($(#[$doc:meta])* $name:ident, $t:ty, |$p:ident| $load:expr) => {
        $(#[$doc])*
        ///
        /// # Panics
        /// If `out.len() != src.len()` or the length is not a multiple of
        /// `S::F32_LANES`.
        #[inline(always)]
        pub fn $name<S: Simd>(_s: S, src: &[$t], out: &mut [f32]) {
            let lanes = S::F32_LANES;
            assert!(src.len() == out.len() && src.len().is_multiple_of(lanes));
            for (c, o) in src.chunks_exact(lanes).zip(out.chunks_exact_mut(lanes)) {
                let $p = c.as_ptr();
                // SAFETY: `c` holds `lanes` elements, `o` room for `lanes`
                // floats; the caller holds the token `S` (its features are
                // enabled where this is inlined).
                unsafe {
                    let v: S::f32s = $load;
                    (o.as_mut_ptr() as *mut S::f32s).write_unaligned(v)
                }
            }
        }
    };
}

widen_slice!(
    /// The bf16 widening the low-precision kernels use, a vector at a time.
    widen_bf16, bf16, |p| simd::bf16s::<S>(p)
);
widen_slice!(
    /// The f16 widening the low-precision kernels use, a vector at a time.
    widen_f16, f16, |p| simd::f16s::<S>(p)
);
widen_slice!(
    /// The i8 widening (Q8_0 integers), a vector at a time.
    widen_i8, i8, |p| simd::i8s::<S>(p)
);
widen_slice!(
    /// The low nibbles minus 8 (Q4_0's first half-block), a vector at a time.
    widen_q4_lo, u8, |p| simd::q4s::<S>(p, false)
);
widen_slice!(
    /// The high nibbles minus 8 (Q4_0's second half-block), a vector at a time.
    widen_q4_hi, u8, |p| simd::q4s::<S>(p, true)
);

/// The AVX2 widening of IEEE halves by F16C's `vcvtph2ps` (what the AVX2
/// low-precision kernels use where the CPU has F16C), 8 at a time.
/// Returns false, `out` untouched, where the CPU lacks AVX2 or F16C.
///
/// # Panics
/// If `out.len() != src.len()` or the length is not a multiple of 8.
#[cfg(target_arch = "x86_64")]
pub fn widen_f16_f16c(src: &[f16], out: &mut [f32]) -> bool {
    use crate::arch::x86::{F16cOp, f16c_v3, has_f16c, in_f16c};
    struct Op<'a>(&'a [f16], &'a mut [f32]);
    impl F16cOp for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            for (c, o) in self.0.chunks_exact(8).zip(self.1.chunks_exact_mut(8)) {
                // SAFETY: runs in `in_f16c` (AVX2 and F16C); `c` holds 8
                // halves, `o` room for 8 floats.
                unsafe {
                    let v = f16c_v3(c.as_ptr().cast());
                    core::arch::x86_64::_mm256_storeu_ps(o.as_mut_ptr(), v);
                }
            }
        }
    }
    assert!(src.len() == out.len() && src.len().is_multiple_of(8));
    if pulp::x86::V3::try_new().is_none() || !has_f16c() {
        return false;
    }
    // SAFETY: a V3 token exists (its features are present) and F16C too.
    unsafe { in_f16c(Op(src, out)) };
    true
}

/// The activation quantizer's rounding: `y.round()` (half away from zero)
/// clamped to ±127, NaN as 0, in vectorizable operations.
pub fn round_to_i8(y: f32) -> i8 {
    crate::quant::round_to_i8(y)
}

/// The tokenizer's GPT-2 pre-tokenization pattern, written out by hand.
#[cfg(feature = "model")]
pub fn gpt2_pieces(s: &str) -> Vec<&str> {
    crate::model::tokenizer::gpt2_pieces(s)
}

/// The byte-level BPE's byte → char table.
#[cfg(feature = "model")]
pub fn byte_chars() -> [char; 256] {
    crate::model::tokenizer::byte_chars()
}

/// One f32 microkernel of the matmul table (`matmul::tiles`).
#[derive(Debug, Clone, Copy)]
pub struct TileInfo {
    /// `<level>_<MR>x<NR>`.
    pub name: &'static str,
    /// f32 lanes of the level.
    pub lanes: usize,
    /// Rows of the tile.
    pub mr: usize,
    /// Columns of the tile.
    pub nr: usize,
    /// Registers the level has.
    pub registers: usize,
    /// Registers the k-loop keeps live (accumulators, a B row, a broadcast).
    pub registers_used: usize,
    /// Whether A is always packed for it.
    pub packs_a: bool,
}

/// Every tile of the table.
pub fn tiles() -> Vec<TileInfo> {
    crate::matmul::tiles::TILES
        .iter()
        .map(|t| TileInfo {
            name: t.name,
            lanes: t.lanes,
            mr: t.mr,
            nr: t.nr(),
            registers: t.registers,
            registers_used: t.registers_used(),
            packs_a: t.packs_a,
        })
        .collect()
}

/// `(KC, MC, NC)` of the tile named `name` for `caches`.
///
/// # Panics
/// If no tile has that name.
pub fn tile_blocking(name: &str, caches: &crate::isa::CacheSizes) -> (usize, usize, usize) {
    let t = crate::matmul::tiles::TILES
        .iter()
        .find(|t| t.name == name)
        .expect("a tile of the table");
    let b = t.blocking(caches);
    assert_eq!((b.mr, b.nr), (t.mr, t.nr()));
    (b.kc, b.mc, b.nc)
}

/// The rows per block the matmul driver runs for `m` rows, given row
/// blocks of about `mc` and tiles of `mr` rows.
pub fn row_block(mc: usize, mr: usize, m: usize) -> usize {
    crate::matmul::tiles::Blocking::row_block(mc, mr, m)
}

/// `Blocking::col_block`: columns per packed B block for depth `k` of a
/// blocking with these `kc`, `nc` and `nr`.
pub fn col_block(kc: usize, nc: usize, nr: usize, k: usize) -> usize {
    crate::matmul::tiles::Blocking {
        mr: 1,
        nr,
        kc,
        mc: 1,
        nc,
        b_in_l1: 0,
        pack_a_above_k: usize::MAX,
    }
    .col_block(k)
}

/// One call of the f32 microkernel, for testing it on its own: the tile
/// named `tile` (it must belong to level `S`'s width) with A packed or read
/// in place and B packed or not, over `kc` k-steps, writing
/// `C ← act(alpha·A·B + c_scale·C + bias)` on the `m_eff × n_eff` corner.
pub struct TileCall<'a> {
    /// Tile name from [`tiles`].
    pub tile: &'a str,
    /// A packed: `MR` values per k-step (`a[p·MR + i]`, rows past `m_eff`
    /// zero); otherwise element (i, p) at `a[i·a_rs + p·a_cs]`.
    pub packed_a: bool,
    /// B packed: `NR` floats per k-step (zero past `n_eff`); otherwise row p
    /// at `b[p·b_rs]`, `n_eff` floats.
    pub packed_b: bool,
    /// k-steps.
    pub kc: usize,
    /// A.
    pub a: &'a [f32],
    /// Row stride of an unpacked A.
    pub a_rs: usize,
    /// Column stride of an unpacked A.
    pub a_cs: usize,
    /// B.
    pub b: &'a [f32],
    /// Row stride of an unpacked B.
    pub b_rs: usize,
    /// C, rows `c_rs` apart.
    pub c: &'a mut [f32],
    /// Row stride of C.
    pub c_rs: usize,
    /// Live rows.
    pub m_eff: usize,
    /// Live columns.
    pub n_eff: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// `Some(s)`: add `s·C`; `None`: C is not read.
    pub c_scale: Option<f32>,
    /// Per-column bias (`n_eff` floats).
    pub bias: Option<&'a [f32]>,
    /// Apply the exact GELU.
    pub gelu: bool,
}

/// Runs one [`TileCall`] at level `S`.
///
/// # Panics
/// If the tile is not one of level `S`, or a slice is too short for what the
/// microkernel's contract lets it read or write.
#[inline(always)]
pub fn run_tile<S: Simd>(s: S, t: TileCall<'_>) {
    use crate::matmul::kernel::{TileEpi, microkernel_narrowing};
    use crate::matmul::tiles::{self, TILES};
    let tile = *TILES
        .iter()
        .find(|x| x.name == t.tile)
        .expect("a tile of the table");
    assert_eq!(
        tile.lanes,
        S::F32_LANES,
        "{} is not a tile of this level",
        tile.name
    );
    let (mr, nr) = (tile.mr, tile.nr());
    assert!((1..=mr).contains(&t.m_eff) && (1..=nr).contains(&t.n_eff) && t.kc >= 1);
    // What the contract reads and writes, checked before any pointer is made.
    let a_need = if t.packed_a {
        t.kc * mr
    } else {
        (t.m_eff - 1) * t.a_rs + (t.kc - 1) * t.a_cs + 1
    };
    let b_need = if t.packed_b {
        t.kc * nr
    } else {
        (t.kc - 1) * t.b_rs + t.n_eff
    };
    assert!(t.a.len() >= a_need && t.b.len() >= b_need);
    assert!(t.c.len() >= (t.m_eff - 1) * t.c_rs + t.n_eff && t.c_rs >= t.n_eff);
    assert!(t.bias.is_none_or(|b| b.len() >= t.n_eff));
    // With GELU: the run-time `Act` the epilogues use; without: the
    // compile-time `Identity` of plain products and attention (its own
    // kernels: the row-narrowed edges exist only there).
    let epi_act = TileEpi {
        alpha: t.alpha,
        c_scale: t.c_scale,
        bias: t.bias.map_or(core::ptr::null(), |b| b.as_ptr()),
        act: crate::act::Act::gelu(crate::GeluKind::Erf),
        mul: core::ptr::null(),
        mul_rs: 0,
    };
    let epi_id = TileEpi {
        act: crate::act::Identity,
        alpha: epi_act.alpha,
        c_scale: epi_act.c_scale,
        bias: epi_act.bias,
        mul: epi_act.mul,
        mul_rs: epi_act.mul_rs,
    };
    let (a_rs, a_cs) = if t.packed_a {
        (1, mr)
    } else {
        (t.a_rs, t.a_cs)
    };
    let b_rs = if t.packed_b { nr } else { t.b_rs };
    macro_rules! call {
        ($t:path) => {{
            const MR: usize = $t.mr;
            const NV: usize = $t.nv;
            let (a, b, c) = (t.a.as_ptr(), t.b.as_ptr(), t.c.as_mut_ptr());
            let (kc, c_rs, m, n) = (t.kc, t.c_rs, t.m_eff, t.n_eff);
            // SAFETY: the lengths checked above are what the contract of
            // `microkernel` reads and writes.
            unsafe {
                macro_rules! by_packing {
                    ($f:ty, $epi:expr) => {
                        match (t.packed_a, t.packed_b) {
                            (true, true) => microkernel_narrowing::<S, $f, MR, NV, true, true>(
                                s, kc, a, a_rs, a_cs, b, b_rs, c, c_rs, m, n, $epi,
                            ),
                            (true, false) => microkernel_narrowing::<S, $f, MR, NV, true, false>(
                                s, kc, a, a_rs, a_cs, b, b_rs, c, c_rs, m, n, $epi,
                            ),
                            (false, true) => microkernel_narrowing::<S, $f, MR, NV, false, true>(
                                s, kc, a, a_rs, a_cs, b, b_rs, c, c_rs, m, n, $epi,
                            ),
                            (false, false) => microkernel_narrowing::<S, $f, MR, NV, false, false>(
                                s, kc, a, a_rs, a_cs, b, b_rs, c, c_rs, m, n, $epi,
                            ),
                        }
                    };
                }
                if t.gelu {
                    by_packing!(crate::act::Act, &epi_act)
                } else {
                    by_packing!(crate::act::Identity, &epi_id)
                }
            }
        }};
    }
    match S::F32_LANES {
        16 if tile == tiles::AVX512_14X32 => call!(tiles::AVX512_14X32),
        16 => call!(tiles::AVX512_6X64),
        8 => call!(tiles::AVX2_6X16),
        4 if tile == tiles::NEON_6X16 => call!(tiles::NEON_6X16),
        4 => call!(tiles::NEON_8X12),
        1 => call!(tiles::SCALAR_2X4),
        _ => unreachable!("no tile for this width"),
    }
}

/// `threads::install(n, f)`: `f` with a team of `n` threads serving the
/// sections it starts with [`for_each_index`].
pub fn install<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
    crate::threads::install(n, f)
}

/// `threads::for_each_index(n, jobs, f)`: one parallel section.
pub fn for_each_index(n: usize, jobs: usize, f: impl Fn(usize) + Sync + Send) {
    crate::threads::for_each_index(n, jobs, f)
}
