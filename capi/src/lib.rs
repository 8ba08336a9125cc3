//! The C ABI of transformer-kernels.
//!
//! Conventions (the header `include/transformer_kernels.h`, generated from
//! this file by cbindgen, is the reference):
//! - every function returns a [`tk_status`]: `TK_OK` (0), one code per kind
//!   of [`KernelError`], `TK_ERR_NULL_POINTER` and `TK_PANIC`; the message
//!   of the last failure on the calling thread is [`tk_last_error`];
//! - no panic crosses the boundary (`catch_unwind` at every entry);
//! - sizes and strides are in **elements** (`int64_t`), never bytes; a
//!   negative one is `TK_ERR_INVALID_ARGUMENT`; a null pointer to a view
//!   that has elements is `TK_ERR_NULL_POINTER`;
//! - an output that shares memory with an input is `TK_ERR_OVERLAPPING`,
//!   except where a function documents in-place use (`out == x`);
//! - on any error, nothing has been written.
//!
//! Memory safety rests on the caller: every pointer must be valid for the
//! elements its shape and strides describe.

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use transformer_kernels as tk;
use transformer_kernels::{
    AttentionOptions, Config, Epilogue, GeluKind, HeadsMut, HeadsRef, Isa, KernelError, MatMut,
    MatRef, MathFn, Parallelism,
};

/// Version of this ABI: bumped on any incompatible change to a type or a
/// function signature in this header.
pub const TK_ABI_VERSION: u32 = 1;

/// What a call returned.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tk_status {
    /// Success.
    TK_OK = 0,
    /// The requested instruction set cannot run on this CPU (or build).
    TK_ERR_ISA_UNAVAILABLE = 1,
    /// An ISA value that names no level.
    TK_ERR_UNKNOWN_ISA = 2,
    /// A size disagrees with another argument.
    TK_ERR_SHAPE_MISMATCH = 3,
    /// A size is zero where at least one element is required.
    TK_ERR_EMPTY = 4,
    /// A view's extent overflows.
    TK_ERR_OUT_OF_BOUNDS = 5,
    /// An output view overlaps itself or an input.
    TK_ERR_OVERLAPPING = 6,
    /// Any other invalid argument (negative size or stride, bad option).
    TK_ERR_INVALID_ARGUMENT = 7,
    /// A required pointer is null.
    TK_ERR_NULL_POINTER = 8,
    /// A bug in the library: it panicked (the panic was caught).
    TK_PANIC = 100,
}

/// Instruction-set level (one of the `TK_ISA_*` values). `TK_ISA_AUTO` is
/// the best this CPU runs, lowered by the `TK_ISA` environment variable as
/// in the Rust API (read once, at the first call that needs it). (An `int32_t`, not a C enum, so that any value a caller
/// passes is checked rather than undefined.)
pub type tk_isa = i32;
/// Detect at the call.
pub const TK_ISA_AUTO: tk_isa = 0;
/// Portable scalar code.
pub const TK_ISA_SCALAR: tk_isa = 1;
/// x86-64 AVX2 + FMA.
pub const TK_ISA_AVX2: tk_isa = 2;
/// x86-64 AVX-512 (F/BW/CD/DQ/VL).
pub const TK_ISA_AVX512: tk_isa = 3;
/// aarch64 NEON.
pub const TK_ISA_NEON: tk_isa = 4;

/// Per-call settings, passed by value. A zeroed struct is valid: the best
/// ISA and every core.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tk_config {
    /// Instruction-set level, a `TK_ISA_*` value.
    pub isa: tk_isa,
    /// Thread budget: 1 = the calling thread only, n > 1 = up to n threads,
    /// 0 = every core. Negative is `TK_ERR_INVALID_ARGUMENT`.
    pub threads: i32,
}

/// What a matmul applies to each element of C before storing it (one of
/// the `TK_EPILOGUE_*` values).
pub type tk_epilogue = i32;
/// Nothing.
pub const TK_EPILOGUE_NONE: tk_epilogue = 0;
/// `+ bias[j]`.
pub const TK_EPILOGUE_BIAS: tk_epilogue = 1;
/// `gelu(. + bias[j])`.
pub const TK_EPILOGUE_BIAS_GELU: tk_epilogue = 2;

/// Which GELU (one of the `TK_GELU_*` values).
pub type tk_gelu = i32;
/// Exact `0.5·x·(1 + erf(x/√2))`.
pub const TK_GELU_ERF: tk_gelu = 0;
/// `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))` (GPT-2's).
pub const TK_GELU_TANH: tk_gelu = 1;

/// An element-wise vector-math function (one of the `TK_MATH_*` values),
/// for [`tk_map_f32`].
pub type tk_math_fn = i32;
/// `e^x`, ≤ 2 ULP.
pub const TK_MATH_EXP: tk_math_fn = 0;
/// `erf(x)`, ≤ 3 ULP.
pub const TK_MATH_ERF: tk_math_fn = 1;
/// `erfc(x)`, ≤ (8 + 2x²) ULP for x ≥ 0, ≤ 3 ULP below.
pub const TK_MATH_ERFC: tk_math_fn = 2;
/// `tanh(x)`, ≤ 3 ULP.
pub const TK_MATH_TANH: tk_math_fn = 3;
/// Exact-form GELU, 4 ULP + 1e-7.
pub const TK_MATH_GELU_ERF: tk_math_fn = 4;
/// tanh-form GELU, 4 ULP + 1e-7.
pub const TK_MATH_GELU_TANH: tk_math_fn = 5;

/// A weight format (one of the `TK_WEIGHTS_*` values), for
/// [`tk_matmul_weights`], [`tk_weight_bytes`], [`tk_quantize_f32`] and
/// [`tk_dequantize_f32`].
pub type tk_weight_format = i32;
/// `float`, 4 bytes a weight.
pub const TK_WEIGHTS_F32: tk_weight_format = 0;
/// bfloat16 (`uint16_t` bits), 2 bytes a weight.
pub const TK_WEIGHTS_BF16: tk_weight_format = 1;
/// IEEE binary16 (`uint16_t` bits), 2 bytes a weight.
pub const TK_WEIGHTS_F16: tk_weight_format = 2;
/// GGUF / llama.cpp Q8_0 blocks: per 32 weights an f16 scale `d` and 32
/// `int8_t` `q`, w = d·q (34 bytes).
pub const TK_WEIGHTS_Q8_0: tk_weight_format = 3;
/// GGUF / llama.cpp Q4_0 blocks: per 32 weights an f16 scale `d` and 16
/// bytes of nibbles (weights 0–15 low, 16–31 high), w = d·(q − 8)
/// (18 bytes).
pub const TK_WEIGHTS_Q4_0: tk_weight_format = 4;
/// GGUF / llama.cpp Q4_1 blocks: per 32 weights an f16 scale `d`, an f16
/// minimum `m` and 16 bytes of nibbles (as Q4_0), w = d·q + m (20 bytes).
pub const TK_WEIGHTS_Q4_1: tk_weight_format = 5;

