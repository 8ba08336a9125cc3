//! Fused bias + GELU (and plain GELU, and bias add) over row-major `[rows, cols]`.
//!
//! One pass: each element of `x` and each bias vector is loaded once per row,
//! the activation is computed in registers, and the result is stored once.
//! No temporary buffer.

use crate::act::{Act, Identity, VecFn, with_fixed};
pub use crate::act::{GeluKind, MathFn};
use crate::error::KernelError;
use crate::isa::{Config, Level, Parallelism, Token, dispatch};
use crate::simd::{Part, load, store};
use crate::threads;
use core::ptr::null;
use pulp::{Simd, WithSimd};

/// Elements per thread below which extra threads cost more than they save.
const MIN_ELEMS_PER_THREAD: usize = 1 << 16;

/// Raw pointers to one job's rows. `src` may equal `dst` (in place).
#[derive(Clone, Copy)]
struct Job {
    src: *const f32,
    dst: *mut f32,
    /// Elements in this job (a whole number of rows when `bias` is set).
    len: usize,
    bias: *const f32,
    /// `bias` length (the row length), or 0 for no bias.
    cols: usize,
    /// Null, or `len` floats multiplied in after the activation (SwiGLU's
    /// up projection); may equal `dst`.
    mul: *const f32,
}

struct Kernel<F> {
    job: Job,
    f: F,
}

impl<F: VecFn> WithSimd for Kernel<F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let Job {
            src,
            dst,
            len,
            bias,
            cols,
            mul,
        } = self.job;
        // SAFETY: `Job` invariants: src, dst (and mul, if not null) are valid
        // for `len` elements, bias for `cols`, and `cols` divides `len` when
        // `cols > 0`.
        unsafe {
            if cols == 0 {
                if mul.is_null() {
                    run_span(s, self.f, src, dst, len, core::ptr::null());
                } else {
                    run_span_mul(s, self.f, src, mul, dst, len);
                }
            } else {
                let mut r = 0;
                while r < len {
                    run_span(s, self.f, src.add(r), dst.add(r), cols, bias);
                    r += cols;
                }
            }
        }
    }
}

/// `dst[i] = f(src[i] + bias[i])` for `i < n` (no bias when `bias` is null).
///
/// # Safety
/// `src` and `dst` valid for `n` reads/writes (they may be equal, not
/// partially overlapping); `bias` null or valid for `n` reads.
#[inline(always)]
unsafe fn run_span<S: Simd, F: VecFn>(
    s: S,
    f: F,
    src: *const f32,
    dst: *mut f32,
    n: usize,
    bias: *const f32,
) {
    let mut i = 0;
    // SAFETY (whole block): `span_steps` touches whole vectors below n; the
    // tail uses a mask of n - i lanes, so no lane outside [0, n) is read or
    // written.
    unsafe {
        // K independent vectors per step, their operations interleaved
        // (`apply_n`): the activations are long dependency chains
        // (polynomials, exp, a division), and one chain after another left
        // the FMA ports waiting. Measured (Intel Xeon, one thread, 16 384
        // floats, ns a value, before → after): erf-GELU AVX-512 0.60 →
        // 0.44 (K = 8 with the reciprocal of `math::recip_n`; K = 4: 0.51),
        // AVX2 1.28 → 0.98; tanh-GELU AVX2 0.79 → 0.64, AVX-512 level.
        // SiLU (a full exp and a division) ran 5% slower at K = 8 on
        // AVX-512 and keeps 4.
        if f.interleave() >= 8 {
            i = span_steps::<S, F, 8>(s, f, src, dst, bias, i, n);
        }
        i = span_steps::<S, F, 4>(s, f, src, dst, bias, i, n);
        // The last whole vectors one at a time (`apply_n` on one: `apply`).
        i = span_steps::<S, F, 1>(s, f, src, dst, bias, i, n);
        if i < n {
            let part = Part::new(s, n - i);
            let mut v = part.load(src.add(i));
            if !bias.is_null() {
                v = s.add_f32s(v, part.load(bias.add(i)));
            }
            part.store(dst.add(i), f.apply(s, v));
        }
    }
}

