//! Low-precision weights: bf16, f16 and GGUF-compatible Q8_0 / Q4_0 blocks,
//! and the [`WeightsRef`] view that [`crate::matmul_weights`] multiplies by.
//!
//! Activations stay f32 and products accumulate in f32: a product with
//! low-precision weights equals the f32 product with the dequantized
//! weights, within the f32 matmul's bound. Widening bf16 or f16 to f32 is
//! exact, and so is `d·q` for a quantized block (an f16 scale times an
//! integer of at most 8 bits fits f32's 24-bit significand).
//!
//! ## Block formats (byte for byte as llama.cpp / GGUF store them)
//!
//! | type          | bytes | elements | value of element `e`                          |
//! |---------------|-------|----------|-----------------------------------------------|
//! | [`BlockQ8_0`] | 34    | 32       | `d · qs[e]` (`qs: [i8; 32]`)                   |
//! | [`BlockQ4_0`] | 18    | 32       | `d · (nib(e) − 8)`; `nib(e)` is the low nibble of `qs[e]` for `e < 16`, the high nibble of `qs[e − 16]` otherwise |
//! | [`BlockQ4_1`] | 20    | 32       | `d · nib(e) + m` (nibbles as Q4_0)             |
//!
//! `d` (and Q4_1's `m`) is an IEEE half (`f16`, little-endian). Blocks run along k: a
//! quantized matrix is stored as n rows of k weights (`[out, in]`, as in
//! PyTorch's `nn.Linear` and GGUF), each row `k / 32` blocks.

use crate::error::KernelError;
use crate::matmul::MatRef;
pub use half::{bf16, f16};

pub(crate) mod simd;

/// Elements per quantized block (GGUF's `QK8_0` and `QK4_0`).
pub const QK: usize = 32;

/// How a weight matrix is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightLayout {
    /// Row-major `[in, out]` = `[k, n]`: `y = x·W` (GPT-2's `Conv1D`, JAX).
    #[default]
    InOut,
    /// Row-major `[out, in]` = `[n, k]`: `y = x·Wᵀ` (PyTorch `nn.Linear`,
    /// Hugging Face checkpoints, GGUF). Read in place, never copied.
    OutIn,
}

/// One element type a weight matrix can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// 4-byte IEEE single.
    F32,
    /// bfloat16: the top half of an f32.
    Bf16,
    /// IEEE half.
    F16,
    /// GGUF Q8_0: 32 × i8 and an f16 scale (8.5 bits a weight).
    Q8_0,
    /// GGUF Q4_0: 32 × 4 bits and an f16 scale (4.5 bits a weight).
    Q4_0,
    /// GGUF Q4_1: 32 × 4 bits, an f16 scale and an f16 minimum (5 bits a
    /// weight).
    Q4_1,
}

impl WeightFormat {
    /// Every format.
    pub const ALL: [WeightFormat; 6] = [
        WeightFormat::F32,
        WeightFormat::Bf16,
        WeightFormat::F16,
        WeightFormat::Q8_0,
        WeightFormat::Q4_0,
        WeightFormat::Q4_1,
    ];

    /// Bytes that `count` weights occupy (`count` a multiple of 32 for the
    /// block formats).
    pub fn bytes(self, count: usize) -> usize {
        match self {
            WeightFormat::F32 => count * 4,
            WeightFormat::Bf16 | WeightFormat::F16 => count * 2,
            WeightFormat::Q8_0 => count / QK * size_of::<BlockQ8_0>(),
            WeightFormat::Q4_0 => count / QK * size_of::<BlockQ4_0>(),
            WeightFormat::Q4_1 => count / QK * size_of::<BlockQ4_1>(),
        }
    }

    /// Whether the format is a block format (k a multiple of 32, `[n, k]`).
    pub fn is_quantized(self) -> bool {
        matches!(
            self,
            WeightFormat::Q8_0 | WeightFormat::Q4_0 | WeightFormat::Q4_1
        )
    }
}

impl std::str::FromStr for WeightFormat {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self, KernelError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => WeightFormat::F32,
            "bf16" => WeightFormat::Bf16,
            "f16" => WeightFormat::F16,
            "q8_0" => WeightFormat::Q8_0,
            "q4_0" => WeightFormat::Q4_0,
            "q4_1" => WeightFormat::Q4_1,
            _ => {
                return Err(KernelError::invalid(
                    "format",
                    format!("{s:?} is not one of f32, bf16, f16, q8_0, q4_0, q4_1"),
                ));
            }
        })
    }
}

/// A GGUF Q8_0 block: 32 weights `d · qs[e]`. 34 bytes, alignment 2.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quantized values.
    pub qs: [i8; QK],
}

