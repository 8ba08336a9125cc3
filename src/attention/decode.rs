//! Decode (few queries, long KV): flash-decoding. A job is one query
//! position of one batch, every head, and one chunk of the keys; threads take
//! chunks independently. Within a chunk the keys go in sub-blocks of `SB`
//! tokens, and each token's K (then V) row is read once for all heads — in
//! BSHD storage that row is contiguous, so K and V stream from memory in
//! order instead of one strided pass per head. Each head keeps an online
//! softmax (running max `m`, sum `l`, unnormalised output `o`); a chunk
//! leaves `(m, l, o)` per head, merged across chunks by `2^(m_i − M)` (m in
//! log2 units).

use super::Attn;
use super::softmax::{rescale, scale_row, softmax_row};
use pulp::Simd;

/// Keys per sub-block: scores for every head of a sub-block stay in L1.
const SB: usize = 64;

/// Scratch reused across jobs on one thread.
#[derive(Default)]
pub(crate) struct Scratch {
    scores: Vec<f32>,
    o: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
}

/// `Σ_d a[d]·b[d]` for `d` contiguous floats.
///
/// # Safety
/// `a` and `b` valid for `d` reads.
#[inline(always)]
unsafe fn dot<S: Simd>(s: S, a: *const f32, b: *const f32, d: usize) -> f32 {
    let lanes = S::F32_LANES;
    let (mut x0, mut x1) = (s.splat_f32s(0.0), s.splat_f32s(0.0));
    let mut i = 0;
    // SAFETY: full vectors stay below d; the tail is masked.
    unsafe {
        let ld = |p: *const f32| (p as *const S::f32s).read_unaligned();
        while i + 2 * lanes <= d {
            x0 = s.mul_add_e_f32s(ld(a.add(i)), ld(b.add(i)), x0);
            x1 = s.mul_add_e_f32s(ld(a.add(i + lanes)), ld(b.add(i + lanes)), x1);
            i += 2 * lanes;
        }
        while i < d {
            let w = lanes.min(d - i);
            let mk = s.mask_between_m32s(0, w as u32);
            x0 = s.mul_add_e_f32s(
                s.mask_load_ptr_f32s(mk, a.add(i)),
                s.mask_load_ptr_f32s(mk, b.add(i)),
                x0,
            );
            i += w;
        }
    }
    s.reduce_sum_f32s(s.add_f32s(x0, x1))
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
            let ov = (o.add(i) as *const S::f32s).read_unaligned();
            let vv = (v.add(i) as *const S::f32s).read_unaligned();
            (o.add(i) as *mut S::f32s).write_unaligned(s.mul_add_e_f32s(pv, vv, ov));
            i += lanes;
        }
        if i < d {
            let mk = s.mask_between_m32s(0, (d - i) as u32);
            let ov = s.mask_load_ptr_f32s(mk, o.add(i));
            let vv = s.mask_load_ptr_f32s(mk, v.add(i));
            s.mask_store_ptr_f32s(mk, o.add(i), s.mul_add_e_f32s(pv, vv, ov));
        }
    }
}

/// Keys `[c0, c1)` for query `i` of batch `b`, every head; writes
/// `[m, l, o_0 .. o_{d-1}]` for head h at `parts + h·part_stride`.
///
/// # Safety
/// `(b, i)` and keys `[c0, c1)` are inside the views (`c1 ≤ kv_end(i)`);
/// `parts + h·part_stride` is valid for `d + 2` writes for every head.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn chunk<S: Simd>(
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
    sc.scores.resize(h_n * SB, 0.0);
    sc.o.clear();
    sc.o.resize(h_n * d, 0.0);
    sc.m.clear();
    sc.m.resize(h_n, f32::NEG_INFINITY);
    sc.l.clear();
    sc.l.resize(h_n, 0.0);
    // SAFETY (pointer arithmetic below): (b, i, h) and (b, c, hk < H/g) with
    // c in [c0, c1) are inside the validated views; rows have d elements.
    unsafe {
        let q = |h: usize| p.q.add(p.ql.offset(b, i, h));
        let mut s0 = c0;
        while s0 < c1 {
            let sb = SB.min(c1 - s0);
            // KV heads outer, their query heads inner: no division per
            // (token, head), and each K row is loaded for its whole group.
            for j in 0..sb {
                for hk in 0..h_n / g {
                    let k = p.k.add(p.kl.offset(b, s0 + j, hk));
                    for h in hk * g..(hk + 1) * g {
                        sc.scores[h * SB + j] = p.scale_log2 * dot(s, q(h), k, d);
                    }
                }
            }
            for h in 0..h_n {
                let row = &mut sc.scores[h * SB..h * SB + sb];
                let (m_new, sum) = softmax_row(s, row, sb, sc.m[h]);
                let alpha = rescale(sc.m[h], m_new);
                sc.l[h] = sc.l[h] * alpha + sum;
                sc.m[h] = m_new;
                if alpha != 1.0 {
                    scale_row(s, sc.o.as_mut_ptr().add(h * d), d, alpha);
                }
            }
            for j in 0..sb {
                for hk in 0..h_n / g {
                    let v = p.v.add(p.vl.offset(b, s0 + j, hk));
                    for h in hk * g..(hk + 1) * g {
                        // Every key here is visible to the row, so a NaN in
                        // V poisons it even where its weight underflowed to
                        // 0, as in prefill.
                        axpy(s, sc.o.as_mut_ptr().add(h * d), sc.scores[h * SB + j], v, d);
                    }
                }
            }
            s0 += sb;
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
