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

/// The activation quantizer's libm-free `round` (half away from zero).
pub fn round_half_away(y: f32) -> i32 {
    crate::quant::round_half_away(y)
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