/// A GGUF Q4_0 block: 32 weights `d · (nibble − 8)`, element `e < 16` in the
/// low nibble of `qs[e]`, element `e ≥ 16` in the high nibble of
/// `qs[e − 16]`. 18 bytes, alignment 2.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}

/// A GGUF Q4_1 block: 32 weights `d · nibble + m`, nibbles ordered as in
/// [`BlockQ4_0`]. 20 bytes, alignment 2.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (the value of nibble 0).
    pub m: f16,
    /// Packed nibbles.
    pub qs: [u8; QK / 2],
}

const _: () = assert!(size_of::<BlockQ4_1>() == 20 && align_of::<BlockQ4_1>() == 2);
const _: () = assert!(size_of::<BlockQ8_0>() == 34 && align_of::<BlockQ8_0>() == 2);
const _: () = assert!(size_of::<BlockQ4_0>() == 18 && align_of::<BlockQ4_0>() == 2);

/// Plain-old-data block types that can be viewed from GGUF bytes.
pub trait Block: Copy + sealed::Sealed + 'static {
    /// The format these blocks encode.
    const FORMAT: WeightFormat;
    /// The block's scale.
    fn scale(&self) -> f16;
    /// Whether the block's parameters (scale, and Q4_1's minimum) are
    /// finite.
    fn is_finite(&self) -> bool {
        self.scale().is_finite()
    }
    /// The 32 weights, as f32 (exact).
    fn dequantize(&self) -> [f32; QK];

    /// Views `bytes` (straight out of a GGUF file) as blocks, without
    /// copying.
    ///
    /// # Errors
    /// [`KernelError::InvalidArgument`] naming `bytes` when its length is not
    /// a whole number of blocks or its address is not 2-byte aligned (GGUF
    /// aligns tensor data to 32 bytes).
    fn from_bytes(bytes: &[u8]) -> Result<&[Self], KernelError> {
        let size = size_of::<Self>();
        if !bytes.len().is_multiple_of(size) {
            return Err(KernelError::invalid(
                "bytes",
                format!(
                    "{} bytes is not a whole number of {size}-byte {:?} blocks",
                    bytes.len(),
                    Self::FORMAT
                ),
            ));
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(align_of::<Self>()) {
            return Err(KernelError::invalid(
                "bytes",
                "block data must be 2-byte aligned",
            ));
        }
        // SAFETY: the blocks are repr(C) plain data with no padding (sizes
        // asserted above) for which every bit pattern is valid; length and
        // alignment were checked; the borrow is carried over.
        Ok(unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / size) })
    }

    /// The blocks' bytes, as GGUF stores them.
    fn as_bytes(blocks: &[Self]) -> &[u8] {
        // SAFETY: plain data without padding; u8 has alignment 1.
        unsafe { core::slice::from_raw_parts(blocks.as_ptr().cast(), size_of_val(blocks)) }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::BlockQ8_0 {}
    impl Sealed for super::BlockQ4_0 {}
    impl Sealed for super::BlockQ4_1 {}
}

impl Block for BlockQ8_0 {
    const FORMAT: WeightFormat = WeightFormat::Q8_0;
    fn scale(&self) -> f16 {
        self.d
    }
    fn dequantize(&self) -> [f32; QK] {
        let d = self.d.to_f32();
        core::array::from_fn(|e| d * f32::from(self.qs[e]))
    }
}

impl Block for BlockQ4_0 {
    const FORMAT: WeightFormat = WeightFormat::Q4_0;
    fn scale(&self) -> f16 {
        self.d
    }
    fn dequantize(&self) -> [f32; QK] {
        let d = self.d.to_f32();
        core::array::from_fn(|e| {
            let b = self.qs[e % 16];
            let nib = if e < 16 { b & 0x0f } else { b >> 4 };
            d * (f32::from(nib) - 8.0)
        })
    }
}

impl Block for BlockQ4_1 {
    const FORMAT: WeightFormat = WeightFormat::Q4_1;
    fn scale(&self) -> f16 {
        self.d
    }
    fn is_finite(&self) -> bool {
        self.d.is_finite() && self.m.is_finite()
    }
    fn dequantize(&self) -> [f32; QK] {
        // d·q is exact (11 × 4 bits); the one rounding is the add of m, as
        // llama.cpp's `d * q + m`.
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        core::array::from_fn(|e| {
            let b = self.qs[e % 16];
            let nib = if e < 16 { b & 0x0f } else { b >> 4 };
            d * f32::from(nib) + m
        })
    }
}

