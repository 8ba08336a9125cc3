//! x86-64 pieces pulp's `Simd` trait has no operation for: widening loads of
//! 16-bit floats and 8- and 4-bit integers to f32 lanes (the low-precision
//! weight formats of [`crate::quant`]).
//!
//! Each function is compiled for the features of the pulp level it serves
//! (`V3`: AVX2 + FMA, no F16C; `V4`: AVX-512 F/BW/DQ/VL) and inlined into
//! that level's kernels, which run with a superset of those features.
//! [`in_f16c`] runs a `V3` kernel with F16C added (every AVX2 CPU has it;
//! pulp's `V3` does not name it), for the functions marked F16C here.

use core::any::TypeId;
use core::arch::x86_64::*;
use pulp::Simd;

/// Whether `S` is pulp's AVX-512 token. Constant-folded.
#[inline(always)]
pub(crate) fn is_v4<S: Simd>() -> bool {
    TypeId::of::<S>() == TypeId::of::<pulp::x86::V4>()
}

/// Whether `S` is pulp's AVX2 token. Constant-folded.
#[inline(always)]
pub(crate) fn is_v3<S: Simd>() -> bool {
    TypeId::of::<S>() == TypeId::of::<pulp::x86::V3>()
}

/// Whether this CPU has F16C (`vcvtph2ps`), checked once.
pub(crate) fn has_f16c() -> bool {
    use std::sync::OnceLock;
    static F16C: OnceLock<bool> = OnceLock::new();
    *F16C.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// Work run by [`in_f16c`]; `run` must be `#[inline(always)]` (it is then
/// compiled with F16C on top of pulp's `V3` features).
pub(crate) trait F16cOp {
    type Output;
    fn run(self) -> Self::Output;
}

/// Runs `op` in a function compiled for pulp's `V3` features plus F16C, so
/// the `#[inline(always)]` kernels it reaches can inline [`f16c_v3`].
///
/// # Safety
/// The CPU has AVX2, FMA, BMI1/2, LZCNT, POPCNT and F16C (a `V3` token and
/// [`has_f16c`] prove it).
#[target_feature(enable = "sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,bmi1,bmi2,fma,lzcnt,f16c")]
pub(crate) unsafe fn in_f16c<Op: F16cOp>(op: Op) -> Op::Output {
    op.run()
}

/// 8 IEEE halves at `p` → f32 with F16C's `vcvtph2ps` (exact, subnormals
/// included): one instruction where [`f16_v3`] takes 15.
///
/// # Safety
/// AVX2 and F16C; `p` valid for 8 reads.
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(crate) unsafe fn f16c_v3(p: *const u16) -> __m256 {
    // SAFETY: the caller's contract.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
}

/// The f16 at `p` (any alignment) as f32, by F16C.
///
/// # Safety
/// F16C; `p` valid for 2 reads.
#[target_feature(enable = "avx2,f16c")]
#[inline]
pub(crate) unsafe fn half_f16c(p: *const u8) -> f32 {
    // SAFETY: the caller's contract.
    unsafe {
        let bits = p.cast::<u16>().read_unaligned();
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
    }
}

/// 16 bf16 at `p` → f32 (exact: a bf16 is the top half of an f32).
///
/// # Safety
/// AVX-512F; `p` valid for 16 reads.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn bf16_v4(p: *const u16) -> __m512 {
    // SAFETY: the caller's contract.
    unsafe {
        let h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h))
    }
}

/// 16 IEEE halves at `p` → f32 (`vcvtph2ps`, exact).
///
/// # Safety
/// AVX-512F; `p` valid for 16 reads.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn f16_v4(p: *const u16) -> __m512 {
    // SAFETY: the caller's contract.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
}

