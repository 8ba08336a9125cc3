//! f32 matrix multiply: `C ← epilogue(alpha·A·B + beta·C)`.
//!
//! - [`view`]: strided views ([`MatRef`], [`MatMut`]), bounds-checked;
//! - `kernel`: the register-blocked microkernel and per-ISA block sizes;
//! - `gemm`: the five-loop packed driver;
//! - `gemv`: matrix-vector products (m = 1 or n = 1), streamed unpacked.
//!
//! Results do not depend on the thread count: work is split over m and n,
//! never over k, so every element is summed in the same order.

mod gemm;
mod gemv;
pub(crate) mod int8;
pub(crate) mod kernel;
mod lowp;
pub(crate) mod tiles;
pub mod view;

pub use view::{MatMut, MatRef};

pub(crate) use crate::act::Act;
use crate::act::{GeluKind, Identity};
use crate::error::KernelError;
use crate::isa::{Config, Level, Token, dispatch, outlined};
use crate::quant::{Data, WeightFormat, WeightLayout, WeightsRef};
use crate::threads;
use pulp::{Simd, WithSimd};

/// What is applied to each element of C after `alpha·A·B + beta·C`, while
/// the tile is still in registers.
#[derive(Debug, Clone, Copy, Default)]
pub enum Epilogue<'a> {
    /// Nothing.
    #[default]
    None,
    /// `+ bias[j]` (one value per column of C).
    Bias(&'a [f32]),
    /// `gelu(· + bias[j])`.
    BiasGelu(&'a [f32], GeluKind),
    /// `silu(·) ⊙ U`: element (i, j) multiplied by `U[i][j]` after SiLU —
    /// the SwiGLU gate fused into the gate projection, `C ← silu(x·W_gate)
    /// ⊙ (x·W_up)` given the up projection `U` (same shape as C, any
    /// strides). The `[m, n]` gate product is never written.
    SiluMul(MatRef<'a>),
}

/// A validated product in raw-pointer form (A: m×k, B: k×n, C: m×n).
#[derive(Clone, Copy)]
pub(crate) struct Problem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: *const f32,
    pub rsa: usize,
    pub csa: usize,
    pub b: *const f32,
    pub rsb: usize,
    pub csb: usize,
    pub c: *mut f32,
    pub rsc: usize,
    pub csc: usize,
    pub alpha: f32,
    pub beta: f32,
    /// Null, or n contiguous floats (one per column).
    pub bias: *const f32,
    pub act: Act,
    /// Null, or an m×n matrix multiplied in after the activation.
    pub mul: *const f32,
    pub rsu: usize,
    pub csu: usize,
    /// Low-precision B (then `b` is null and unused).
    pub w: Option<LowB>,
}

impl Problem {
    /// `C ← A·B`: α = 1, β = 0, no bias, activation or multiplier.
    pub(crate) fn is_plain(&self) -> bool {
        self.alpha == 1.0
            && self.beta == 0.0
            && self.bias.is_null()
            && self.act == Act::NONE
            && self.mul.is_null()
    }
}

/// Low-precision weights in raw-pointer form.
#[derive(Clone, Copy)]
pub(crate) struct LowB {
    /// Never `F32`.
    pub fmt: WeightFormat,
    pub ptr: *const u8,
    /// `[n, k]` rows (always, for the block formats); else `[k, n]`.
    pub out_in: bool,
    /// Elements from one row to the next: k for `[n, k]`, n for `[k, n]`.
    pub ld: usize,
}

/// A matrix-vector product in raw-pointer form: `y (1×n) = x (1×k)·B (k×n)`.
#[derive(Clone, Copy)]
pub(crate) struct Gemv {
    pub k: usize,
    pub x: *const f32,
    pub incx: usize,
    pub b: *const f32,
    pub rsb: usize,
    pub csb: usize,
    pub y: *mut f32,
    pub incy: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: *const f32,
    pub bias_stride: usize,
    pub act: Act,
    /// Null, or n floats at stride `incu` multiplied in after `act`.
    pub mul: *const f32,
    pub incu: usize,
}

/// Flops per thread below which a second thread costs more than it saves
/// (measured here: at 128³, 4 Mflop, two threads are slower than one —
/// 123 vs 181 GFLOP/s; at 256³ they pay).
const MIN_FLOPS_PER_THREAD: usize = 1 << 24;
/// Matrix elements per thread for the streamed matrix-vector path.
const MIN_GEMV_ELEMS_PER_THREAD: usize = 1 << 17;
/// Weight bytes per thread for the low-precision matrix-vector path: the
/// f32 path's 2¹⁷ elements, as bytes (512 KiB). Counted in elements, a
/// 4-bit matrix went to two threads at 80 KiB each, ~10 µs of work against
/// a wake-up of the pool's second thread: SmolLM2-135M Q4_1 decode ran at
/// 51.6 tok/s on two threads vs 56.9 on one (Intel Xeon, 2 vCPUs).
const MIN_LOWP_BYTES_PER_THREAD: usize = 1 << 19;

/// `C ← epilogue(alpha·A·B + beta·C)`.
///
/// Shapes: `a` is m×k, `b` k×n, `c` m×n, any strides. `k = 0` (or
/// `alpha = 0`) gives `C ← epilogue(beta·C)` without reading A or B;
/// `beta = 0` never reads C (NaN already in C does not leak), as in BLAS;
/// empty m or n is a no-op.
///
/// Accuracy: each element is an f32 FMA chain over k (in blocks of at most 1024),
/// within `2·k·ε·Σ_p |a_ip·b_pj|` of the exact product; the GELU epilogue
/// adds its own bound (see [`crate::math`]). Threads split m and n, never
/// k, so the result is bitwise identical for every thread count.
///
/// # Errors
/// - [`KernelError::ShapeMismatch`] naming `b` (`b.rows() != a.cols()`),
///   `c` (`c` not m×n), `bias` (length not n) or `epilogue` (`SiluMul`'s U
///   not m×n);
/// - [`KernelError::IsaUnavailable`] if `cfg.isa` cannot run here.
pub fn matmul(
    c: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    alpha: f32,
    beta: f32,
    epilogue: Epilogue<'_>,
    cfg: &Config,
) -> Result<(), KernelError> {
    matmul_weights(c, a, WeightsRef::f32(b), alpha, beta, epilogue, cfg)
}

/// Checks shapes and turns the views into a [`Problem`]; `None` when there
/// is nothing to do (m = 0 or n = 0). Inlined: the `Problem` is built in
/// its caller's frame, not copied out of a returned `Result` (that copy,
/// reread with wider loads than it was written with, cost ~10% of a
/// 2×2×2 product).
#[inline(always)]
fn validate(
    mut c: MatMut<'_>,
    a: MatRef<'_>,
    b: WeightsRef<'_>,
    alpha: f32,
    beta: f32,
    epilogue: Epilogue<'_>,
) -> Result<Option<Problem>, KernelError> {
    let (m, k, n) = (a.rows(), a.cols(), b.n());
    if b.k() != k {
        return Err(KernelError::shape(
            "b",
            format!("b has {} rows but a has {k} columns", b.k()),
        ));
    }
    if c.rows() != m || c.cols() != n {
        return Err(KernelError::shape(
            "c",
            format!("c is {}x{} but a·b is {m}x{n}", c.rows(), c.cols()),
        ));
    }
    let (bias, act, mul) = match epilogue {
        Epilogue::None => (None, Act::NONE, None),
        Epilogue::Bias(b) => (Some(b), Act::NONE, None),
        Epilogue::BiasGelu(b, kind) => (Some(b), Act::gelu(kind), None),
        Epilogue::SiluMul(u) => (None, Act::SILU, Some(u)),
    };
    if let Some(u) = mul
        && (u.rows() != m || u.cols() != n)
    {
        return Err(KernelError::shape(
            "epilogue",
            format!("SiluMul's U is {}x{} but c is {m}x{n}", u.rows(), u.cols()),
        ));
    }
    if let Some(bias) = bias
        && bias.len() != n
    {
        return Err(KernelError::shape(
            "bias",
            format!("bias has {} elements but c has {n} columns", bias.len()),
        ));
    }
    if m == 0 || n == 0 {
        return Ok(None);
    }
    let (bf, w) = match b.data {
        Data::F32(b) => (Some(b), None),
        Data::Bf16(d, l) => (
            None,
            Some(low(WeightFormat::Bf16, d.as_ptr().cast(), l, k, n)),
        ),
        Data::F16(d, l) => (
            None,
            Some(low(WeightFormat::F16, d.as_ptr().cast(), l, k, n)),
        ),
        Data::Q8_0(d) => (
            None,
            Some(low(
                WeightFormat::Q8_0,
                d.as_ptr().cast(),
                WeightLayout::OutIn,
                k,
                n,
            )),
        ),
        Data::Q4_0(d) => (
            None,
            Some(low(
                WeightFormat::Q4_0,
                d.as_ptr().cast(),
                WeightLayout::OutIn,
                k,
                n,
            )),
        ),
        Data::Q4_1(d) => (
            None,
            Some(low(
                WeightFormat::Q4_1,
                d.as_ptr().cast(),
                WeightLayout::OutIn,
                k,
                n,
            )),
        ),
    };
    Ok(Some(Problem {
        m,
        n,
        k,
        a: a.ptr(),
        rsa: a.row_stride(),
        csa: a.col_stride(),
        b: bf.map_or(core::ptr::null(), |b| b.ptr()),
        rsb: bf.map_or(0, |b| b.row_stride()),
        csb: bf.map_or(0, |b| b.col_stride()),
        c: c.ptr(),
        rsc: c.row_stride(),
        csc: c.col_stride(),
        alpha,
        beta,
        bias: bias.map_or(core::ptr::null(), |b| b.as_ptr()),
        act,
        mul: mul.map_or(core::ptr::null(), |u| u.ptr()),
        rsu: mul.map_or(0, |u| u.row_stride()),
        csu: mul.map_or(0, |u| u.col_stride()),
        w,
    }))
}

fn low(fmt: WeightFormat, ptr: *const u8, l: WeightLayout, k: usize, n: usize) -> LowB {
    let out_in = l == WeightLayout::OutIn;
    LowB {
        fmt,
        ptr,
        out_in,
        ld: if out_in { k } else { n },
    }
}

/// `C ← epilogue(alpha·A·W + beta·C)` with weights in any
/// [`WeightFormat`] ([`WeightsRef`]): activations and accumulation in f32.
///
/// The result is the f32 product with the dequantized weights, within the
/// same bound as [`matmul`] (widening bf16/f16 and `d·q` are exact). How it
/// runs:
/// - m ≤ 8 with `[n, k]` weights (every block format), or m = 1 with
///   `[k, n]` bf16/f16: each weight is read once and widened in registers
///   (no copy, no allocation), threads over output columns;
/// - otherwise the packed f32 driver, converting B while it packs it.
///
/// Threads split m and n, never k: bitwise identical for every thread count.
///
/// # Errors
/// As [`matmul`], with `b` the weights.
pub fn matmul_weights(
    c: MatMut<'_>,
    a: MatRef<'_>,
    w: WeightsRef<'_>,
    alpha: f32,
    beta: f32,
    epilogue: Epilogue<'_>,
    cfg: &Config,
) -> Result<(), KernelError> {
    let p = validate(c, a, w, alpha, beta, epilogue)?;
    cfg.validate()?;
    if let Some(p) = p {
        dispatch(
            cfg.isa,
            Op {
                p: &p,
                nthreads: cfg.parallelism.threads(),
            },
        )?;
    }
    Ok(())
}

/// The opt-in int8 mode: `C ← epilogue(alpha·Ã·W + beta·C)` where Ã is A
/// with each row quantized per 32 along k to `i8` and an f32 scale
/// ([`crate::quant::quantize_activations`]: `d = amax/127`, llama.cpp's
/// Q8_0 rounding), and W is Q8_0, Q4_0 or Q4_1 (`[n, k]`), multiplied as
/// integers a block at a time (Q4_1's `m` adds `m·d_a·Σq_a` per block):
/// AVX-512 VNNI `vpdpbusd` where the CPU has it and `cfg.isa` is `Avx512`,
/// AVX2 `vpmaddubsw` under `Avx2` (or `Avx512` without VNNI), portable
/// integer code on the scalar and NEON levels (exact, not fast;
/// [`int8_accelerated`]).
///
/// Accuracy, two parts:
/// - against the exact product of the quantized operands
///   ([`crate::reference::matmul_weights_int8`]): the integer sums are
///   exact; the f32 scaling and accumulation give at most
///   `2·(k/4 + 3)·ε·Σ_b |d_a·d_w|·Σ|q_a·q_w|` per element (ε = 2⁻²⁴), the
///   f32 matmul's bound with k/4 terms;
/// - against [`matmul_weights`] (f32 activations): quantizing A moves each
///   activation by at most `d_a/2 + 2⁻²³·|a|`, so the product moves by at
///   most `Σ_b (d_a/2)·Σ|w|` over the row's blocks (plus that relative
///   term) — about 0.8% of `Σ|a·w|` for activations spread evenly over
///   their block's range, more for a block with one outlier.
///
/// # Errors
/// As [`matmul_weights`]; [`KernelError::InvalidArgument`] naming `w` for
/// weights that are not Q8_0/Q4_0/Q4_1, `a` for a NaN or infinite activation.
pub fn matmul_weights_int8(
    c: MatMut<'_>,
    a: MatRef<'_>,
    w: WeightsRef<'_>,
    alpha: f32,
    beta: f32,
    epilogue: Epilogue<'_>,
    cfg: &Config,
) -> Result<(), KernelError> {
    int8_impl(
        cfg.isa,
        c,
        a,
        w,
        (alpha, beta),
        epilogue,
        cfg.parallelism.threads(),
        int8::Kernel::for_isa(cfg.isa),
    )
}

/// The int8 mode on a level: checks, quantizes A, runs.
#[allow(clippy::too_many_arguments)]
fn int8_impl<L: Level>(
    level: L,
    c: MatMut<'_>,
    a: MatRef<'_>,
    w: WeightsRef<'_>,
    (alpha, beta): (f32, f32),
    epilogue: Epilogue<'_>,
    nthreads: usize,
    kernel: int8::Kernel,
) -> Result<(), KernelError> {
    let fmt = w.format();
    if int8::Blk::of(fmt).is_none() {
        return Err(KernelError::invalid(
            "w",
            format!(
                "the int8 mode takes Q8_0, Q4_0 or Q4_1 weights, not {fmt:?} (use matmul_weights)"
            ),
        ));
    }
    let p = validate(c, a, w, alpha, beta, epilogue)?;
    level.validate()?;
    let Some(p) = p else { return Ok(()) };
    if p.k == 0 || p.alpha == 0.0 {
        return level.run(Op { p: &p, nthreads });
    }
    let qa = int8::QuantA::new(level, &p, fmt)?;
    let r = level.run(Int8Op {
        p,
        qa: &qa,
        kernel,
        nthreads,
    });
    qa.put();
    r
}

/// Whether [`matmul_weights_int8`] runs integer dot-product instructions
/// at `isa` on this CPU (AVX-512 VNNI `vpdpbusd` under
/// [`crate::Isa::Avx512`] where the CPU has VNNI, else AVX2 `vpmaddubsw`
/// under [`crate::Isa::Avx2`] or `Avx512`, NEON `sdot` under
/// [`crate::Isa::Neon`] where the CPU has the dot-product extension); where
/// it does not (the scalar level, NEON without `dotprod`), the int8 mode
/// runs portable integer code — exact, and far slower than
/// [`matmul_weights`].
pub fn int8_accelerated(isa: crate::Isa) -> bool {
    int8::Kernel::for_isa(isa) != int8::Kernel::Portable
}

struct Int8Op<'q> {
    p: Problem,
    qa: &'q int8::QuantA,
    kernel: int8::Kernel,
    nthreads: usize,
}

