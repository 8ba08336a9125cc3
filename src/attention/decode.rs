//! Decode (few queries, long KV): flash-decoding. A job is one query
//! position of one batch, every head, and one chunk of the keys; threads take
//! chunks independently. Within a chunk the keys go in sub-blocks of `SB`
//! tokens; per sub-block, every query head scores its KV head's rows (the
//! group's other heads find them in L1), takes its online-softmax step
//! (running max `m`, sum `l`, unnormalised output `o`) and adds `P·V`,
//! up to four heads of a grouped-query group at once against one load of
//! each value row ([`pv_group`]). A chunk leaves `(m, l, o)` per head,
//! merged across chunks by `2^(m_i − M)` (m in log2 units).
//!
//! Grouped `P·V`, measured on an Intel Xeon (AVX-512, 2 MiB L2), one
//! thread, f32 BSHD cache, head by head → grouped: SmolLM2's 9 heads on 3
//! KV heads of 64, 512 keys 29.8–34.3 → 23.3 µs, 4096 keys 358–372 → 309
//! µs (55–57% → 68% of a plain read of K and V); 32 heads on 8 of 128,
//! 4096 keys 2.52 → 2.01 ms (45% → 58%). Perf had put 35% of the grouped
//! case's samples in `pv`'s loop, at about twice its FMA count in cycles:
//! each head re-read the value rows from L2.
//!
//! Cost per (key, head) at D = 64, one thread, SmolLM2's 9 query and 3 KV
//! heads, 540 keys (Intel Xeon, AVX-512; `scores` and `pv` below): with the
//! rows in L2, 18.6 ns when each score was a dot product with its own
//! horizontal sum and `P·V` went through memory, 14.6 ns now (10.9 ns when
//! the rows are 64-byte aligned: a 512-bit load that splits two cache lines
//! costs two). From L3/DRAM (30 layers' caches in turn) 34 → 23–28 ns,
//! where the read, not the arithmetic, sets the pace (a software prefetch of
//! the next sub-block measured no gain).
//!
//! f32 K and V are read in place whatever the distance between a head's
//! rows. Copying each sub-block first into an aligned scratch (what this
//! kernel did for rows more than 256 floats apart) cost more than it saved
//! on an Intel Xeon (AVX-512, 2 MiB L2), one thread, 4096 keys, in place vs
//! copy: 12 heads of 64 BSHD 0.48 vs 0.78 ms at 2048 keys (a plain read of
//! the bytes 0.43 ms), fused QKV (2304 floats apart) 1.06 vs 2.06 ms,
//! 32 heads of 128 6.4 vs 11.9 ms, 8 heads of 128 1.21 vs 1.76 ms — the
//! copy's loads and stores ran slower than the read they replace, and a
//! software prefetch of the next sub-block (to L2 or L3) in place of the
//! copy made 12 heads of 64 slower again (0.95 → 1.26 ms). f16
//! rows still go through the copy (widened); scoring sub-block n while
//! copying n + 1 a slice per head took 505 → 443 µs at 2048 keys.

use super::Attn;
use super::softmax::{rescale, scale_row, softmax_row};
use crate::simd::{Part, dot, load, store};
use pulp::Simd;

/// Keys per sub-block at most: scores for every head of a sub-block stay in
/// L1.
const SB: usize = 64;
/// Bytes of one sub-block's K and V copies at most: the scratch holds two
/// (the one scored and the next, being copied), L2-resident.
const SUB_BYTES: usize = 256 << 10;

/// Scratch reused across jobs on one thread.
pub(crate) struct Scratch {
    /// Scores of up to [`PV_GROUP`] heads, `SB` apart.
    scores: Vec<f32>,
    /// Their rescale factors.
    alpha: [f32; PV_GROUP],
    o: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
    /// A sub-block's K and V rows (widened from f16), `[sb][H_kv][d]`, on
    /// 64-byte lines (a 512-bit load that splits two lines costs two).
    kw: Wide,
    vw: Wide,
}

type Wide = aligned_vec::AVec<f32, aligned_vec::ConstAlign<64>>;

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            scores: Vec::new(),
            alpha: [1.0; PV_GROUP],
            o: Vec::new(),
            m: Vec::new(),
            l: Vec::new(),
            kw: Wide::new(64),
            vw: Wide::new(64),
        }
    }
}

