//! AVX2 kernel of the int8 mode ([`crate::matmul::int8`]) for CPUs without
//! AVX-512 VNNI: `vpmaddubsw` (32 u8 × i8 products summed in pairs to i16)
//! then `vpmaddwd` by ones (pairs of i16 summed to i32), one block of 32 a
//! step. The i16 pair sums must not saturate: a nibble (≤ 15) times an
//! activation (|q_a| ≤ 127) gives at most 2·15·127 = 3810; Q8_0 weights go
//! in as `|q_w|` against `q_a·sign(q_w)` (llama.cpp's trick), at most
//! 2·128·127 = 32 512 < 32 767. So the integer sums are exact, as in the
//! VNNI and portable kernels: Q8_0 needs no offset correction here, Q4_0
//! takes back `8·Σq_a` from [`QuantA::blk`], Q4_1 adds `m_w·(d_a·Σq_a)`.
//!
//! Decode and prefill alike stream the weights: a chunk of 128 weight rows
//! stays in L2 while every group of 4 activation rows passes over it
//! ([`crate::matmul::int8::run_cols`]).

use crate::arch::x86::half_f16c as half;
use crate::matmul::int8::{Blk, QuantA};
use crate::quant::QK;
use core::arch::x86_64::*;

/// Whether this CPU runs this kernel.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// As [`crate::arch::vnni::PF_BYTES`]: how far ahead of the weights being
/// read the kernel prefetches (the `[n, k]` rows are one stream).
const PF_BYTES: usize = 12288;

/// `out[r·ld + c]` for rows `i0..i0+mr` (≤ 4) of `qa` and weight rows
/// `c < nc` at `w` (`rb` bytes apart, `bs`-byte blocks of format `f`).
///
/// # Safety
/// AVX2 + FMA + F16C (checked by [`available`]); the weight rows exist;
/// rows `i0..i0+4` of `qa` exist (it is padded to a multiple of 4); `out`
/// holds `mr` rows of `ld ≥ nc` floats.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
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
#[target_feature(enable = "avx2,fma,f16c")]
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
    let ones = _mm256_set1_epi16(1);
    let low = _mm_set1_epi8(15);
    let q = qa.q.as_ptr();
    // SAFETY: every pointer below stays inside the weight rows, the padded
    // QuantA rows i0..i0+4 or `out` (the caller's contract).
    unsafe {
        for c in 0..nc {
            let row = w.add(c * rb);
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut mins = [0.0f32; 4];
            for b in 0..nb {
                let blk = row.add(b * bs);
                _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(PF_BYTES).cast());
                let dw = half(blk);
                // The 32 weights in element order: i8 for Q8_0, the low
                // nibbles then the high ones for Q4_0/Q4_1.
                let wv = if F == 0 {
                    _mm256_loadu_si256(blk.add(at).cast())
                } else {
                    let x = _mm_loadu_si128(blk.add(at).cast());
                    let lo = _mm_and_si128(x, low);
                    let hi = _mm_and_si128(_mm_srli_epi16::<4>(x), low);
                    _mm256_set_m128i(hi, lo)
                };
                let wu = if F == 0 { _mm256_abs_epi8(wv) } else { wv };
                let mw = if F == 2 { half(blk.add(2)) } else { 0.0 };
                for (r, a) in acc.iter_mut().enumerate().take(mr) {
                    let i = i0 + r;
                    let av = _mm256_loadu_si256(q.add(i * k + b * QK).cast());
                    let av = if F == 0 { _mm256_sign_epi8(av, wv) } else { av };
                    let mut s = _mm256_madd_epi16(_mm256_maddubs_epi16(wu, av), ones);
                    if F == 1 {
                        // −8·Σq_a over the block, in one lane.
                        let corr = _mm_cvtsi32_si128(*qa.blk.get_unchecked(i * nb + b));
                        s = _mm256_add_epi32(s, _mm256_zextsi128_si256(corr));
                    }
                    let scale = _mm256_set1_ps(*qa.d.get_unchecked(i * nb + b) * dw);
                    *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, *a);
                    if F == 2 {
                        mins[r] += mw * *qa.sa.get_unchecked(i * nb + b);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(mr) {
                let h = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps::<1>(*a));
                let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                let h = _mm_add_ss(h, _mm_movehdup_ps(h));
                *out.add(r * ld + c) = _mm_cvtss_f32(h) + mins[r];
            }
        }
    }
}
