//! aarch64 NEON pieces pulp's `Simd` trait has no operation for.
//!
//! The matmul tile at the NEON level is 8×12 (24 accumulators of 4 lanes).
//! The generic k-step broadcasts each of the 8 A values into a register of
//! its own (8 scalar loads or `ld1r`s) before 24 FMAs. The standard NEON form
//! (BLIS armv8a, XNNPACK's `aarch64-neonfma-lane` kernels) loads the 8 A
//! values of a packed column as two q registers and multiplies by one lane
//! of them: `fmla vC.4s, vB.4s, vA.s[lane]` — 2 A loads and 3 B loads for
//! 24 FMAs. pulp has no by-lane FMA, so it is reached here through
//! `core::arch::aarch64`.
//!
//! Inner loop per k-step in the release build (Debian rustc 1.96,
//! `aarch64-linux-gnu-objdump -d`), before → after this form:
//!
//! | tile          | instructions | loads | fmla | stack refs |
//! |---------------|--------------|-------|------|------------|
//! | 8×12          | 35 → 30      | 7 → 3 | 24   | 0 → 0      |
//! | 8×8 (edge)    | 27 → 22–23   | 6 → 2–3 | 16 | 0 → 0      |
//! | 8×4 (edge)    | 16–17 → 13–14 | 5 → 2 | 8   | 0 → 0      |
//!
//! After: `ldp q, q` (A), `ldp q, q` + `ldr q` (B), 24 `fmla v.4s, v.4s,
//! v.s[lane]`, `subs`, `add`, `b.ne`. Some instances with B read in place
//! (at its row stride) still reload 1–2 values from the stack per step:
//! 24 accumulators and 5 operand registers leave 3 of the 32, and LLVM
//! keeps an epilogue constant live across the loop in one of them.

use core::any::TypeId;
use core::arch::aarch64::{float32x4_t, vfmaq_laneq_f32, vld1q_f32};
use core::mem::transmute_copy;
use pulp::Simd;

/// Whether `S` is pulp's NEON token (and not, e.g., `Scalar128b`, which has
/// the same width but must stay portable code). Constant-folded.
#[inline(always)]
pub(crate) fn is_neon<S: Simd>() -> bool {
    TypeId::of::<S>() == TypeId::of::<pulp::aarch64::Neon>()
}

/// One k-step of an 8-row tile in the lane form:
/// `acc[i][j] += b[j] · a[i]` for `i < 8`, `j < NV`, with `a` the 8
/// contiguous values of a packed A column.
///
/// # Safety
/// `MR == 8`; `a` is valid for 8 reads; `V` is a 4-lane f32 vector (16
/// bytes), i.e. `S::f32s` of a 4-lane `S` (both checked by debug
/// assertions).
#[inline(always)]
pub(crate) unsafe fn fma_8rows_lane<V: Copy, const MR: usize, const NV: usize>(
    acc: &mut [[V; NV]; MR],
    b: &[V; NV],
    a: *const f32,
) {
    debug_assert_eq!(MR, 8);
    debug_assert_eq!(size_of::<V>(), size_of::<float32x4_t>());
    // SAFETY: `a` has 8 floats (caller); NEON is part of the aarch64
    // baseline; `V` and `float32x4_t` are both 16-byte plain f32x4 values,
    // so the copies are register moves.
    unsafe {
        let a_lo = vld1q_f32(a);
        let a_hi = vld1q_f32(a.add(4));
        for j in 0..NV {
            let bj: float32x4_t = transmute_copy(&b[j]);
            macro_rules! row {
                ($i:literal, $a:ident, $lane:literal) => {{
                    let c: float32x4_t = transmute_copy(&acc[$i][j]);
                    acc[$i][j] = transmute_copy(&vfmaq_laneq_f32::<$lane>(c, bj, $a));
                }};
            }
            row!(0, a_lo, 0);
            row!(1, a_lo, 1);
            row!(2, a_lo, 2);
            row!(3, a_lo, 3);
            row!(4, a_hi, 0);
            row!(5, a_hi, 1);
            row!(6, a_hi, 2);
            row!(7, a_hi, 3);
        }
    }
}
