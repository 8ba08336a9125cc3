//! Layer norm and RMS norm over the rows of a row-major `[rows, d]`.
//!
//! One pass for the statistics, one for the output. Layer norm: Welford's
//! update per vector lane on `x − K` (K = the row's first element), the
//! lanes merged with Chan's formula in f64 — no `Σx² − (Σx)²/n`
//! cancellation (an outlier or a large mean does not cost accuracy; a
//! constant row gives exactly 0) — and the output computed as
//! `((x − K) − (mean − K))·rstd·γ + β`, where both differences are small
//! and nearly exact. RMS norm: `Σx²` per lane (no cancellation), combined in
//! f64. Rows whose squares leave f32's range (|x| beyond ~1e18 or below
//! ~1e-18, or eps = 0 on such a row) are redone in f64, two passes.

use crate::error::KernelError;
use crate::isa::{Config, Level, Parallelism, Token};
use crate::threads;
use pulp::{Simd, WithSimd};

const MIN_ELEMS_PER_THREAD: usize = 1 << 16;

#[derive(Clone, Copy)]
struct Rows {
    src: *const f32,
    dst: *mut f32,
    rows: usize,
    d: usize,
    gamma: *const f32,
    /// Null for RMS norm.
    beta: *const f32,
    eps: f32,
    rms: bool,
}

impl Rows {
    /// The `n` rows starting at row `r0`.
    ///
    /// # Safety
    /// Rows `[r0, r0 + n)` exist in the buffers.
    unsafe fn rows_from(&self, r0: usize, n: usize) -> Rows {
        // SAFETY: the caller's contract.
        unsafe {
            Rows {
                src: self.src.add(r0 * self.d),
                dst: self.dst.add(r0 * self.d),
                rows: n,
                ..*self
            }
        }
    }
}

impl WithSimd for Rows {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        for r in 0..self.rows {
            // SAFETY: row r of src/dst has d elements (validated lengths).
            unsafe { norm_row(s, &self, self.src.add(r * self.d), self.dst.add(r * self.d)) };
        }
    }
}

/// Sum of the lanes of `v` in f64.
#[inline(always)]
fn lanes_f64<S: Simd>(s: S, v: S::f32s) -> f64 {
    let mut buf = [0.0f32; 64];
    s.partial_store_f32s(&mut buf[..S::F32_LANES], v);
    buf[..S::F32_LANES].iter().map(|&x| x as f64).sum()
}

