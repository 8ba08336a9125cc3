//! AVX-512 VNNI kernels of the int8 mode ([`crate::matmul::int8`]):
//! `vpdpbusd` (64 u8 × i8 products summed in fours into 16 i32 lanes, two
//! per cycle on the cores measured — the f32 FMA's rate with four times the
//! products). Weights are the unsigned operand (`q + off`), activations the
//! signed one; accumulators start at the row's `−off·Σq_a`, so the integer
//! sums are exact. Q4_1 blocks add `m_w·(d_a·Σq_a)` per block in f32.

use crate::matmul::int8::{Blk, QuantA};
use crate::quant::QK;
use core::arch::x86_64::*;

/// Whether this CPU runs these kernels (on top of the AVX-512 level).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("f16c")
}

/// Blocks of k per pass of the GEMM (32 KB of a packed panel: L1).
const KB: usize = 32;

/// How far ahead of the weights being read the decode kernel prefetches
/// at least: the `[n, k]` rows are one contiguous stream. Measured
/// (1×4096·4096 cold, one thread, Intel Xeon): 4 KB ahead 10.5 / 9.0 GB/s
/// (Q8_0 / Q4_0), 12 KB 10.8 / 9.9, 24 KB 10.4 / 9.6, 48 KB 9.7 / 9.0; no
/// prefetch 9.9 / 7.2. [`dot_rows`] reaches further when its rows side by
/// side span more (Q8_0 at k = 4096: four 4352-byte rows; on AMD Zen 5,
/// 12 KB ran it at 20 GB/s, C rows + 6 KB at 24–26 GB/s).
const PF_BYTES: usize = 12288;