fn check_quantize_input(x: &[f32]) -> Result<(), KernelError> {
    if !x.len().is_multiple_of(QK) {
        return Err(KernelError::shape(
            "x",
            format!(
                "{} values is not a whole number of 32-value blocks",
                x.len()
            ),
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(KernelError::invalid(
            "x",
            format!("x[{i}] = {} is not finite", x[i]),
        ));
    }
    Ok(())
}

fn finite_scale(d: f32) -> Result<f16, KernelError> {
    let h = f16::from_f32(d);
    if h.is_finite() {
        Ok(h)
    } else {
        Err(KernelError::invalid(
            "x",
            format!("a block's scale {d} overflows f16"),
        ))
    }
}

/// Quantizes `x` (a whole number of 32-value blocks, each block 32
/// consecutive values) to Q8_0 exactly as llama.cpp's reference
/// `quantize_row_q8_0_ref` does: `d = max|x| / 127` rounded to f16,
/// `q = round(x / d)` (half away from zero) with `1/d` in f32.
///
/// # Errors
/// [`KernelError::ShapeMismatch`] naming `x` when its length is not a
/// multiple of 32; [`KernelError::InvalidArgument`] naming `x` when a value
/// is NaN or infinite, or a block's scale overflows f16.
pub fn quantize_q8_0(x: &[f32]) -> Result<Vec<BlockQ8_0>, KernelError> {
    check_quantize_input(x)?;
    x.chunks_exact(QK)
        .map(|c| {
            let amax = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            Ok(BlockQ8_0 {
                d: finite_scale(d)?,
                qs: core::array::from_fn(|e| (c[e] * id).round() as i8),
            })
        })
        .collect()
}

/// Quantizes activations for the int8 mode
/// ([`crate::matmul_weights_int8`]): each run of 32 values `x` to 32 `q`
/// (`i8`) and one scale `d` (f32, not rounded to f16): `d = amax / 127`,
/// `q = round(x · (1/d))` (half away from zero, `1/d` in f32) — llama.cpp's
/// Q8_0 rounding with the scale kept in f32, so any finite input has a
/// scale. The value stood for is `d · q`, within `d/2 + 2⁻²³·|x|` of `x`
/// (in a block whose largest magnitude is below 2⁻¹²¹, where `1/d`
/// overflows, every nonzero `q` is ±127: within that magnitude).
///
/// # Errors
/// [`KernelError::ShapeMismatch`] naming `x` when its length is not a
/// multiple of 32 or `q`/`d` have the wrong length;
/// [`KernelError::InvalidArgument`] naming `x` on a NaN or infinite value.
pub fn quantize_activations(x: &[f32], q: &mut [i8], d: &mut [f32]) -> Result<(), KernelError> {
    if !x.len().is_multiple_of(QK) || q.len() != x.len() || d.len() != x.len() / QK {
        return Err(KernelError::shape(
            "x",
            format!(
                "{} values (a multiple of 32 needed) into {} quants and {} scales",
                x.len(),
                q.len(),
                d.len()
            ),
        ));
    }
    // The same results at every level (integer maxima, one correctly
    // rounded product per value): the best one, for the vector loops.
    crate::isa::dispatch(crate::Isa::hardware_best(), QuantizeActivations { x, q, d })?
}

/// [`quantize_activations`] (lengths checked) at a level: plain loops that
/// LLVM vectorizes at the level's width (compiled for the baseline x86-64
/// alone, with a float fold and a saturating float-to-int `as`, they took
/// ~3.7 ns a value, 15% of a 1×4096·4096×512 Q4_0 decode).
struct QuantizeActivations<'a> {
    x: &'a [f32],
    q: &'a mut [i8],
    d: &'a mut [f32],
}

impl pulp::WithSimd for QuantizeActivations<'_> {
    type Output = Result<(), KernelError>;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Result<(), KernelError> {
        quantize_activations_in(self.x, self.q, self.d)
    }
}

/// The loops of [`quantize_activations`]; inlined into a level's code.
#[inline(always)]
pub(crate) fn quantize_activations_in(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
) -> Result<(), KernelError> {
    for ((c, qc), dc) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).zip(d) {
        // |v|'s bits order like |v| (NaN and ±∞ above every finite value),
        // and an integer max is associative, so this vectorizes (a float
        // fold is one dependent chain of 32 adds or maxes).
        let bits = c
            .iter()
            .fold(0u32, |m, &v| m.max(v.to_bits() & 0x7FFF_FFFF));
        if bits >= 0x7F80_0000 {
            let v = c
                .iter()
                .find(|v| !v.is_finite())
                .copied()
                .unwrap_or(f32::NAN);
            return Err(KernelError::invalid("x", format!("{v} is not finite")));
        }
        let amax = f32::from_bits(bits);
        let s = amax / 127.0;
        let id = if s != 0.0 { 1.0 / s } else { 0.0 };
        for (qv, &v) in qc.iter_mut().zip(c) {
            // |v·id| ≤ 127 but for amax < 2⁻¹²¹, where 1/d overflows to ∞:
            // those blocks' nonzero q are ±127, their zeros (0·∞ = NaN) 0.
            *qv = round_to_i8(v * id);
        }
        *dc = s;
    }
    Ok(())
}

