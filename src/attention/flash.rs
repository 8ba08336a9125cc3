//! Prefill: the flash schedule for one (batch, head, query range).
//!
//! The query range is cut into super-blocks of about 1 MiB of Q + O rows,
//! copied (Q) and accumulated (O) in contiguous scratch: in place, rows
//! H·D floats apart fall into a quarter of the L2's sets or less. Within a
//! super-block, KV-outer: for each block of `BC` keys, Kᵀ and V are packed
//! once and used by every query of the super-block. Query tiles of `MR`
//! rows go in groups of `G`: the group's `S = scale·log2 e·Q·Kᵀ` tiles are
//! computed Kᵀ panel by panel on the matmul microkernel (each panel loaded
//! from L2 once per group), then per tile the online softmax in log2 units
//! (running max `m`, running sum `l`, O rescaled by `2^(m_old − m_new)`)
//! and `O += P·V` on the microkernel. Working memory is
//! `2·D·BC + G·MR·BC + 2·rows·D + 2·rows` floats per thread (≈ 1.2 MiB),
//! whatever the sequence length.
//!
//! Where the time goes (Intel Xeon, Sapphire Rapids class, one thread,
//! H = 12, D = 64, N = 4096, `perf` samples by instruction address; no
//! hardware counters in the VM): before the scratch rows and groups, at
//! 41–46% of the FMA peak — the S microkernel's loop 41% of the samples,
//! the P·V loop 32%, P·V's `O += acc` epilogue 5%, the softmax (max,
//! `exp2`, sums) 17%, Kᵀ transposes and V copies ~3%. After, at 47–51%:
//! both microkernel loops ~60% together, the softmax and tile epilogues
//! ~25%, Kᵀ transposes and V/Q copies ~8–11% (strided K/V rows from
//! memory; an L2 software prefetch of the next block measured within
//! noise). Tried and measured no better: Q packed pre-scaled as the
//! microkernel's packed A (±1%), BC = 64 (−5–8%) and 512 (−2…+4%),
//! super-blocks of 512 KiB (±3%), P·V in 32 KiB chunks of V shared by the
//! group (D = 64 +2%, D = 128 −2…−9%).

use super::Attn;
use crate::gelu::Identity;
use crate::math;
use crate::matmul::kernel::{TileEpi, microkernel_narrowing};
use pulp::Simd;

/// Keys per block.
pub(crate) const BC: usize = 256;
/// Queries per tile (the microkernel's broadcast side).
pub(crate) const MR: usize = 6;
/// Tiles whose S tiles are computed together, panel by panel.
const G: usize = 4;

/// Scratch reused across work items on one thread.
#[derive(Default)]
pub(crate) struct Scratch {
    kt: Vec<f32>,
    vp: Vec<f32>,
    qb: Vec<f32>,
    ob: Vec<f32>,
    s: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
}

#[inline(always)]
pub(crate) fn run<S: Simd>(
    s: S,
    p: &Attn,
    b: usize,
    h: usize,
    q0: usize,
    q1: usize,
    sc: &mut Scratch,
) {
    // Query super-blocks of ≤ 1 MiB of Q + O rows (about the L2): without
    // them every key block streams all of a head's Q and O rows, which at
    // N = 8192 (4–8 MiB per head) cost 7–8%; smaller ones re-read K and V
    // too often (Kᵀ and V are packed once per (super-block, key block)) and
    // lost 5% at N = 4096. Tiles and the key-block order of every row are
    // the same whatever the split, so the results are too.
    if q1 <= q0 {
        return;
    }
    let qb_max = (QB_FLOATS / p.dim.max(1)).max(MR);
    let nsb = (q1 - q0).div_ceil(qb_max);
    // Equal super-blocks (no 2-row tail paying a full pass over the keys),
    // each a multiple of MR so tiles keep their absolute positions.
    let qb = (q1 - q0).div_ceil(nsb).next_multiple_of(MR);
    let mut a = q0;
    while a < q1 {
        let e = q1.min(a + qb);
        match S::F32_LANES {
            16 => run_nv::<S, 4>(s, p, b, h, a, e, sc),
            8 => run_nv::<S, 2>(s, p, b, h, a, e, sc),
            _ => run_nv::<S, 4>(s, p, b, h, a, e, sc),
        }
        a = e;
    }
}

