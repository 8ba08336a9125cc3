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
//!
//! On AMD Zen 5 (one thread, H = 12, D = 64, N = 4096, causal; `perf`
//! `cpu-clock` samples mapped to inlined functions by `addr2line -i`;
//! 66–74% of the FMA peak): S k-loop 35%, S tile store 7.5%, P·V k-loop
//! 36%, P·V `O += acc` 3.5%, softmax 13% (`exp2` 4%, the max pass, loads,
//! stores and sums 9%), Kᵀ transposes 1.3%, the rest ~4%. The k-loops run
//! at the FMA peak; the loss is the rest. With the scale moved into Q
//! (`load_q`), the S store fell to 2.7% (Q's scaled copy 1.8%).
//!
//! On AMD Zen 3 (AVX2 its widest level: the 6×16 tile; 32 KiB L1d, 512 KiB
//! L2; one thread, H = 12, D = 64, N = 4096 non-causal, same method; 62% of
//! the FMA peak): S and P·V k-loops ~70% (12 FMAs, 6 broadcasts, 2 loads a
//! k-step, at ~88% of the FMA rate), softmax ~10% (`exp2` ~8%), tile stores
//! 4.5%, Kᵀ transposes 3.4%, the rest ~12%. At N = 128 (25% of peak) the
//! k-loops are ~40%: tile stores 10%, Kᵀ transposes 7%, Q's copy and O's
//! finish 7%, V copies 3%. Measured no better there: super-blocks of
//! 512 KiB (the L2; 5–10% slower), BC = 128 (±0), V packed panel-major so
//! each P·V k-step reads one contiguous row (±0).

use super::Attn;
use super::decode::pv;
use super::softmax::{rescale, scale_row, scale_row_to, softmax_row};
use crate::act::Identity;
use crate::matmul::kernel::{TileEpi, microkernel_narrowing};
use crate::quant::simd::widen_f16_row;
use pulp::Simd;

/// Keys per block.
pub(crate) const BC: usize = 256;
/// Tiles whose S tiles are computed together, panel by panel.
const G: usize = 4;

/// Scratch reused across work items on one thread.
#[derive(Default)]
pub(crate) struct Scratch {
    kt: Vec<f32>,
    /// An f16 key block widened (`nb·d` floats), when K is f16.
    kw: Vec<f32>,
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
    // Equal super-blocks (no 2-row tail paying a full pass over the keys),
    // each a whole number of tiles so tiles keep their absolute positions.
    let rows = crate::matmul::tiles::ATTENTION_SPLIT_ROWS;
    let qb_max = (QB_FLOATS / p.dim.max(1)).max(rows);
    let nsb = (q1 - q0).div_ceil(qb_max);
    let qb = (q1 - q0).div_ceil(nsb).next_multiple_of(rows);
    let mut a = q0;
    while a < q1 {
        let e = q1.min(a + qb);
        // The level's attention tile (`matmul::tiles::attention`) as
        // const generics: MR queries by NV vectors of keys (S) or of
        // head dimensions (P·V).
        use crate::matmul::tiles::attention as t;
        match S::F32_LANES {
            16 => run_tile::<S, { t(16).mr }, { t(16).nv }>(s, p, b, h, a, e, sc),
            8 => run_tile::<S, { t(8).mr }, { t(8).nv }>(s, p, b, h, a, e, sc),
            4 => run_tile::<S, { t(4).mr }, { t(4).nv }>(s, p, b, h, a, e, sc),
            _ => run_tile::<S, { t(1).mr }, { t(1).nv }>(s, p, b, h, a, e, sc),
        }
        a = e;
    }
}

/// Query rows × head_dim per super-block (Q + O rows: 8·QB_FLOATS bytes).
const QB_FLOATS: usize = 128 * 1024;

/// What the steps of one query super-block share: the head's views, the
/// query range and the contiguous Q/O scratch rows.
struct Rows<'a> {
    p: &'a Attn,
    b: usize,
    h: usize,
    hk: usize,
    q0: usize,
    q1: usize,
    d: usize,
    qb: *mut f32,
    ob: *mut f32,
}