/// [`run_span`]'s main loop from `i`: `f` on `K` vectors a step while `K`
/// whole vectors remain; returns where it stopped.
///
/// # Safety
/// As [`run_span`].
#[inline(always)]
unsafe fn span_steps<S: Simd, F: VecFn, const K: usize>(
    s: S,
    f: F,
    src: *const f32,
    dst: *mut f32,
    bias: *const f32,
    mut i: usize,
    n: usize,
) -> usize {
    let lanes = S::F32_LANES;
    // SAFETY: every access touches [i, i + K·lanes) with i + K·lanes ≤ n.
    unsafe {
        while i + K * lanes <= n {
            let mut x = [s.splat_f32s(0.0); K];
            for (j, xj) in x.iter_mut().enumerate() {
                *xj = load::<S>(src.add(i + j * lanes));
                if !bias.is_null() {
                    *xj = s.add_f32s(*xj, load::<S>(bias.add(i + j * lanes)));
                }
            }
            let y = f.apply_n(s, x);
            for (j, &yj) in y.iter().enumerate() {
                store::<S>(dst.add(i + j * lanes), yj);
            }
            i += K * lanes;
        }
    }
    i
}

/// `dst[i] = f(src[i])·mul[i]` for `i < n` (SwiGLU: `f` = SiLU of the gate,
/// `mul` the up projection).
///
/// # Safety
/// `src`, `mul` and `dst` valid for `n` elements (`dst` may equal either
/// input, not partially overlap it).
#[inline(always)]
unsafe fn run_span_mul<S: Simd, F: VecFn>(
    s: S,
    f: F,
    src: *const f32,
    mul: *const f32,
    dst: *mut f32,
    n: usize,
) {
    let lanes = S::F32_LANES;
    let mut i = 0;
    // No closure holds the activation: a closure is compiled without the
    // caller's target features, and one this large is not inlined (it ran
    // 7–10× slower than this form on AVX2 and AVX-512).
    #[inline(always)]
    unsafe fn one<S: Simd, F: VecFn>(s: S, f: F, src: *const f32, mul: *const f32) -> S::f32s {
        // SAFETY: the caller passes pointers valid for one vector each.
        unsafe {
            let x = (src as *const S::f32s).read_unaligned();
            let u = (mul as *const S::f32s).read_unaligned();
            s.mul_f32s(f.apply(s, x), u)
        }
    }
    // SAFETY (whole block): full vectors cover [i, i + lanes) ⊂ [0, n); the
    // tail is masked to n - i lanes.
    unsafe {
        while i + 2 * lanes <= n {
            let v0 = one(s, f, src.add(i), mul.add(i));
            let v1 = one(s, f, src.add(i + lanes), mul.add(i + lanes));
            (dst.add(i) as *mut S::f32s).write_unaligned(v0);
            (dst.add(i + lanes) as *mut S::f32s).write_unaligned(v1);
            i += 2 * lanes;
        }
        while i + lanes <= n {
            let v = one(s, f, src.add(i), mul.add(i));
            (dst.add(i) as *mut S::f32s).write_unaligned(v);
            i += lanes;
        }
        if i < n {
            let part = Part::new(s, n - i);
            let g = f.apply(s, part.load(src.add(i)));
            part.store(dst.add(i), s.mul_f32s(g, part.load(mul.add(i))));
        }
    }
}

/// Checks shapes; returns the row length (0 for no bias).
fn check(x_len: usize, bias: Option<&[f32]>, out_len: Option<usize>) -> Result<usize, KernelError> {
    if let Some(o) = out_len
        && o != x_len
    {
        return Err(KernelError::shape(
            "out",
            format!("out has {o} elements but x has {x_len}"),
        ));
    }
    match bias {
        None => Ok(0),
        Some([]) => {
            if x_len == 0 {
                Ok(0)
            } else {
                Err(KernelError::empty(
                    "bias",
                    format!("bias is empty but x has {x_len} elements"),
                ))
            }
        }
        Some(b) => {
            if !x_len.is_multiple_of(b.len()) {
                Err(KernelError::shape(
                    "bias",
                    format!(
                        "bias has {} elements but x has {x_len}, not a whole number of rows of {}",
                        b.len(),
                        b.len()
                    ),
                ))
            } else {
                Ok(b.len())
            }
        }
    }
}