impl WithSimd for Int8Op<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let (p, qa, kernel) = (self.p, self.qa, self.kernel);
        let w = p.w.expect("int8 mode: block weights");
        let decode = p.m <= int8::DOT_ROWS;
        let work = if decode {
            p.n * p.k
        } else {
            2usize
                .saturating_mul(p.m)
                .saturating_mul(p.n)
                .saturating_mul(p.k)
        };
        let min = if decode {
            MIN_GEMV_ELEMS_PER_THREAD
        } else {
            MIN_FLOPS_PER_THREAD
        };
        let nt = threads::threads_for(crate::Parallelism::Threads(self.nthreads), work, min);
        // Whole 32-column panels per thread (576 columns: 288 + 288, not
        // 384 + 192 as whole 128-column chunks would split them).
        let step = p.n.div_ceil(nt).next_multiple_of(32);
        let jobs = p.n.div_ceil(step);
        // SAFETY: p and w point into the caller's borrows, valid for the
        // call; jobs write disjoint column ranges of C.
        let shared = unsafe { threads::Shared::new((p, w)) };
        threads::for_each_index(nt, jobs, move |t| {
            let (p, w) = *shared.get();
            let (j0, j1) = (t * step, ((t + 1) * step).min(p.n));
            s.vectorize(Int8Cols {
                p,
                w,
                qa,
                kernel,
                j0,
                j1,
            });
        });
    }
}