/// The IEEE halves at `p + i·stride` (and, when `SECOND`, at
/// `p + i·stride + 2`) for `i < n ≤ 16`, widened (`vcvtph2ps`, exact,
/// subnormal halves included) into `first[0..16]` (and `second[0..16]`);
/// lanes past `n` are 0: the scales (and Q4_1's minima) of 16 consecutive
/// blocks of a weight row in one gather.
///
/// # Safety
/// AVX-512F; `p + i·stride` valid for 4 reads for `i < n`; `16·stride`
/// fits in an `i32`; `first` (and `second` when `SECOND`) valid for 16
/// writes.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn f16_strided_v4<const SECOND: bool>(
    p: *const u8,
    stride: usize,
    n: usize,
    first: *mut f32,
    second: *mut f32,
) {
    // SAFETY: the caller's contract; masked-off lanes are not read.
    unsafe {
        let idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(stride as i32),
        );
        let mask: __mmask16 = if n >= 16 { !0 } else { (1u16 << n) - 1 };
        let raw = _mm512_mask_i32gather_epi32::<1>(_mm512_setzero_si512(), mask, idx, p.cast());
        _mm512_storeu_ps(first, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw)));
        if SECOND {
            let hi = _mm512_srli_epi32::<16>(raw);
            _mm512_storeu_ps(second, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hi)));
        }
    }
}

/// 16 i8 at `p` → f32.
///
/// # Safety
/// AVX-512F; `p` valid for 16 reads.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn i8_v4(p: *const i8) -> __m512 {
    // SAFETY: the caller's contract.
    unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))) }
}

/// The low (or high) nibbles of 16 bytes at `p`, minus 8 → f32 in
/// `[−8, 7]` (a Q4_0 block's integer values): the bytes zero-extended to
/// 32-bit lanes (shifted right by 4 for the high nibbles) index a 16-entry
/// table with `vpermps`, which reads only each lane's low 4 bits — no mask,
/// no integer-to-float conversion (3 instructions for 16 weights).
///
/// # Safety
/// AVX-512F; `p` valid for 16 reads.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn q4_v4(p: *const u8, hi: bool) -> __m512 {
    // SAFETY: the caller's contract.
    unsafe {
        let b = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast()));
        let b = if hi { _mm512_srli_epi32::<4>(b) } else { b };
        let table = _mm512_setr_ps(
            -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0,
        );
        _mm512_permutexvar_ps(b, table)
    }
}

/// A whole block's 32 nibbles as f32 (as [`q4_v4`]): elements 0–15 and
/// 16–31, from one load and one zero-extension; minus 8 when `SUB8` (Q4_0's
/// integers), as they are otherwise (Q4_1's).
///
/// # Safety
/// AVX-512F; `p` valid for 16 reads.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn q4_block_v4<const SUB8: bool>(p: *const u8) -> (__m512, __m512) {
    // SAFETY: the caller's contract.
    unsafe {
        let b = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast()));
        let table = _mm512_setr_ps(
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
        );
        let table = if SUB8 {
            _mm512_sub_ps(table, _mm512_set1_ps(8.0))
        } else {
            table
        };
        (
            _mm512_permutexvar_ps(b, table),
            _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(b), table),
        )
    }
}

/// 8 bf16 at `p` → f32.
///
/// # Safety
/// AVX2; `p` valid for 8 reads.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn bf16_v3(p: *const u16) -> __m256 {
    // SAFETY: the caller's contract.
    unsafe {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
    }
}

/// 8 IEEE halves at `p` → f32, exact, in integer and f32 arithmetic, for
/// an AVX2 CPU without F16C (elsewhere the AVX2 kernels run in [`in_f16c`]
/// and use [`f16c_v3`]): the exponent is rebiased by adding
/// 112 to it; infinities and NaNs get 112 more (all-ones exponent);
/// subnormal halves become `(bits + 2^-14) − 2^-14` in f32, normalised by
/// an exact subtraction (F. Giesen's `half_to_float`), so no f32 subnormal
/// is ever an operand.
///
/// # Safety
/// AVX2; `p` valid for 8 reads.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn f16_v3(p: *const u16) -> __m256 {
    // SAFETY: the caller's contract.
    unsafe {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
        let shifted_exp = _mm256_set1_epi32(0x7c00 << 13);
        let o = _mm256_slli_epi32::<13>(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)));
        let e = _mm256_and_si256(o, shifted_exp);
        let o = _mm256_add_epi32(o, _mm256_set1_epi32(112 << 23));
        let inf_nan = _mm256_cmpeq_epi32(e, shifted_exp);
        let o = _mm256_add_epi32(o, _mm256_and_si256(inf_nan, _mm256_set1_epi32(112 << 23)));
        let zero = _mm256_cmpeq_epi32(e, _mm256_setzero_si256());
        let magic = _mm256_castsi256_ps(_mm256_set1_epi32(113 << 23));
        let den = _mm256_sub_ps(
            _mm256_castsi256_ps(_mm256_add_epi32(o, _mm256_set1_epi32(1 << 23))),
            magic,
        );
        let f = _mm256_blendv_ps(_mm256_castsi256_ps(o), den, _mm256_castsi256_ps(zero));
        let sign = _mm256_slli_epi32::<16>(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)));
        _mm256_or_ps(f, _mm256_castsi256_ps(sign))
    }
}