/// How a k×n weight matrix is stored (one of the `TK_LAYOUT_*` values).
pub type tk_weight_layout = i32;
/// `[k, n]` row-major: weight (p, j) at element `p·n + j`.
pub const TK_LAYOUT_IN_OUT: tk_weight_layout = 0;
/// `[n, k]` row-major (PyTorch `nn.Linear`, GGUF): weight (p, j) at
/// element `j·k + p`; the only layout of the block formats.
pub const TK_LAYOUT_OUT_IN: tk_weight_layout = 1;

/// A read-only `[batch, seq, heads, head_dim]` view: element `(b, s, h, d)`
/// at `data[b·strides[0] + s·strides[1] + h·strides[2] + d]` (head_dim is
/// contiguous). All in elements.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tk_heads {
    /// First element.
    pub data: *const f32,
    /// Batch size.
    pub batch: i64,
    /// Sequence length.
    pub seq: i64,
    /// Number of heads.
    pub heads: i64,
    /// Elements per head.
    pub head_dim: i64,
    /// Strides of batch, seq and head.
    pub strides: [i64; 3],
}

/// A writable `[batch, seq, heads, head_dim]` view, as [`tk_heads`];
/// its elements must not overlap one another.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tk_heads_mut {
    /// First element.
    pub data: *mut f32,
    /// Batch size.
    pub batch: i64,
    /// Sequence length.
    pub seq: i64,
    /// Number of heads.
    pub heads: i64,
    /// Elements per head.
    pub head_dim: i64,
    /// Strides of batch, seq and head.
    pub strides: [i64; 3],
}

/// Attention options.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tk_attention_options {
    /// Non-zero: causal mask, bottom-right aligned (query i of q_len sees
    /// keys j ≤ i + kv_len − q_len), as for a KV-cache decode step.
    pub causal: i32,
    /// Non-zero: use `scale`; zero: `1/√head_dim`.
    pub has_scale: i32,
    /// Score scale when `has_scale` is non-zero.
    pub scale: f32,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// An error of this layer: the status and its message.
struct Fail(tk_status, String);

impl From<KernelError> for Fail {
    fn from(e: KernelError) -> Self {
        let st = match e {
            KernelError::IsaUnavailable { .. } => tk_status::TK_ERR_ISA_UNAVAILABLE,
            KernelError::UnknownIsa { .. } => tk_status::TK_ERR_UNKNOWN_ISA,
            KernelError::ShapeMismatch { .. } => tk_status::TK_ERR_SHAPE_MISMATCH,
            KernelError::Empty { .. } => tk_status::TK_ERR_EMPTY,
            KernelError::OutOfBounds { .. } => tk_status::TK_ERR_OUT_OF_BOUNDS,
            KernelError::Overlapping { .. } => tk_status::TK_ERR_OVERLAPPING,
            _ => tk_status::TK_ERR_INVALID_ARGUMENT,
        };
        Fail(st, format!("{}: {e}", e.arg()))
    }
}

/// A view constructor's error, named after the C argument (the Rust views
/// call their buffer `data`).
fn named(arg: &'static str) -> impl FnOnce(KernelError) -> Fail {
    move |e| {
        let Fail(st, msg) = Fail::from(e);
        match msg.strip_prefix("data: ") {
            Some(rest) => Fail(st, format!("{arg}: {rest}")),
            None => Fail(st, msg),
        }
    }
}

fn fail(st: tk_status, arg: &str, msg: impl std::fmt::Display) -> Fail {
    Fail(st, format!("{arg}: {msg}"))
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs one entry point: panics become `TK_PANIC`, errors set the
/// thread's last-error message.
fn ffi(f: impl FnOnce() -> Result<(), Fail>) -> tk_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => tk_status::TK_OK,
        Ok(Err(Fail(st, msg))) => {
            set_last_error(&msg);
            st
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("panic inside transformer-kernels: {what}"));
            tk_status::TK_PANIC
        }
    }
}

/// The level a `tk_isa` names (`None`: detect).
fn isa_arg(raw: tk_isa) -> Result<Option<Isa>, Fail> {
    Ok(match raw {
        TK_ISA_AUTO => None,
        TK_ISA_SCALAR => Some(Isa::Scalar),
        TK_ISA_AVX2 => Some(Isa::Avx2),
        TK_ISA_AVX512 => Some(Isa::Avx512),
        TK_ISA_NEON => Some(Isa::Neon),
        _ => {
            return Err(fail(
                tk_status::TK_ERR_UNKNOWN_ISA,
                "cfg.isa",
                format!("{raw} is not a TK_ISA_* value"),
            ));
        }
    })
}

fn from_isa(isa: Isa) -> tk_isa {
    match isa {
        Isa::Scalar => TK_ISA_SCALAR,
        Isa::Avx2 => TK_ISA_AVX2,
        Isa::Avx512 => TK_ISA_AVX512,
        Isa::Neon => TK_ISA_NEON,
    }
}

fn gelu_arg(raw: tk_gelu) -> Result<GeluKind, Fail> {
    match raw {
        TK_GELU_ERF => Ok(GeluKind::Erf),
        TK_GELU_TANH => Ok(GeluKind::Tanh),
        _ => Err(fail(
            tk_status::TK_ERR_INVALID_ARGUMENT,
            "gelu",
            format!("{raw} is not a TK_GELU_* value"),
        )),
    }
}

/// `TK_ISA_AUTO`, resolved on the first call of the process (detection
/// and the `TK_ISA` variable are read once, not on every call).
fn auto_isa() -> Isa {
    static AUTO: OnceLock<Isa> = OnceLock::new();
    *AUTO.get_or_init(Isa::detect)
}

/// The Rust config of a C one.
fn config(cfg: tk_config) -> Result<Config, Fail> {
    let isa = match isa_arg(cfg.isa)? {
        Some(i) => i,
        None => auto_isa(),
    };
    let parallelism = match cfg.threads {
        t if t < 0 => {
            return Err(fail(
                tk_status::TK_ERR_INVALID_ARGUMENT,
                "cfg.threads",
                format!("{t} threads: must be 0 (every core), 1 (serial) or more"),
            ));
        }
        1 => Parallelism::Serial,
        t => Parallelism::Threads(t as usize),
    };
    Ok(Config { isa, parallelism })
}