struct Int8Cols<'q> {
    p: Problem,
    w: LowB,
    qa: &'q int8::QuantA,
    kernel: int8::Kernel,
    j0: usize,
    j1: usize,
}

impl WithSimd for Int8Cols<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let (p, w, qa) = (&self.p, &self.w, self.qa);
        // SAFETY: `qa` is p's A quantized for w's format (built by
        // matmul_weights_int8 from the same Problem).
        unsafe {
            match p.act {
                Act::NONE => int8::run_cols(s, p, w, qa, Identity, self.kernel, self.j0, self.j1),
                act => int8::run_cols(s, p, w, qa, act, self.kernel, self.j0, self.j1),
            }
        }
    }
}

/// [`matmul`] on an explicit [`pulp::Simd`] token, serial: for callers who
/// dispatch themselves, and for tests of widths this CPU has no `Isa` for
/// (`pulp::Scalar128b` runs the 4-lane NEON tile shape in portable code).
pub mod generic {
    use super::*;

    /// As [`super::matmul`], on `simd`, one thread. Same checks and errors
    /// (no ISA error: holding a token proves the CPU runs it).
    pub fn matmul<S: Simd>(
        simd: S,
        c: MatMut<'_>,
        a: MatRef<'_>,
        b: MatRef<'_>,
        alpha: f32,
        beta: f32,
        epilogue: Epilogue<'_>,
    ) -> Result<(), KernelError> {
        matmul_weights(simd, c, a, WeightsRef::f32(b), alpha, beta, epilogue)
    }