/// Query rows × head_dim per super-block (Q + O rows: 8·QB_FLOATS bytes).
const QB_FLOATS: usize = 128 * 1024;

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn run_nv<S: Simd, const NV: usize>(
    s: S,
    p: &Attn,
    b: usize,
    h: usize,
    q0: usize,
    q1: usize,
    sc: &mut Scratch,
) {
    let lanes = S::F32_LANES;
    let nr = NV * lanes;
    let d = p.dim;
    let hk = h / p.group;
    let rows = q1 - q0;
    let npanels = BC.div_ceil(nr);
    if sc.kt.len() < npanels * nr * d {
        sc.kt.resize(npanels * nr * d, 0.0);
    }
    if sc.vp.len() < BC * d {
        sc.vp.resize(BC * d, 0.0);
    }
    if sc.s.len() < G * MR * BC {
        sc.s.resize(G * MR * BC, 0.0);
    }
    sc.m.clear();
    sc.m.resize(rows, f32::NEG_INFINITY);
    sc.l.clear();
    sc.l.resize(rows, 0.0);
    // The super-block's Q rows are copied, and its O rows accumulated, in
    // contiguous scratch (`d` floats apart): in place, rows H·D floats
    // apart (3–4 KiB in BSHD) fall into a quarter or less of the L2's sets,
    // and the super-block thrashed it from N ≈ 2048 on.
    if sc.qb.len() < rows * d {
        sc.qb.resize(rows * d, 0.0);
    }
    if sc.ob.len() < rows * d {
        sc.ob.resize(rows * d, 0.0);
    }
    let (qs, os) = (d, d);
    let (qb, ob) = (sc.qb.as_mut_ptr(), sc.ob.as_mut_ptr());
    // SAFETY (pointer arithmetic in this function): every (b, i, h) used is
    // inside the validated views (b < batch, i < seq, h < heads, hk < kv
    // heads), and each row has `d` contiguous elements.
    let q_src = |i: usize| unsafe { p.q.add(p.ql.offset(b, i, h)) };
    let o_dst = |i: usize| unsafe { p.o.add(p.ol.offset(b, i, h)) };
    let k_row = |c: usize| unsafe { p.k.add(p.kl.offset(b, c, hk)) };
    let v_row = |c: usize| unsafe { p.v.add(p.vl.offset(b, c, hk)) };
    // SAFETY: rows q0..q1 of the scratch, `d` floats each.
    let q_row = |i: usize| unsafe { qb.add((i - q0) * d) as *const f32 };
    let o_row = |i: usize| unsafe { ob.add((i - q0) * d) };

    // Keys query i may see: [0, kv_end(i)).
    let kv_end = |i: usize| {
        if p.causal {
            (i + p.lk - p.lq + 1).min(p.lk)
        } else {
            p.lk
        }
    };
    for i in q0..q1 {
        // SAFETY: query row i has d elements in the view; scratch rows
        // i − q0 have d floats each in qb and ob (rows·d), which the views
        // cannot overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(q_src(i), qb.add((i - q0) * d), d);
            core::ptr::write_bytes(o_row(i), 0, d);
        }
    }
    let kv_max = kv_end(q1 - 1);
    let kt = sc.kt.as_mut_ptr();
    let vp = sc.vp.as_mut_ptr();
    let sbuf = sc.s.as_mut_ptr();
    for c0 in (0..kv_max).step_by(BC) {
        let nb = BC.min(kv_max - c0);
        // Pack Kᵀ[.., c0..c0+nb] into panels of nr keys, d rows each.
        // SAFETY: reads key rows c0..c0+nb (< kv_max ≤ lk), d elements each;
        // writes inside kt (npanels·nr·d).
        unsafe {
            for (pi, j0) in (0..nb).step_by(nr).enumerate() {
                let w = nr.min(nb - j0);
                let panel = kt.add(pi * nr * d);
                #[cfg(target_arch = "x86_64")]
                if transpose_avx512(nr, w, d) {
                    // Full panel on AVX-512: 16×16 register transposes
                    // (LLVM's own vectorisation of the loop below is a
                    // scatter per 8 floats, ~4% of the whole kernel at D=128).
                    for g in 0..4 {
                        let rows: [*const f32; 16] =
                            core::array::from_fn(|r| k_row(c0 + j0 + 16 * g + r));
                        for dd in (0..d).step_by(16) {
                            // SAFETY: 16 key rows with ≥ dd + 16 ≤ d elements;
                            // the panel has rows dd..dd+16 of nr = 64 floats,
                            // columns 16g..16g+16; AVX-512F was detected.
                            x86::transpose16(
                                rows.map(|r| r.add(dd)),
                                panel.add(dd * nr + 16 * g),
                                nr,
                            );
                        }
                    }
                    continue;
                }
                for j in 0..nr {
                    if j < w {
                        let kr = k_row(c0 + j0 + j);
                        for dd in 0..d {
                            *panel.add(dd * nr + j) = *kr.add(dd);
                        }
                    } else {
                        for dd in 0..d {
                            *panel.add(dd * nr + j) = 0.0;
                        }
                    }
                }
            }
        }
        // SAFETY: V rows c0..c0+nb exist with d elements; vp holds BC·d.
        unsafe {
            for j in 0..nb {
                core::ptr::copy_nonoverlapping(v_row(c0 + j), vp.add(j * d), d);
            }
        }
        // First tile holding a query that sees key c0 (causal); earlier tiles
        // skip the block. Tiles start at absolute multiples of MR (q0 is one:
        // query ranges are split on tile boundaries), so the tiles, and with
        // them every row's order of summation, do not depend on how the
        // queries were split across threads.
        let first = if p.causal {
            q0.max((c0 + p.lq).saturating_sub(p.lk) / MR * MR)
        } else {
            q0
        };
        let epi_s = TileEpi {
            alpha: p.scale_log2,
            c_scale: None,
            bias: core::ptr::null(),
            act: Identity,
            mul: core::ptr::null(),
            mul_rs: 0,
        };
        // Tiles in groups of G: the S tiles of a group are computed panel
        // by panel, so each Kᵀ panel (d·nr floats) is loaded from L2 once
        // per group and hit in L1 by the group's other tiles.
        let mut g0 = first;
        while g0 < q1 {
            let g1 = q1.min(g0 + G * MR);
            for (pi, j0) in (0..nb).step_by(nr).enumerate() {
                for (gi, t) in (g0..g1).step_by(MR).enumerate() {
                    let m_eff = MR.min(q1 - t);
                    let n_need = nb.min(kv_end(t + m_eff - 1) - c0);
                    if j0 >= n_need {
                        continue;
                    }
                    // SAFETY: Q rows t..t+m_eff exist (d contiguous each,
                    // stride qs); the packed panel holds d·nr floats; S
                    // tile gi has MR rows of BC ≥ j0 + n_eff columns
                    // (n_eff ≤ nr, j0 + n_eff ≤ n_need ≤ BC).
                    unsafe {
                        microkernel_narrowing::<S, Identity, MR, NV, false, true>(
                            s,
                            d,
                            q_row(t),
                            qs,
                            1,
                            kt.add(pi * nr * d),
                            nr,
                            sbuf.add(gi * MR * BC + j0),
                            BC,
                            m_eff,
                            nr.min(n_need - j0),
                            &epi_s,
                        )
                    };
                }
            }
            for (gi, t) in (g0..g1).step_by(MR).enumerate() {
                let m_eff = MR.min(q1 - t);
                let n_need = nb.min(kv_end(t + m_eff - 1) - c0);
                // SAFETY: tile gi of S is inside the buffer (G·MR·BC floats).
                let sbuf = unsafe { sbuf.add(gi * MR * BC) };
                for r in 0..m_eff {
                    let i = t + r;
                    // 0 for rows of the first tile that do not see this block yet.
                    let visible = kv_end(i).saturating_sub(c0).min(n_need);
                    // SAFETY: row r of S holds n_need ≤ BC valid scores.
                    let row = unsafe { core::slice::from_raw_parts_mut(sbuf.add(r * BC), n_need) };
                    let li = i - q0;
                    let (m_new, sum) = softmax_row(s, row, visible, sc.m[li]);
                    let alpha = rescale(sc.m[li], m_new);
                    sc.l[li] = sc.l[li] * alpha + sum;
                    sc.m[li] = m_new;
                    if alpha != 1.0 {
                        // SAFETY: output row i has d elements.
                        unsafe { scale_row(s, o_row(i), d, alpha) };
                    }
                }
                let epi_o = TileEpi {
                    alpha: 1.0,
                    c_scale: Some(1.0),
                    bias: core::ptr::null(),
                    act: Identity,
                    mul: core::ptr::null(),
                    mul_rs: 0,
                };
                // Keys every row of the tile sees go through the tile kernel;
                // the few diagonal keys only later rows see go row by row, so a
                // row never multiplies a V row it must not see (0·NaN = NaN).
                let common = kv_end(t).saturating_sub(c0).min(n_need);
                for d0 in (0..d).step_by(nr) {
                    let n_eff = nr.min(d - d0);
                    // SAFETY: P rows are in S (n_need columns, stride BC); V rows
                    // c0..c0+n_need exist with columns d0..d0+n_eff ≤ d; output
                    // rows t..t+m_eff exist.
                    unsafe {
                        if common > 0 {
                            microkernel_narrowing::<S, Identity, MR, NV, false, false>(
                                s,
                                common,
                                sbuf,
                                BC,
                                1,
                                vp.add(d0),
                                d,
                                o_row(t).add(d0),
                                os,
                                m_eff,
                                n_eff,
                                &epi_o,
                            );
                        }
                        for r in 0..m_eff {
                            let vis = (kv_end(t + r) - c0).min(n_need);
                            if vis > common {
                                microkernel_narrowing::<S, Identity, MR, NV, false, false>(
                                    s,
                                    vis - common,
                                    sbuf.add(r * BC + common),
                                    BC,
                                    1,
                                    vp.add(common * d + d0),
                                    d,
                                    o_row(t + r).add(d0),
                                    os,
                                    1,
                                    n_eff,
                                    &epi_o,
                                );
                            }
                        }
                    }
                }
            }
            g0 = g1;
        }
    }
    for i in q0..q1 {
        let li = i - q0;
        let l = sc.l[li];
        // l = 0 only when every score was −∞: the row is all zeros (as
        // PyTorch), never 0/0.
        let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
        // SAFETY: output row i has d elements.
        unsafe { scale_row_to(s, o_row(i), o_dst(i), d, inv) };
        if !p.lse.is_null() {
            // m is in log2 units.
            let lse = if l > 0.0 {
                (sc.m[li] + l.log2()) * core::f32::consts::LN_2
            } else {
                f32::NEG_INFINITY
            };
            // SAFETY: lse has batch·heads·lq elements (validated).
            unsafe { *p.lse.add((b * p.heads + h) * p.lq + i) = lse };
        }
    }
}

