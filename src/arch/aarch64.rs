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

// Widening loads for the low-precision weight formats (`quant::simd`), one
// 4-lane vector at a time. Every function reads exactly its 4 elements.

use core::arch::aarch64::{
    float32x4_t as F4, vaddq_u32, vandq_u32, vbslq_f32, vceqq_u32, vcreate_s8, vcreate_u8,
    vcreate_u16, vcvtq_f32_s32, vcvtq_f32_u32, vdupq_n_f32, vdupq_n_u32, vget_low_s16,
    vget_low_u16, vmovl_s8, vmovl_s16, vmovl_u8, vmovl_u16, vorrq_u32, vreinterpretq_f32_u32,
    vreinterpretq_u32_f32, vshlq_n_u32, vsubq_f32,
};

/// 4 bf16 at `p` → f32.
///
/// # Safety
/// `p` is valid for 4 reads.
#[inline(always)]
pub(crate) unsafe fn bf16x4(p: *const u16) -> F4 {
    // SAFETY: 8 bytes read from `p` (caller); NEON is baseline.
    unsafe {
        let h = vmovl_u16(vcreate_u16((p as *const u64).read_unaligned()));
        vreinterpretq_f32_u32(vshlq_n_u32::<16>(h))
    }
}

/// 4 IEEE halves at `p` → f32, exactly, in integer arithmetic (the
/// `half_to_float` construction of `arch::x86::f16_v3`; Rust's f16 vector
/// types are not stable).
///
/// # Safety
/// `p` is valid for 4 reads.
#[inline(always)]
pub(crate) unsafe fn f16x4(p: *const u16) -> F4 {
    // SAFETY: 8 bytes read from `p` (caller); NEON is baseline.
    unsafe {
        let h = vmovl_u16(vcreate_u16((p as *const u64).read_unaligned()));
        let shifted_exp = vdupq_n_u32(0x7c00 << 13);
        let o = vshlq_n_u32::<13>(vandq_u32(h, vdupq_n_u32(0x7fff)));
        let e = vandq_u32(o, shifted_exp);
        let o = vaddq_u32(o, vdupq_n_u32(112 << 23));
        let inf_nan = vceqq_u32(e, shifted_exp);
        let o = vaddq_u32(o, vandq_u32(inf_nan, vdupq_n_u32(112 << 23)));
        let zero = vceqq_u32(e, vdupq_n_u32(0));
        let magic = vreinterpretq_f32_u32(vdupq_n_u32(113 << 23));
        let den = vsubq_f32(
            vreinterpretq_f32_u32(vaddq_u32(o, vdupq_n_u32(1 << 23))),
            magic,
        );
        let f = vbslq_f32(zero, den, vreinterpretq_f32_u32(o));
        let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
        vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(f), sign))
    }
}

/// 4 i8 at `p` → f32.
///
/// # Safety
/// `p` is valid for 4 reads.
#[inline(always)]
pub(crate) unsafe fn i8x4(p: *const i8) -> F4 {
    // SAFETY: 4 bytes read from `p` (caller); NEON is baseline.
    unsafe {
        let w = u64::from((p as *const u32).read_unaligned());
        let s16 = vmovl_s8(vcreate_s8(w));
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(s16)))
    }
}

/// The low (or high) nibbles of 4 bytes at `p`, minus 8 → f32 in `[−8, 7]`.
///
/// # Safety
/// `p` is valid for 4 reads.
#[inline(always)]
pub(crate) unsafe fn q4x4(p: *const u8, hi: bool) -> F4 {
    // SAFETY: 4 bytes read from `p` (caller); NEON is baseline.
    unsafe {
        let w = u64::from((p as *const u32).read_unaligned());
        let w = if hi { w >> 4 } else { w } & 0x0f0f_0f0f;
        let u16s = vmovl_u8(vcreate_u8(w));
        let q = vcvtq_f32_u32(vmovl_u16(vget_low_u16(u16s)));
        vsubq_f32(q, vdupq_n_f32(8.0))
    }
}