// Callers pass only rows that exist: every (b, i, h) used is inside the
// validated views (b < batch, i < seq, h < heads, hk < kv heads), each row
// has `d` contiguous elements, and the scratch holds rows q0..q1, `d`
// floats each.
impl Rows<'_> {
    #[inline(always)]
    fn q_src(&self, i: usize) -> *const f32 {
        // SAFETY: query row i of head h in batch b is inside the Q view.
        unsafe { self.p.q.add(self.p.ql.offset(self.b, i, self.h)) }
    }
    #[inline(always)]
    fn o_dst(&self, i: usize) -> *mut f32 {
        // SAFETY: row i of head h in batch b is inside the output view.
        unsafe { self.p.o.add(self.p.ol.offset(self.b, i, self.h)) }
    }
    /// Key row c (f32, or halves when `kv16`: cast before reading).
    #[inline(always)]
    fn k_row(&self, c: usize) -> *const f32 {
        let off = self.p.kl.offset(self.b, c, self.hk);
        // SAFETY: key c < lk of KV head hk is inside the K view (its
        // element offset counted in halves when they are).
        unsafe {
            if self.p.kv16 {
                self.p.k.cast::<crate::quant::f16>().add(off).cast()
            } else {
                self.p.k.add(off)
            }
        }
    }
    /// Value row c (as [`Self::k_row`]).
    #[inline(always)]
    fn v_row(&self, c: usize) -> *const f32 {
        let off = self.p.vl.offset(self.b, c, self.hk);
        // SAFETY: as for `k_row`.
        unsafe {
            if self.p.kv16 {
                self.p.v.cast::<crate::quant::f16>().add(off).cast()
            } else {
                self.p.v.add(off)
            }
        }
    }
    #[inline(always)]
    fn q_row(&self, i: usize) -> *const f32 {
        // SAFETY: q0 ≤ i < q1; the scratch holds (q1 − q0)·d floats.
        unsafe { self.qb.add((i - self.q0) * self.d) as *const f32 }
    }
    #[inline(always)]
    fn o_row(&self, i: usize) -> *mut f32 {
        // SAFETY: q0 ≤ i < q1; the scratch holds (q1 − q0)·d floats.
        unsafe { self.ob.add((i - self.q0) * self.d) }
    }
    /// Keys query i may see: [0, kv_end(i)).
    #[inline(always)]
    fn kv_end(&self, i: usize) -> usize {
        self.p.kv_end(i)
    }
}