    /// As [`super::matmul_weights`], on `simd`, one thread.
    pub fn matmul_weights<S: Simd>(
        simd: S,
        c: MatMut<'_>,
        a: MatRef<'_>,
        w: WeightsRef<'_>,
        alpha: f32,
        beta: f32,
        epilogue: Epilogue<'_>,
    ) -> Result<(), KernelError> {
        if let Some(p) = validate(c, a, w, alpha, beta, epilogue)? {
            simd.vectorize(Op { p: &p, nthreads: 1 });
        }
        Ok(())
    }

    /// As [`super::matmul_weights_int8`], on `simd`, one thread, in the
    /// portable integer code (exact, not fast: the VNNI kernels run under
    /// `Isa::Avx512` only).
    pub fn matmul_weights_int8<S: Simd>(
        simd: S,
        c: MatMut<'_>,
        a: MatRef<'_>,
        w: WeightsRef<'_>,
        alpha: f32,
        beta: f32,
        epilogue: Epilogue<'_>,
    ) -> Result<(), KernelError> {
        int8_impl(
            Token(simd),
            c,
            a,
            w,
            (alpha, beta),
            epilogue,
            1,
            int8::Kernel::Portable,
        )
    }
}

/// The whole product: passed by reference through the dispatch (a
/// `Problem` is ~200 bytes).
struct Op<'p> {
    p: &'p Problem,
    nthreads: usize,
}

