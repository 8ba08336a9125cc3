//! Matrix-vector products (decode: m = 1; n = 1 maps here by transposing):
//! no packing, the matrix streamed once.
//!
//! `y[j] = act(alpha·Σ_p x[p]·B[p][j] + beta·y[j] + bias[j·bias_stride])·u[j]`
//! for j in a column range, with either B rows contiguous (`csb = 1`: rows
//! streamed, accumulators for a column chunk kept in L1) or B columns
//! contiguous (`rsb = 1`: blocked dot products).

use super::Gemv;
use crate::act::VecFn;
use crate::simd::{Part, load, store};
use aligned_vec::{AVec, ConstAlign};
use pulp::Simd;
use std::cell::Cell;

type Buf = AVec<f32, ConstAlign<64>>;

/// Columns per chunk: 4096 accumulators (16 KiB) stay in L1 while every row
/// of B streams through (one contiguous run per row for n ≤ 4096).
const CHUNK: usize = 4096;
/// Rows of B consumed per pass over the accumulators: 8 concurrent row
/// streams (measured against 4: 1×3072×768 +10–15%, 1×4096×4096 +20–35%;
/// 6, 12 and 16 are slower).
const ROWS: usize = 8;

thread_local! {
    /// (accumulators, contiguous copy of x), reused per thread; taken out
    /// rather than borrowed in a `with` closure (see `gemm::PACK`).
    static ACC: Cell<Option<(Buf, Buf)>> = const { Cell::new(None) };
}

/// Columns `[j0, j1)` of the product, on this thread.
#[inline(always)]
pub(crate) fn run<S: Simd, F: VecFn>(s: S, g: &Gemv, act: F, j0: usize, j1: usize) {
    let init = || (Buf::new(64), Buf::new(64));
    let mut guard = crate::threads::scratch(&ACC, init);
    let (acc, xbuf) = &mut *guard;
    if acc.len() < CHUNK {
        acc.resize(CHUNK, 0.0);
    }
    // x contiguous (copied once if strided; k floats).
    let x: *const f32 = if g.incx == 1 || g.k == 0 {
        g.x
    } else {
        if xbuf.len() < g.k {
            xbuf.resize(g.k, 0.0);
        }
        for p in 0..g.k {
            // SAFETY: x has k elements at stride incx (Gemv invariant).
            xbuf[p] = unsafe { *g.x.add(p * g.incx) };
        }
        xbuf.as_ptr()
    };
    let mut j = j0;
    while j < j1 {
        let n = CHUNK.min(j1 - j);
        let acc = &mut acc[..n];
        // SAFETY: columns [j, j+n) exist in B and y; x has k elements.
        unsafe {
            if g.k == 0 || g.alpha == 0.0 {
                acc.fill(0.0);
            } else if g.csb == 1 {
                rows_axpy(s, g, x, j, acc);
            } else {
                cols_dot(s, g, x, j, acc);
            }
            finish(s, g, act, j, acc);
        }
        j += n;
    }
}

/// `acc[c] = Σ_p x[p]·B[p][j+c]`, B rows contiguous, streaming ROWS rows
/// per pass (each row read sequentially once).
///
/// # Safety
/// Columns `[j, j+acc.len())` of B exist; `x` holds `k` floats.
#[inline(always)]
unsafe fn rows_axpy<S: Simd>(s: S, g: &Gemv, x: *const f32, j: usize, acc: &mut [f32]) {
    let n = acc.len();
    let lanes = S::F32_LANES;
    let nv = n / lanes;
    let tail = n - nv * lanes;
    let part = Part::new(s, tail);
    let accp = acc.as_mut_ptr();
    // SAFETY: rows p < k, columns j + c with c < n: inside B; acc has n.
    unsafe {
        let row = |p: usize| g.b.add(p * g.rsb + j);
        let mut p = 0;
        let mut first = true;
        while p < g.k {
            let r = ROWS.min(g.k - p);
            let xs: [S::f32s; ROWS] =
                core::array::from_fn(|q| s.splat_f32s(if q < r { *x.add(p + q) } else { 0.0 }));
            let rp: [*const f32; ROWS] = core::array::from_fn(|q| row(p + q.min(r - 1)));
            for v in 0..=nv {
                if v == nv && tail == 0 {
                    break;
                }
                let off = v * lanes;
                let ld = |ptr: *const f32| {
                    if v < nv {
                        load::<S>(ptr)
                    } else {
                        part.load(ptr)
                    }
                };
                let mut a = if first {
                    s.splat_f32s(0.0)
                } else {
                    ld(accp.add(off))
                };
                for q in 0..ROWS {
                    if q < r {
                        a = s.mul_add_e_f32s(xs[q], ld(rp[q].add(off)), a);
                    }
                }
                if v < nv {
                    store::<S>(accp.add(off), a);
                } else {
                    part.store(accp.add(off), a);
                }
            }
            first = false;
            p += r;
        }
    }
}