/// Packs weight rows `0..nc` (≤ 128) at `w` (`rb` bytes apart, `bs`-byte
/// blocks, `nb` blocks a row) into 4 panels of 32 columns: per panel and
/// block, `[8 groups][32 columns][4 bytes]` of unsigned weights (1 KB), and
/// the 32 columns' scales as f32 (and, for Q4_1, their `m` in the same
/// layout `128·nb` floats on). Columns past `nc` are zeros. Each group of
/// 16 columns is one gather of the same 4 bytes from 16 weight rows.
///
/// # Safety
/// AVX-512 VNNI + F16C (checked by [`available`]); the weight rows exist;
/// `pack` holds `128·32·nb` bytes, `scales` `2·128·nb` floats; `128·rb`
/// fits in an `i32`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
pub(crate) unsafe fn pack_chunk(
    f: Blk,
    w: *const u8,
    rb: usize,
    bs: usize,
    nc: usize,
    nb: usize,
    pack: *mut u8,
    scales: *mut f32,
) {
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let nib = _mm512_set1_epi32(0x0F0F_0F0F);
    let flip = _mm512_set1_epi32(0x8080_8080u32 as i32);
    let qat = f.quants_at();
    for pn in 0..nc.div_ceil(32) {
        for h in 0..2 {
            let c0 = pn * 32 + h * 16;
            let left = nc.saturating_sub(c0).min(16);
            let mask: __mmask16 = if left == 16 { !0 } else { (1u16 << left) - 1 };
            let idx = _mm512_mullo_epi32(
                _mm512_add_epi32(lanes, _mm512_set1_epi32(c0 as i32)),
                _mm512_set1_epi32(rb as i32),
            );
            let z = _mm512_setzero_si512();
            for b in 0..nb {
                // SAFETY: masked lanes read 4 bytes inside block b of an
                // existing weight row (scale + quants); stores stay inside
                // the buffers (sizes in the contract).
                unsafe {
                    let blk = w.add(b * bs);
                    let out = pack.add((pn * nb + b) * 1024 + h * 64);
                    let raw_d = _mm512_mask_i32gather_epi32::<1>(z, mask, idx, blk.cast());
                    let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw_d));
                    _mm512_storeu_ps(scales.add((pn * nb + b) * 32 + h * 16), d);
                    if f == Blk::Q4m {
                        let m =
                            _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(raw_d)));
                        _mm512_storeu_ps(scales.add(128 * nb + (pn * nb + b) * 32 + h * 16), m);
                    }
                    if f.nibbles() {
                        for g in 0..4 {
                            let v = _mm512_mask_i32gather_epi32::<1>(
                                z,
                                mask,
                                idx,
                                blk.add(qat + 4 * g).cast(),
                            );
                            let lo = _mm512_and_si512(v, nib);
                            let hi = _mm512_and_si512(_mm512_srli_epi32::<4>(v), nib);
                            _mm512_storeu_si512(out.add(g * 128).cast(), lo);
                            _mm512_storeu_si512(out.add((g + 4) * 128).cast(), hi);
                        }
                    } else {
                        for g in 0..8 {
                            let v = _mm512_mask_i32gather_epi32::<1>(
                                z,
                                mask,
                                idx,
                                blk.add(2 + 4 * g).cast(),
                            );
                            _mm512_storeu_si512(
                                out.add(g * 128).cast(),
                                _mm512_maskz_xor_epi32(mask, v, flip),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// One block's 32 unsigned weights in element order.
///
/// # Safety
/// AVX-512BW; `blk` is a whole block of format `f`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
#[inline]
unsafe fn unsigned(f: Blk, blk: *const u8) -> __m256i {
    // SAFETY: the quants follow the scale(s) (16 or 32 bytes).
    unsafe {
        if f.nibbles() {
            let x = _mm_loadu_si128(blk.add(f.quants_at()).cast());
            let lo = _mm_and_si128(x, _mm_set1_epi8(15));
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(x), _mm_set1_epi8(15));
            _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi)
        } else {
            _mm256_xor_si256(
                _mm256_loadu_si256(blk.add(2).cast()),
                _mm256_set1_epi8(-128),
            )
        }
    }
}

/// `acc[i·ld + c]` (rows `0..qa.mp`, columns `0..nc`) = the int8 product of
/// the packed chunk with every row of `qa`, KB blocks of k at a time so a
/// panel's slice stays in L1 while every row tile passes over it.
///
/// # Safety
/// AVX-512 VNNI (checked by [`available`]); `pack`/`scales` from
/// [`pack_chunk`] with format `f` for `qa.nb` blocks; `acc` holds `qa.mp`
/// rows of `ld ≥ 128` floats.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
pub(crate) unsafe fn gemm_chunk(
    f: Blk,
    pack: *const u8,
    scales: *const f32,
    nc: usize,
    qa: &QuantA,
    acc: *mut f32,
    ld: usize,
) {
    let nb = qa.nb;
    let panels = nc.div_ceil(32);
    let mut kb0 = 0;
    while kb0 < nb {
        let kb1 = (kb0 + KB).min(nb);
        for pn in 0..panels {
            let mut i = 0;
            while i < qa.mp {
                // SAFETY: the caller's contract; rows i..i+4 exist (mp is a
                // multiple of 4).
                unsafe {
                    let (bp, sp) = (pack.add(pn * nb * 1024), scales.add(pn * nb * 32));
                    let out = acc.add(i * ld + pn * 32);
                    if f == Blk::Q4m {
                        let mp = sp.add(128 * nb);
                        tile_4x32::<true>(bp, sp, mp, qa, i, kb0, kb1, out, ld);
                    } else {
                        tile_4x32::<false>(bp, sp, sp, qa, i, kb0, kb1, out, ld);
                    }
                }
                i += 4;
            }
        }
        kb0 = kb1;
    }
}

/// Rows `i..i+4` × one 32-column panel over blocks `kb0..kb1`, added to
/// `out` (set when `kb0 == 0`); with `MIN`, plus Q4_1's `m` term.
///
/// # Safety
/// As [`gemm_chunk`]; `bp`/`sp`/`mp` (the `m`, read with `MIN`) at the
/// panel's first block.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
#[inline]
unsafe fn tile_4x32<const MIN: bool>(
    bp: *const u8,
    sp: *const f32,
    mp: *const f32,
    qa: &QuantA,
    i: usize,
    kb0: usize,
    kb1: usize,
    out: *mut f32,
    ld: usize,
) {
    let (k, nb) = (qa.k, qa.nb);
    let q = qa.q.as_ptr();
    // SAFETY: every index below is inside the buffers (the caller's
    // contract: rows i..i+4 of qa, blocks kb0..kb1 of the panel, 4 rows of
    // 32 floats at `out`).
    unsafe {
        let mut f = [[_mm512_setzero_ps(); 2]; 4];
        if kb0 > 0 {
            for (r, fr) in f.iter_mut().enumerate() {
                fr[0] = _mm512_loadu_ps(out.add(r * ld));
                fr[1] = _mm512_loadu_ps(out.add(r * ld + 16));
            }
        }
        for b in kb0..kb1 {
            let mut ia = [[_mm512_setzero_si512(); 2]; 4];
            for (r, ir) in ia.iter_mut().enumerate() {
                let c = _mm512_set1_epi32(qa.blk[(i + r) * nb + b]);
                *ir = [c, c];
            }
            let bb = bp.add(b * 1024);
            let qb = q.add(i * k + b * QK);
            for g in 0..8 {
                let b0 = _mm512_loadu_si512(bb.add(g * 128).cast());
                let b1 = _mm512_loadu_si512(bb.add(g * 128 + 64).cast());
                for (r, ir) in ia.iter_mut().enumerate() {
                    let a = _mm512_set1_epi32(qb.add(r * k + 4 * g).cast::<i32>().read_unaligned());
                    ir[0] = _mm512_dpbusd_epi32(ir[0], b0, a);
                    ir[1] = _mm512_dpbusd_epi32(ir[1], b1, a);
                }
            }
            let d0 = _mm512_loadu_ps(sp.add(b * 32));
            let d1 = _mm512_loadu_ps(sp.add(b * 32 + 16));
            for r in 0..4 {
                let da = _mm512_set1_ps(*qa.d.get_unchecked((i + r) * nb + b));
                f[r][0] =
                    _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ia[r][0]), d0), da, f[r][0]);
                f[r][1] =
                    _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ia[r][1]), d1), da, f[r][1]);
            }
            if MIN {
                let m0 = _mm512_loadu_ps(mp.add(b * 32));
                let m1 = _mm512_loadu_ps(mp.add(b * 32 + 16));
                for (r, fr) in f.iter_mut().enumerate() {
                    let sa = _mm512_set1_ps(*qa.sa.get_unchecked((i + r) * nb + b));
                    fr[0] = _mm512_fmadd_ps(m0, sa, fr[0]);
                    fr[1] = _mm512_fmadd_ps(m1, sa, fr[1]);
                }
            }
        }
        for (r, fr) in f.iter().enumerate() {
            _mm512_storeu_ps(out.add(r * ld), fr[0]);
            _mm512_storeu_ps(out.add(r * ld + 16), fr[1]);
        }
    }
}

