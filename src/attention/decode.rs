//! Decode (few queries, long KV): one query row at a time, the keys split
//! into chunks that threads take independently (flash-decoding); each chunk
//! leaves `(m, l, o)` — its max score, its sum of `exp(s − m)` and its
//! unnormalised output — and the chunks are merged by `exp(m_i − M)`.
//!
//! Scores are matrix-vector products (`q·Kᵀ`, K rows contiguous: the GEMV
//! dot path) and so is `p·V` (V rows contiguous: the GEMV row-streaming
//! path): K and V are each read once.

use super::Attn;
use super::flash::softmax_row;
use crate::gelu::Identity;
use crate::matmul::{Act, Gemv, gemv};
use pulp::Simd;

/// One chunk's result: `[m, l, o_0 .. o_{d-1}]` written to `part`.
///
/// # Safety
/// `part` holds `d + 2` floats; `(b, i, h)` is inside the views and
/// `c0 < c1 ≤ kv_end(i)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn chunk<S: Simd>(
    s: S,
    p: &Attn,
    b: usize,
    h: usize,
    i: usize,
    c0: usize,
    c1: usize,
    scores: &mut Vec<f32>,
    part: *mut f32,
) {
    let hk = h / p.group;
    let n = c1 - c0;
    if scores.len() < n {
        scores.resize(n, 0.0);
    }
    // SAFETY: (b, i, h), (b, c0, hk) are inside the views (caller).
    let (q, k, v) = unsafe {
        (
            p.q.add(p.ql.offset(b, i, h)),
            p.k.add(p.kl.offset(b, c0, hk)),
            p.v.add(p.vl.offset(b, c0, hk)),
        )
    };
    // scores[c] = scale·q·K[c0 + c]: Kᵀ (d × n) has unit row stride.
    let g = Gemv {
        k: p.dim,
        x: q,
        incx: 1,
        b: k,
        rsb: 1,
        csb: p.kl.strides[1],
        y: scores.as_mut_ptr(),
        incy: 1,
        alpha: p.scale,
        beta: 0.0,
        bias: core::ptr::null(),
        bias_stride: 0,
        act: Act::None,
    };
    gemv::run(s, &g, Identity, 0, n);
    let (m, l) = softmax_row(s, &mut scores[..n], n, f32::NEG_INFINITY);
    // o = Σ_c p[c]·V[c0 + c]: V (n × d) rows contiguous.
    let g = Gemv {
        k: n,
        x: scores.as_ptr(),
        incx: 1,
        b: v,
        rsb: p.vl.strides[1],
        csb: 1,
        // SAFETY: part has d + 2 floats.
        y: unsafe { part.add(2) },
        incy: 1,
        alpha: 1.0,
        beta: 0.0,
        bias: core::ptr::null(),
        bias_stride: 0,
        act: Act::None,
    };
    gemv::run(s, &g, Identity, 0, p.dim);
    // SAFETY: part has d + 2 floats.
    unsafe {
        *part = m;
        *part.add(1) = l;
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
        let w = (c[0] - mx).exp();
        l += w * c[1];
        for (oo, &x) in o.iter_mut().zip(&c[2..]) {
            *oo += w * x;
        }
    }
    let inv = 1.0 / l;
    for x in o.iter_mut() {
        *x *= inv;
    }
    mx + l.ln()
}