/// `y.round()` (half away from zero) clamped to ±127 as an `i8`, NaN as 0,
/// in operations that vectorize (a float-to-int `as` is saturating, which
/// LLVM turns into one scalar conversion and two compares per value): the
/// clamp first (the bounds are integers, so it commutes with rounding),
/// then truncating `y + copysign(0.49999997, y)` (the largest f32 below ½;
/// the sum rounds up to the next integer exactly when |y|'s fraction is
/// ≥ ½), then the integer read from the low bits of `t + 1.5·2²³` (exact:
/// |t| ≤ 127, so the sum lies in [2²³, 2²⁴) where the f32 step is 1).
#[inline(always)]
pub(crate) fn round_to_i8(y: f32) -> i8 {
    let y = if y.is_nan() {
        0.0
    } else {
        y.clamp(-127.0, 127.0)
    };
    let t = (y + f32::from_bits(0x3EFF_FFFF).copysign(y)).trunc();
    ((t + 12_582_912.0).to_bits() as i32 - 0x4B40_0000) as i8
}

/// Quantizes `x` to Q4_0 exactly as llama.cpp's reference
/// `quantize_row_q4_0_ref` does: `d = m / −8` with `m` the value of
/// largest magnitude (its sign kept, the first one on ties), `nib =
/// min(15, trunc(x/d + 8.5))` with `1/d` in f32.
///
/// # Errors
/// As [`quantize_q8_0`].
pub fn quantize_q4_0(x: &[f32]) -> Result<Vec<BlockQ4_0>, KernelError> {
    check_quantize_input(x)?;
    x.chunks_exact(QK)
        .map(|c| {
            let (mut amax, mut max) = (0.0f32, 0.0f32);
            for &v in c {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            // `(int8_t)(x·id + 8.5)` truncates toward zero; `x·id` lies in
            // [−8, 8] (|x| ≤ |m|), so the sum is in [0.5, 16.5].
            let nib = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
            Ok(BlockQ4_0 {
                d: finite_scale(d)?,
                qs: core::array::from_fn(|j| nib(c[j]) | (nib(c[j + 16]) << 4)),
            })
        })
        .collect()
}

/// Quantizes `x` to Q4_1 exactly as llama.cpp's reference
/// `quantize_row_q4_1_ref` does: `m = min x`, `d = (max x − m) / 15`, `nib
/// = min(15, trunc((x − m)/d + 0.5))` with `1/d` in f32; `d` and `m`
/// rounded to f16.
///
/// # Errors
/// As [`quantize_q8_0`] (also when the minimum overflows f16).
pub fn quantize_q4_1(x: &[f32]) -> Result<Vec<BlockQ4_1>, KernelError> {
    check_quantize_input(x)?;
    x.chunks_exact(QK)
        .map(|c| {
            let (min, max) = c
                .iter()
                .fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let nib = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
            Ok(BlockQ4_1 {
                d: finite_scale(d)?,
                m: finite_scale(min)?,
                qs: core::array::from_fn(|j| nib(c[j]) | (nib(c[j + 16]) << 4)),
            })
        })
        .collect()
}

/// The f32 values of `blocks`, 32 per block.
pub fn dequantize<B: Block>(blocks: &[B]) -> Vec<f32> {
    blocks.iter().flat_map(|b| b.dequantize()).collect()
}

/// Where a [`WeightsRef`]'s elements live.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Data<'a> {
    F32(MatRef<'a>),
    Bf16(&'a [bf16], WeightLayout),
    F16(&'a [f16], WeightLayout),
    Q8_0(&'a [BlockQ8_0]),
    Q4_0(&'a [BlockQ4_0]),
    Q4_1(&'a [BlockQ4_1]),
}

/// A read-only k×n weight matrix (the B of `A·B`) in any [`WeightFormat`]:
/// f32 through any strided [`MatRef`]; bf16/f16 contiguous, `[k, n]` or
/// `[n, k]`; Q8_0/Q4_0 as n rows of `k / 32` blocks (`[n, k]`, blocks along
/// k — GGUF's layout). Checked when built: a view's every element is inside
/// its data, and every block scale is finite.
#[derive(Clone, Copy, Debug)]
pub struct WeightsRef<'a> {
    pub(crate) data: Data<'a>,
    k: usize,
    n: usize,
}

fn check_len(arg: &'static str, len: usize, want: usize, what: &str) -> Result<(), KernelError> {
    if len == want {
        Ok(())
    } else {
        Err(KernelError::shape(
            arg,
            format!("data has {len} {what} but the matrix needs {want}"),
        ))
    }
}

fn elems(k: usize, n: usize) -> Result<usize, KernelError> {
    k.checked_mul(n).ok_or_else(|| {
        KernelError::bounds(
            "data",
            format!("a {k}x{n} matrix has more than usize::MAX elements"),
        )
    })
}

fn check_blocks<B: Block>(blocks: &[B], k: usize, n: usize) -> Result<(), KernelError> {
    if !k.is_multiple_of(QK) {
        return Err(KernelError::shape(
            "k",
            format!("k = {k} is not a multiple of the 32-weight block"),
        ));
    }
    check_len("data", blocks.len(), elems(k / QK, n)?, "blocks")?;
    if let Some(i) = blocks.iter().position(|b| !b.is_finite()) {
        return Err(KernelError::invalid(
            "data",
            format!(
                "block {i} (row {}, k {}) has a NaN or infinite scale or minimum",
                i / (k / QK),
                i % (k / QK) * QK,
            ),
        ));
    }
    Ok(())
}

impl<'a> WeightsRef<'a> {
    /// An f32 matrix (any strides).
    pub fn f32(b: MatRef<'a>) -> Self {
        WeightsRef {
            k: b.rows(),
            n: b.cols(),
            data: Data::F32(b),
        }
    }

    /// A k×n bf16 matrix stored contiguously in `layout`.
    ///
    /// # Errors
    /// [`KernelError::ShapeMismatch`] naming `data` when its length is not
    /// `k·n`.
    pub fn bf16(
        data: &'a [bf16],
        k: usize,
        n: usize,
        layout: WeightLayout,
    ) -> Result<Self, KernelError> {
        check_len("data", data.len(), elems(k, n)?, "elements")?;
        Ok(WeightsRef {
            data: Data::Bf16(data, layout),
            k,
            n,
        })
    }

    /// A k×n f16 matrix stored contiguously in `layout`.
    ///
    /// # Errors
    /// As [`WeightsRef::bf16`].
    pub fn f16(
        data: &'a [f16],
        k: usize,
        n: usize,
        layout: WeightLayout,
    ) -> Result<Self, KernelError> {
        check_len("data", data.len(), elems(k, n)?, "elements")?;
        Ok(WeightsRef {
            data: Data::F16(data, layout),
            k,
            n,
        })
    }

    /// A k×n Q8_0 matrix: n rows of `k / 32` blocks. Reads every scale once.
    ///
    /// # Errors
    /// [`KernelError::ShapeMismatch`] naming `k` (not a multiple of 32) or
    /// `data` (not `n·k/32` blocks); [`KernelError::InvalidArgument`] naming
    /// `data` when a scale is NaN or infinite.
    pub fn q8_0(data: &'a [BlockQ8_0], k: usize, n: usize) -> Result<Self, KernelError> {
        check_blocks(data, k, n)?;
        Ok(WeightsRef {
            data: Data::Q8_0(data),
            k,
            n,
        })
    }

    /// A k×n Q4_0 matrix: n rows of `k / 32` blocks. Reads every scale once.
    ///
    /// # Errors
    /// As [`WeightsRef::q8_0`].
    pub fn q4_0(data: &'a [BlockQ4_0], k: usize, n: usize) -> Result<Self, KernelError> {
        check_blocks(data, k, n)?;
        Ok(WeightsRef {
            data: Data::Q4_0(data),
            k,
            n,
        })
    }

    /// A k×n Q4_1 matrix: n rows of `k / 32` blocks. Reads every scale and
    /// minimum once.
    ///
    /// # Errors
    /// As [`WeightsRef::q8_0`].
    pub fn q4_1(data: &'a [BlockQ4_1], k: usize, n: usize) -> Result<Self, KernelError> {
        check_blocks(data, k, n)?;
        Ok(WeightsRef {
            data: Data::Q4_1(data),
            k,
            n,
        })
    }

    /// Rows (the inner dimension of the product).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns (outputs).
    pub fn n(&self) -> usize {
        self.n
    }

    /// The element format.
    pub fn format(&self) -> WeightFormat {
        match self.data {
            Data::F32(_) => WeightFormat::F32,
            Data::Bf16(..) => WeightFormat::Bf16,
            Data::F16(..) => WeightFormat::F16,
            Data::Q8_0(_) => WeightFormat::Q8_0,
            Data::Q4_0(_) => WeightFormat::Q4_0,
            Data::Q4_1(_) => WeightFormat::Q4_1,
        }
    }

    /// How the elements are laid out (`OutIn` for the block formats; for
    /// f32, `OutIn` when columns are contiguous and rows are not).
    pub fn layout(&self) -> WeightLayout {
        match self.data {
            Data::F32(b) if b.row_stride() == 1 && b.col_stride() != 1 => WeightLayout::OutIn,
            Data::F32(_) => WeightLayout::InOut,
            Data::Bf16(_, l) | Data::F16(_, l) => l,
            Data::Q8_0(_) | Data::Q4_0(_) | Data::Q4_1(_) => WeightLayout::OutIn,
        }
    }

    /// Bytes the weights occupy (what a matrix-vector product streams).
    pub fn bytes(&self) -> usize {
        self.format().bytes(self.k * self.n)
    }

    /// Element (p, j) as f32 (`None` outside the matrix).
    pub fn get(&self, p: usize, j: usize) -> Option<f32> {
        if p >= self.k || j >= self.n {
            return None;
        }
        let (k, n) = (self.k, self.n);
        let at = |l: WeightLayout| match l {
            WeightLayout::InOut => p * n + j,
            WeightLayout::OutIn => j * k + p,
        };
        Some(match self.data {
            Data::F32(b) => return b.get(p, j),
            Data::Bf16(d, l) => d[at(l)].to_f32(),
            Data::F16(d, l) => d[at(l)].to_f32(),
            Data::Q8_0(b) => b[j * (k / QK) + p / QK].dequantize()[p % QK],
            Data::Q4_0(b) => b[j * (k / QK) + p / QK].dequantize()[p % QK],
            Data::Q4_1(b) => b[j * (k / QK) + p / QK].dequantize()[p % QK],
        })
    }

    /// The weights as f32 in their stored order: `[n, k]` rows for `OutIn`,
    /// `[k, n]` for `InOut` (f32 views: row-major `[k, n]`).
    pub fn to_f32_stored(&self) -> Vec<f32> {
        match self.data {
            Data::F32(_) => self.to_f32(),
            Data::Bf16(d, _) => d.iter().map(|v| v.to_f32()).collect(),
            Data::F16(d, _) => d.iter().map(|v| v.to_f32()).collect(),
            Data::Q8_0(b) => dequantize(b),
            Data::Q4_0(b) => dequantize(b),
            Data::Q4_1(b) => dequantize(b),
        }
    }

    /// The stored bytes (GGUF's tensor data for the block formats); `None`
    /// for f32 views, which may be strided.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        // SAFETY (each arm): plain data without padding viewed as bytes.
        Some(match self.data {
            Data::F32(_) => return None,
            Data::Bf16(d, _) => unsafe {
                core::slice::from_raw_parts(d.as_ptr().cast(), size_of_val(d))
            },
            Data::F16(d, _) => unsafe {
                core::slice::from_raw_parts(d.as_ptr().cast(), size_of_val(d))
            },
            Data::Q8_0(b) => BlockQ8_0::as_bytes(b),
            Data::Q4_0(b) => BlockQ4_0::as_bytes(b),
            Data::Q4_1(b) => BlockQ4_1::as_bytes(b),
        })
    }

    /// The matrix dequantized to f32, row-major `[k, n]`.
    pub fn to_f32(&self) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        let mut out = vec![0.0f32; k * n];
        let mut put_rows = |rows: &mut dyn Iterator<Item = [f32; QK]>| {
            for (i, blk) in rows.enumerate() {
                let (j, p0) = (i / (k / QK), i % (k / QK) * QK);
                for (e, v) in blk.into_iter().enumerate() {
                    out[(p0 + e) * n + j] = v;
                }
            }
        };
        match self.data {
            Data::Q8_0(b) => put_rows(&mut b.iter().map(Block::dequantize)),
            Data::Q4_0(b) => put_rows(&mut b.iter().map(Block::dequantize)),
            Data::Q4_1(b) => put_rows(&mut b.iter().map(Block::dequantize)),
            _ => {
                for p in 0..k {
                    for j in 0..n {
                        out[p * n + j] = self.get(p, j).unwrap_or(0.0);
                    }
                }
            }
        }
        out
    }

    /// Column `j` (the weights of output j, a stored row for `[n, k]`
    /// layouts — an embedding table's row for token j) as f32 into `out`.
    ///
    /// # Errors
    /// [`KernelError::OutOfBounds`] naming `j` past the columns;
    /// [`KernelError::ShapeMismatch`] naming `out` when it does not hold k
    /// values.
    pub fn column_into(&self, j: usize, out: &mut [f32]) -> Result<(), KernelError> {
        let (k, n) = (self.k, self.n);
        if j >= n {
            return Err(KernelError::bounds("j", format!("column {j} of {n}")));
        }
        check_len("out", out.len(), k, "elements")?;
        let nb = k / QK;
        let put = |out: &mut [f32], blocks: &mut dyn Iterator<Item = [f32; QK]>| {
            for (o, b) in out.chunks_exact_mut(QK).zip(blocks) {
                o.copy_from_slice(&b);
            }
        };
        match self.data {
            Data::Q8_0(b) => put(
                out,
                &mut b[j * nb..(j + 1) * nb].iter().map(Block::dequantize),
            ),
            Data::Q4_0(b) => put(
                out,
                &mut b[j * nb..(j + 1) * nb].iter().map(Block::dequantize),
            ),
            Data::Q4_1(b) => put(
                out,
                &mut b[j * nb..(j + 1) * nb].iter().map(Block::dequantize),
            ),
            _ => {
                for (p, o) in out.iter_mut().enumerate() {
                    *o = self.get(p, j).unwrap_or(0.0);
                }
            }
        }
        Ok(())
    }

    /// A copy of these weights that owns its data (format and orientation
    /// kept; a strided f32 view is copied to row-major `[k, n]`).
    pub fn to_owned(&self) -> OwnedWeights {
        let data = match self.data {
            Data::F32(_) => Owned::F32(self.to_f32()),
            Data::Bf16(d, l) => Owned::Bf16(d.to_vec(), l),
            Data::F16(d, l) => Owned::F16(d.to_vec(), l),
            Data::Q8_0(b) => Owned::Q8_0(b.to_vec()),
            Data::Q4_0(b) => Owned::Q4_0(b.to_vec()),
            Data::Q4_1(b) => Owned::Q4_1(b.to_vec()),
        };
        OwnedWeights {
            data,
            k: self.k,
            n: self.n,
        }
    }
}

impl<'a> From<MatRef<'a>> for WeightsRef<'a> {
    fn from(b: MatRef<'a>) -> Self {
        WeightsRef::f32(b)
    }
}

/// Owned weights in any format, for building test and benchmark matrices
/// (quantizes or rounds an f32 `[k, n]` matrix).
#[derive(Clone, Debug)]
pub struct OwnedWeights {
    data: Owned,
    k: usize,
    n: usize,
}

#[derive(Clone, Debug)]
enum Owned {
    F32(Vec<f32>),
    Bf16(Vec<bf16>, WeightLayout),
    F16(Vec<f16>, WeightLayout),
    Q8_0(Vec<BlockQ8_0>),
    Q4_0(Vec<BlockQ4_0>),
    Q4_1(Vec<BlockQ4_1>),
    /// A view into bytes the handle keeps alive (a memory-mapped file;
    /// built by the GGUF loader only).
    #[cfg_attr(not(feature = "model"), allow(dead_code))]
    Shared {
        /// Holds the bytes alive; never read.
        _keep: std::sync::Arc<dyn core::any::Any + Send + Sync>,
        view: WeightsRef<'static>,
    },
}

impl OwnedWeights {
    /// `w` (row-major `[k, n]` f32) converted to `format`, stored in
    /// `layout` (ignored for f32, which stays `[k, n]`, and for the block
    /// formats, which are `[n, k]`). bf16 and f16 round to nearest even.
    ///
    /// # Errors
    /// [`KernelError::ShapeMismatch`] naming `w` when its length is not
    /// `k·n`, or `k` when a block format gets k not a multiple of 32; the
    /// quantizers' errors.
    pub fn from_f32(
        w: &[f32],
        k: usize,
        n: usize,
        format: WeightFormat,
        layout: WeightLayout,
    ) -> Result<Self, KernelError> {
        check_len("w", w.len(), elems(k, n)?, "elements")?;
        if format.is_quantized() && !k.is_multiple_of(QK) {
            return Err(KernelError::shape(
                "k",
                format!("k = {k} is not a multiple of the 32-weight block"),
            ));
        }
        let ordered = |l: WeightLayout| -> Vec<f32> {
            match l {
                WeightLayout::InOut => w.to_vec(),
                WeightLayout::OutIn => (0..n * k).map(|i| w[(i % k) * n + i / k]).collect(),
            }
        };
        let data = match format {
            WeightFormat::F32 => Owned::F32(w.to_vec()),
            WeightFormat::Bf16 => Owned::Bf16(
                ordered(layout).into_iter().map(bf16::from_f32).collect(),
                layout,
            ),
            WeightFormat::F16 => Owned::F16(
                ordered(layout).into_iter().map(f16::from_f32).collect(),
                layout,
            ),
            WeightFormat::Q8_0 => Owned::Q8_0(quantize_q8_0(&ordered(WeightLayout::OutIn))?),
            WeightFormat::Q4_0 => Owned::Q4_0(quantize_q4_0(&ordered(WeightLayout::OutIn))?),
            WeightFormat::Q4_1 => Owned::Q4_1(quantize_q4_1(&ordered(WeightLayout::OutIn))?),
        };
        Ok(OwnedWeights { data, k, n })
    }

    /// The columns of `parts` side by side (`[k, n₁ + n₂ + …]`) — e.g.
    /// Q, K and V projections fused into one — copying the stored data as
    /// is when every part has the same format and `[n, k]` layout (rows
    /// concatenated, nothing rounded), else through f32 into `format`
    /// (`[n, k]`).
    ///
    /// # Errors
    /// [`KernelError::ShapeMismatch`] naming `parts` when they are none or
    /// their k differ; the conversion's errors.
    pub fn concat_columns(
        parts: &[WeightsRef<'_>],
        format: WeightFormat,
    ) -> Result<Self, KernelError> {
        let Some(first) = parts.first() else {
            return Err(KernelError::shape("parts", "no matrices to join"));
        };
        let k = first.k;
        if parts.iter().any(|p| p.k != k) {
            return Err(KernelError::shape("parts", "the matrices' k differ"));
        }
        let n: usize = parts.iter().map(|p| p.n).sum();
        let same = parts
            .iter()
            .all(|p| p.format() == format && p.layout() == WeightLayout::OutIn);
        // The parts' stored data, concatenated (rows, for `[n, k]`).
        macro_rules! cat {
            ($v:ident $(, $layout:expr)?) => {
                Owned::$v(
                    parts
                        .iter()
                        .flat_map(|p| match p.data {
                            Data::$v(d, ..) => d,
                            _ => &[],
                        })
                        .copied()
                        .collect()
                    $(, $layout)?
                )
            };
        }
        let data = match (same, format) {
            (true, WeightFormat::Bf16) => cat!(Bf16, WeightLayout::OutIn),
            (true, WeightFormat::F16) => cat!(F16, WeightLayout::OutIn),
            (true, WeightFormat::Q8_0) => cat!(Q8_0),
            (true, WeightFormat::Q4_0) => cat!(Q4_0),
            (true, WeightFormat::Q4_1) => cat!(Q4_1),
            _ => {
                // Row-major [k, n] values of all parts, then converted.
                let cols: Vec<Vec<f32>> = parts.iter().map(|p| p.to_f32()).collect();
                let mut w = vec![0.0f32; k * n];
                let mut j0 = 0;
                for (p, c) in parts.iter().zip(&cols) {
                    for q in 0..k {
                        w[q * n + j0..q * n + j0 + p.n].copy_from_slice(&c[q * p.n..(q + 1) * p.n]);
                    }
                    j0 += p.n;
                }
                return OwnedWeights::from_f32(&w, k, n, format, WeightLayout::OutIn);
            }
        };
        Ok(OwnedWeights { data, k, n })
    }

    /// Weights that stay where `view` finds them, kept alive by `keep`.
    ///
    /// # Safety
    /// Every byte `view` reads is owned by `keep` (directly or through a
    /// mapping it holds), never moves, and is never written while `keep`
    /// lives.
    #[cfg_attr(not(feature = "model"), allow(dead_code))]
    pub(crate) unsafe fn shared(
        keep: std::sync::Arc<dyn core::any::Any + Send + Sync>,
        view: WeightsRef<'_>,
    ) -> Self {
        let (k, n) = (view.k, view.n);
        // SAFETY: the caller's contract: the borrow lives as long as `keep`,
        // which this value holds; `view()` hands it out only for as long as
        // `&self` lives.
        let view: WeightsRef<'static> = unsafe { core::mem::transmute(view) };
        OwnedWeights {
            data: Owned::Shared { _keep: keep, view },
            k,
            n,
        }
    }

    /// A view of these weights.
    pub fn view(&self) -> WeightsRef<'_> {
        let (k, n) = (self.k, self.n);
        let data = match &self.data {
            // Lengths and scales were checked by `from_f32`.
            Owned::F32(w) => Data::F32(MatRef::from_parts(w, k, n, n.max(1), 1)),
            Owned::Bf16(w, l) => Data::Bf16(w, *l),
            Owned::F16(w, l) => Data::F16(w, *l),
            Owned::Q8_0(w) => Data::Q8_0(w),
            Owned::Q4_0(w) => Data::Q4_0(w),
            Owned::Q4_1(w) => Data::Q4_1(w),
            Owned::Shared { view, .. } => return *view,
        };
        WeightsRef { data, k, n }
    }

    /// The bytes the weights occupy.
    pub fn bytes(&self) -> usize {
        self.view().bytes()
    }
}