/// Masks `row[visible..]`, and turns `row[..visible]` into the softmax
/// numerators `2^(row − m_use)` (row in log2 units), where
/// `m_new = max(m_old, max(row))` and `m_use` is `m_new`, or 0 when that is
/// −∞. Returns `(m_new, Σ numerators)`.
///
/// A +∞ score (an f32 overflow of q·k) takes the limit: the numerators are 1
/// for +∞ scores and 0 for the rest, rather than `exp(∞ − ∞)` = NaN.
#[inline(always)]
pub(crate) fn softmax_row<S: Simd>(
    s: S,
    row: &mut [f32],
    visible: usize,
    m_old: f32,
) -> (f32, f32) {
    let (head, tail) = row.split_at_mut(visible);
    tail.fill(0.0);
    let mut mx = s.splat_f32s(f32::NEG_INFINITY);
    {
        let (v, t) = S::as_simd_f32s(head);
        for &x in v {
            mx = s.max_f32s(mx, x);
        }
        if !t.is_empty() {
            let x = s.partial_load_f32s(t);
            let x = s.select_f32s(
                s.mask_between_m32s(0, t.len() as u32).mask(),
                x,
                s.splat_f32s(f32::NEG_INFINITY),
            );
            mx = s.max_f32s(mx, x);
        }
    }
    let m_new = s.reduce_max_f32s(mx).max(m_old);
    if m_new == f32::INFINITY {
        let mut n = 0.0;
        for x in head.iter_mut() {
            *x = if *x == f32::INFINITY {
                n += 1.0;
                1.0
            } else {
                0.0
            };
        }
        return (m_new, n);
    }
    let m_use = if m_new == f32::NEG_INFINITY {
        0.0
    } else {
        m_new
    };
    let mv = s.splat_f32s(m_use);
    let mut sum = s.splat_f32s(0.0);
    let (v, t) = S::as_mut_simd_f32s(head);
    for x in v.iter_mut() {
        *x = math::exp2_nonpos(s, s.sub_f32s(*x, mv));
        sum = s.add_f32s(sum, *x);
    }
    let mut total = s.reduce_sum_f32s(sum);
    if !t.is_empty() {
        let x = math::exp2_nonpos(s, s.sub_f32s(s.partial_load_f32s(t), mv));
        s.partial_store_f32s(t, x);
        total += t.iter().sum::<f32>();
    }
    (m_new, total)
}