fn dim(arg: &'static str, v: i64) -> Result<usize, Fail> {
    usize::try_from(v).map_err(|_| {
        fail(
            tk_status::TK_ERR_INVALID_ARGUMENT,
            arg,
            format!("{v} is negative (sizes and strides are elements, ≥ 0)"),
        )
    })
}

/// Number of elements from the first to the last one a strided view
/// reaches (0 if it has none): `1 + Σ (n_i − 1)·s_i`.
fn extent(arg: &'static str, dims: &[(usize, usize)]) -> Result<usize, Fail> {
    if dims.iter().any(|&(n, _)| n == 0) {
        return Ok(0);
    }
    let mut last = 0usize;
    for &(n, s) in dims {
        last = (n - 1)
            .checked_mul(s)
            .and_then(|o| o.checked_add(last))
            .ok_or_else(|| fail(tk_status::TK_ERR_OUT_OF_BOUNDS, arg, "extent overflows"))?;
    }
    last.checked_add(1)
        .filter(|&l| l <= isize::MAX as usize / 4)
        .ok_or_else(|| fail(tk_status::TK_ERR_OUT_OF_BOUNDS, arg, "extent overflows"))
}

/// A slice of `len` floats at `p`; null is allowed only when `len == 0`.
///
/// # Safety
/// `p` valid for `len` reads for the call (caller of the entry point).
unsafe fn slice<'a>(arg: &'static str, p: *const f32, len: usize) -> Result<&'a [f32], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(fail(tk_status::TK_ERR_NULL_POINTER, arg, "is null"));
    }
    // SAFETY: non-null, valid for `len` elements (caller).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// As [`slice`], writable.
///
/// # Safety
/// `p` valid for `len` reads and writes, and not reachable through any
/// other slice made for this call (checked by [`disjoint`] first).
unsafe fn slice_mut<'a>(arg: &'static str, p: *mut f32, len: usize) -> Result<&'a mut [f32], Fail> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(fail(tk_status::TK_ERR_NULL_POINTER, arg, "is null"));
    }
    // SAFETY: non-null, valid and unaliased for `len` elements (caller).
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Checks that the output range `[out, out + out_len)` shares no memory
/// with any input range.
fn disjoint(
    out_arg: &'static str,
    out: *const f32,
    out_len: usize,
    inputs: &[(&'static str, *const f32, usize)],
) -> Result<(), Fail> {
    if out_len == 0 {
        return Ok(());
    }
    let (o0, o1) = (out as usize, out as usize + out_len * 4);
    for &(arg, p, len) in inputs {
        if len == 0 {
            continue;
        }
        let (i0, i1) = (p as usize, p as usize + len * 4);
        if o0 < i1 && i0 < o1 {
            return Err(fail(
                tk_status::TK_ERR_OVERLAPPING,
                out_arg,
                format!("shares memory with {arg}"),
            ));
        }
    }
    Ok(())
}

/// Sizes and strides of a matrix argument, checked.
fn mat_dims(
    arg: &'static str,
    rows: i64,
    cols: i64,
    rs: i64,
    cs: i64,
) -> Result<(usize, usize, usize, usize, usize), Fail> {
    let (r, c) = (dim(arg, rows)?, dim(arg, cols)?);
    let (rs, cs) = (dim(arg, rs)?, dim(arg, cs)?);
    let len = extent(arg, &[(r, rs), (c, cs)])?;
    Ok((r, c, rs, cs, len))
}

fn format_arg(arg: &'static str, raw: tk_weight_format) -> Result<tk::WeightFormat, Fail> {
    Ok(match raw {
        TK_WEIGHTS_F32 => tk::WeightFormat::F32,
        TK_WEIGHTS_BF16 => tk::WeightFormat::Bf16,
        TK_WEIGHTS_F16 => tk::WeightFormat::F16,
        TK_WEIGHTS_Q8_0 => tk::WeightFormat::Q8_0,
        TK_WEIGHTS_Q4_0 => tk::WeightFormat::Q4_0,
        TK_WEIGHTS_Q4_1 => tk::WeightFormat::Q4_1,
        _ => {
            return Err(fail(
                tk_status::TK_ERR_INVALID_ARGUMENT,
                arg,
                format!("{raw} is not a TK_WEIGHTS_* value"),
            ));
        }
    })
}

/// The epilogue a `tk_epilogue` names, and how many bias floats it reads.
fn epilogue_arg(epilogue: tk_epilogue, gelu: tk_gelu, n: usize) -> Result<(usize, GeluKind), Fail> {
    let len = match epilogue {
        TK_EPILOGUE_NONE => 0,
        TK_EPILOGUE_BIAS | TK_EPILOGUE_BIAS_GELU => n,
        e => {
            return Err(fail(
                tk_status::TK_ERR_INVALID_ARGUMENT,
                "epilogue",
                format!("{e} is not a TK_EPILOGUE_* value"),
            ));
        }
    };
    let kind = if epilogue == TK_EPILOGUE_BIAS_GELU {
        gelu_arg(gelu)?
    } else {
        GeluKind::Erf
    };
    Ok((len, kind))
}

fn epilogue_of(epilogue: tk_epilogue, bias: &[f32], kind: GeluKind) -> Epilogue<'_> {
    match epilogue {
        TK_EPILOGUE_NONE => Epilogue::None,
        TK_EPILOGUE_BIAS => Epilogue::Bias(bias),
        _ => Epilogue::BiasGelu(bias, kind),
    }
}

/// `len` bytes at `p`, which must be aligned to `align`; null is allowed
/// only when `len == 0`.
///
/// # Safety
/// `p` valid for `len` byte reads for the call (caller of the entry point).
unsafe fn bytes<'a>(
    arg: &'static str,
    p: *const std::ffi::c_void,
    len: usize,
    align: usize,
) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(fail(tk_status::TK_ERR_NULL_POINTER, arg, "is null"));
    }
    if !(p as usize).is_multiple_of(align) {
        return Err(fail(
            tk_status::TK_ERR_INVALID_ARGUMENT,
            arg,
            format!("is not aligned to {align} bytes"),
        ));
    }
    // SAFETY: non-null, valid for `len` bytes (caller).
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// `len` bytes of `T`s viewed as `T`s (`T` a plain 2- or 4-byte number:
/// every bit pattern is a value).
fn cast<'a, T: Copy>(arg: &'static str, b: &'a [u8]) -> Result<&'a [T], Fail> {
    let sz = std::mem::size_of::<T>();
    if !b.len().is_multiple_of(sz) {
        return Err(fail(
            tk_status::TK_ERR_SHAPE_MISMATCH,
            arg,
            format!(
                "{} bytes is not a whole number of {sz}-byte weights",
                b.len()
            ),
        ));
    }
    if b.is_empty() {
        return Ok(&[]);
    }
    // SAFETY: `b` is aligned to `align_of::<T>()` (checked by `bytes`),
    // holds `len / sz` whole `T`s, and `T` (f32, bf16, f16) accepts every
    // bit pattern.
    Ok(unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<T>(), b.len() / sz) })
}

