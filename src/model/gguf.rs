//! A GGUF reader: header, metadata, tensor infos and the tensor data of a
//! memory-mapped file (llama.cpp's model format, versions 2 and 3).
//!
//! Every length, count and offset read from the file is checked against
//! the bytes that remain before anything is allocated or sliced, so a
//! truncated or malformed file is an `Err` saying what is wrong and where,
//! never a panic or an allocation sized by the file's say-so.
//!
//! Layout (little-endian): `"GGUF"`, version `u32`, tensor count `u64`,
//! metadata count `u64`; the metadata (key string, type `u32`, value);
//! the tensor infos (name, `n_dims: u32`, `n_dims × u64` extents with the
//! innermost first, type `u32`, offset `u64` into the data section); the
//! data section at the next multiple of `general.alignment` (32 when
//! absent).
//!
//! Arrays in the metadata (a vocabulary and its merges: ~100 000 strings)
//! are checked when the file is opened but only turned into [`Value`]s
//! when asked for; [`GgufFile::strings`] reads a string array straight
//! from the file's bytes, allocating nothing.

use crate::error::KernelError;
use crate::quant::{
    Block, BlockQ4_0, BlockQ4_1, BlockQ8_0, OwnedWeights, WeightFormat, WeightLayout, WeightsRef,
    bf16, f16,
};
use std::path::Path;
use std::sync::OnceLock;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f32`.
    F32(f32),
    /// `f64`.
    F64(f64),
    /// `bool`.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array of values of one type.
    Array(Vec<Value>),
}

impl Value {
    /// The value as a `u64`, if it is an unsigned or a non-negative
    /// signed integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an `f32`, if it is a float.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// A tensor's element type, as GGUF numbers them (the ones this crate
/// reads; any other is reported by number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// `GGML_TYPE_F32` (0).
    F32,
    /// `GGML_TYPE_F16` (1).
    F16,
    /// `GGML_TYPE_Q4_0` (2).
    Q4_0,
    /// `GGML_TYPE_Q4_1` (3).
    Q4_1,
    /// `GGML_TYPE_Q8_0` (8).
    Q8_0,
    /// `GGML_TYPE_BF16` (30).
    Bf16,
    /// Any other type (K-quants, I-quants, …): its number.
    Other(u32),
}

impl TensorType {
    fn from_u32(t: u32) -> Self {
        match t {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            8 => TensorType::Q8_0,
            30 => TensorType::Bf16,
            t => TensorType::Other(t),
        }
    }

    /// The weight format, for the types the crate multiplies by.
    pub fn format(self) -> Option<WeightFormat> {
        Some(match self {
            TensorType::F32 => WeightFormat::F32,
            TensorType::F16 => WeightFormat::F16,
            TensorType::Bf16 => WeightFormat::Bf16,
            TensorType::Q4_0 => WeightFormat::Q4_0,
            TensorType::Q4_1 => WeightFormat::Q4_1,
            TensorType::Q8_0 => WeightFormat::Q8_0,
            TensorType::Other(_) => return None,
        })
    }
}

/// One tensor's name, shape and place in the data section.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name (`blk.0.attn_q.weight`, …).
    pub name: String,
    /// Extents, innermost (contiguous) first, as GGUF stores them: a
    /// matrix of `n` rows of `k` is `[k, n]`.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: TensorType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data (known for the types in [`TensorType`]; 0 for
    /// `Other`).
    pub size: usize,
}

impl TensorInfo {
    /// Elements (product of the extents).
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// The file's bytes: memory-mapped, or owned (files built in memory).
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file: metadata and tensor infos read, tensor data left in
/// the mapping until asked for.
pub struct GgufFile {
    bytes: std::sync::Arc<Bytes>,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, in file order ([`GgufFile::metadata`]).
    metadata: Vec<Meta>,
    /// Tensor infos, in file order.
    pub tensors: Vec<TensorInfo>,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("bytes", &self.bytes.get().len())
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

fn bad(msg: impl Into<String>) -> KernelError {
    KernelError::invalid("gguf", msg)
}

/// One metadata entry: its key, type, where its value starts, and the
/// value once built.
struct Meta {
    key: String,
    ty: u32,
    at: usize,
    value: OnceLock<Value>,
}

/// The strings of a metadata array ([`GgufFile::strings`]), borrowed from
/// the file.
#[derive(Clone)]
pub struct Strings<'a> {
    r: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for Strings<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.left = self.left.checked_sub(1)?;
        // Lengths and UTF-8 were checked when the file was opened.
        self.r.str("string length").ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Strings<'_> {}

/// A cursor over the header that refuses to read past the end.
#[derive(Clone)]
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], KernelError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(e) => {
                let s = &self.b[self.at..e];
                self.at = e;
                Ok(s)
            }
            None => Err(bad(format!(
                "truncated: {what} needs {n} bytes at offset {}, the file has {}",
                self.at,
                self.b.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], KernelError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, KernelError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, KernelError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.at
    }

    /// A count of items of at least `min_size` bytes each, refused when
    /// they could not fit in what remains (so nothing is allocated on a
    /// corrupt count).
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize, KernelError> {
        let at = self.at;
        let n = self.u64(what)?;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min_size) <= self.remaining() => Ok(n),
            _ => Err(bad(format!(
                "{what} = {n} at offset {at} cannot fit in the {} bytes that follow",
                self.remaining()
            ))),
        }
    }

    /// A length-prefixed UTF-8 string, borrowed from the bytes.
    fn str(&mut self, what: &str) -> Result<&'a str, KernelError> {
        let at = self.at;
        let n = self.count(1, what)?;
        let s = self.take(n, what)?;
        std::str::from_utf8(s).map_err(|e| bad(format!("{what} at offset {at} is not UTF-8: {e}")))
    }

    fn string(&mut self, what: &str) -> Result<String, KernelError> {
        self.str(what).map(str::to_owned)
    }

    /// Steps over an array value (at the element type), checking it as
    /// [`Reader::value`] would, without building it.
    fn skip_array(&mut self) -> Result<(), KernelError> {
        let et = self.u32("array element type")?;
        let min = Self::elem_size(et, self.at - 4)?;
        let n = self.count(min, "array length")?;
        match et {
            8 => {
                for _ in 0..n {
                    self.str("string length")?;
                }
            }
            7 => {
                let at = self.at;
                if let Some(i) = self.take(n, "bool")?.iter().position(|&b| b > 1) {
                    return Err(bad(format!("bool of value > 1 at offset {}", at + i)));
                }
            }
            // A fixed size (`count` checked that n·min bytes remain).
            _ => {
                self.take(n * min, "array")?;
            }
        }
        Ok(())
    }

    /// Bytes of one element of an array of type `et` (at offset `at`).
    fn elem_size(et: u32, at: usize) -> Result<usize, KernelError> {
        Ok(match et {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            _ => {
                return Err(bad(format!(
                    "array element type {et} at offset {at} is not a GGUF type"
                )));
            }
        })
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, KernelError> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>("u8")?[0]),
            1 => Value::I8(self.array::<1>("i8")?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array("u16")?)),
            3 => Value::I16(i16::from_le_bytes(self.array("i16")?)),
            4 => Value::U32(self.u32("u32")?),
            5 => Value::I32(i32::from_le_bytes(self.array("i32")?)),
            6 => Value::F32(f32::from_le_bytes(self.array("f32")?)),
            7 => match self.array::<1>("bool")?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(bad(format!("bool of value {b} at offset {}", self.at - 1))),
            },
            8 => Value::String(self.string("string length")?),
            9 => {
                if depth > 0 {
                    return Err(bad(format!(
                        "nested array at offset {} (GGUF arrays hold scalars or strings)",
                        self.at
                    )));
                }
                let et = self.u32("array element type")?;
                let min = Self::elem_size(et, self.at - 4)?;
                let n = self.count(min, "array length")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.value(et, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64("u64")?),
            11 => Value::I64(i64::from_le_bytes(self.array("i64")?)),
            12 => Value::F64(f64::from_le_bytes(self.array("f64")?)),
            t => {
                return Err(bad(format!(
                    "value type {t} at offset {} is not a GGUF type",
                    self.at - 4
                )));
            }
        })
    }
}

/// Bytes of `elements` elements of `ty`, when the type is known and the
/// count whole blocks.
fn data_size(ty: TensorType, elements: u64, inner: u64) -> Option<usize> {
    let e = usize::try_from(elements).ok()?;
    let block = |bytes: usize| -> Option<usize> {
        inner
            .is_multiple_of(32)
            .then_some(e / 32)?
            .checked_mul(bytes)
    };
    match ty {
        TensorType::F32 => e.checked_mul(4),
        TensorType::F16 | TensorType::Bf16 => e.checked_mul(2),
        TensorType::Q4_0 => block(size_of::<BlockQ4_0>()),
        TensorType::Q4_1 => block(size_of::<BlockQ4_1>()),
        TensorType::Q8_0 => block(size_of::<BlockQ8_0>()),
        TensorType::Other(_) => Some(0),
    }
}

impl GgufFile {
    /// Maps the file at `path` and parses its header.
    ///
    /// # Errors
    /// [`KernelError::InvalidArgument`] naming `path` when the file cannot
    /// be opened or mapped, `gguf` when it is not a well-formed GGUF file
    /// (the message says what and at which offset).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, KernelError> {
        let path = path.as_ref();
        let file = std::fs::File::open(path)
            .map_err(|e| KernelError::invalid("path", format!("{}: {e}", path.display())))?;
        // SAFETY: the mapping is read-only and private to this process; the
        // crate's contract (as every mmap-based loader's) is that the model
        // file is not modified while it is mapped — a file truncated under
        // the mapping would fault on access instead of reading garbage.
        // `populate`: the pages are mapped in one call (MAP_POPULATE) rather
        // than faulted in one by one as the weights are first read.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
            .map_err(|e| KernelError::invalid("path", format!("{}: {e}", path.display())))?;
        Self::parse(Bytes::Mapped(map))
    }

    /// Parses a GGUF file held in memory.
    ///
    /// # Errors
    /// As [`GgufFile::open`] for the `gguf` argument.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, KernelError> {
        Self::parse(Bytes::Owned(bytes))
    }

    fn parse(bytes: Bytes) -> Result<Self, KernelError> {
        let b = bytes.get();
        let mut r = Reader { b, at: 0 };
        if r.take(4, "magic")? != b"GGUF" {
            return Err(bad("not a GGUF file (magic is not \"GGUF\")"));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(bad(format!(
                "version {version} (this reader knows versions 2 and 3)"
            )));
        }
        // A tensor info is at least 8 + 4 + 4 + 8 bytes, a key/value 8 + 4
        // + 1.
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.count(13, "metadata count")?;
        let mut metadata = Vec::with_capacity(n_kv);
        for _ in 0..n_kv {
            let key = r.string("key length")?;
            let ty = r.u32("value type")?;
            let at = r.at;
            // Scalars and strings now; arrays checked, built when asked for.
            let value = if ty == 9 {
                r.skip_array()?;
                OnceLock::new()
            } else {
                OnceLock::from(r.value(ty, 0)?)
            };
            metadata.push(Meta { key, ty, at, value });
        }
        let n_tensors = usize::try_from(n_tensors)
            .ok()
            .filter(|&n| n.saturating_mul(24) <= r.remaining())
            .ok_or_else(|| {
                bad(format!(
                    "tensor count {n_tensors} cannot fit in the {} header bytes that follow",
                    r.remaining()
                ))
            })?;
        let mut tensors = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = r.string("tensor name length")?;
            let nd = r.u32("tensor rank")?;
            if !(1..=4).contains(&nd) {
                return Err(bad(format!("tensor {name:?} has rank {nd} (1 to 4)")));
            }
            let mut dims = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                dims.push(r.u64("tensor extent")?);
            }
            let ty = TensorType::from_u32(r.u32("tensor type")?);
            let offset = r.u64("tensor offset")?;
            let elements = dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| bad(format!("tensor {name:?}: extents {dims:?} overflow")))?;
            let size = data_size(ty, elements, dims[0]).ok_or_else(|| {
                bad(format!(
                    "tensor {name:?} of type {ty:?}: extents {dims:?} are not whole blocks \
                     of 32 along the first, or too large"
                ))
            })?;
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                size,
            });
        }
        let align = match metadata.iter().find(|m| m.key == "general.alignment") {
            None => 32,
            Some(m) => match m.value.get().and_then(Value::as_u64) {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a as usize,
                _ => {
                    return Err(bad(format!(
                        "general.alignment = {:?} is not a power of two",
                        m.value.get()
                    )));
                }
            },
        };
        let data_start = r.at.next_multiple_of(align);
        for t in &tensors {
            let end = usize::try_from(t.offset)
                .ok()
                .filter(|o| o.is_multiple_of(align))
                .and_then(|o| data_start.checked_add(o))
                .and_then(|s| s.checked_add(t.size));
            if end.is_none_or(|e| e > b.len()) {
                return Err(bad(format!(
                    "tensor {:?} ({} bytes at data offset {}) lies outside the {}-byte file \
                     or is not {align}-aligned",
                    t.name,
                    t.size,
                    t.offset,
                    b.len()
                )));
            }
        }
        Ok(GgufFile {
            version,
            metadata,
            tensors,
            data_start,
            bytes: std::sync::Arc::new(bytes),
        })
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata
            .iter()
            .find(|m| m.key == key)
            .map(|m| self.value(m))
    }

    /// The metadata, in file order (arrays built on first access).
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.metadata
            .iter()
            .map(|m| (m.key.as_str(), self.value(m)))
    }

    /// The array of strings under `key`, read from the file's bytes as it
    /// is iterated (no allocation); `None` when the key is missing or not
    /// an array of strings.
    pub fn strings(&self, key: &str) -> Option<Strings<'_>> {
        let m = self.metadata.iter().find(|m| m.key == key && m.ty == 9)?;
        let mut r = Reader {
            b: self.bytes.get(),
            at: m.at,
        };
        if r.u32("array element type").ok()? != 8 {
            return None;
        }
        let left = usize::try_from(r.u64("array length").ok()?).ok()?;
        Some(Strings { r, left })
    }

    fn value<'s>(&'s self, m: &'s Meta) -> &'s Value {
        m.value.get_or_init(|| {
            let mut r = Reader {
                b: self.bytes.get(),
                at: m.at,
            };
            // Checked by `skip_array` when the file was opened, so this
            // cannot fail; an empty array stands in rather than a panic.
            r.value(m.ty, 0).unwrap_or(Value::Array(Vec::new()))
        })
    }

    /// `key` as an unsigned integer.
    ///
    /// # Errors
    /// [`KernelError::InvalidArgument`] naming `gguf` when the key is
    /// missing or not an integer.
    pub fn get_u64(&self, key: &str) -> Result<u64, KernelError> {
        self.get(key)
            .ok_or_else(|| bad(format!("metadata key {key:?} is missing")))?
            .as_u64()
            .ok_or_else(|| bad(format!("metadata key {key:?} is not an unsigned integer")))
    }

    /// `key` as a float.
    ///
    /// # Errors
    /// As [`GgufFile::get_u64`].
    pub fn get_f32(&self, key: &str) -> Result<f32, KernelError> {
        self.get(key)
            .ok_or_else(|| bad(format!("metadata key {key:?} is missing")))?
            .as_f32()
            .ok_or_else(|| bad(format!("metadata key {key:?} is not a float")))
    }

    /// The info of tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The data bytes of `t` (checked to lie inside the file when parsed).
    pub fn data(&self, t: &TensorInfo) -> &[u8] {
        let s = self.data_start + t.offset as usize;
        &self.bytes.get()[s..s + t.size]
    }

    /// Tensor `name` as a weight matrix of `n = dims[1]` rows of `k =
    /// dims[0]` (`[out, in]`, GGUF's orientation), viewed in place.
    ///
    /// # Errors
    /// [`KernelError::InvalidArgument`] naming `gguf` when the tensor is
    /// missing, not two-dimensional (a 1-D tensor is one row), of a type
    /// the crate does not multiply by, or holds a NaN/∞ block scale.
    pub fn weights(&self, name: &str) -> Result<WeightsRef<'_>, KernelError> {
        let t = self
            .tensor(name)
            .ok_or_else(|| bad(format!("tensor {name:?} is missing")))?;
        let (k, n) = match t.dims[..] {
            [k] => (k, 1),
            [k, n] => (k, n),
            _ => return Err(bad(format!("tensor {name:?} has extents {:?}", t.dims))),
        };
        let (k, n) = (k as usize, n as usize);
        let data = self.data(t);
        let ctx = |e: KernelError| bad(format!("tensor {name:?}: {e}"));
        let half = |what: &str| -> Result<(), KernelError> {
            if (data.as_ptr() as usize).is_multiple_of(2) {
                Ok(())
            } else {
                Err(bad(format!(
                    "tensor {name:?}: {what} data is not 2-byte aligned"
                )))
            }
        };
        match t.ty {
            TensorType::F32 => {
                if !(data.as_ptr() as usize).is_multiple_of(4) {
                    return Err(bad(format!("tensor {name:?}: f32 data is not aligned")));
                }
                // SAFETY: 4-byte aligned (checked), k·n·4 bytes (size
                // computed when parsed), every bit pattern is an f32.
                let f = unsafe { core::slice::from_raw_parts(data.as_ptr().cast::<f32>(), k * n) };
                let m = crate::matmul::MatRef::row_major(f, n, k).map_err(ctx)?;
                Ok(WeightsRef::f32(m.t()))
            }
            TensorType::F16 => {
                half("f16")?;
                // SAFETY: aligned (checked), k·n halves, any bits valid.
                let h = unsafe { core::slice::from_raw_parts(data.as_ptr().cast::<f16>(), k * n) };
                WeightsRef::f16(h, k, n, WeightLayout::OutIn).map_err(ctx)
            }
            TensorType::Bf16 => {
                half("bf16")?;
                // SAFETY: as for f16.
                let h = unsafe { core::slice::from_raw_parts(data.as_ptr().cast::<bf16>(), k * n) };
                WeightsRef::bf16(h, k, n, WeightLayout::OutIn).map_err(ctx)
            }
            TensorType::Q8_0 => {
                WeightsRef::q8_0(BlockQ8_0::from_bytes(data).map_err(ctx)?, k, n).map_err(ctx)
            }
            TensorType::Q4_0 => {
                WeightsRef::q4_0(BlockQ4_0::from_bytes(data).map_err(ctx)?, k, n).map_err(ctx)
            }
            TensorType::Q4_1 => {
                WeightsRef::q4_1(BlockQ4_1::from_bytes(data).map_err(ctx)?, k, n).map_err(ctx)
            }
            TensorType::Other(ty) => Err(bad(format!(
                "tensor {name:?} has GGML type {ty}, which this crate does not read \
                 (F32, F16, BF16, Q8_0, Q4_0, Q4_1)"
            ))),
        }
    }

    /// Tensor `name` (any rank) as f32 values, dequantized.
    ///
    /// # Errors
    /// As [`GgufFile::weights`].
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>, KernelError> {
        let t = self
            .tensor(name)
            .ok_or_else(|| bad(format!("tensor {name:?} is missing")))?;
        if t.dims.len() > 2 {
            return Err(bad(format!("tensor {name:?} has extents {:?}", t.dims)));
        }
        Ok(self.weights(name)?.to_f32_stored())
    }

    /// Tensor `name` copied into owned weights (its format kept).
    ///
    /// # Errors
    /// As [`GgufFile::weights`].
    pub fn owned(&self, name: &str) -> Result<OwnedWeights, KernelError> {
        Ok(self.weights(name)?.to_owned())
    }

    /// Tensor `name` as weights that stay in the file's mapping (nothing
    /// copied; the mapping lives as long as any such weights do, after
    /// this `GgufFile` is dropped).
    ///
    /// # Errors
    /// As [`GgufFile::weights`].
    pub fn mapped(&self, name: &str) -> Result<OwnedWeights, KernelError> {
        let view = self.weights(name)?;
        let keep: std::sync::Arc<dyn core::any::Any + Send + Sync> = self.bytes.clone();
        // SAFETY: `view` reads only the file's bytes, which `keep` owns (a
        // read-only private mapping or a Vec, neither moved nor written
        // after parsing).
        Ok(unsafe { OwnedWeights::shared(keep, view) })
    }
}