/// Validated entry: splits into per-thread jobs of whole rows and runs them.
#[allow(clippy::too_many_arguments)]
fn launch(
    src: *const f32,
    dst: *mut f32,
    len: usize,
    bias: Option<&[f32]>,
    cols: usize,
    act: Act,
    cfg: &Config,
) -> Result<(), KernelError> {
    cfg.validate()?;
    run_jobs(
        cfg.isa,
        cfg.parallelism,
        src,
        dst,
        len,
        bias,
        cols,
        act,
        core::ptr::null(),
    );
    Ok(())
}

/// Runs the element-wise pass at `level` on up to `par` threads (arguments
/// checked by the caller). `mul` is null or `len` floats (then `cols` is 0).
#[allow(clippy::too_many_arguments)]
fn run_jobs<L: Level>(
    level: L,
    par: Parallelism,
    src: *const f32,
    dst: *mut f32,
    len: usize,
    bias: Option<&[f32]>,
    cols: usize,
    act: Act,
    mul: *const f32,
) {
    if len == 0 {
        return;
    }
    let bias_ptr = bias.map_or(core::ptr::null(), |b| b.as_ptr());
    let unit = cols.max(1); // jobs split on row boundaries
    let units = len / unit;
    let nthreads = threads::threads_for(par, len, MIN_ELEMS_PER_THREAD).min(units);
    let per_job = units.div_ceil(nthreads.max(1)) * unit;
    let jobs = len.div_ceil(per_job);
    let run = |j: usize| {
        let start = j * per_job;
        let n = per_job.min(len - start);
        // SAFETY: [start, start + n) lies inside the caller's `len` elements
        // (of src, dst and mul), and jobs are disjoint.
        let job = unsafe {
            Job {
                src: src.add(start),
                dst: dst.add(start),
                len: n,
                bias: bias_ptr,
                cols,
                mul: if mul.is_null() { mul } else { mul.add(start) },
            }
        };
        // One kernel per activation: here the activation is the whole loop
        // body, so it is fixed at compile time.
        let r = match act {
            Act(None) => level.run(Kernel { job, f: Identity }),
            Act(Some(f)) => with_fixed!(f, k => level.run(Kernel { job, f: k })),
        };
        debug_assert!(r.is_ok(), "validated above");
    };
    // SAFETY: the closure carries pointers into the caller's buffers, valid
    // for the call and used for disjoint ranges per job (see `launch`).
    let job_fn = unsafe { threads::Shared::new(run) };
    threads::for_each_index(nthreads, jobs, move |j| (job_fn.get())(j));
}

/// `out[r][c] = gelu(x[r][c] + bias[c])` for row-major `x` of shape
/// `[rows, bias.len()]`, in one pass.
///
/// Accuracy: within 4 ULP + 1e-7 of the exact f64 formula of `kind` on every
/// level (see [`crate::math`]); NaN → NaN, +∞ → +∞, −∞ → −0.0.
///
/// # Errors
/// - [`KernelError::ShapeMismatch`] (`out`) if `out.len() != x.len()`;
/// - [`KernelError::Empty`] (`bias`) if `bias` is empty and `x` is not;
/// - [`KernelError::ShapeMismatch`] (`bias`) if `x.len()` is not a multiple of
///   `bias.len()`;
/// - [`KernelError::IsaUnavailable`] if `cfg.isa` cannot run here.
///
/// `x.len() == 0` (zero rows) is fine and writes nothing.
pub fn bias_gelu(
    x: &[f32],
    bias: &[f32],
    out: &mut [f32],
    kind: GeluKind,
    cfg: &Config,
) -> Result<(), KernelError> {
    let cols = check(x.len(), Some(bias), Some(out.len()))?;
    launch(
        x.as_ptr(),
        out.as_mut_ptr(),
        x.len(),
        Some(bias),
        cols,
        Act::gelu(kind),
        cfg,
    )
}