/// Library version, e.g. `"0.1.0"` (static storage; never free it).
#[unsafe(no_mangle)]
pub extern "C" fn tk_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version this library implements (compare with
/// `TK_ABI_VERSION` from the header you compiled against).
#[unsafe(no_mangle)]
pub extern "C" fn tk_abi_version() -> u32 {
    TK_ABI_VERSION
}

/// The message of the last failed call on this thread (empty if none):
/// `"argument: what is wrong"`. Valid until the next failing call on this
/// thread; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn tk_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The level `TK_ISA_AUTO` stands for: the best ISA this CPU runs, lowered
/// by the `TK_ISA` environment variable (read once per process).
#[unsafe(no_mangle)]
pub extern "C" fn tk_isa_detect() -> tk_isa {
    catch_unwind(|| from_isa(auto_isa())).unwrap_or(TK_ISA_SCALAR)
}

/// 1 if this CPU and build run `isa` (`TK_ISA_AUTO`: always), else 0
/// (also for a value that is no `tk_isa`).
#[unsafe(no_mangle)]
pub extern "C" fn tk_isa_available(isa: tk_isa) -> i32 {
    catch_unwind(|| match isa_arg(isa) {
        Ok(None) => 1,
        Ok(Some(i)) => i32::from(i.is_available()),
        Err(_) => 0,
    })
    .unwrap_or(0)
}

/// `C ← epilogue(alpha·A·B + beta·C)`, BLAS-like, any strides.
///
/// A is m×k (element (i, p) at `a[i·rsa + p·csa]`), B k×n, C m×n; strides
/// in elements. `epilogue` is a `tk_epilogue`; `bias` (n floats, contiguous)
/// is read for `TK_EPILOGUE_BIAS` and `TK_EPILOGUE_BIAS_GELU` (may be null
/// otherwise); `gelu` is a `tk_gelu`, read for `TK_EPILOGUE_BIAS_GELU`.
/// `beta = 0` never reads C. Accuracy as the Rust `matmul`: within
/// `2·k·ε·Σ|a||b|` per element, plus the GELU's own bound.
///
/// # Safety
/// Each pointer valid for the elements its shape and strides reach.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tk_matmul_f32(
    cfg: tk_config,
    m: i64,
    n: i64,
    k: i64,
    alpha: f32,
    a: *const f32,
    rsa: i64,
    csa: i64,
    b: *const f32,
    rsb: i64,
    csb: i64,
    beta: f32,
    c: *mut f32,
    rsc: i64,
    csc: i64,
    epilogue: tk_epilogue,
    bias: *const f32,
    gelu: tk_gelu,
) -> tk_status {
    ffi(|| {
        let cfg = config(cfg)?;
        let (m_, k_, rsa, csa, alen) = mat_dims("a", m, k, rsa, csa)?;
        let (_, n_, rsb, csb, blen) = mat_dims("b", k, n, rsb, csb)?;
        let (_, _, rsc, csc, clen) = mat_dims("c", m, n, rsc, csc)?;
        let (blen_bias, kind) = epilogue_arg(epilogue, gelu, n_)?;
        disjoint(
            "c",
            c,
            clen,
            &[("a", a, alen), ("b", b, blen), ("bias", bias, blen_bias)],
        )?;
        // SAFETY: each pointer is valid for the extent of its view (the
        // caller's contract); C overlaps none of the inputs (checked).
        let (av, bv, cv, biasv) = unsafe {
            (
                slice("a", a, alen)?,
                slice("b", b, blen)?,
                slice_mut("c", c, clen)?,
                slice("bias", bias, blen_bias)?,
            )
        };
        let av = MatRef::new(av, m_, k_, rsa, csa).map_err(named("a"))?;
        let bv = MatRef::new(bv, k_, n_, rsb, csb).map_err(named("b"))?;
        let cv = MatMut::new(cv, m_, n_, rsc, csc).map_err(named("c"))?;
        tk::matmul(
            cv,
            av,
            bv,
            alpha,
            beta,
            epilogue_of(epilogue, biasv, kind),
            &cfg,
        )?;
        Ok(())
    })
}

/// Bytes a k×n weight matrix takes in `format` (`*out`); for the block
/// formats k must be a multiple of 32.
///
/// # Safety
/// `out` valid for one `int64_t` write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tk_weight_bytes(
    format: tk_weight_format,
    k: i64,
    n: i64,
    out: *mut i64,
) -> tk_status {
    ffi(|| {
        let f = format_arg("format", format)?;
        let (k, n) = (dim("k", k)?, dim("n", n)?);
        if f.is_quantized() && !k.is_multiple_of(32) {
            return Err(fail(
                tk_status::TK_ERR_SHAPE_MISMATCH,
                "k",
                format!("k = {k} is not a multiple of the 32-weight block"),
            ));
        }
        let b = k
            .checked_mul(n)
            .and_then(|c| c.checked_mul(4))
            .filter(|&b| b <= i64::MAX as usize)
            .map(|_| f.bytes(k * n))
            .ok_or_else(|| fail(tk_status::TK_ERR_OUT_OF_BOUNDS, "k", "k·n overflows"))?;
        if out.is_null() {
            return Err(fail(tk_status::TK_ERR_NULL_POINTER, "out", "is null"));
        }
        // SAFETY: non-null, valid for one write (caller).
        unsafe { out.write(b as i64) };
        Ok(())
    })
}