/// 8 i8 at `p` → f32.
///
/// # Safety
/// AVX2; `p` valid for 8 reads.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn i8_v3(p: *const i8) -> __m256 {
    // SAFETY: the caller's contract.
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast()))) }
}

/// The low (or high) nibbles of 8 bytes at `p`, minus 8 → f32 in `[−8, 7]`.
///
/// # Safety
/// AVX2; `p` valid for 8 reads.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn q4_v3(p: *const u8, hi: bool) -> __m256 {
    // SAFETY: the caller's contract.
    unsafe {
        let b = _mm_loadl_epi64(p.cast());
        let b = if hi { _mm_srli_epi16::<4>(b) } else { b };
        let n = _mm_and_si128(b, _mm_set1_epi8(0x0f));
        let q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(n));
        _mm256_sub_ps(q, _mm256_set1_ps(8.0))
    }
}

/// A whole block's 32 nibbles as f32 (elements 0–7, 8–15, 16–23, 24–31),
/// minus 8 when `SUB8` (Q4_0's integers), as they are otherwise (Q4_1's):
/// the low and high nibbles of all 16 bytes split once (and minus 8) in
/// one 128-bit register each, then 8 at a time sign- or zero-extended and
/// converted — 13–15 instructions a block where [`q4_v3`] four times takes
/// 22.
///
/// # Safety
/// AVX2; `p` valid for 16 reads.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn q4_block_v3<const SUB8: bool>(p: *const u8) -> [__m256; 4] {
    // SAFETY: the caller's contract.
    let b = unsafe { _mm_loadu_si128(p.cast()) };
    let mask = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(b, mask);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), mask);
    let widen = |x: __m128i| {
        if SUB8 {
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(x))
        } else {
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(x))
        }
    };
    let (lo, hi) = if SUB8 {
        let eight = _mm_set1_epi8(8);
        (_mm_sub_epi8(lo, eight), _mm_sub_epi8(hi, eight))
    } else {
        (lo, hi)
    };
    [
        widen(lo),
        widen(_mm_unpackhi_epi64(lo, lo)),
        widen(hi),
        widen(_mm_unpackhi_epi64(hi, hi)),
    ]
}

/// `dst[c·dst_stride + r] = src[r][c]` for a 16×16 block: four rounds of
/// shuffles (32-bit, 64-bit, then two of 128-bit lanes), 64 in all.
///
/// # Safety
/// AVX-512F is available; each `src[r]` is valid for 16 reads; `dst` for
/// 16 rows of 16 writes at stride `dst_stride`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose16(src: [*const f32; 16], dst: *mut f32, dst_stride: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        let r: [__m512; 16] = core::array::from_fn(|i| _mm512_loadu_ps(src[i]));
        // t[2p], t[2p+1]: rows 2p and 2p+1 interleaved by 32-bit element.
        let t: [__m512; 16] = core::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        // u[4q + j]: in every 128-bit lane L, column 4L + j of rows
        // 4q..4q+4.
        let u: [__m512; 16] = core::array::from_fn(|i| {
            let (q, j) = (i / 4, i % 4);
            let (a, b) = (
                _mm512_castps_pd(t[4 * q + (j / 2)]),
                _mm512_castps_pd(t[4 * q + 2 + (j / 2)]),
            );
            _mm512_castpd_ps(if j % 2 == 0 {
                _mm512_unpacklo_pd(a, b)
            } else {
                _mm512_unpackhi_pd(a, b)
            })
        });
        for j in 0..4 {
            let lo01 = _mm512_shuffle_f32x4::<0x44>(u[j], u[4 + j]);
            let hi01 = _mm512_shuffle_f32x4::<0xEE>(u[j], u[4 + j]);
            let lo23 = _mm512_shuffle_f32x4::<0x44>(u[8 + j], u[12 + j]);
            let hi23 = _mm512_shuffle_f32x4::<0xEE>(u[8 + j], u[12 + j]);
            let out = [
                _mm512_shuffle_f32x4::<0x88>(lo01, lo23),
                _mm512_shuffle_f32x4::<0xDD>(lo01, lo23),
                _mm512_shuffle_f32x4::<0x88>(hi01, hi23),
                _mm512_shuffle_f32x4::<0xDD>(hi01, hi23),
            ];
            for (l, v) in out.into_iter().enumerate() {
                _mm512_storeu_ps(dst.add((4 * l + j) * dst_stride), v);
            }
        }
    }
}

