//! The online softmax's row operations, shared by the flash prefill
//! ([`super::flash`]) and decode ([`super::decode`]): scores are in log2
//! units (the `1/√d` scale is folded with `log2 e` into Q), so every
//! exponential is one `2^x`.

use crate::math;
use crate::simd::Part;
use pulp::Simd;

/// Turns `row[..visible]` into the softmax numerators `2^(row − m_use)`
/// (row in log2 units), where
/// `m_new = max(m_old, max(row))` and `m_use` is `m_new`, or 0 when that is
/// −∞. Returns `(m_new, Σ numerators)`. `row[visible..]` (keys the row
/// must not see) is left as it is: callers never read it.
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
    let head = &mut row[..visible];
    let mut mx = s.splat_f32s(f32::NEG_INFINITY);
    {
        let (v, t) = S::as_simd_f32s(head);
        // Four running maxima: one chain of max latencies per row was
        // the longest dependency of the softmax.
        let mut m4 = [mx; 4];
        let mut quads = v.chunks_exact(4);
        for q in &mut quads {
            for (m, &x) in m4.iter_mut().zip(q) {
                *m = s.max_f32s(*m, x);
            }
        }
        for &x in quads.remainder() {
            m4[0] = s.max_f32s(m4[0], x);
        }
        mx = s.max_f32s(s.max_f32s(m4[0], m4[1]), s.max_f32s(m4[2], m4[3]));
        if !t.is_empty() {
            // SAFETY: the tail has t.len() floats.
            let x = unsafe { Part::native(s, t.len()).load(t.as_ptr()) };
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
    let (v, t) = S::as_mut_simd_f32s(head);
    // Four vectors a step, their `2^x` interleaved and summed into four
    // running sums: one sum was a chain of add latencies as long as the
    // exponentials' own work.
    let mut sums = [s.splat_f32s(0.0); 4];
    let mut quads = v.chunks_exact_mut(4);
    for q in &mut quads {
        let x = [
            s.sub_f32s(q[0], mv),
            s.sub_f32s(q[1], mv),
            s.sub_f32s(q[2], mv),
            s.sub_f32s(q[3], mv),
        ];
        let e = math::exp2_nonpos_n(s, x);
        for j in 0..4 {
            q[j] = e[j];
            sums[j] = s.add_f32s(sums[j], e[j]);
        }
    }
    for x in quads.into_remainder() {
        *x = math::exp2_nonpos(s, s.sub_f32s(*x, mv));
        sums[0] = s.add_f32s(sums[0], *x);
    }
    let mut sum = s.add_f32s(s.add_f32s(sums[0], sums[1]), s.add_f32s(sums[2], sums[3]));
    if !t.is_empty() {
        let part = Part::native(s, t.len());
        // SAFETY: the tail has t.len() floats.
        let x = unsafe { part.load(t.as_ptr()) };
        let x = math::exp2_nonpos(s, s.sub_f32s(x, mv));
        // SAFETY: as above.
        unsafe { part.store(t.as_mut_ptr(), x) };
        // Into the vector sum, dead lanes zeroed (a scalar sum of the tail
        // was a chain of up to 15 dependent adds per row on the causal
        // diagonal, where most rows end in a tail).
        let live = s.mask_between_m32s(0, t.len() as u32).mask();
        sum = s.add_f32s(sum, s.select_f32s(live, x, s.splat_f32s(0.0)));
    }
    (m_new, s.reduce_sum_f32s(sum))
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
pub(crate) unsafe fn scale_row_to<S: Simd>(s: S, src: *const f32, dst: *mut f32, d: usize, f: f32) {
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