/// In-place [`bias_gelu`]: `x[r][c] = gelu(x[r][c] + bias[c])`.
///
/// # Errors
/// As [`bias_gelu`], without the `out` check.
pub fn bias_gelu_inplace(
    x: &mut [f32],
    bias: &[f32],
    kind: GeluKind,
    cfg: &Config,
) -> Result<(), KernelError> {
    let cols = check(x.len(), Some(bias), None)?;
    let p = x.as_mut_ptr();
    launch(p, p, x.len(), Some(bias), cols, Act::gelu(kind), cfg)
}

/// `out[i] = gelu(x[i])`.
///
/// # Errors
/// [`KernelError::ShapeMismatch`] (`out`) if the lengths differ;
/// [`KernelError::IsaUnavailable`].
pub fn gelu(x: &[f32], out: &mut [f32], kind: GeluKind, cfg: &Config) -> Result<(), KernelError> {
    check(x.len(), None, Some(out.len()))?;
    launch(
        x.as_ptr(),
        out.as_mut_ptr(),
        x.len(),
        None,
        0,
        Act::gelu(kind),
        cfg,
    )
}

/// In-place [`gelu`].
///
/// # Errors
/// [`KernelError::IsaUnavailable`].
pub fn gelu_inplace(x: &mut [f32], kind: GeluKind, cfg: &Config) -> Result<(), KernelError> {
    let p = x.as_mut_ptr();
    launch(p, p, x.len(), None, 0, Act::gelu(kind), cfg)
}

/// `out[r][c] = x[r][c] + bias[c]` (the first pass of an unfused bias-GELU;
/// also a broadcast bias add in its own right).
///
/// # Errors
/// As [`bias_gelu`].
pub fn add_bias(x: &[f32], bias: &[f32], out: &mut [f32], cfg: &Config) -> Result<(), KernelError> {
    let cols = check(x.len(), Some(bias), Some(out.len()))?;
    launch(
        x.as_ptr(),
        out.as_mut_ptr(),
        x.len(),
        Some(bias),
        cols,
        Act::NONE,
        cfg,
    )
}

/// `out[i] = silu(x[i]) = x[i] / (1 + e^(−x[i]))` (SiLU, "swish").
///
/// Accuracy: within 4 ULP + 3e-37 of the exact f64 formula on every level
/// (`tests/kernels/silu.rs`): `x / (1 + exp(−x))` with the 2-ULP [`crate::math::exp`] and
/// one division; results smaller than ~2.6e-37 in magnitude (x < −88.7) are
/// −0.0, so `silu(−100) = −0.0`, `silu(100) = 100`, `silu(−∞) = −0.0`,
/// `silu(+∞) = +∞`, NaN → NaN. No overflow reaches the result.
///
/// # Errors
/// [`KernelError::ShapeMismatch`] (`out`) if the lengths differ;
/// [`KernelError::IsaUnavailable`].
pub fn silu(x: &[f32], out: &mut [f32], cfg: &Config) -> Result<(), KernelError> {
    check(x.len(), None, Some(out.len()))?;
    launch(
        x.as_ptr(),
        out.as_mut_ptr(),
        x.len(),
        None,
        0,
        Act::SILU,
        cfg,
    )
}

/// In-place [`silu`].
///
/// # Errors
/// [`KernelError::IsaUnavailable`].
pub fn silu_inplace(x: &mut [f32], cfg: &Config) -> Result<(), KernelError> {
    let p = x.as_mut_ptr();
    launch(p, p, x.len(), None, 0, Act::SILU, cfg)
}

fn check_swiglu(gate: usize, up: usize, out: Option<usize>) -> Result<(), KernelError> {
    if up != gate {
        return Err(KernelError::shape(
            "up",
            format!("up has {up} elements but gate has {gate}"),
        ));
    }
    check(gate, None, out)?;
    Ok(())
}