/// Rows `(b, t0..t0 + n, 0..kv_heads)` of the f16 view at `src` (layout
/// `l`), widened into `dst` as `[n][kv_heads][d]`, token by token: the
/// first touch of a sub-block is then one forward stream through memory
/// whatever the layout.
///
/// `F16C`: the decode runs in [`crate::arch::x86::in_f16c`] (AVX2 with
/// F16C), and halves widen by `vcvtph2ps`.
///
/// # Safety
/// Those rows are inside the view at `src`; `dst` holds `n·kv_heads·d`
/// floats.
#[inline(always)]
unsafe fn load_rows<S: Simd, const F16C: bool>(
    src: *const crate::quant::f16,
    l: &crate::attention::view::Layout,
    b: usize,
    t0: usize,
    n: usize,
    dst: &mut [f32],
) {
    let (kvh, d) = (l.heads, l.dim);
    for t in 0..n {
        for hk in 0..kvh {
            // SAFETY: the caller's contract; row (t, hk) of dst is inside it.
            unsafe {
                let to = dst.as_mut_ptr().add((t * kvh + hk) * d);
                let from = src.add(l.offset(b, t0 + t, hk));
                crate::quant::simd::widen_f16_row::<S, F16C>(from, to, d);
            }
        }
    }
}

/// `o[..d] += p·v[..d]`.
///
/// # Safety
/// `o` valid for `d` reads and writes, `v` for `d` reads.
#[inline(always)]
unsafe fn axpy<S: Simd>(s: S, o: *mut f32, p: f32, v: *const f32, d: usize) {
    let lanes = S::F32_LANES;
    let pv = s.splat_f32s(p);
    let mut i = 0;
    // SAFETY: full vectors stay below d; the tail is masked.
    unsafe {
        while i + lanes <= d {
            let (ov, vv) = (load::<S>(o.add(i)), load::<S>(v.add(i)));
            store::<S>(o.add(i), s.mul_add_e_f32s(pv, vv, ov));
            i += lanes;
        }
        if i < d {
            let part = Part::new(s, d - i);
            let (ov, vv) = (part.load(o.add(i)), part.load(v.add(i)));
            part.store(o.add(i), s.mul_add_e_f32s(pv, vv, ov));
        }
    }
}

/// `out[j] = scale·q·k_j` for the `n ≤ score_keys::<S>()` keys at
/// `k + j·k_stride`.
///
/// # Safety
/// `q` valid for `d` reads, each of the `n ≥ 1` key rows for `d` reads,
/// `out` for `n` writes.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn scores<S: Simd>(
    s: S,
    q: *const f32,
    k: *const f32,
    k_stride: usize,
    n: usize,
    d: usize,
    scale: f32,
    out: *mut f32,
) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::arch::x86;
        if x86::is_v4::<S>() && d.is_multiple_of(16) {
            // SAFETY: the V4 token proves AVX-512F; n ≤ 16 (score_keys).
            unsafe { x86::scores16_v4(q, k, k_stride, n, d, scale, out) };
            return;
        }
        if x86::is_v3::<S>() && d.is_multiple_of(8) {
            // SAFETY: the V3 token proves AVX2 + FMA; n ≤ 8 (score_keys).
            unsafe { x86::scores8_v3(q, k, k_stride, n, d, scale, out) };
            return;
        }
    }
    for j in 0..n {
        // SAFETY: the caller's contract.
        unsafe { *out.add(j) = scale * dot(s, q, k.add(j * k_stride), d) };
    }
}

/// Keys scored per call of [`scores`]: a vector's worth of sums from one
/// reduction tree on x86, any count elsewhere.
#[inline(always)]
fn score_keys<S: Simd>() -> usize {
    #[cfg(target_arch = "x86_64")]
    let tree = crate::arch::x86::is_v4::<S>() || crate::arch::x86::is_v3::<S>();
    #[cfg(not(target_arch = "x86_64"))]
    let tree = false;
    if tree { S::F32_LANES } else { SB }
}

/// Full vectors of the output row held in registers at once by [`pv`].
const PV_VECS: usize = 4;