/// The factor `2^(m_old − m_new)` (log2 units) that rescales a row's running
/// sum and output when its running max moves from `m_old` to `m_new` (0 from
/// an empty start, 1 when the max stays, including at +∞).
#[inline(always)]
pub(crate) fn rescale(m_old: f32, m_new: f32) -> f32 {
    if m_old == f32::NEG_INFINITY {
        0.0
    } else if m_old == m_new {
        1.0
    } else {
        (m_old - m_new).exp2()
    }
}

/// `row[..d] *= f`.
///
/// # Safety
/// `row` valid for `d` reads and writes.
#[inline(always)]
pub(crate) unsafe fn scale_row<S: Simd>(s: S, row: *mut f32, d: usize, f: f32) {
    // SAFETY: the caller's contract.
    let r = unsafe { core::slice::from_raw_parts_mut(row, d) };
    let fv = s.splat_f32s(f);
    let (v, t) = S::as_mut_simd_f32s(r);
    for x in v.iter_mut() {
        *x = s.mul_f32s(*x, fv);
    }
    for x in t.iter_mut() {
        *x *= f;
    }
}

/// `dst[..d] = src[..d] · f`.
///
/// # Safety
/// `src` valid for `d` reads, `dst` for `d` writes; they do not overlap.
#[inline(always)]
unsafe fn scale_row_to<S: Simd>(s: S, src: *const f32, dst: *mut f32, d: usize, f: f32) {
    // SAFETY: the caller's contract.
    let (src, dst) = unsafe {
        (
            core::slice::from_raw_parts(src, d),
            core::slice::from_raw_parts_mut(dst, d),
        )
    };
    let fv = s.splat_f32s(f);
    let (sv, st) = S::as_simd_f32s(src);
    let (dv, dt) = S::as_mut_simd_f32s(dst);
    for (y, &x) in dv.iter_mut().zip(sv) {
        *y = s.mul_f32s(x, fv);
    }
    for (y, &x) in dt.iter_mut().zip(st) {
        *y = x * f;
    }
}

/// Whether a Kᵀ panel goes through [`x86::transpose16`]: full 64-key panels
/// with `d` a multiple of 16, on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn transpose_avx512(nr: usize, w: usize, d: usize) -> bool {
    nr == 64 && w == nr && d.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// `dst[c·dst_stride + r] = src[r][c]` for a 16×16 block: four rounds of
    /// shuffles (32-bit, 64-bit, then two of 128-bit lanes), 64 in all.
    ///
    /// # Safety
    /// AVX-512F is available; each `src[r]` is valid for 16 reads; `dst` for
    /// 16 rows of 16 writes at stride `dst_stride`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose16(src: [*const f32; 16], dst: *mut f32, dst_stride: usize) {
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
}