/// SwiGLU in one pass: `out[i] = silu(gate[i])·up[i]` (the Llama MLP's
/// `silu(x·W_gate) ⊙ (x·W_up)`, given both projections). The product adds
/// half an ULP to [`silu`]'s bound. To skip writing the gate projection at
/// all, use the matmul epilogue [`crate::Epilogue::SiluMul`] instead.
///
/// # Errors
/// [`KernelError::ShapeMismatch`] naming `up` or `out` if a length differs
/// from `gate`'s; [`KernelError::IsaUnavailable`].
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32], cfg: &Config) -> Result<(), KernelError> {
    check_swiglu(gate.len(), up.len(), Some(out.len()))?;
    cfg.validate()?;
    let (src, dst, n) = (gate.as_ptr(), out.as_mut_ptr(), gate.len());
    run_jobs(
        cfg.isa,
        cfg.parallelism,
        src,
        dst,
        n,
        None,
        0,
        Act::SILU,
        up.as_ptr(),
    );
    Ok(())
}

/// In-place [`swiglu`]: `gate[i] = silu(gate[i])·up[i]`.
///
/// # Errors
/// As [`swiglu`], without `out`.
pub fn swiglu_inplace(gate: &mut [f32], up: &[f32], cfg: &Config) -> Result<(), KernelError> {
    check_swiglu(gate.len(), up.len(), None)?;
    cfg.validate()?;
    let (p, n) = (gate.as_mut_ptr(), gate.len());
    run_jobs(
        cfg.isa,
        cfg.parallelism,
        p,
        p,
        n,
        None,
        0,
        Act::SILU,
        up.as_ptr(),
    );
    Ok(())
}

/// Kernels on an explicit [`pulp::Simd`] token, for users who dispatch
/// themselves and for tests of widths this CPU has no `Isa` for (e.g.
/// `pulp::Scalar128b`, the 4-lane width of NEON).
pub mod generic {
    use super::*;

    /// Serial run on a token: the same jobs the `Config` entry points run.
    #[allow(clippy::too_many_arguments)]
    fn serial<S: Simd>(
        s: S,
        src: *const f32,
        dst: *mut f32,
        n: usize,
        bias: Option<&[f32]>,
        cols: usize,
        act: Act,
        mul: *const f32,
    ) {
        run_jobs(
            Token(s),
            Parallelism::Serial,
            src,
            dst,
            n,
            bias,
            cols,
            act,
            mul,
        );
    }

    /// [`super::bias_gelu`] on the given token, serial. Same checks and errors
    /// (except the ISA one: holding a token proves the CPU runs it).
    pub fn bias_gelu<S: Simd>(
        s: S,
        x: &[f32],
        bias: &[f32],
        out: &mut [f32],
        kind: GeluKind,
    ) -> Result<(), KernelError> {
        let cols = check(x.len(), Some(bias), Some(out.len()))?;
        let (src, dst, n) = (x.as_ptr(), out.as_mut_ptr(), x.len());
        serial(s, src, dst, n, Some(bias), cols, Act::gelu(kind), null());
        Ok(())
    }

    /// [`super::bias_gelu_inplace`] on the given token, serial.
    pub fn bias_gelu_inplace<S: Simd>(
        s: S,
        x: &mut [f32],
        bias: &[f32],
        kind: GeluKind,
    ) -> Result<(), KernelError> {
        let cols = check(x.len(), Some(bias), None)?;
        let (p, n) = (x.as_mut_ptr(), x.len());
        serial(s, p, p, n, Some(bias), cols, Act::gelu(kind), null());
        Ok(())
    }

    /// [`super::gelu`] on the given token, serial.
    pub fn gelu<S: Simd>(
        s: S,
        x: &[f32],
        out: &mut [f32],
        kind: GeluKind,
    ) -> Result<(), KernelError> {
        check(x.len(), None, Some(out.len()))?;
        let (src, dst, n) = (x.as_ptr(), out.as_mut_ptr(), x.len());
        serial(s, src, dst, n, None, 0, Act::gelu(kind), null());
        Ok(())
    }