/// Converts `count` floats to `format` in `out` (`out_bytes` long, exactly
/// what `count` weights take): bf16/f16 round to nearest even; Q8_0/Q4_0
/// quantize each run of 32 with llama.cpp's rounding (count a multiple of
/// 32, every value finite). For a `TK_LAYOUT_OUT_IN` block matrix, pass
/// the `[n, k]` rows. `TK_WEIGHTS_F32` copies. `out` needs no alignment.
///
/// # Safety
/// `x` valid for `count` floats, `out` for `out_bytes` byte writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tk_quantize_f32(
    format: tk_weight_format,
    x: *const f32,
    count: i64,
    out: *mut std::ffi::c_void,
    out_bytes: i64,
) -> tk_status {
    ffi(|| {
        let f = format_arg("format", format)?;
        let count = dim("count", count)?;
        let ob = dim("out_bytes", out_bytes)?;
        if count.checked_mul(4).is_none_or(|b| b > isize::MAX as usize) {
            return Err(fail(tk_status::TK_ERR_OUT_OF_BOUNDS, "count", "overflows"));
        }
        if f.is_quantized() && !count.is_multiple_of(32) {
            return Err(fail(
                tk_status::TK_ERR_SHAPE_MISMATCH,
                "count",
                format!("{count} is not a whole number of 32-weight blocks"),
            ));
        }
        if ob != f.bytes(count) {
            return Err(fail(
                tk_status::TK_ERR_SHAPE_MISMATCH,
                "out_bytes",
                format!("{ob}, but {count} weights take {} bytes", f.bytes(count)),
            ));
        }
        // SAFETY: valid for `count` floats (caller).
        let xs = unsafe { slice("x", x, count)? };
        if ob > 0 && out.is_null() {
            return Err(fail(tk_status::TK_ERR_NULL_POINTER, "out", "is null"));
        }
        let (o0, o1) = (out as usize, out as usize + ob);
        let (x0, x1) = (x as usize, x as usize + 4 * count);
        if ob > 0 && count > 0 && o0 < x1 && x0 < o1 {
            return Err(fail(
                tk_status::TK_ERR_OVERLAPPING,
                "out",
                "shares memory with x",
            ));
        }
        let bytes: Vec<u8> = match f {
            tk::WeightFormat::F32 => xs.iter().flat_map(|v| v.to_ne_bytes()).collect(),
            tk::WeightFormat::Bf16 => xs
                .iter()
                .flat_map(|&v| tk::bf16::from_f32(v).to_bits().to_ne_bytes())
                .collect(),
            tk::WeightFormat::F16 => xs
                .iter()
                .flat_map(|&v| tk::f16::from_f32(v).to_bits().to_ne_bytes())
                .collect(),
            tk::WeightFormat::Q8_0 => {
                tk::quant::Block::as_bytes(&tk::quantize_q8_0(xs).map_err(named("x"))?).to_vec()
            }
            tk::WeightFormat::Q4_0 => {
                tk::quant::Block::as_bytes(&tk::quantize_q4_0(xs).map_err(named("x"))?).to_vec()
            }
            tk::WeightFormat::Q4_1 => {
                tk::quant::Block::as_bytes(&tk::quantize_q4_1(xs).map_err(named("x"))?).to_vec()
            }
        };
        debug_assert_eq!(bytes.len(), ob);
        if ob > 0 {
            // SAFETY: `out` is valid for `ob` byte writes (caller) and does
            // not overlap `x` (checked); `bytes` has exactly `ob` bytes.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast::<u8>(), ob) };
        }
        Ok(())
    })
}

/// The values of `count` weights stored in `format` at `w` (`w_bytes`
/// long), as floats in `out` (exact: every format widens to f32 without
/// rounding). `w` aligned to 2 bytes (4 for `TK_WEIGHTS_F32`).
///
/// # Safety
/// `w` valid for `w_bytes` byte reads, `out` for `count` float writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tk_dequantize_f32(
    format: tk_weight_format,
    w: *const std::ffi::c_void,
    w_bytes: i64,
    out: *mut f32,
    count: i64,
) -> tk_status {
    ffi(|| {
        let f = format_arg("format", format)?;
        let count = dim("count", count)?;
        let wb = dim("w_bytes", w_bytes)?;
        if count.checked_mul(4).is_none_or(|b| b > isize::MAX as usize) {
            return Err(fail(tk_status::TK_ERR_OUT_OF_BOUNDS, "count", "overflows"));
        }
        if f.is_quantized() && !count.is_multiple_of(32) {
            return Err(fail(
                tk_status::TK_ERR_SHAPE_MISMATCH,
                "count",
                format!("{count} is not a whole number of 32-weight blocks"),
            ));
        }
        if wb != f.bytes(count) {
            return Err(fail(
                tk_status::TK_ERR_SHAPE_MISMATCH,
                "w_bytes",
                format!("{wb}, but {count} weights take {} bytes", f.bytes(count)),
            ));
        }
        let align = if f == tk::WeightFormat::F32 { 4 } else { 2 };
        // SAFETY: valid for `wb` bytes (caller).
        let b = unsafe { bytes("w", w, wb, align)? };
        disjoint("out", out, count, &[("w", w.cast(), wb.div_ceil(4))])?;
        let vals: Vec<f32> = match f {
            tk::WeightFormat::F32 => cast::<f32>("w_bytes", b)?.to_vec(),
            tk::WeightFormat::Bf16 => cast::<tk::bf16>("w_bytes", b)?
                .iter()
                .map(|v| v.to_f32())
                .collect(),
            tk::WeightFormat::F16 => cast::<tk::f16>("w_bytes", b)?
                .iter()
                .map(|v| v.to_f32())
                .collect(),
            tk::WeightFormat::Q8_0 => tk::quant::dequantize(
                <tk::BlockQ8_0 as tk::quant::Block>::from_bytes(b).map_err(named("w"))?,
            ),
            tk::WeightFormat::Q4_0 => tk::quant::dequantize(
                <tk::BlockQ4_0 as tk::quant::Block>::from_bytes(b).map_err(named("w"))?,
            ),
            tk::WeightFormat::Q4_1 => tk::quant::dequantize(
                <tk::BlockQ4_1 as tk::quant::Block>::from_bytes(b).map_err(named("w"))?,
            ),
        };
        // SAFETY: valid for `count` writes (caller), no overlap with `w`
        // (checked).
        let o = unsafe { slice_mut("out", out, count)? };
        o.copy_from_slice(&vals);
        Ok(())
    })
}

/// `C ← epilogue(alpha·A·W + beta·C)` with A in f32 (any strides) and the
/// k×n weights W in `format` and `layout`, `w_bytes` long (exactly what
/// the shape takes, [`tk_weight_bytes`]), aligned to 2 bytes (4 for f32):
/// the bytes of a GGUF tensor can be passed as they are (Q8_0/Q4_0 need
/// `TK_LAYOUT_OUT_IN` and k a multiple of 32). Activations and
/// accumulation stay f32: the result is the f32 matmul on the weights'
/// exact values, within its bound. Decode (m ≤ 8 with `[n, k]` weights)
/// streams the weights once, widening them in registers.
///
/// # Safety
/// Each pointer valid for the elements its shape and strides reach; `w`
/// for `w_bytes` bytes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tk_matmul_weights(
    cfg: tk_config,
    m: i64,
    n: i64,
    k: i64,
    alpha: f32,
    a: *const f32,
    rsa: i64,
    csa: i64,
    format: tk_weight_format,
    layout: tk_weight_layout,
    w: *const std::ffi::c_void,
    w_bytes: i64,
    beta: f32,
    c: *mut f32,
    rsc: i64,
    csc: i64,
    epilogue: tk_epilogue,
    bias: *const f32,
    gelu: tk_gelu,
) -> tk_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        matmul_weights_c(
            false, cfg, m, n, k, alpha, a, rsa, csa, format, layout, w, w_bytes, beta, c, rsc, csc,
            epilogue, bias, gelu,
        )
    }
}