/// `o[..d] = alpha·o[..d] + Σ_j p[j]·v_j[..d]` for the `n` value rows at
/// `v + j·v_stride`: the output row in registers, [`PV_VECS`] vectors at a
/// time, across all `n` rows.
///
/// # Safety
/// `o` valid for `d` reads and writes, `p` for `n` reads, each value row
/// for `d` reads; `o` overlaps none of them.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn pv<S: Simd>(
    s: S,
    o: *mut f32,
    alpha: f32,
    p: *const f32,
    v: *const f32,
    v_stride: usize,
    n: usize,
    d: usize,
) {
    let lanes = S::F32_LANES;
    let full = d / lanes;
    let av = s.splat_f32s(alpha);
    // SAFETY: vector c of a row covers [c·lanes, (c+1)·lanes) ⊆ [0, d).
    unsafe {
        let ld = |p: *const f32| (p as *const S::f32s).read_unaligned();
        let mut c0 = 0;
        // Whole groups of PV_VECS vectors: two accumulator sets (even and
        // odd rows), so the FMA chains are not latency-bound.
        while c0 + PV_VECS <= full {
            let mut a0: [S::f32s; PV_VECS] =
                core::array::from_fn(|c| s.mul_f32s(av, ld(o.add((c0 + c) * lanes))));
            let mut a1 = [s.splat_f32s(0.0); PV_VECS];
            let mut j = 0;
            while j + 2 <= n {
                let (p0, p1) = (s.splat_f32s(*p.add(j)), s.splat_f32s(*p.add(j + 1)));
                let r0 = v.add(j * v_stride + c0 * lanes);
                let r1 = r0.add(v_stride);
                for c in 0..PV_VECS {
                    a0[c] = s.mul_add_e_f32s(p0, ld(r0.add(c * lanes)), a0[c]);
                    a1[c] = s.mul_add_e_f32s(p1, ld(r1.add(c * lanes)), a1[c]);
                }
                j += 2;
            }
            if j < n {
                let p0 = s.splat_f32s(*p.add(j));
                let r0 = v.add(j * v_stride + c0 * lanes);
                for (c, a) in a0.iter_mut().enumerate() {
                    *a = s.mul_add_e_f32s(p0, ld(r0.add(c * lanes)), *a);
                }
            }
            for c in 0..PV_VECS {
                let x = s.add_f32s(a0[c], a1[c]);
                (o.add((c0 + c) * lanes) as *mut S::f32s).write_unaligned(x);
            }
            c0 += PV_VECS;
        }
        // Fewer than PV_VECS full vectors left: one at a time.
        while c0 < full {
            let mut a = s.mul_f32s(av, ld(o.add(c0 * lanes)));
            for j in 0..n {
                let pj = s.splat_f32s(*p.add(j));
                a = s.mul_add_e_f32s(pj, ld(v.add(j * v_stride + c0 * lanes)), a);
            }
            (o.add(c0 * lanes) as *mut S::f32s).write_unaligned(a);
            c0 += 1;
        }
        if full * lanes < d {
            // The last, partial vector: one masked axpy per row.
            let t = full * lanes;
            scale_row(s, o.add(t), d - t, alpha);
            for j in 0..n {
                axpy(s, o.add(t), *p.add(j), v.add(j * v_stride + t), d - t);
            }
        }
    }
}

/// Heads of a group whose `P·V` [`pv_group`] runs against one load of each
/// value row.
const PV_GROUP: usize = 4;

/// [`pv`] for `G` heads sharing the value rows (one grouped-query group):
/// each vector of a value row is loaded once and added to all `G` output
/// rows, [`PV_VECS`] vectors of each in registers. Vectors past the last
/// whole group of `PV_VECS` go through [`pv`], head by head.
///
/// # Safety
/// As [`pv`] for each `(o[h], alpha[h], p[h])`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pv_group<S: Simd, const G: usize>(
    s: S,
    o: [*mut f32; G],
    alpha: [f32; G],
    p: [*const f32; G],
    v: *const f32,
    v_stride: usize,
    n: usize,
    d: usize,
) {
    let lanes = S::F32_LANES;
    let groups = d / lanes / PV_VECS;
    // SAFETY: vector c of a row covers [c·lanes, (c+1)·lanes) ⊆ [0, d); the
    // rest of the rows goes to `pv` under the caller's contract.
    unsafe {
        let ld = |p: *const f32| (p as *const S::f32s).read_unaligned();
        for gi in 0..groups {
            let c0 = gi * PV_VECS * lanes;
            let mut acc: [[S::f32s; PV_VECS]; G] = core::array::from_fn(|h| {
                let a = s.splat_f32s(alpha[h]);
                core::array::from_fn(|c| s.mul_f32s(a, ld(o[h].add(c0 + c * lanes))))
            });
            for j in 0..n {
                let r = v.add(j * v_stride + c0);
                let vv: [S::f32s; PV_VECS] = core::array::from_fn(|c| ld(r.add(c * lanes)));
                for h in 0..G {
                    let ph = s.splat_f32s(*p[h].add(j));
                    for c in 0..PV_VECS {
                        acc[h][c] = s.mul_add_e_f32s(ph, vv[c], acc[h][c]);
                    }
                }
            }
            for (oh, ah) in o.iter().zip(&acc) {
                for (c, &x) in ah.iter().enumerate() {
                    (oh.add(c0 + c * lanes) as *mut S::f32s).write_unaligned(x);
                }
            }
        }
        let t = groups * PV_VECS * lanes;
        if t < d {
            for h in 0..G {
                pv(s, o[h].add(t), alpha[h], p[h], v.add(t), v_stride, n, d - t);
            }
        }
    }
}