/// One query super-block, rows q0..q1 of head h: its Q rows into scratch,
/// then per key block: pack Kᵀ and V, S tiles by groups, the online
/// softmax and P·V per tile; then O out of scratch (and the LSE).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn run_tile<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    p: &Attn,
    b: usize,
    h: usize,
    q0: usize,
    q1: usize,
    sc: &mut Scratch,
) {
    let nr = NV * S::F32_LANES;
    let d = p.dim;
    let rows = q1 - q0;
    let npanels = BC.div_ceil(nr);
    if sc.kt.len() < npanels * nr * d {
        sc.kt.resize(npanels * nr * d, 0.0);
    }
    if sc.vp.len() < BC * d {
        sc.vp.resize(BC * d, 0.0);
    }
    if p.kv16 && sc.kw.len() < BC * d {
        sc.kw.resize(BC * d, 0.0);
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
    let r = Rows {
        p,
        b,
        h,
        hk: h / p.group,
        q0,
        q1,
        d,
        qb: sc.qb.as_mut_ptr(),
        ob: sc.ob.as_mut_ptr(),
    };
    load_q(s, &r);
    let kv_max = r.kv_end(q1 - 1);
    let (kt, vp, sbuf) = (sc.kt.as_mut_ptr(), sc.vp.as_mut_ptr(), sc.s.as_mut_ptr());
    let kw = sc.kw.as_mut_ptr();
    for c0 in (0..kv_max).step_by(BC) {
        let nb = BC.min(kv_max - c0);
        // SAFETY: kt holds npanels·nr·d floats, vp BC·d, kw BC·d when K is
        // f16; nb ≤ BC keys from c0 exist (c0 + nb ≤ kv_max ≤ lk).
        unsafe {
            if p.kv16 {
                // f16 K and V are widened a key block at a time (the block
                // is packed anyway): K rows into `kw`, V rows into `vp`.
                for j in 0..nb {
                    widen_f16_row::<S, false>(r.k_row(c0 + j).cast(), kw.add(j * d), d);
                }
                pack_kt(s, &r, |j| kw.add(j * d) as *const f32, nb, nr, kt);
            } else {
                pack_kt(s, &r, |j| r.k_row(c0 + j), nb, nr, kt);
            }
            pack_v::<S>(&r, c0, nb, vp);
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
        // Tiles in groups of G: the S tiles of a group are computed panel
        // by panel, so each Kᵀ panel (d·nr floats) is loaded from L2 once
        // per group and hit in L1 by the group's other tiles.
        let mut g0 = first;
        while g0 < q1 {
            let g1 = q1.min(g0 + G * MR);
            // SAFETY: the S buffer holds G tiles of MR·BC floats; kt holds
            // the block's panels.
            unsafe { score_group::<S, MR, NV>(s, &r, c0, nb, g0, g1, kt, sbuf) };
            for (gi, t) in (g0..g1).step_by(MR).enumerate() {
                let m_eff = MR.min(q1 - t);
                let n_need = nb.min(r.kv_end(t + m_eff - 1) - c0);
                // SAFETY: tile gi of S is inside the buffer (G·MR·BC floats)
                // and holds m_eff rows of n_need scores; vp holds the
                // block's V rows.
                unsafe {
                    let tile = sbuf.add(gi * MR * BC);
                    softmax_tile(s, &r, &mut sc.m, &mut sc.l, c0, t, m_eff, n_need, tile);
                    pv_tile::<S, MR, NV>(s, &r, c0, t, m_eff, n_need, tile, vp);
                }
            }
            g0 = g1;
        }
    }
    finish(s, &r, &sc.m, &sc.l);
}

/// Copies the super-block's Q rows into scratch, pre-scaled by
/// `scale·log2 e`, and zeroes its O rows. With the scale in Q, S tiles
/// leave the microkernel by its plain whole-tile store (no multiply, no
/// per-vector epilogue tests): measured (AMD Zen 5, one thread, causal,
/// interleaved runs, best of 5) H = 12 D = 64 N = 4096 151.8 → 137.6 ms,
/// N = 2048 38.5 → 35.3 ms; H = 8 D = 128 N = 4096 183.8 → 174.0 ms. The
/// score's rounding moves from one multiply of the sum to one per Q
/// element, inside the same `d·ε·Σ|q·k|` bound.
#[inline(always)]
fn load_q<S: Simd>(s: S, r: &Rows<'_>) {
    for i in r.q0..r.q1 {
        // SAFETY: query row i has d elements in the view; scratch rows
        // i − q0 have d floats each in qb and ob (rows·d), which the views
        // cannot overlap.
        unsafe {
            scale_row_to(s, r.q_src(i), r.q_row(i) as *mut f32, r.d, r.p.scale_log2);
            core::ptr::write_bytes(r.o_row(i), 0, r.d);
        }
    }
}

/// Packs Kᵀ of the block's keys `j < nb` (f32 rows at `key(j)`) into
/// panels of `nr` keys, `d` rows each (zero past the last key).
///
/// # Safety
/// `key(j)` is valid for `d` reads for `j < nb`; `kt` holds
/// `ceil(nb/nr)·nr·d` floats.
#[inline(always)]
unsafe fn pack_kt<S: Simd>(
    _s: S,
    r: &Rows<'_>,
    key: impl Fn(usize) -> *const f32,
    nb: usize,
    nr: usize,
    kt: *mut f32,
) {
    // `S` picks the AVX-512 transpose (x86-64 only).
    let d = r.d;
    // SAFETY: reads rows key(j), j < nb, d elements each; writes inside kt.
    unsafe {
        for (pi, j0) in (0..nb).step_by(nr).enumerate() {
            let w = nr.min(nb - j0);
            let panel = kt.add(pi * nr * d);
            #[cfg(target_arch = "x86_64")]
            if transpose_avx512::<S>(nr, w, d) {
                // Full panel on AVX-512: 16×16 register transposes (LLVM's
                // own vectorisation of the loop below is a scatter per 8
                // floats, ~4% of the whole kernel at D=128).
                for g in 0..4 {
                    let rows: [*const f32; 16] = core::array::from_fn(|i| key(j0 + 16 * g + i));
                    for dd in (0..d).step_by(16) {
                        // SAFETY: 16 key rows with ≥ dd + 16 ≤ d elements;
                        // the panel has rows dd..dd+16 of nr = 64 floats,
                        // columns 16g..16g+16; the V4 token proves AVX-512F.
                        crate::arch::x86::transpose16(
                            rows.map(|k| k.add(dd)),
                            panel.add(dd * nr + 16 * g),
                            nr,
                        );
                    }
                }
                continue;
            }
            for j in 0..nr {
                if j < w {
                    let kr = key(j0 + j);
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
}

/// Copies (or widens, when V is f16) V rows c0..c0+nb into `vp`, `d`
/// floats apart.
///
/// # Safety
/// Keys c0..c0+nb exist; `vp` holds `nb·d` floats.
#[inline(always)]
unsafe fn pack_v<S: Simd>(r: &Rows<'_>, c0: usize, nb: usize, vp: *mut f32) {
    for j in 0..nb {
        // SAFETY: V row c0 + j has d elements (halves when `kv16`); row j
        // of vp is inside it.
        unsafe {
            if r.p.kv16 {
                widen_f16_row::<S, false>(r.v_row(c0 + j).cast(), vp.add(j * r.d), r.d);
            } else {
                core::ptr::copy_nonoverlapping(r.v_row(c0 + j), vp.add(j * r.d), r.d);
            }
        }
    }
}

/// S = scale·log2(e)·Q·Kᵀ for the query tiles g0..g1 (≤ G of them) against
/// the packed key block, panel by panel; tile gi lands at
/// `sbuf[gi·MR·BC ..]`, `BC` floats per row. Columns a tile's rows cannot
/// see are not computed.
///
/// # Safety
/// `kt` holds the block's packed panels; `sbuf` holds G·MR·BC floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn score_group<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    r: &Rows<'_>,
    c0: usize,
    nb: usize,
    g0: usize,
    g1: usize,
    kt: *const f32,
    sbuf: *mut f32,
) {
    let (d, nr) = (r.d, NV * S::F32_LANES);
    // The scale is in Q (`load_q`).
    let epi_s = TileEpi::PLAIN;
    for (pi, j0) in (0..nb).step_by(nr).enumerate() {
        for (gi, t) in (g0..g1).step_by(MR).enumerate() {
            let m_eff = MR.min(r.q1 - t);
            let n_need = nb.min(r.kv_end(t + m_eff - 1) - c0);
            if j0 >= n_need {
                continue;
            }
            // SAFETY: Q rows t..t+m_eff exist (d contiguous each, stride
            // d); the packed panel holds d·nr floats; S tile gi has MR rows
            // of BC ≥ j0 + n_eff columns (n_eff ≤ nr, j0 + n_eff ≤ n_need
            // ≤ BC).
            unsafe {
                microkernel_narrowing::<S, Identity, MR, NV, false, true>(
                    s,
                    d,
                    r.q_row(t),
                    d,
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
}

/// The online softmax over one tile's rows of S: each row's scores become
/// numerators against its new running max, its running sum and O row are
/// rescaled when the max moved.
///
/// # Safety
/// `tile` holds `m_eff` rows of `n_need` scores, `BC` floats apart.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn softmax_tile<S: Simd>(
    s: S,
    r: &Rows<'_>,
    m: &mut [f32],
    l: &mut [f32],
    c0: usize,
    t: usize,
    m_eff: usize,
    n_need: usize,
    tile: *mut f32,
) {
    for row_i in 0..m_eff {
        let i = t + row_i;
        // 0 for rows of the first tile that do not see this block yet.
        let visible = r.kv_end(i).saturating_sub(c0).min(n_need);
        // SAFETY: row row_i of the tile holds n_need ≤ BC valid scores.
        let row = unsafe { core::slice::from_raw_parts_mut(tile.add(row_i * BC), n_need) };
        let li = i - r.q0;
        let (m_new, sum) = softmax_row(s, row, visible, m[li]);
        let alpha = rescale(m[li], m_new);
        l[li] = l[li] * alpha + sum;
        m[li] = m_new;
        if alpha != 1.0 {
            // SAFETY: output row i has d elements.
            unsafe { scale_row(s, r.o_row(i), r.d, alpha) };
        }
    }
}

/// O += P·V for one tile: keys every row of the tile sees go through the
/// tile kernel; the few diagonal keys only later rows see go row by row, so
/// a row never multiplies a V row it must not see (0·NaN = NaN).
///
/// # Safety
/// `tile` holds the tile's numerators (`n_need` per row, `BC` apart); `vp`
/// holds the block's `n_need` V rows, `d` floats apart.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pv_tile<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    r: &Rows<'_>,
    c0: usize,
    t: usize,
    m_eff: usize,
    n_need: usize,
    tile: *const f32,
    vp: *const f32,
) {
    let (d, nr) = (r.d, NV * S::F32_LANES);
    let epi_o = TileEpi {
        alpha: 1.0,
        c_scale: Some(1.0),
        bias: core::ptr::null(),
        act: Identity,
        mul: core::ptr::null(),
        mul_rs: 0,
    };
    let common = r.kv_end(t).saturating_sub(c0).min(n_need);
    for d0 in (0..d).step_by(nr) {
        let n_eff = nr.min(d - d0);
        // SAFETY: P rows are in the tile (n_need columns, stride BC); V rows
        // 0..n_need of vp have columns d0..d0+n_eff ≤ d; output rows
        // t..t+m_eff exist.
        unsafe {
            if common > 0 {
                microkernel_narrowing::<S, Identity, MR, NV, false, false>(
                    s,
                    common,
                    tile,
                    BC,
                    1,
                    vp.add(d0),
                    d,
                    r.o_row(t).add(d0),
                    d,
                    m_eff,
                    n_eff,
                    &epi_o,
                );
            }
        }
    }
    for row_i in 0..m_eff {
        // Saturating: rows of the block's first tile may see none of its
        // keys.
        let vis = r.kv_end(t + row_i).saturating_sub(c0).min(n_need);
        if vis > common {
            // The few diagonal keys (fewer than MR) this row sees beyond
            // the tile's common ones, as decode's row-by-row P·V. As a
            // one-row microkernel call per row (each with its own tile
            // store) causal prefill at N = 128–512 ran 0–6% slower (Intel
            // Xeon, one thread, H = 12, D = 64, alternating runs).
            // SAFETY: P row row_i holds vis ≤ n_need numerators; vp holds V
            // rows 0..vis, d floats apart; output row t + row_i has d
            // floats, in scratch apart from both.
            unsafe {
                pv(
                    s,
                    r.o_row(t + row_i),
                    1.0,
                    tile.add(row_i * BC + common),
                    vp.add(common * d),
                    d,
                    vis - common,
                    d,
                )
            };
        }
    }
}

/// O = O/l out of scratch into the output view, and the LSE when asked.
#[inline(always)]
fn finish<S: Simd>(s: S, r: &Rows<'_>, m: &[f32], l: &[f32]) {
    let p = r.p;
    for i in r.q0..r.q1 {
        let li = i - r.q0;
        let l = l[li];
        // l = 0 only when every score was −∞: the row is all zeros (as
        // PyTorch), never 0/0.
        let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
        // SAFETY: output row i has d elements in the scratch and the view.
        unsafe { scale_row_to(s, r.o_row(i), r.o_dst(i), r.d, inv) };
        if !p.lse.is_null() {
            // m is in log2 units.
            let lse = if l > 0.0 {
                (m[li] + l.log2()) * core::f32::consts::LN_2
            } else {
                f32::NEG_INFINITY
            };
            // SAFETY: lse has batch·heads·lq elements (validated).
            unsafe { *p.lse.add((r.b * p.heads + r.h) * p.lq + i) = lse };
        }
    }
}

/// Whether a Kᵀ panel goes through [`crate::arch::x86::transpose16`]: full
/// 64-key panels with `d` a multiple of 16, at the AVX-512 level (its token
/// proves AVX-512F; constant-folded per level).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn transpose_avx512<S: Simd>(nr: usize, w: usize, d: usize) -> bool {
    crate::arch::x86::is_v4::<S>() && nr == 64 && w == nr && d.is_multiple_of(16)
}