/// The opt-in int8 mode (Rust `matmul_weights_int8`): as
/// [`tk_matmul_weights`] with Q8_0, Q4_0 or Q4_1 weights (any other format is
/// `TK_ERR_INVALID_ARGUMENT` naming `w`), but each row of A is first
/// quantized per 32 along k to int8 with an f32 scale (llama.cpp's Q8_0
/// rounding) and the blocks are multiplied as integers — AVX-512 VNNI where
/// the CPU has it and the level is `TK_ISA_AVX512` (about 2× the f32
/// product's rate in prefill here), AVX2 `vpmaddubsw` under `TK_ISA_AVX2`,
/// exact portable integer code elsewhere (slow). A NaN or infinite activation is `TK_ERR_INVALID_ARGUMENT`
/// naming `a`. The result differs from [`tk_matmul_weights`] by the
/// quantization of A: at most `Σ_blocks (d_a/2)·Σ|w|` per element.
///
/// # Safety
/// As [`tk_matmul_weights`].
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tk_matmul_weights_int8(
    cfg: tk_config,
    m: i64,
    n: i64,
    k: i64,
    alpha: f32,
    a: *const f32,
    rsa: i64,
    csa: i64,
    format: tk_weight_format,
    layout: tk_weight_layout,
    w: *const std::ffi::c_void,
    w_bytes: i64,
    beta: f32,
    c: *mut f32,
    rsc: i64,
    csc: i64,
    epilogue: tk_epilogue,
    bias: *const f32,
    gelu: tk_gelu,
) -> tk_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        matmul_weights_c(
            true, cfg, m, n, k, alpha, a, rsa, csa, format, layout, w, w_bytes, beta, c, rsc, csc,
            epilogue, bias, gelu,
        )
    }
}

/// The body of [`tk_matmul_weights`] and [`tk_matmul_weights_int8`].
///
/// # Safety
/// As [`tk_matmul_weights`].
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_weights_c(
    int8: bool,
    cfg: tk_config,
    m: i64,
    n: i64,
    k: i64,
    alpha: f32,
    a: *const f32,
    rsa: i64,
    csa: i64,
    format: tk_weight_format,
    layout: tk_weight_layout,
    w: *const std::ffi::c_void,
    w_bytes: i64,
    beta: f32,
    c: *mut f32,
    rsc: i64,
    csc: i64,
    epilogue: tk_epilogue,
    bias: *const f32,
    gelu: tk_gelu,
) -> tk_status {
    ffi(|| {
        let cfg = config(cfg)?;
        let f = format_arg("format", format)?;
        let wl = match layout {
            TK_LAYOUT_IN_OUT => tk::WeightLayout::InOut,
            TK_LAYOUT_OUT_IN => tk::WeightLayout::OutIn,
            l => {
                return Err(fail(
                    tk_status::TK_ERR_INVALID_ARGUMENT,
                    "layout",
                    format!("{l} is not a TK_LAYOUT_* value"),
                ));
            }
        };
        if f.is_quantized() && wl != tk::WeightLayout::OutIn {
            return Err(fail(
                tk_status::TK_ERR_INVALID_ARGUMENT,
                "layout",
                "the block formats are stored [n, k] (TK_LAYOUT_OUT_IN)",
            ));
        }
        let (m_, k_, rsa, csa, alen) = mat_dims("a", m, k, rsa, csa)?;
        let n_ = dim("n", n)?;
        let (_, _, rsc, csc, clen) = mat_dims("c", m, n, rsc, csc)?;
        let wb = dim("w_bytes", w_bytes)?;
        let (blen_bias, kind) = epilogue_arg(epilogue, gelu, n_)?;
        disjoint(
            "c",
            c,
            clen,
            &[
                ("a", a, alen),
                ("w", w.cast(), wb.div_ceil(4)),
                ("bias", bias, blen_bias),
            ],
        )?;
        let align = if f == tk::WeightFormat::F32 { 4 } else { 2 };
        // SAFETY: each pointer is valid for the extent of its view (the
        // caller's contract); C overlaps none of the inputs (checked).
        let (av, wbytes, cv, biasv) = unsafe {
            (
                slice("a", a, alen)?,
                bytes("w", w, wb, align)?,
                slice_mut("c", c, clen)?,
                slice("bias", bias, blen_bias)?,
            )
        };
        let av = MatRef::new(av, m_, k_, rsa, csa).map_err(named("a"))?;
        let cv = MatMut::new(cv, m_, n_, rsc, csc).map_err(named("c"))?;
        let wv = match f {
            tk::WeightFormat::F32 => {
                let d = cast::<f32>("w_bytes", wbytes)?;
                let mv = match wl {
                    tk::WeightLayout::InOut => MatRef::row_major(d, k_, n_),
                    tk::WeightLayout::OutIn => MatRef::row_major(d, n_, k_).map(|v| v.t()),
                };
                tk::WeightsRef::f32(mv.map_err(named("w"))?)
            }
            tk::WeightFormat::Bf16 => {
                tk::WeightsRef::bf16(cast("w_bytes", wbytes)?, k_, n_, wl).map_err(named("w"))?
            }
            tk::WeightFormat::F16 => {
                tk::WeightsRef::f16(cast("w_bytes", wbytes)?, k_, n_, wl).map_err(named("w"))?
            }
            tk::WeightFormat::Q8_0 => tk::WeightsRef::q8_0(
                <tk::BlockQ8_0 as tk::quant::Block>::from_bytes(wbytes).map_err(named("w"))?,
                k_,
                n_,
            )
            .map_err(named("w"))?,
            tk::WeightFormat::Q4_0 => tk::WeightsRef::q4_0(
                <tk::BlockQ4_0 as tk::quant::Block>::from_bytes(wbytes).map_err(named("w"))?,
                k_,
                n_,
            )
            .map_err(named("w"))?,
            tk::WeightFormat::Q4_1 => tk::WeightsRef::q4_1(
                <tk::BlockQ4_1 as tk::quant::Block>::from_bytes(wbytes).map_err(named("w"))?,
                k_,
                n_,
            )
            .map_err(named("w"))?,
        };
        let run = if int8 {
            tk::matmul_weights_int8
        } else {
            tk::matmul_weights
        };
        run(
            cv,
            av,
            wv,
            alpha,
            beta,
            epilogue_of(epilogue, biasv, kind),
            &cfg,
        )
        .map_err(named("w"))?;
        Ok(())
    })
}