/// Keys `[c0, c1)` for query `i` of batch `b`, every head; writes
/// `[m, l, o_0 .. o_{d-1}]` for head h at `parts + h·part_stride`.
///
/// The keys go in sub-blocks (of up to `SB`); per sub-block, each query
/// head scores its KV head's rows (the group's other heads find them in
/// L1), takes its online-softmax step, and adds `P·V` with its output row
/// in registers. f32 rows are read in place, wherever they are; f16 rows
/// are copied (widened) token by token into an aligned scratch, the next
/// sub-block a slice per head while this one is scored. Scores come from
/// one FMA chain per key and a reduction tree per vector of keys on x86 (a
/// horizontal sum per key elsewhere).
///
/// `F16C`: as for [`load_rows`].
///
/// # Safety
/// `(b, i)` and keys `[c0, c1)` are inside the views (`c1 ≤ kv_end(i)`);
/// `parts + h·part_stride` is valid for `d + 2` writes for every head.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn chunk<S: Simd, const F16C: bool>(
    s: S,
    p: &Attn,
    b: usize,
    i: usize,
    c0: usize,
    c1: usize,
    sc: &mut Scratch,
    parts: *mut f32,
    part_stride: usize,
) {
    let (h_n, d, g) = (p.heads, p.dim, p.group);
    let kvh = h_n / g;
    // f16 K and V are read through a copy of each sub-block (widened),
    // `[sb][H_kv][d]`; f32 rows in place, however far apart.
    let copy = p.kv16;
    let (ks, vs) = if copy {
        (kvh * d, kvh * d)
    } else {
        (p.kl.strides[1], p.vl.strides[1])
    };
    // Keys per sub-block: its copies of K and V within SUB_BYTES, a whole
    // number of score vectors.
    let sb_max = if copy {
        (SUB_BYTES / (8 * ks).max(1)).clamp(16, SB) / 16 * 16
    } else {
        SB
    };
    let step = score_keys::<S>();
    sc.scores.resize(PV_GROUP * SB, 0.0);
    sc.o.clear();
    sc.o.resize(h_n * d, 0.0);
    sc.m.clear();
    sc.m.resize(h_n, f32::NEG_INFINITY);
    sc.l.clear();
    sc.l.resize(h_n, 0.0);
    // SAFETY (pointer arithmetic below): (b, i, h) and (b, c, hk < H/g) with
    // c in [c0, c1) are inside the validated views; rows have d elements;
    // consecutive keys are `ks` (K) and `vs` (V) elements apart.
    unsafe {
        // Copies: two halves, the sub-block being scored and the next one,
        // which is copied a slice per head while the current one is
        // scored, so the read of the next keys overlaps this block's
        // arithmetic instead of alternating with it.
        let half = sb_max * ks;
        // The f16 views' elements (only read when `copy`).
        let (k16, v16) = (
            p.k.cast::<crate::quant::f16>(),
            p.v.cast::<crate::quant::f16>(),
        );
        if copy {
            sc.kw.resize(2 * half, 0.0);
            sc.vw.resize(2 * half, 0.0);
            let sb = sb_max.min(c1 - c0);
            load_rows::<S, F16C>(k16, &p.kl, b, c0, sb, &mut sc.kw[..half]);
            load_rows::<S, F16C>(v16, &p.vl, b, c0, sb, &mut sc.vw[..half]);
        }
        let mut cur = 0;
        let mut s0 = c0;
        while s0 < c1 {
            let sb = sb_max.min(c1 - s0);
            let s1 = s0 + sb;
            let sb_next = if copy { sb_max.min(c1 - s1) } else { 0 };
            let next = half - cur;
            for h in 0..h_n {
                let (hk, gi) = (h / g, h % g);
                if sb_next > 0 {
                    // Tokens [t0, t1) of the next sub-block.
                    let (t0, t1) = (h * sb_next / h_n, (h + 1) * sb_next / h_n);
                    let at = next + t0 * ks;
                    let to = next + t1 * ks;
                    load_rows::<S, F16C>(k16, &p.kl, b, s1 + t0, t1 - t0, &mut sc.kw[at..to]);
                    load_rows::<S, F16C>(v16, &p.vl, b, s1 + t0, t1 - t0, &mut sc.vw[at..to]);
                }
                let (k, v) = if copy {
                    (
                        sc.kw.as_ptr().add(cur + hk * d),
                        sc.vw.as_ptr().add(cur + hk * d),
                    )
                } else {
                    (
                        p.k.add(p.kl.offset(b, s0, hk)),
                        p.v.add(p.vl.offset(b, s0, hk)),
                    )
                };
                let q = p.q.add(p.ql.offset(b, i, h));
                // This head's scores: slot gi % PV_GROUP of the scratch.
                let row = (gi % PV_GROUP) * SB;
                for j0 in (0..sb).step_by(step) {
                    let n = step.min(sb - j0);
                    let out = sc.scores.as_mut_ptr().add(row + j0);
                    scores(s, q, k.add(j0 * ks), ks, n, d, p.scale_log2, out);
                }
                let (m_new, sum) = softmax_row(s, &mut sc.scores[row..row + sb], sb, sc.m[h]);
                let alpha = rescale(sc.m[h], m_new);
                sc.alpha[gi % PV_GROUP] = alpha;
                sc.l[h] = sc.l[h] * alpha + sum;
                sc.m[h] = m_new;
                // P·V once the group's heads (up to PV_GROUP of them) are
                // scored: each value row loaded once for all of them. Every
                // key here is visible to the row, so a NaN in V poisons it
                // even where its weight underflowed to 0, as in prefill.
                let (first, last) = (gi / PV_GROUP * PV_GROUP, gi + 1 == g);
                if gi + 1 - first == PV_GROUP || last {
                    let ob = sc.o.as_mut_ptr().add((hk * g + first) * d);
                    let o = |q: usize| ob.add(q * d);
                    let pr = |q: usize| sc.scores.as_ptr().add(q * SB);
                    let al = sc.alpha;
                    match gi + 1 - first {
                        1 => pv(s, o(0), al[0], pr(0), v, vs, sb, d),
                        2 => pv_group::<S, 2>(
                            s,
                            [o(0), o(1)],
                            [al[0], al[1]],
                            [pr(0), pr(1)],
                            v,
                            vs,
                            sb,
                            d,
                        ),
                        3 => pv_group::<S, 3>(
                            s,
                            [o(0), o(1), o(2)],
                            [al[0], al[1], al[2]],
                            [pr(0), pr(1), pr(2)],
                            v,
                            vs,
                            sb,
                            d,
                        ),
                        _ => pv_group::<S, 4>(
                            s,
                            [o(0), o(1), o(2), o(3)],
                            al,
                            [pr(0), pr(1), pr(2), pr(3)],
                            v,
                            vs,
                            sb,
                            d,
                        ),
                    }
                }
            }
            cur = next;
            s0 = s1;
        }
        for h in 0..h_n {
            let part = parts.add(h * part_stride);
            *part = sc.m[h];
            *part.add(1) = sc.l[h];
            core::ptr::copy_nonoverlapping(sc.o.as_ptr().add(h * d), part.add(2), d);
        }
    }
}

