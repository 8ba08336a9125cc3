//! Widening loads, one `S::f32s` vector at a time, for the low-precision
//! weight formats: through `arch::x86` on AVX2 and AVX-512, through
//! `arch::aarch64` on NEON, and through a lane-by-lane copy elsewhere
//! (scalar and the portable 4-lane level, which exist for correctness).

use super::{bf16, f16};
use core::mem::transmute_copy;
use pulp::Simd;

/// Portable path: `lanes` values computed one by one, then loaded.
#[inline(always)]
fn by_lane<S: Simd>(f: impl Fn(usize) -> f32) -> S::f32s {
    let mut t = [0.0f32; 16];
    for (i, v) in t.iter_mut().enumerate().take(S::F32_LANES) {
        *v = f(i);
    }
    // SAFETY: `S::f32s` is `S::F32_LANES` ≤ 16 plain f32 lanes.
    unsafe { (t.as_ptr() as *const S::f32s).read_unaligned() }
}

/// Asks for the cache line holding `p` ahead of its use. Never faults (a
/// hint), so `p` may point anywhere.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is SSE (x86-64 baseline) and never faults.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `prfm` is a hint: it never faults and writes nothing.
    unsafe {
        core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) p, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = p;
}

/// The body of a widening load: the level's own instructions when `S` is
/// AVX-512 (`$v4`), AVX2 (`$v3`) or NEON (`$neon`), else lane by lane
/// (`$lane`, a closure of the lane index).
macro_rules! widen {
    ($S:ty, $v4:expr, $v3:expr, $neon:expr, $lane:expr) => {
        // SAFETY: the token proves the features; the vector types match in
        // size; the pointer contract is the caller's.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            {
                use crate::arch::x86;
                if x86::is_v4::<$S>() {
                    return transmute_copy(&$v4);
                }
                if x86::is_v3::<$S>() {
                    return transmute_copy(&$v3);
                }
            }
            #[cfg(target_arch = "aarch64")]
            {
                use crate::arch::aarch64;
                if aarch64::is_neon::<$S>() {
                    return transmute_copy(&$neon);
                }
            }
            by_lane::<$S>($lane)
        }
    };
}

/// `S::F32_LANES` bf16 at `p`, widened (exactly).
///
/// # Safety
/// `p` is valid for `S::F32_LANES` reads.
#[inline(always)]
pub(crate) unsafe fn bf16s<S: Simd>(p: *const bf16) -> S::f32s {
    let p = p.cast::<u16>();
    widen!(
        S,
        x86::bf16_v4(p),
        x86::bf16_v3(p),
        aarch64::bf16x4(p),
        |i| f32::from_bits(u32::from(*p.add(i)) << 16)
    )
}

/// `S::F32_LANES` IEEE halves at `p`, widened (exactly).
///
/// # Safety
/// As [`bf16s`].
#[inline(always)]
pub(crate) unsafe fn f16s<S: Simd>(p: *const f16) -> S::f32s {
    let h = p.cast::<u16>();
    widen!(S, x86::f16_v4(h), x86::f16_v3(h), aarch64::f16x4(h), |i| {
        (*p.add(i)).to_f32()
    })
}

/// As [`f16s`]; `F16C`: the caller runs in
/// [`crate::arch::x86::in_f16c`], and AVX2 widens with `vcvtph2ps`
/// ([`crate::arch::x86::f16c_v3`]) instead of its integer code.
///
/// # Safety
/// As [`bf16s`].
#[inline(always)]
pub(crate) unsafe fn f16s_at<S: Simd, const F16C: bool>(p: *const f16) -> S::f32s {
    #[cfg(target_arch = "x86_64")]
    if F16C && crate::arch::x86::is_v3::<S>() {
        // SAFETY: V3 proves AVX2, `F16C` that the caller runs with F16C;
        // V3's f32 vector is __m256.
        return unsafe { transmute_copy(&crate::arch::x86::f16c_v3(p.cast())) };
    }
    // SAFETY: the caller's contract.
    unsafe { f16s::<S>(p) }
}

/// `dst[..d]` = the `d` halves at `src`, widened (exactly) a vector at a
/// time ([`f16s_at`]), the tail element by element.
///
/// # Safety
/// `src` valid for `d` reads, `dst` for `d` writes.
#[inline(always)]
pub(crate) unsafe fn widen_f16_row<S: Simd, const F16C: bool>(
    src: *const f16,
    dst: *mut f32,
    d: usize,
) {
    let lanes = S::F32_LANES;
    let mut e = 0;
    // SAFETY: every access is below d (the caller's contract).
    unsafe {
        while e + lanes <= d {
            let v = f16s_at::<S, F16C>(src.add(e));
            (dst.add(e) as *mut S::f32s).write_unaligned(v);
            e += lanes;
        }
        for e in e..d {
            *dst.add(e) = (*src.add(e)).to_f32();
        }
    }
}

/// `S::F32_LANES` i8 at `p`, as f32.
///
/// # Safety
/// As [`bf16s`].
#[inline(always)]
pub(crate) unsafe fn i8s<S: Simd>(p: *const i8) -> S::f32s {
    widen!(S, x86::i8_v4(p), x86::i8_v3(p), aarch64::i8x4(p), |i| {
        f32::from(*p.add(i))
    })
}

/// The low (or, with `hi`, high) nibbles of `S::F32_LANES` bytes at `p`,
/// minus 8: a Q4_0 block's integers, as f32 in `[−8, 7]`.
///
/// # Safety
/// As [`bf16s`].
#[inline(always)]
pub(crate) unsafe fn q4s<S: Simd>(p: *const u8, hi: bool) -> S::f32s {
    widen!(
        S,
        x86::q4_v4(p, hi),
        x86::q4_v3(p, hi),
        aarch64::q4x4(p, hi),
        |i| {
            let b = *p.add(i);
            f32::from(if hi { b >> 4 } else { b & 0x0f }) - 8.0
        }
    )
}