/// Decode: `out[r·ld + c]` for rows `i0..i0+mr` (≤ 4) of `qa` and weight
/// rows `c < nc` at `w`, the weights read once, two blocks per 512-bit
/// vector, [`PF_BYTES`] ahead prefetched.
///
/// # Safety
/// AVX-512 VNNI + F16C (checked by [`available`]); the weight rows exist
/// (`rb` bytes apart, `bs`-byte blocks, `qa.nb` a row); `out` holds `mr`
/// rows of `ld ≥ nc` floats.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
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
        match (f, mr) {
            (Blk::Q4, 1) => cols::<Q4, 1, 2>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q4, 2) => cols::<Q4, 2, 2>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q4, 3) => cols::<Q4, 3, 1>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q4, _) => cols::<Q4, 4, 1>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q4m, 1) => cols::<Q4M, 1, 2>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q4m, 2) => cols::<Q4M, 2, 2>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q4m, 3) => cols::<Q4M, 3, 1>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q4m, _) => cols::<Q4M, 4, 1>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q8, 1) => cols::<Q8, 1, 4>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q8, 2) => cols::<Q8, 2, 2>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q8, 3) => cols::<Q8, 3, 1>(w, rb, bs, nc, qa, i0, out, ld),
            (Blk::Q8, _) => cols::<Q8, 4, 1>(w, rb, bs, nc, qa, i0, out, ld),
        }
    }
}

/// The formats as const parameters of the decode kernels.
const Q8: u8 = 0;
const Q4: u8 = 1;
const Q4M: u8 = 2;

/// The [`Blk`] of a const format parameter.
const fn fmt_of<const F: u8>() -> Blk {
    match F {
        Q8 => Blk::Q8,
        Q4 => Blk::Q4,
        _ => Blk::Q4m,
    }
}

/// `C` weight rows at a time (independent streams for the memory system,
/// and each activation vector loaded once for all of them), the last `nc %
/// C` one at a time. Measured (1×4096·4096 cold, one thread, % of a plain
/// read): Q8_0 78% with C = 1, 89% with C = 4; Q4_0 73% with C = 1 or 2,
/// 68% with C = 4 (its nibble unpacking already fills the vector ports).
///
/// # Safety
/// As [`dot`]; `MR·C ≤ 4`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
unsafe fn cols<const F: u8, const MR: usize, const C: usize>(
    w: *const u8,
    rb: usize,
    bs: usize,
    nc: usize,
    qa: &QuantA,
    i0: usize,
    out: *mut f32,
    ld: usize,
) {
    let full = nc / C * C;
    // SAFETY: the caller's contract; columns split without overlap.
    unsafe {
        let mut c = 0;
        while c < full {
            dot_rows::<F, MR, C>(w.add(c * rb), rb, bs, qa, i0, out.add(c), ld);
            c += C;
        }
        while c < nc {
            dot_rows::<F, MR, 1>(w.add(c * rb), rb, bs, qa, i0, out.add(c), ld);
            c += 1;
        }
    }
}