/// `out[j] = scale · Σ_e q[e]·k_j[e]` for keys `j < n ≤ 16`, key `j` at
/// `k + j·k_stride`: sixteen FMA chains, then one tree that turns the
/// sixteen partial-sum vectors into one vector of sixteen sums (46
/// shuffles and adds, against ~10 per key for a reduction per key).
///
/// # Safety
/// AVX-512F is available; `d` is a positive multiple of 16; `q` valid for
/// `d` reads, each of the `n ≥ 1` key rows for `d` reads; `out` for `n`
/// writes.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn scores16_v4(
    q: *const f32,
    k: *const f32,
    k_stride: usize,
    n: usize,
    d: usize,
    scale: f32,
    out: *mut f32,
) {
    // SAFETY: the caller's contract; rows past n repeat row n − 1 (their
    // sums are not stored).
    unsafe {
        let acc = match d {
            64 => dots16_v4::<4>(q, k, k_stride, n, d),
            128 => dots16_v4::<8>(q, k, k_stride, n, d),
            _ => dots16_v4::<0>(q, k, k_stride, n, d),
        };
        // x[p]: 128-bit lanes 0, 1 hold halves of acc[2p]; 2, 3 of acc[2p+1].
        let x: [__m512; 8] = core::array::from_fn(|p| {
            let (a, b) = (acc[2 * p], acc[2 * p + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
            )
        });
        // y[r]: 128-bit lane i holds four floats summing to acc[4r + i].
        let y: [__m512; 4] = core::array::from_fn(|r| {
            let (a, b) = (x[2 * r], x[2 * r + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
            )
        });
        // z[t], lane i: two floats summing to acc[8t + i], two to acc[8t + 4 + i].
        let z: [__m512; 2] = core::array::from_fn(|t| {
            let (a, b) = (y[2 * t], y[2 * t + 1]);
            _mm512_add_ps(
                _mm512_shuffle_ps::<0b10_00_10_00>(a, b),
                _mm512_shuffle_ps::<0b11_01_11_01>(a, b),
            )
        });
        // Element 4i + e of w is the sum of acc[4e + i].
        let w = _mm512_add_ps(
            _mm512_shuffle_ps::<0b10_00_10_00>(z[0], z[1]),
            _mm512_shuffle_ps::<0b11_01_11_01>(z[0], z[1]),
        );
        let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let sums = _mm512_permutexvar_ps(idx, w);
        let m: __mmask16 = if n >= 16 { 0xffff } else { (1u16 << n) - 1 };
        _mm512_mask_storeu_ps(out, m, _mm512_mul_ps(sums, _mm512_set1_ps(scale)));
    }
}

/// The sixteen partial-sum vectors of [`scores16_v4`]: per key, the FMA
/// chain over `d` (split in two), with `q` in `NV` registers when `d` is
/// `16·NV` (`NV = 0`: any multiple of 16, `q` read from L1).
///
/// # Safety
/// As [`scores16_v4`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dots16_v4<const NV: usize>(
    q: *const f32,
    k: *const f32,
    k_stride: usize,
    n: usize,
    d: usize,
) -> [__m512; 16] {
    // SAFETY: the caller's contract; rows past n repeat row n − 1.
    unsafe {
        let qv: [__m512; NV] = core::array::from_fn(|c| _mm512_loadu_ps(q.add(16 * c)));
        core::array::from_fn(|j| {
            let r = k.add(j.min(n - 1) * k_stride);
            let (mut a, mut b) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            if NV > 0 {
                for c in (0..NV).step_by(2) {
                    a = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(r.add(16 * c)), a);
                    if c + 1 < NV {
                        b = _mm512_fmadd_ps(qv[c + 1], _mm512_loadu_ps(r.add(16 * c + 16)), b);
                    }
                }
            } else {
                for e in (0..d).step_by(16) {
                    a = _mm512_fmadd_ps(_mm512_loadu_ps(q.add(e)), _mm512_loadu_ps(r.add(e)), a);
                }
            }
            _mm512_add_ps(a, b)
        })
    }
}