/// Sizes of a heads view, checked: (batch, seq, heads, dim, strides, len).
fn heads_dims(
    arg: &'static str,
    batch: i64,
    seq: i64,
    heads: i64,
    head_dim: i64,
    strides: [i64; 3],
) -> Result<([usize; 4], [usize; 3], usize), Fail> {
    let d = [
        dim(arg, batch)?,
        dim(arg, seq)?,
        dim(arg, heads)?,
        dim(arg, head_dim)?,
    ];
    let s = [
        dim(arg, strides[0])?,
        dim(arg, strides[1])?,
        dim(arg, strides[2])?,
    ];
    let len = extent(arg, &[(d[0], s[0]), (d[1], s[1]), (d[2], s[2]), (d[3], 1)])?;
    Ok((d, s, len))
}

/// `out = softmax(scale·q·kᵀ + mask)·v` per batch and head, flash-style
/// (memory O(N), the N×N scores never exist).
///
/// `q` and `out` are `[B, q_len, H, D]`, `k` and `v` `[B, kv_len, H_kv, D]`
/// with `H_kv` dividing `H` (grouped-query attention: query head h reads KV
/// head `h / (H / H_kv)`). Any strides (a fused QKV buffer, BSHD, BHSD).
/// `lse`, if not null, receives each row's log-sum-exp of its scaled,
/// masked scores, `[B, H, q_len]` row-major. A decode step is `q_len = 1`
/// against the whole cache with `causal` set. Accuracy as the Rust
/// `attention`.
///
/// # Safety
/// Each view's `data` valid for the elements its shape and strides reach;
/// `lse` null or valid for `B·H·q_len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tk_attention_f32(
    cfg: tk_config,
    q: tk_heads,
    k: tk_heads,
    v: tk_heads,
    out: tk_heads_mut,
    opts: tk_attention_options,
    lse: *mut f32,
) -> tk_status {
    ffi(|| {
        let cfg = config(cfg)?;
        let (qd, qs, qlen) = heads_dims("q", q.batch, q.seq, q.heads, q.head_dim, q.strides)?;
        let (kd, ks, klen) = heads_dims("k", k.batch, k.seq, k.heads, k.head_dim, k.strides)?;
        let (vd, vs, vlen) = heads_dims("v", v.batch, v.seq, v.heads, v.head_dim, v.strides)?;
        let (od, os, olen) = heads_dims(
            "out",
            out.batch,
            out.seq,
            out.heads,
            out.head_dim,
            out.strides,
        )?;
        let lse_len = if lse.is_null() {
            0
        } else {
            qd[0].saturating_mul(qd[2]).saturating_mul(qd[1])
        };
        let inputs = [
            ("q", q.data, qlen),
            ("k", k.data, klen),
            ("v", v.data, vlen),
        ];
        disjoint("out", out.data, olen, &inputs)?;
        disjoint("lse", lse, lse_len, &inputs)?;
        disjoint("lse", lse, lse_len, &[("out", out.data, olen)])?;
        let scale = if opts.has_scale != 0 {
            Some(opts.scale)
        } else {
            None
        };
        let o = AttentionOptions {
            causal: opts.causal != 0,
            scale,
        };
        // SAFETY: each pointer is valid for its view's extent (caller);
        // the writable ranges overlap nothing else (checked above).
        unsafe {
            let qv = HeadsRef::strided(slice("q", q.data, qlen)?, qd[0], qd[1], qd[2], qd[3], qs)
                .map_err(named("q"))?;
            let kv = HeadsRef::strided(slice("k", k.data, klen)?, kd[0], kd[1], kd[2], kd[3], ks)
                .map_err(named("k"))?;
            let vv = HeadsRef::strided(slice("v", v.data, vlen)?, vd[0], vd[1], vd[2], vd[3], vs)
                .map_err(named("v"))?;
            let ov = HeadsMut::strided(
                slice_mut("out", out.data, olen)?,
                od[0],
                od[1],
                od[2],
                od[3],
                os,
            )
            .map_err(named("out"))?;
            if lse.is_null() {
                tk::attention(ov, qv, kv, vv, &o, &cfg)?;
            } else {
                let l = slice_mut("lse", lse, lse_len)?;
                tk::attention_with_lse(ov, qv, kv, vv, &o, l, &cfg)?;
            }
        }
        Ok(())
    })
}