/// Merges `parts` (each `[m, l, o..]`, `d + 2` floats) into the output row
/// and returns the row's log-sum-exp.
///
/// # Safety
/// `out` valid for `d` writes.
pub(crate) unsafe fn merge(parts: &[f32], d: usize, out: *mut f32) -> f32 {
    let stride = d + 2;
    let mx = parts
        .chunks(stride)
        .map(|c| c[0])
        .fold(f32::NEG_INFINITY, f32::max);
    // SAFETY: the caller's contract.
    let o = unsafe { core::slice::from_raw_parts_mut(out, d) };
    o.fill(0.0);
    if mx == f32::NEG_INFINITY {
        // Every score −∞: zeros, as PyTorch.
        return f32::NEG_INFINITY;
    }
    let mut l = 0.0f32;
    for c in parts.chunks(stride) {
        if c[0] == f32::NEG_INFINITY {
            continue;
        }
        let w = if c[0] == mx { 1.0 } else { (c[0] - mx).exp2() };
        l += w * c[1];
        for (oo, &x) in o.iter_mut().zip(&c[2..]) {
            *oo += w * x;
        }
    }
    let inv = 1.0 / l;
    for x in o.iter_mut() {
        *x *= inv;
    }
    // m is in log2 units.
    (mx + l.log2()) * core::f32::consts::LN_2
}