/// Two blocks of unsigned weights (`blk`, `blk + bs`) in one vector.
///
/// # Safety
/// AVX-512BW; both blocks exist.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
#[inline]
unsafe fn pair<const F: u8>(blk: *const u8, bs: usize) -> __m512i {
    let at = fmt_of::<F>().quants_at();
    // SAFETY: the quants of both blocks (the caller's contract).
    unsafe {
        if F != Q8 {
            let x0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(blk.add(at).cast()));
            let x1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(blk.add(bs + at).cast()));
            let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x0), x1);
            _mm512_and_si512(
                _mm512_srlv_epi64(v, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)),
                _mm512_set1_epi8(15),
            )
        } else {
            let x0 = _mm256_loadu_si256(blk.add(2).cast());
            let x1 = _mm256_loadu_si256(blk.add(bs + 2).cast());
            _mm512_xor_si512(
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x0), x1),
                _mm512_set1_epi8(-128),
            )
        }
    }
}

/// `MR` rows × `C` weight rows (the `C` columns of `out` from `out`): the
/// accumulators live in registers, two per (row, column) (even and odd
/// pairs of blocks) to halve the FMA chain.
///
/// The blocks go in chunks of 16: each chunk's scales are gathered (one
/// gather of the 4 bytes at each block's start per weight row), widened
/// and multiplied by the rows' activation scales just before its dot
/// products, and stay in registers (one vector per (row, column); a
/// pair's two scales are one `vpermps` away). Gathered in a pass over the
/// whole row first, the gathers were the first touch of cold weight lines,
/// a dozen cache misses each with nothing else in flight: 1×4096·4096 cold,
/// one thread, AMD Zen 5, Q8_0 ran at half the read bandwidth, ~60% of the
/// kernel's samples on the instructions waiting for the gathers.
///
/// # Safety
/// As [`dot`], for weight rows `0..C` at `w`; `MR·C ≤ 4`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
#[allow(clippy::needless_range_loop)] // (row, column) index several arrays at once
unsafe fn dot_rows<const F: u8, const MR: usize, const C: usize>(
    w: *const u8,
    rb: usize,
    bs: usize,
    qa: &QuantA,
    i0: usize,
    out: *mut f32,
    ld: usize,
) {
    let (k, nb) = (qa.k, qa.nb);
    let gidx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(bs as i32),
    );
    // Lanes 0–7 ← scale 2j, lanes 8–15 ← scale 2j + 1: pair j of a chunk.
    let pair_idx = |j: usize| {
        _mm512_add_epi32(
            _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
            _mm512_set1_epi32(2 * j as i32),
        )
    };
    let q = qa.q.as_ptr();
    let lane = qa.lane.as_ptr();
    // The C rows run side by side, so each row's prefetches must reach past
    // the other C − 1 rows into the next group's.
    let pf = PF_BYTES.max(C * rb + PF_BYTES / 2);
    // SAFETY: all indices inside the buffers (the caller's contract).
    unsafe {
        // Q4_1's m times the rows' block sums d_a·Σq_a, summed per (row,
        // column) chunk by chunk.
        let mut mins = [[_mm512_setzero_ps(); C]; MR];
        let mut acc0 = [[_mm512_setzero_ps(); C]; MR];
        let mut acc1 = [[_mm512_setzero_ps(); C]; MR];
        let mut b = 0;
        while b < nb {
            let left = (nb - b).min(16);
            let mask: __mmask16 = if left == 16 { !0 } else { (1u16 << left) - 1 };
            // d_w·d_a of blocks b..b+left, lane t for block b + t.
            let mut sc = [[_mm512_setzero_ps(); C]; MR];
            for cc in 0..C {
                let raw = _mm512_mask_i32gather_epi32::<1>(
                    _mm512_setzero_si512(),
                    mask,
                    gidx,
                    w.add(cc * rb + b * bs).cast(),
                );
                let dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
                for r in 0..MR {
                    let da = _mm512_maskz_loadu_ps(mask, qa.d.as_ptr().add((i0 + r) * nb + b));
                    sc[r][cc] = _mm512_mul_ps(dw, da);
                }
                if F == Q4M {
                    let mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(raw)));
                    for r in 0..MR {
                        let sa = _mm512_maskz_loadu_ps(mask, qa.sa.as_ptr().add((i0 + r) * nb + b));
                        mins[r][cc] = _mm512_fmadd_ps(mw, sa, mins[r][cc]);
                    }
                }
            }
            // b is even (chunks of 16), so the chunk's pairs are the
            // global pairs b/2 + j.
            let pairs = left / 2;
            let mut j = 0;
            while j + 2 <= pairs {
                let p = b / 2 + j;
                let mut w0 = [_mm512_setzero_si512(); C];
                let mut w1 = [_mm512_setzero_si512(); C];
                for cc in 0..C {
                    let blk = w.add(cc * rb + 2 * p * bs);
                    // Past the last row near the end: a prefetch never faults.
                    let ahead = blk.wrapping_add(pf);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(4 * bs - 1).cast());
                    w0[cc] = pair::<F>(blk, bs);
                    w1[cc] = pair::<F>(blk.add(2 * bs), bs);
                }
                let (x0, x1) = (pair_idx(j), pair_idx(j + 1));
                for r in 0..MR {
                    let i = i0 + r;
                    let qi = q.add(i * k + 64 * p);
                    let li = lane.add(i * (k / 4) + 16 * p);
                    let (a0, a1) = (
                        _mm512_loadu_si512(qi.cast()),
                        _mm512_loadu_si512(qi.add(64).cast()),
                    );
                    let (l0, l1) = (
                        _mm512_loadu_si512(li.cast()),
                        _mm512_loadu_si512(li.add(16).cast()),
                    );
                    for cc in 0..C {
                        let d0 = _mm512_dpbusd_epi32(l0, w0[cc], a0);
                        let d1 = _mm512_dpbusd_epi32(l1, w1[cc], a1);
                        let (s0, s1) = (
                            _mm512_permutexvar_ps(x0, sc[r][cc]),
                            _mm512_permutexvar_ps(x1, sc[r][cc]),
                        );
                        acc0[r][cc] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), s0, acc0[r][cc]);
                        acc1[r][cc] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), s1, acc1[r][cc]);
                    }
                }
                j += 2;
            }
            if j < pairs {
                let p = b / 2 + j;
                let x0 = pair_idx(j);
                for cc in 0..C {
                    let w0 = pair::<F>(w.add(cc * rb + 2 * p * bs), bs);
                    for r in 0..MR {
                        let i = i0 + r;
                        let d0 = _mm512_dpbusd_epi32(
                            _mm512_loadu_si512(lane.add(i * (k / 4) + 16 * p).cast()),
                            w0,
                            _mm512_loadu_si512(q.add(i * k + 64 * p).cast()),
                        );
                        let s0 = _mm512_permutexvar_ps(x0, sc[r][cc]);
                        acc0[r][cc] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), s0, acc0[r][cc]);
                    }
                }
            }
            if left % 2 == 1 {
                // The row's last block alone (nb odd), in the low half.
                let last = _mm512_set1_epi32(left as i32 - 1);
                for cc in 0..C {
                    let wv = _mm512_castsi256_si512(unsigned(
                        fmt_of::<F>(),
                        w.add(cc * rb + (nb - 1) * bs),
                    ));
                    let wv = _mm512_inserti64x4::<1>(wv, _mm256_setzero_si256());
                    for r in 0..MR {
                        let i = i0 + r;
                        let init =
                            _mm512_maskz_loadu_epi32(0x00FF, lane.add(i * (k / 4) + 8 * (nb - 1)));
                        let av = _mm512_maskz_loadu_epi8(0xFFFF_FFFF, q.add(i * k + QK * (nb - 1)));
                        let dot = _mm512_dpbusd_epi32(init, wv, av);
                        let s = _mm512_permutexvar_ps(last, sc[r][cc]);
                        acc1[r][cc] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, acc1[r][cc]);
                    }
                }
            }
            b += 16;
        }
        for r in 0..MR {
            for cc in 0..C {
                let sum = _mm512_add_ps(acc0[r][cc], acc1[r][cc]);
                let sum = if F == Q4M {
                    _mm512_add_ps(sum, mins[r][cc])
                } else {
                    sum
                };
                *out.add(r * ld + cc) = _mm512_reduce_add_ps(sum);
            }
        }
    }
}