impl WithSimd for Op<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let p: &Problem = self.p;
        if p.k == 0 || p.alpha == 0.0 {
            // C ← epilogue(beta·C): each row of C is a matrix-vector
            // product with nothing to sum.
            for i in 0..p.m {
                let g = Gemv {
                    k: 0,
                    x: p.a,
                    incx: 1,
                    b: p.b,
                    rsb: 1,
                    csb: 1,
                    // SAFETY: row i of C exists.
                    y: unsafe { p.c.add(i * p.rsc) },
                    incy: p.csc,
                    alpha: 1.0,
                    beta: p.beta,
                    bias: p.bias,
                    bias_stride: 1,
                    act: p.act,
                    // SAFETY: row i of U exists (when U does).
                    mul: if p.mul.is_null() {
                        p.mul
                    } else {
                        unsafe { p.mul.add(i * p.rsu) }
                    },
                    incu: p.csu,
                };
                outlined(
                    s,
                    GemvOp {
                        g: &g,
                        j0: 0,
                        j1: p.n,
                    },
                );
            }
            return;
        }
        if let Some(w) = p.w
            && lowp::takes_dot(p, &w)
        {
            let nt = threads::threads_for(
                crate::Parallelism::Threads(self.nthreads),
                w.fmt.bytes(p.n * p.k),
                MIN_LOWP_BYTES_PER_THREAD,
            );
            let step = p.n.div_ceil(nt).next_multiple_of(64);
            let jobs = p.n.div_ceil(step);
            // SAFETY: as for the int8 columns above.
            let shared = unsafe { threads::Shared::new((p, w)) };
            threads::for_each_index(nt, jobs, move |t| {
                let (p, w) = *shared.get();
                let (j0, j1) = (t * step, ((t + 1) * step).min(p.n));
                outlined(s, LowpOp { p: *p, w, j0, j1 });
            });
            return;
        }
        if let Some(g) = as_gemv(p) {
            let cols = if p.m == 1 { p.n } else { p.m };
            let nt = threads::threads_for(
                crate::Parallelism::Threads(self.nthreads),
                cols * p.k,
                MIN_GEMV_ELEMS_PER_THREAD,
            );
            if nt <= 1 {
                outlined(
                    s,
                    GemvOp {
                        g: &g,
                        j0: 0,
                        j1: cols,
                    },
                );
                return;
            }
            let step = cols.div_ceil(nt).next_multiple_of(64);
            let jobs = cols.div_ceil(step);
            // SAFETY: g points into the caller's borrows; jobs write
            // disjoint column ranges of y.
            let shared = unsafe { threads::Shared::new(g) };
            threads::for_each_index(nt, jobs, move |t| {
                let g = shared.get();
                let (j0, j1) = (t * step, ((t + 1) * step).min(cols));
                outlined(s, GemvOp { g, j0, j1 });
            });
            return;
        }
        let flops = 2usize
            .saturating_mul(p.m)
            .saturating_mul(p.n)
            .saturating_mul(p.k);
        let nt = threads::threads_for(
            crate::Parallelism::Threads(self.nthreads),
            flops,
            MIN_FLOPS_PER_THREAD,
        );
        if nt <= 1 {
            gemm::run(s, p);
            return;
        }
        // Thread blocks in whole tiles of the tile that will run.
        // SAFETY: the parts point into the caller's borrows; each writes its
        // own block of C (see `split`).
        let parts = unsafe { threads::Shared::new(split(p, nt, tiles::plan_at::<S>(p).blocking)) };
        threads::for_each_index(nt, parts.get().len(), move |t| {
            gemm::run(s, &parts.get()[t])
        });
    }
}