/// # Safety
/// `src` and `dst` valid for `p.d` elements (may be equal).
#[inline(always)]
unsafe fn norm_row<S: Simd>(s: S, p: &Rows, src: *const f32, dst: *mut f32) {
    let (d, lanes) = (p.d, S::F32_LANES);
    let nv = d / lanes;
    // SAFETY (block): full vectors cover [0, nv·lanes) ⊂ [0, d); the tail is
    // read element by element.
    unsafe {
        let ld =
            |ptr: *const f32, i: usize| (ptr.add(i * lanes) as *const S::f32s).read_unaligned();
        let shift = if p.rms { 0.0 } else { *src };
        let k = s.splat_f32s(shift);
        let (t1, t2) = if p.rms {
            // Σx²: no cancellation.
            let mut s2 = s.splat_f32s(0.0);
            for i in 0..nv {
                let x = ld(src, i);
                s2 = s.mul_add_e_f32s(x, x, s2);
            }
            let mut t2 = lanes_f64(s, s2);
            for i in nv * lanes..d {
                t2 += (*src.add(i) as f64).powi(2);
            }
            (0.0, t2)
        } else {
            // Welford per lane on x − K, lanes merged with Chan's formula
            // in f64, then the tail: returns (mean − K, Σ(x − mean)²).
            let (mut mean, mut m2) = (s.splat_f32s(0.0), s.splat_f32s(0.0));
            for i in 0..nv {
                let x = s.sub_f32s(ld(src, i), k);
                let delta = s.sub_f32s(x, mean);
                mean = s.mul_add_e_f32s(delta, s.splat_f32s(1.0 / (i + 1) as f32), mean);
                m2 = s.mul_add_e_f32s(delta, s.sub_f32s(x, mean), m2);
            }
            let (mut cnt, mut mu, mut q) = (0.0f64, 0.0f64, 0.0f64);
            if nv > 0 {
                let mut mb = [0.0f32; 64];
                let mut qb = [0.0f32; 64];
                s.partial_store_f32s(&mut mb[..lanes], mean);
                s.partial_store_f32s(&mut qb[..lanes], m2);
                let l = lanes as f64;
                mu = mb[..lanes].iter().map(|&v| v as f64).sum::<f64>() / l;
                q = qb[..lanes].iter().map(|&v| v as f64).sum::<f64>()
                    + nv as f64
                        * mb[..lanes]
                            .iter()
                            .map(|&v| (v as f64 - mu).powi(2))
                            .sum::<f64>();
                cnt = nv as f64 * l;
            }
            for i in nv * lanes..d {
                let x = (*src.add(i) - shift) as f64;
                cnt += 1.0;
                let delta = x - mu;
                mu += delta / cnt;
                q += delta * (x - mu);
            }
            (mu, q)
        };
        let n = d as f64;
        // Squares that overflowed f32, or a scale beyond 1e18: the variance
        // is then tiny against eps ≈ 0, and squares of such values (≲ 1e-18)
        // may have underflowed in f32 — redo the row in f64. (With eps of
        // any usual size an underflowed variance is harmless: eps dominates,
        // so a constant row stays on the fast path.)
        let raw = if p.rms { t2 / n } else { (t2 / n).max(0.0) } + p.eps as f64;
        if !t2.is_finite() || 1.0 / raw.sqrt() > 1e18 {
            norm_row_f64(p, src, dst);
            return;
        }
        // Normalise (x − K) − (mean − K): both differences are small and
        // nearly exact when the row's spread is small against its mean,
        // where x − mean with the mean rounded to f32 would not be.
        let (mean_k, scale) = if p.rms {
            (0.0f32, (1.0 / (t2 / n + p.eps as f64).sqrt()) as f32)
        } else {
            let var = (t2 / n).max(0.0);
            (t1 as f32, (1.0 / (var + p.eps as f64).sqrt()) as f32)
        };
        let (mv, sv) = (s.splat_f32s(mean_k), s.splat_f32s(scale));
        for i in 0..nv {
            let t = s.mul_f32s(s.sub_f32s(s.sub_f32s(ld(src, i), k), mv), sv);
            let g = ld(p.gamma, i);
            let y = if p.beta.is_null() {
                s.mul_f32s(t, g)
            } else {
                s.mul_add_e_f32s(t, g, ld(p.beta, i))
            };
            (dst.add(i * lanes) as *mut S::f32s).write_unaligned(y);
        }
        for i in nv * lanes..d {
            let t = ((*src.add(i) - shift) - mean_k) * scale;
            *dst.add(i) = if p.beta.is_null() {
                t * *p.gamma.add(i)
            } else {
                t.mul_add(*p.gamma.add(i), *p.beta.add(i))
            };
        }
    }
}

/// The whole row in f64: two passes, for rows the f32 statistics cannot
/// represent.
///
/// # Safety
/// As [`norm_row`].
#[inline(never)]
unsafe fn norm_row_f64(p: &Rows, src: *const f32, dst: *mut f32) {
    // SAFETY: the caller's contract (d elements in src, dst, gamma, beta).
    unsafe {
        let x = core::slice::from_raw_parts(src, p.d);
        let n = p.d as f64;
        let mean = if p.rms {
            0.0
        } else {
            x.iter().map(|&v| v as f64).sum::<f64>() / n
        };
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let r = 1.0 / (var + p.eps as f64).sqrt();
        for i in 0..p.d {
            let t = (*src.add(i) as f64 - mean) * r * *p.gamma.add(i) as f64;
            let b = if p.beta.is_null() {
                0.0
            } else {
                *p.beta.add(i) as f64
            };
            *dst.add(i) = (t + b) as f32;
        }
    }
}