    /// [`super::gelu_inplace`] on the given token, serial.
    pub fn gelu_inplace<S: Simd>(s: S, x: &mut [f32], kind: GeluKind) -> Result<(), KernelError> {
        let (p, n) = (x.as_mut_ptr(), x.len());
        serial(s, p, p, n, None, 0, Act::gelu(kind), null());
        Ok(())
    }

    /// [`super::add_bias`] on the given token, serial.
    pub fn add_bias<S: Simd>(
        s: S,
        x: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let cols = check(x.len(), Some(bias), Some(out.len()))?;
        let (src, dst, n) = (x.as_ptr(), out.as_mut_ptr(), x.len());
        serial(s, src, dst, n, Some(bias), cols, Act::NONE, null());
        Ok(())
    }

    /// [`super::silu`] on the given token, serial.
    pub fn silu<S: Simd>(s: S, x: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
        check(x.len(), None, Some(out.len()))?;
        let (src, dst, n) = (x.as_ptr(), out.as_mut_ptr(), x.len());
        serial(s, src, dst, n, None, 0, Act::SILU, null());
        Ok(())
    }

    /// [`super::silu_inplace`] on the given token, serial.
    pub fn silu_inplace<S: Simd>(s: S, x: &mut [f32]) -> Result<(), KernelError> {
        let (p, n) = (x.as_mut_ptr(), x.len());
        serial(s, p, p, n, None, 0, Act::SILU, null());
        Ok(())
    }

    /// [`super::swiglu`] on the given token, serial.
    pub fn swiglu<S: Simd>(
        s: S,
        gate: &[f32],
        up: &[f32],
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        check_swiglu(gate.len(), up.len(), Some(out.len()))?;
        let (src, dst, n) = (gate.as_ptr(), out.as_mut_ptr(), gate.len());
        serial(s, src, dst, n, None, 0, Act::SILU, up.as_ptr());
        Ok(())
    }

    /// [`super::swiglu_inplace`] on the given token, serial.
    pub fn swiglu_inplace<S: Simd>(s: S, gate: &mut [f32], up: &[f32]) -> Result<(), KernelError> {
        check_swiglu(gate.len(), up.len(), None)?;
        let (p, n) = (gate.as_mut_ptr(), gate.len());
        serial(s, p, p, n, None, 0, Act::SILU, up.as_ptr());
        Ok(())
    }

    /// Applies the vector function `f` to every element of `x` into `out`
    /// on the given token (serial).
    ///
    /// # Errors
    /// [`KernelError::ShapeMismatch`] (`out`) if the lengths differ.
    pub fn map<S: Simd>(s: S, f: MathFn, x: &[f32], out: &mut [f32]) -> Result<(), KernelError> {
        check(x.len(), None, Some(out.len()))?;
        if !x.is_empty() {
            let job = Job {
                src: x.as_ptr(),
                dst: out.as_mut_ptr(),
                len: x.len(),
                bias: core::ptr::null(),
                cols: 0,
                mul: core::ptr::null(),
            };
            with_fixed!(f, k => s.vectorize(Kernel { job, f: k }));
        }
        Ok(())
    }
}

/// `out[i] = f(x[i])` at `cfg.isa` (serial): the vector math as a slice
/// function, for accuracy checks and for callers who need `exp` or `erf`.
///
/// # Errors
/// [`KernelError::ShapeMismatch`] (`out`) if the lengths differ;
/// [`KernelError::IsaUnavailable`].
pub fn map(f: MathFn, x: &[f32], out: &mut [f32], cfg: &Config) -> Result<(), KernelError> {
    check(x.len(), None, Some(out.len()))?;
    cfg.validate()?;
    if x.is_empty() {
        return Ok(());
    }
    let job = Job {
        src: x.as_ptr(),
        dst: out.as_mut_ptr(),
        len: x.len(),
        bias: core::ptr::null(),
        cols: 0,
        mul: core::ptr::null(),
    };
    with_fixed!(f, k => dispatch(cfg.isa, Kernel { job, f: k }))
}