/// An element-wise call on `len` floats that may run in place: `out == x`
/// is allowed, any other overlap is `TK_ERR_OVERLAPPING`.
///
/// # Safety
/// `x` and `out` valid for `len` floats; `extra` ranges valid as given.
unsafe fn elementwise(
    x: *const f32,
    out: *mut f32,
    len: usize,
    extra: &[(&'static str, *const f32, usize)],
    run: impl FnOnce(Option<&[f32]>, &mut [f32]) -> Result<(), KernelError>,
) -> Result<(), Fail> {
    if std::ptr::eq(x, out) {
        disjoint("out", out, len, extra)?;
        // SAFETY: valid for len (caller); in place, one slice.
        let o = unsafe { slice_mut("out", out, len)? };
        return Ok(run(None, o)?);
    }
    let mut inputs = vec![("x", x, len)];
    inputs.extend_from_slice(extra);
    disjoint("out", out, len, &inputs)?;
    // SAFETY: valid for len (caller); out overlaps no input (checked).
    let (xs, o) = unsafe { (slice("x", x, len)?, slice_mut("out", out, len)?) };
    Ok(run(Some(xs), o)?)
}

fn rows_cols(rows: i64, cols: i64) -> Result<(usize, usize, usize), Fail> {
    let (r, c) = (dim("rows", rows)?, dim("cols", cols)?);
    let len = r
        .checked_mul(c)
        .filter(|&l| l <= isize::MAX as usize / 4)
        .ok_or_else(|| {
            fail(
                tk_status::TK_ERR_OUT_OF_BOUNDS,
                "rows",
                "rows·cols overflows",
            )
        })?;
    Ok((r, c, len))
}

/// `out[r][c] = gelu(x[r][c] + bias[c])` for row-major `x` of `rows × cols`
/// (`bias`: `cols` floats), in one pass. `out == x` runs in place.
/// Accuracy: 4 ULP + 1e-7 of the exact formula of `gelu` (a `tk_gelu`).
///
/// # Safety
/// `x`, `out` valid for `rows·cols` floats, `bias` for `cols`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tk_bias_gelu_f32(
    cfg: tk_config,
    x: *const f32,
    bias: *const f32,
    out: *mut f32,
    rows: i64,
    cols: i64,
    gelu: tk_gelu,
) -> tk_status {
    ffi(|| {
        let cfg = config(cfg)?;
        let kind = gelu_arg(gelu)?;
        let (_, c, len) = rows_cols(rows, cols)?;
        // SAFETY: bias valid for cols floats (caller).
        let b = unsafe { slice("bias", bias, c)? };
        // SAFETY: x and out valid for len floats (caller).
        unsafe {
            elementwise(x, out, len, &[("bias", bias, c)], |x, o| match x {
                Some(x) => tk::bias_gelu(x, b, o, kind, &cfg),
                None => tk::bias_gelu_inplace(o, b, kind, &cfg),
            })
        }
    })
}

/// `out[r][c] = x[r][c] + bias[c]` for row-major `x` of `rows × cols`.
/// `out` must not overlap `x` (there is no in-place form).
///
/// # Safety
/// As [`tk_bias_gelu_f32`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tk_add_bias_f32(
    cfg: tk_config,
    x: *const f32,
    bias: *const f32,
    out: *mut f32,
    rows: i64,
    cols: i64,
) -> tk_status {
    ffi(|| {
        let cfg = config(cfg)?;
        let (_, c, len) = rows_cols(rows, cols)?;
        disjoint("out", out, len, &[("x", x, len), ("bias", bias, c)])?;
        // SAFETY: valid for their lengths (caller); out overlaps no input
        // (checked).
        let (xs, b, o) = unsafe {
            (
                slice("x", x, len)?,
                slice("bias", bias, c)?,
                slice_mut("out", out, len)?,
            )
        };
        Ok(tk::add_bias(xs, b, o, &cfg)?)
    })
}

/// `out[i] = gelu(x[i])` for `n` floats. `out == x` runs in place.
///
/// # Safety
/// `x`, `out` valid for `n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tk_gelu_f32(
    cfg: tk_config,
    x: *const f32,
    out: *mut f32,
    n: i64,
    gelu: tk_gelu,
) -> tk_status {
    ffi(|| {
        let cfg = config(cfg)?;
        let kind = gelu_arg(gelu)?;
        let len = dim("n", n)?;
        // SAFETY: x and out valid for n floats (caller).
        unsafe {
            elementwise(x, out, len, &[], |x, o| match x {
                Some(x) => tk::gelu(x, o, kind, &cfg),
                None => tk::gelu_inplace(o, kind, &cfg),
            })
        }
    })
}

/// Layer norm of each row of row-major `x` (`rows × cols`):
/// `out = (x − mean)/√(var + eps)·gamma + beta`, `gamma` and `beta` of
/// `cols` floats. `out == x` runs in place.
///
/// # Safety
/// `x`, `out` valid for `rows·cols` floats, `gamma`, `beta` for `cols`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tk_layer_norm_f32(
    cfg: tk_config,
    x: *const f32,
    gamma: *const f32,
    beta: *const f32,
    out: *mut f32,
    rows: i64,
    cols: i64,
    eps: f32,
) -> tk_status {
    ffi(|| {
        let cfg = config(cfg)?;
        let (_, c, len) = rows_cols(rows, cols)?;
        // SAFETY: gamma and beta valid for cols floats (caller).
        let (g, b) = unsafe { (slice("gamma", gamma, c)?, slice("beta", beta, c)?) };
        let extra = [("gamma", gamma, c), ("beta", beta, c)];
        // SAFETY: x and out valid for len floats (caller).
        unsafe {
            elementwise(x, out, len, &extra, |x, o| match x {
                Some(x) => tk::layer_norm(x, g, b, o, eps, &cfg),
                None => tk::layer_norm_inplace(o, g, b, eps, &cfg),
            })
        }
    })
}

/// RMS norm of each row of row-major `x` (`rows × cols`):
/// `out = x/√(mean(x²) + eps)·gamma`. `out == x` runs in place.
///
/// # Safety
/// `x`, `out` valid for `rows·cols` floats, `gamma` for `cols`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tk_rms_norm_f32(
    cfg: tk_config,
    x: *const f32,
    gamma: *const f32,
    out: *mut f32,
    rows: i64,
    cols: i64,
    eps: f32,
) -> tk_status {
    ffi(|| {
        let cfg = config(cfg)?;
        let (_, c, len) = rows_cols(rows, cols)?;
        // SAFETY: gamma valid for cols floats (caller).
        let g = unsafe { slice("gamma", gamma, c)? };
        // SAFETY: x and out valid for len floats (caller).
        unsafe {
            elementwise(x, out, len, &[("gamma", gamma, c)], |x, o| match x {
                Some(x) => tk::rms_norm(x, g, o, eps, &cfg),
                None => tk::rms_norm_inplace(o, g, eps, &cfg),
            })
        }
    })
}

/// `out[i] = f(x[i])` for `n` floats, `f` a `TK_MATH_*` value (the crate's
/// vector exp, erf, erfc, tanh and GELUs, with the bounds stated at each
/// constant). `out` must not overlap `x`.
///
/// # Safety
/// `x`, `out` valid for `n` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tk_map_f32(
    cfg: tk_config,
    f: tk_math_fn,
    x: *const f32,
    out: *mut f32,
    n: i64,
) -> tk_status {
    ffi(|| {
        let cfg = config(cfg)?;
        let f = match f {
            TK_MATH_EXP => MathFn::Exp,
            TK_MATH_ERF => MathFn::Erf,
            TK_MATH_ERFC => MathFn::Erfc,
            TK_MATH_TANH => MathFn::Tanh,
            TK_MATH_GELU_ERF => MathFn::GeluErf,
            TK_MATH_GELU_TANH => MathFn::GeluTanh,
            _ => {
                return Err(fail(
                    tk_status::TK_ERR_INVALID_ARGUMENT,
                    "f",
                    format!("{f} is not a TK_MATH_* value"),
                ));
            }
        };
        let len = dim("n", n)?;
        disjoint("out", out, len, &[("x", x, len)])?;
        // SAFETY: valid for n floats (caller); out overlaps x nowhere
        // (checked).
        let (xs, o) = unsafe { (slice("x", x, len)?, slice_mut("out", out, len)?) };
        Ok(tk::map(f, xs, o, &cfg)?)
    })
}