fn check(
    x_len: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
    out_len: Option<usize>,
    eps: f32,
) -> Result<(), KernelError> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(KernelError::invalid(
            "eps",
            format!("eps {eps} must be finite and ≥ 0"),
        ));
    }
    if let Some(o) = out_len
        && o != x_len
    {
        return Err(KernelError::shape(
            "out",
            format!("out has {o} elements but x has {x_len}"),
        ));
    }
    if gamma.is_empty() {
        if x_len == 0 {
            return Ok(());
        }
        return Err(KernelError::empty(
            "gamma",
            format!("gamma is empty but x has {x_len} elements"),
        ));
    }
    if !x_len.is_multiple_of(gamma.len()) {
        return Err(KernelError::shape(
            "x",
            format!(
                "x has {x_len} elements, not a whole number of rows of {}",
                gamma.len()
            ),
        ));
    }
    if let Some(b) = beta
        && b.len() != gamma.len()
    {
        return Err(KernelError::shape(
            "beta",
            format!(
                "beta has {} elements but gamma has {}",
                b.len(),
                gamma.len()
            ),
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn launch(
    src: *const f32,
    dst: *mut f32,
    len: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
    rms: bool,
    cfg: &Config,
) -> Result<(), KernelError> {
    cfg.validate()?;
    run_rows(
        cfg.isa,
        cfg.parallelism,
        src,
        dst,
        len,
        gamma,
        beta,
        eps,
        rms,
    );
    Ok(())
}

/// Normalises the `len / gamma.len()` rows at `level` on up to `par`
/// threads (arguments checked by the caller).
#[allow(clippy::too_many_arguments)]
fn run_rows<L: Level>(
    level: L,
    par: Parallelism,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    gamma: &[f32],
    beta: Option<&[f32]>,
    eps: f32,
    rms: bool,
) {
    if len == 0 {
        return;
    }
    let d = gamma.len();
    let rows = len / d;
    let nt = threads::threads_for(par, len, MIN_ELEMS_PER_THREAD).min(rows);
    let per = rows.div_ceil(nt.max(1));
    let base = Rows {
        src,
        dst,
        rows: 0,
        d,
        gamma: gamma.as_ptr(),
        beta: beta.map_or(core::ptr::null(), |b| b.as_ptr()),
        eps,
        rms,
    };
    // SAFETY: built from slices that outlive the call; jobs get disjoint
    // rows.
    let base = unsafe { threads::Shared::new(base) };
    threads::for_each_index(nt, rows.div_ceil(per), move |j| {
        let r0 = j * per;
        // SAFETY: rows [r0, r0 + n) are inside the validated buffers; jobs
        // are disjoint.
        let job = unsafe { base.get().rows_from(r0, per.min(rows - r0)) };
        let r = level.run(job);
        debug_assert!(r.is_ok(), "validated");
    });
}

/// `out[r] = (x[r] − mean) / √(var + eps) · gamma + beta` for each row of
/// `d = gamma.len()` elements (biased variance, as PyTorch).
///
/// # Errors
/// [`KernelError::ShapeMismatch`] (`out`, `x` not a whole number of rows,
/// `beta` length), [`KernelError::Empty`] (`gamma` empty with non-empty
/// `x`), [`KernelError::InvalidArgument`] (`eps` negative or not finite),
/// [`KernelError::IsaUnavailable`].
pub fn layer_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    out: &mut [f32],
    eps: f32,
    cfg: &Config,
) -> Result<(), KernelError> {
    check(x.len(), gamma, Some(beta), Some(out.len()), eps)?;
    launch(
        x.as_ptr(),
        out.as_mut_ptr(),
        x.len(),
        gamma,
        Some(beta),
        eps,
        false,
        cfg,
    )
}

/// In-place [`layer_norm`].
///
/// # Errors
/// As [`layer_norm`].
pub fn layer_norm_inplace(
    x: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    cfg: &Config,
) -> Result<(), KernelError> {
    check(x.len(), gamma, Some(beta), None, eps)?;
    let p = x.as_mut_ptr();
    launch(p, p, x.len(), gamma, Some(beta), eps, false, cfg)
}

/// `out[r] = x[r] / √(mean(x[r]²) + eps) · gamma` for each row of
/// `d = gamma.len()` elements.
///
/// # Errors
/// As [`layer_norm`] (no `beta`).
pub fn rms_norm(
    x: &[f32],
    gamma: &[f32],
    out: &mut [f32],
    eps: f32,
    cfg: &Config,
) -> Result<(), KernelError> {
    check(x.len(), gamma, None, Some(out.len()), eps)?;
    launch(
        x.as_ptr(),
        out.as_mut_ptr(),
        x.len(),
        gamma,
        None,
        eps,
        true,
        cfg,
    )
}

/// In-place [`rms_norm`].
///
/// # Errors
/// As [`rms_norm`].
pub fn rms_norm_inplace(
    x: &mut [f32],
    gamma: &[f32],
    eps: f32,
    cfg: &Config,
) -> Result<(), KernelError> {
    check(x.len(), gamma, None, None, eps)?;
    let p = x.as_mut_ptr();
    launch(p, p, x.len(), gamma, None, eps, true, cfg)
}

/// The norms on an explicit [`pulp::Simd`] token, serial: for callers who
/// dispatch themselves, and for tests of widths this CPU has no `Isa` for
/// (`pulp::Scalar128b`, the 4-lane width of NEON). Same checks and errors,
/// except the ISA one (holding a token proves the CPU runs it).
pub mod generic {
    use super::*;

    /// [`super::layer_norm`] on `s`.
    pub fn layer_norm<S: Simd>(
        s: S,
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        out: &mut [f32],
        eps: f32,
    ) -> Result<(), KernelError> {
        check(x.len(), gamma, Some(beta), Some(out.len()), eps)?;
        let (src, dst, n) = (x.as_ptr(), out.as_mut_ptr(), x.len());
        run_rows(
            Token(s),
            Parallelism::Serial,
            src,
            dst,
            n,
            gamma,
            Some(beta),
            eps,
            false,
        );
        Ok(())
    }

    /// [`super::layer_norm_inplace`] on `s`.
    pub fn layer_norm_inplace<S: Simd>(
        s: S,
        x: &mut [f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) -> Result<(), KernelError> {
        check(x.len(), gamma, Some(beta), None, eps)?;
        let (p, n) = (x.as_mut_ptr(), x.len());
        run_rows(
            Token(s),
            Parallelism::Serial,
            p,
            p,
            n,
            gamma,
            Some(beta),
            eps,
            false,
        );
        Ok(())
    }

    /// [`super::rms_norm`] on `s`.
    pub fn rms_norm<S: Simd>(
        s: S,
        x: &[f32],
        gamma: &[f32],
        out: &mut [f32],
        eps: f32,
    ) -> Result<(), KernelError> {
        check(x.len(), gamma, None, Some(out.len()), eps)?;
        let (src, dst, n) = (x.as_ptr(), out.as_mut_ptr(), x.len());
        run_rows(
            Token(s),
            Parallelism::Serial,
            src,
            dst,
            n,
            gamma,
            None,
            eps,
            true,
        );
        Ok(())
    }

    /// [`super::rms_norm_inplace`] on `s`.
    pub fn rms_norm_inplace<S: Simd>(
        s: S,
        x: &mut [f32],
        gamma: &[f32],
        eps: f32,
    ) -> Result<(), KernelError> {
        check(x.len(), gamma, None, None, eps)?;
        let (p, n) = (x.as_mut_ptr(), x.len());
        run_rows(
            Token(s),
            Parallelism::Serial,
            p,
            p,
            n,
            gamma,
            None,
            eps,
            true,
        );
        Ok(())
    }
}