/// The product as a matrix-vector one, when m = 1 (or n = 1, transposed)
/// and the matrix has a unit stride along one dimension.
fn as_gemv(p: &Problem) -> Option<Gemv> {
    let g = if p.w.is_some() {
        return None;
    } else if p.m == 1 {
        Gemv {
            k: p.k,
            x: p.a,
            incx: p.csa,
            b: p.b,
            rsb: p.rsb,
            csb: p.csb,
            y: p.c,
            incy: p.csc,
            alpha: p.alpha,
            beta: p.beta,
            bias: p.bias,
            bias_stride: 1,
            act: p.act,
            mul: p.mul,
            incu: p.csu,
        }
    } else if p.n == 1 {
        // Cᵀ (1×m) = bᵀ (1×k) · Aᵀ (k×m); the one bias value is broadcast.
        Gemv {
            k: p.k,
            x: p.b,
            incx: p.rsb,
            b: p.a,
            rsb: p.csa,
            csb: p.rsa,
            y: p.c,
            incy: p.rsc,
            alpha: p.alpha,
            beta: p.beta,
            bias: p.bias,
            bias_stride: 0,
            act: p.act,
            mul: p.mul,
            incu: p.rsu,
        }
    } else {
        return None;
    };
    (g.csb == 1 || g.rsb == 1).then_some(g)
}