/// `acc[c] = Σ_p x[p]·B[p][j+c]`, B columns contiguous (`rsb = 1`): four
/// dot products at a time, reduced across lanes at the end.
///
/// # Safety
/// As [`rows_axpy`].
#[inline(always)]
unsafe fn cols_dot<S: Simd>(s: S, g: &Gemv, x: *const f32, j: usize, acc: &mut [f32]) {
    const NC: usize = 4;
    let lanes = S::F32_LANES;
    let kv = g.k / lanes;
    let tail = g.k - kv * lanes;
    let part = Part::new(s, tail);
    // SAFETY: column j+c of B is k contiguous floats at b + (j+c)·csb.
    unsafe {
        let mut c = 0;
        while c < acc.len() {
            let w = NC.min(acc.len() - c);
            let cols: [*const f32; NC] =
                core::array::from_fn(|q| g.b.add((j + c + q.min(w - 1)) * g.csb));
            let mut sums = [s.splat_f32s(0.0); NC];
            for v in 0..kv {
                let xv = load::<S>(x.add(v * lanes));
                for q in 0..NC {
                    let bv = load::<S>(cols[q].add(v * lanes));
                    sums[q] = s.mul_add_e_f32s(xv, bv, sums[q]);
                }
            }
            if tail > 0 {
                let xv = part.load(x.add(kv * lanes));
                for q in 0..NC {
                    let bv = part.load(cols[q].add(kv * lanes));
                    sums[q] = s.mul_add_e_f32s(xv, bv, sums[q]);
                }
            }
            for q in 0..w {
                acc[c + q] = s.reduce_sum_f32s(sums[q]);
            }
            c += w;
        }
    }
}

/// `y[j+c] = act(alpha·acc[c] + beta·y[j+c] + bias)·u[j+c]`, vectorised
/// over acc.
///
/// # Safety
/// Elements `j..j+acc.len()` of y (stride incy), of bias (stride
/// bias_stride, if not null) and of u (stride incu, if not null) exist.
#[inline(always)]
pub(super) unsafe fn finish<S: Simd, F: VecFn>(s: S, g: &Gemv, act: F, j: usize, acc: &mut [f32]) {
    let lanes = S::F32_LANES;
    let n = acc.len();
    let alpha = s.splat_f32s(g.alpha);
    let beta = s.splat_f32s(g.beta);
    let unit_y = g.incy == 1;
    let unit_bias = g.bias_stride == 1;
    let unit_mul = g.incu == 1;
    // SAFETY: see the function's contract; vectors cover [c, c+w) ⊂ [0, n).
    unsafe {
        let y = g.y.add(j * g.incy);
        let bias = if g.bias.is_null() {
            core::ptr::null()
        } else {
            g.bias.add(j * g.bias_stride)
        };
        let mul = if g.mul.is_null() {
            core::ptr::null()
        } else {
            g.mul.add(j * g.incu)
        };
        let mut c = 0;
        let mut tmp = [0.0f32; 16];
        while c < n {
            let w = lanes.min(n - c);
            let part = Part::new(s, w);
            let mut v = part.load(acc.as_ptr().add(c));
            if g.alpha != 1.0 {
                v = s.mul_f32s(v, alpha);
            }
            if g.beta != 0.0 {
                let old = if unit_y {
                    part.load(y.add(c))
                } else {
                    for (q, t) in tmp.iter_mut().enumerate().take(w) {
                        *t = *y.add((c + q) * g.incy);
                    }
                    part.load(tmp.as_ptr())
                };
                v = s.mul_add_e_f32s(old, beta, v);
            }
            if !bias.is_null() {
                let bv = if unit_bias {
                    part.load(bias.add(c))
                } else {
                    for (q, t) in tmp.iter_mut().enumerate().take(w) {
                        *t = *bias.add((c + q) * g.bias_stride);
                    }
                    part.load(tmp.as_ptr())
                };
                v = s.add_f32s(v, bv);
            }
            let mut v = act.apply(s, v);
            if !mul.is_null() {
                let uv = if unit_mul {
                    part.load(mul.add(c))
                } else {
                    for (q, t) in tmp.iter_mut().enumerate().take(w) {
                        *t = *mul.add((c + q) * g.incu);
                    }
                    part.load(tmp.as_ptr())
                };
                v = s.mul_f32s(v, uv);
            }
            if unit_y {
                part.store(y.add(c), v);
            } else {
                part.store(tmp.as_mut_ptr(), v);
                for (q, t) in tmp.iter().enumerate().take(w) {
                    *y.add((c + q) * g.incy) = *t;
                }
            }
            c += w;
        }
    }
}