/// [`scores16_v4`] for AVX2: eight keys, `d` a positive multiple of 8.
///
/// # Safety
/// AVX2 and FMA are available; `q` valid for `d` reads, each of the
/// `n ≥ 1` (≤ 8) key rows for `d` reads; `out` for `n` writes.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) unsafe fn scores8_v3(
    q: *const f32,
    k: *const f32,
    k_stride: usize,
    n: usize,
    d: usize,
    scale: f32,
    out: *mut f32,
) {
    // SAFETY: as scores16_v4.
    unsafe {
        let rows: [*const f32; 8] = core::array::from_fn(|j| k.add(j.min(n - 1) * k_stride));
        let mut acc = [_mm256_setzero_ps(); 8];
        for e in (0..d).step_by(8) {
            let qv = _mm256_loadu_ps(q.add(e));
            for j in 0..8 {
                acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(rows[j].add(e)), acc[j]);
            }
        }
        // hadd twice: 128-bit lane L of u[t] holds the half-L sums of
        // acc[4t..4t + 4]; adding the two halves gives the eight sums.
        let t: [__m256; 4] = core::array::from_fn(|p| _mm256_hadd_ps(acc[2 * p], acc[2 * p + 1]));
        let u0 = _mm256_hadd_ps(t[0], t[1]);
        let u1 = _mm256_hadd_ps(t[2], t[3]);
        let sums = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(u0, u1),
            _mm256_permute2f128_ps::<0x31>(u0, u1),
        );
        let sums = _mm256_mul_ps(sums, _mm256_set1_ps(scale));
        if n >= 8 {
            _mm256_storeu_ps(out, sums);
        } else {
            let mut buf = [0.0f32; 8];
            _mm256_storeu_ps(buf.as_mut_ptr(), sums);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), out, n);
        }
    }
}

/// `1/d` per lane for `d ≥ 1` (finite): `vrcp14ps` (relative error
/// < 2⁻¹⁴) and one Newton step `r + r·(1 − d·r)` (error ~2⁻²⁸ before its
/// two roundings: within 1 ULP of the quotient). A 512-bit `vdivps` is one
/// result per ~8 cycles on the Intel cores measured; these are three
/// instructions on the two FMA ports.
///
/// # Safety
/// AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn recip_v4<const K: usize>(d: [__m512; K]) -> [__m512; K] {
    let one = _mm512_set1_ps(1.0);
    let mut r = d;
    for k in 0..K {
        let r0 = _mm512_rcp14_ps(d[k]);
        r[k] = _mm512_fmadd_ps(r0, _mm512_fnmadd_ps(d[k], r0, one), r0);
    }
    r
}

/// [`crate::math`]'s `exp2_nonpos` on AVX-512: the same reduction and
/// polynomial, with `2ⁿ` applied by `vscalefps` under a zero mask instead of
/// being built in the exponent field and multiplied, selected and
/// NaN-restored (11 vector operations against 14 — the flash softmax's
/// inner loop). Lanes with `x < −126` (and −∞) are 0, so `n ≥ −126` and no
/// result is subnormal (subnormal outputs cost a microcode assist on Intel
/// cores); NaN propagates (the compare is unordered-true).
///
/// # Safety
/// AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn exp2_nonpos_v4<const K: usize>(x: [__m512; K], poly: [f32; 7]) -> [__m512; K] {
    // Adding 1.5·2²³ rounds to the nearest integer (|x| < 2²²; larger
    // lanes are masked off below).
    const ROUND: f32 = 12_582_912.0;
    let round = _mm512_set1_ps(ROUND);
    let mut n = x;
    let mut f = x;
    for k in 0..K {
        n[k] = _mm512_sub_ps(_mm512_add_ps(x[k], round), round);
        f[k] = _mm512_sub_ps(x[k], n[k]);
    }
    let mut p = [_mm512_set1_ps(poly[0]); K];
    for &c in &poly[1..] {
        for k in 0..K {
            p[k] = _mm512_fmadd_ps(p[k], f[k], _mm512_set1_ps(c));
        }
    }
    for k in 0..K {
        let keep = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x[k], _mm512_set1_ps(-126.0));
        p[k] = _mm512_maskz_scalef_ps(keep, p[k], n[k]);
    }
    p
}