struct GemvOp<'g> {
    g: &'g Gemv,
    j0: usize,
    j1: usize,
}

impl WithSimd for GemvOp<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        gemv_act(s, self.g, self.j0, self.j1);
    }
}

#[inline(always)]
fn gemv_act<S: Simd>(s: S, g: &Gemv, j0: usize, j1: usize) {
    match g.act {
        Act::NONE => gemv::run(s, g, Identity, j0, j1),
        act => gemv::run(s, g, act, j0, j1),
    }
}

struct LowpOp {
    p: Problem,
    w: LowB,
    j0: usize,
    j1: usize,
}

impl WithSimd for LowpOp {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        // The activation is a run-time `Act` (a predictable branch per
        // finished vector), so each format's kernels compile once per level.
        let (p, w) = (&self.p, &self.w);
        // AVX2 CPUs have F16C, which pulp's V3 does not name: the level's
        // kernels run with it added (`vcvtph2ps` for f16 weights and the
        // block scales), in one instantiation for V3 only.
        #[cfg(target_arch = "x86_64")]
        if crate::arch::x86::is_v3::<S>() && crate::arch::x86::has_f16c() {
            use pulp::x86::V3;
            struct Op(V3, LowpOp);
            impl crate::arch::x86::F16cOp for Op {
                type Output = ();
                #[inline(always)]
                fn run(self) {
                    let (s, o) = (self.0, self.1);
                    lowp::run_cols::<V3, _, true>(s, &o.p, &o.w, o.p.act, o.j0, o.j1)
                }
            }
            // SAFETY: `S` is V3, whose token exists only where the CPU has
            // its features; `has_f16c` proves F16C.
            return unsafe { crate::arch::x86::in_f16c(Op(V3::new_unchecked(), self)) };
        }
        lowp::run_cols::<S, _, false>(s, p, w, p.act, self.j0, self.j1)
    }
}

/// Splits C into `nt` blocks along its longer side (in whole tiles), so
/// each thread packs only its own share of the operand along that side.
fn split(p: &Problem, nt: usize, bl: tiles::Blocking) -> Vec<Problem> {
    let mut out = Vec::with_capacity(nt);
    if p.n >= p.m {
        let step = p.n.div_ceil(nt).next_multiple_of(bl.nr);
        for j0 in (0..p.n).step_by(step) {
            let w = step.min(p.n - j0);
            // SAFETY (pointer offsets): column j0 of B, C and bias exist.
            out.push(unsafe {
                Problem {
                    n: w,
                    b: if p.b.is_null() {
                        p.b
                    } else {
                        p.b.add(j0 * p.csb)
                    },
                    w: p.w.map(|w| w.at_col(j0)),
                    c: p.c.add(j0 * p.csc),
                    bias: if p.bias.is_null() {
                        p.bias
                    } else {
                        p.bias.add(j0)
                    },
                    mul: if p.mul.is_null() {
                        p.mul
                    } else {
                        p.mul.add(j0 * p.csu)
                    },
                    ..*p
                }
            });
        }
    } else {
        let step = p.m.div_ceil(nt).next_multiple_of(bl.mr);
        for i0 in (0..p.m).step_by(step) {
            let h = step.min(p.m - i0);
            // SAFETY: row i0 of A, C and U exist; the bias is per column.
            out.push(unsafe {
                Problem {
                    m: h,
                    a: p.a.add(i0 * p.rsa),
                    c: p.c.add(i0 * p.rsc),
                    mul: if p.mul.is_null() {
                        p.mul
                    } else {
                        p.mul.add(i0 * p.rsu)
                    },
                    ..*p
                }
            });
        }
    }
    out
}
