//! NEON kernel of the int8 mode ([`crate::matmul::int8`]) for aarch64 CPUs
//! with the dot-product extension (Armv8.2 `dotprod`, on every Arm core of
//! the last years: Cortex-A55/A76 onwards, Neoverse, Apple M): `sdot`
//! multiplies 16 i8 pairs and adds each group of 4 into one of 4 i32
//! lanes, so a block of 32 is two `sdot`s per activation row.
//!
//! `sdot` is signed × signed, so the weights go in as they are stored:
//! Q8_0's `q` (no offset, no correction), Q4_0's and Q4_1's raw nibbles
//! (0..15). As in the other kernels the integer sums are exact (at most
//! 32·128·127 in magnitude), Q4_0 takes back `8·Σq_a` from
//! [`QuantA::blk`] (it starts lane 0 of the block's accumulator), Q4_1
//! adds `m_w·(d_a·Σq_a)`; then one f32 multiply-add per block and row by
//! `d_a·d_w`.
//!
//! Rust's `vdotq_s32` intrinsic is still unstable (`stdarch_neon_dotprod`),
//! so the instruction is written as inline assembly in a function compiled
//! with the `dotprod` target feature; [`available`] checks the CPU first.
//! Decode and prefill alike stream the weights, 4 rows of A against each
//! weight row, as the AVX2 kernel does.

use crate::matmul::int8::{Blk, QuantA};
use crate::quant::QK;
use core::arch::aarch64::*;

/// Whether this CPU runs this kernel.
pub(crate) fn available() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// `acc + Σ` of each group of 4 products of `a` and `b` (i8 × i8 → i32).
///
/// # Safety
/// The CPU has `dotprod`.
#[target_feature(enable = "dotprod")]
#[inline]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: `sdot` reads and writes these registers only; the caller
    // guarantees the extension.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// `out[r·ld + c]` for rows `i0..i0+mr` (≤ 4) of `qa` and weight rows
/// `c < nc` at `w` (`rb` bytes apart, `bs`-byte blocks of format `f`).
///
/// # Safety
/// The CPU has `dotprod` (checked by [`available`]); the weight rows exist;
/// rows `i0..i0+4` of `qa` exist (it is padded to a multiple of 4); `out`
/// holds `mr` rows of `ld ≥ nc` floats.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod")]
pub(crate) unsafe fn dot(
    f: Blk,
    w: *const u8,
    rb: usize,
    bs: usize,
    nc: usize,
    qa: &QuantA,
    i0: usize,
    mr: usize,
    out: *mut f32,
    ld: usize,
) {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        match f {
            Blk::Q8 => rows::<0>(w, rb, bs, nc, qa, i0, mr, out, ld),
            Blk::Q4 => rows::<1>(w, rb, bs, nc, qa, i0, mr, out, ld),
            Blk::Q4m => rows::<2>(w, rb, bs, nc, qa, i0, mr, out, ld),
        }
    }
}

/// `F`: 0 = Q8_0, 1 = Q4_0, 2 = Q4_1.
///
/// # Safety
/// As [`dot`].
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "dotprod")]
unsafe fn rows<const F: u8>(
    w: *const u8,
    rb: usize,
    bs: usize,
    nc: usize,
    qa: &QuantA,
    i0: usize,
    mr: usize,
    out: *mut f32,
    ld: usize,
) {
    let (k, nb) = (qa.k, qa.nb);
    let at = if F == 2 { 4 } else { 2 };
    let q = qa.q.as_ptr();
    // SAFETY: every pointer below stays inside the weight rows, the padded
    // QuantA rows i0..i0+4 or `out` (the caller's contract); NEON is part
    // of the aarch64 baseline, `dotprod` is the caller's.
    unsafe {
        let low = vdupq_n_u8(15);
        let zero = vdupq_n_s32(0);
        for c in 0..nc {
            let row = w.add(c * rb);
            let mut acc = [vdupq_n_f32(0.0); 4];
            let mut mins = [0.0f32; 4];
            for b in 0..nb {
                let blk = row.add(b * bs);
                let dw = crate::matmul::int8::half(blk, 0);
                // The 32 weights in element order: i8 for Q8_0, the low
                // nibbles then the high ones for Q4_0/Q4_1.
                let (w0, w1) = if F == 0 {
                    (
                        vld1q_s8(blk.add(at).cast()),
                        vld1q_s8(blk.add(at + 16).cast()),
                    )
                } else {
                    let x = vld1q_u8(blk.add(at));
                    (
                        vreinterpretq_s8_u8(vandq_u8(x, low)),
                        vreinterpretq_s8_u8(vshrq_n_u8::<4>(x)),
                    )
                };
                let mw = if F == 2 {
                    crate::matmul::int8::half(blk, 2)
                } else {
                    0.0
                };
                for (r, a) in acc.iter_mut().enumerate().take(mr) {
                    let i = i0 + r;
                    let qp = q.add(i * k + b * QK);
                    // Q4_0: −8·Σq_a over the block, in lane 0.
                    let init = if F == 1 {
                        vsetq_lane_s32::<0>(*qa.blk.get_unchecked(i * nb + b), zero)
                    } else {
                        zero
                    };
                    let s = sdot(init, w0, vld1q_s8(qp));
                    let s = sdot(s, w1, vld1q_s8(qp.add(16)));
                    let scale = *qa.d.get_unchecked(i * nb + b) * dw;
                    *a = vfmaq_n_f32(*a, vcvtq_f32_s32(s), scale);
                    if F == 2 {
                        mins[r] += mw * *qa.sa.get_unchecked(i * nb + b);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(mr) {
                *out.add(r * ld + c) = vaddvq_f32(*a) + mins[r];
            }
        }
    }
}
