//! Decoder layers built from this crate's kernels alone — the proof that the
//! crate can serve as a transformer's kernel backend: a GPT-2 layer
//! ([`Gpt2Layer`], below) and a Llama-family layer ([`LlamaLayer`]: RMSNorm,
//! RoPE, grouped-query attention, SwiGLU). The GPT-2 layer:
//!
//! ```text
//! x ─ LN1 ─ x·W_qkv + b ([S, 3, H, D]) ─ causal attention (strided views of
//!   the fused buffer, or the KV cache) ─ ·W_o + b_o + x (β = 1) ─ LN2 ─
//!   ·W_up + b_up → GELU (fused epilogue) ─ ·W_down + b_down + x (β = 1)
//! ```
//!
//! [`Gpt2Layer::forward`] runs it over N new tokens: a prefill, or a decode
//! step (N = 1) against a [`KvCache`]. Weights are row-major `[in, out]`
//! (`y = x·W`), the layout of GPT-2's `Conv1D`.

use crate::attention::{AttentionOptions, HeadsMut, HeadsRef};
use crate::error::KernelError;
use crate::gelu::GeluKind;
use crate::isa::Config;
use crate::matmul::{Epilogue, MatMut, MatRef};
use crate::quant::{OwnedWeights, WeightFormat, WeightsRef, f16};
use ops::LayerOps;
use std::time::{Duration, Instant};

/// A deterministic source of `n` values uniform in `offset ± scale`
/// (xorshift64), for the `random` weight constructors.
fn uniform_source(seed: u64) -> impl FnMut(usize, f32, f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move |n, scale, offset| {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                offset + scale * ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
            })
            .collect()
    }
}

/// The weights of one layer.
#[derive(Debug, Clone)]
pub struct Gpt2Weights {
    /// Model width.
    pub d: usize,
    /// Attention heads (`d / heads` = head_dim).
    pub heads: usize,
    /// MLP width (4·d in GPT-2).
    pub mlp: usize,
    /// Layer-norm epsilon (1e-5 in GPT-2).
    pub eps: f32,
    /// LN1 scale and shift, `[d]`.
    pub ln1_g: Vec<f32>,
    /// LN1 shift, `[d]`.
    pub ln1_b: Vec<f32>,
    /// Fused Q, K, V projection `[d, 3d]`; output columns ordered
    /// `[3, heads, head_dim]`.
    pub w_qkv: Vec<f32>,
    /// Its bias, `[3d]`.
    pub b_qkv: Vec<f32>,
    /// Output projection `[d, d]`.
    pub w_o: Vec<f32>,
    /// Its bias, `[d]`.
    pub b_o: Vec<f32>,
    /// LN2 scale, `[d]`.
    pub ln2_g: Vec<f32>,
    /// LN2 shift, `[d]`.
    pub ln2_b: Vec<f32>,
    /// MLP up projection `[d, mlp]` (followed by tanh-GELU, as GPT-2).
    pub w_up: Vec<f32>,
    /// Its bias, `[mlp]`.
    pub b_up: Vec<f32>,
    /// MLP down projection `[mlp, d]`.
    pub w_down: Vec<f32>,
    /// Its bias, `[d]`.
    pub b_down: Vec<f32>,
}

impl Gpt2Weights {
    /// Deterministic pseudo-random weights (uniform, scaled by 1/√fan-in, LN
    /// scales near 1), for tests, benches and examples.
    pub fn random(d: usize, heads: usize, mlp: usize, seed: u64) -> Self {
        let mut uniform = uniform_source(seed);
        let (sd, sm) = (1.0 / (d as f32).sqrt(), 1.0 / (mlp as f32).sqrt());
        Gpt2Weights {
            d,
            heads,
            mlp,
            eps: 1e-5,
            ln1_g: uniform(d, 0.1, 1.0),
            ln1_b: uniform(d, 0.1, 0.0),
            w_qkv: uniform(d * 3 * d, sd, 0.0),
            b_qkv: uniform(3 * d, 0.1, 0.0),
            w_o: uniform(d * d, sd, 0.0),
            b_o: uniform(d, 0.1, 0.0),
            ln2_g: uniform(d, 0.1, 1.0),
            ln2_b: uniform(d, 0.1, 0.0),
            w_up: uniform(d * mlp, sd, 0.0),
            b_up: uniform(mlp, 0.1, 0.0),
            w_down: uniform(mlp * d, sm, 0.0),
            b_down: uniform(d, 0.1, 0.0),
        }
    }

    fn check(&self) -> Result<(), KernelError> {
        let (d, mlp) = (self.d, self.mlp);
        if self.heads == 0 || d == 0 || !d.is_multiple_of(self.heads) {
            return Err(KernelError::invalid(
                "weights",
                format!(
                    "d = {d} is not a positive multiple of heads = {}",
                    self.heads
                ),
            ));
        }
        for (name, len, want) in [
            ("ln1_g", self.ln1_g.len(), d),
            ("ln1_b", self.ln1_b.len(), d),
            ("w_qkv", self.w_qkv.len(), 3 * d * d),
            ("b_qkv", self.b_qkv.len(), 3 * d),
            ("w_o", self.w_o.len(), d * d),
            ("b_o", self.b_o.len(), d),
            ("ln2_g", self.ln2_g.len(), d),
            ("ln2_b", self.ln2_b.len(), d),
            ("w_up", self.w_up.len(), d * mlp),
            ("b_up", self.b_up.len(), mlp),
            ("w_down", self.w_down.len(), mlp * d),
            ("b_down", self.b_down.len(), d),
        ] {
            if len != want {
                return Err(KernelError::shape(
                    "weights",
                    format!("{name} has {len} elements, expected {want}"),
                ));
            }
        }
        Ok(())
    }
}

/// Keys and values of every token seen so far, `[max_len, heads, head_dim]`
/// each (`heads` = the KV heads of a grouped-query model).
#[derive(Debug, Clone)]
pub struct KvCache {
    kv: KvStore,
    len: usize,
    max_len: usize,
    heads: usize,
    head_dim: usize,
}

/// A cache's keys and values, `[max_len, heads, head_dim]` each.
#[derive(Debug, Clone)]
enum KvStore {
    F32(Vec<f32>, Vec<f32>),
    F16(Vec<f16>, Vec<f16>),
}

/// Copies `src` to `dst[at..]`, rounded to nearest-even for f16.
fn put<T: Copy>(dst: &mut [T], at: usize, src: &[f32], conv: impl Fn(f32) -> T) {
    for (d, &s) in dst[at..at + src.len()].iter_mut().zip(src) {
        *d = conv(s);
    }
}

impl KvCache {
    /// An empty cache for up to `max_len` tokens, in f32.
    pub fn new(max_len: usize, heads: usize, head_dim: usize) -> Self {
        let n = max_len * heads * head_dim;
        let kv = KvStore::F32(vec![0.0; n], vec![0.0; n]);
        Self::with_store(kv, max_len, heads, head_dim)
    }

    /// An empty cache for up to `max_len` tokens that keeps keys and values
    /// as IEEE halves (rounded to nearest): half the memory of
    /// [`KvCache::new`], and half the bytes a decode step reads. Attention
    /// then computes on the widened (exact) values, so the only change from
    /// an f32 cache is that one rounding of each key and value (relative
    /// error ≤ 2⁻¹¹; values past ±65504 become ±∞).
    pub fn new_f16(max_len: usize, heads: usize, head_dim: usize) -> Self {
        let n = max_len * heads * head_dim;
        let kv = KvStore::F16(vec![f16::ZERO; n], vec![f16::ZERO; n]);
        Self::with_store(kv, max_len, heads, head_dim)
    }

    fn with_store(kv: KvStore, max_len: usize, heads: usize, head_dim: usize) -> Self {
        KvCache {
            kv,
            len: 0,
            max_len,
            heads,
            head_dim,
        }
    }

    /// Whether keys and values are kept as f16 ([`KvCache::new_f16`]).
    pub fn is_f16(&self) -> bool {
        matches!(self.kv, KvStore::F16(..))
    }
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Forget every token (keep the memory).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Bytes of keys and values at full length.
    pub fn bytes(&self) -> usize {
        match &self.kv {
            KvStore::F32(k, v) => (k.len() + v.len()) * size_of::<f32>(),
            KvStore::F16(k, v) => (k.len() + v.len()) * size_of::<f16>(),
        }
    }

    /// Appends `n` tokens whose keys and values are the `heads·head_dim`
    /// floats at `k_at` and `v_at` of each `row`-float row of `src` (a fused
    /// QKV buffer). The caller has checked the room ([`check_tokens`]).
    fn append(&mut self, src: &[f32], row: usize, k_at: usize, v_at: usize, n: usize) {
        let w = self.heads * self.head_dim;
        for i in 0..n {
            let r = &src[i * row..(i + 1) * row];
            let at = (self.len + i) * w;
            let (ks, vs) = (&r[k_at..k_at + w], &r[v_at..v_at + w]);
            match &mut self.kv {
                KvStore::F32(k, v) => {
                    k[at..at + w].copy_from_slice(ks);
                    v[at..at + w].copy_from_slice(vs);
                }
                KvStore::F16(k, v) => {
                    put(k, at, ks, f16::from_f32);
                    put(v, at, vs, f16::from_f32);
                }
            }
        }
        self.len += n;
    }

    /// `out = attention(q, cached keys, cached values)` on `ops`, causal,
    /// over every cached token.
    fn attend<O: LayerOps>(
        &self,
        ops: O,
        out: HeadsMut<'_>,
        q: HeadsRef<'_>,
        opts: &AttentionOptions,
    ) -> Result<(), KernelError> {
        let (len, h, hd) = (self.len, self.heads, self.head_dim);
        let n = len * h * hd;
        match &self.kv {
            KvStore::F32(k, v) => ops.attention(
                out,
                q,
                HeadsRef::bshd(&k[..n], 1, len, h, hd)?,
                HeadsRef::bshd(&v[..n], 1, len, h, hd)?,
                opts,
            ),
            KvStore::F16(k, v) => ops.attention(
                out,
                q,
                HeadsRef::bshd(&k[..n], 1, len, h, hd)?,
                HeadsRef::bshd(&v[..n], 1, len, h, hd)?,
                opts,
            ),
        }
    }
}

/// The layers' input checks: `x` whole rows of `d` (returns their number),
/// and a cache (if any) of `heads × head_dim` with room for them.
fn check_tokens(
    x: &[f32],
    d: usize,
    cache: Option<&KvCache>,
    heads: usize,
    hd: usize,
) -> Result<usize, KernelError> {
    if !x.len().is_multiple_of(d) {
        return Err(KernelError::shape(
            "x",
            format!(
                "x has {} elements, not a whole number of rows of {d}",
                x.len()
            ),
        ));
    }
    let n = x.len() / d;
    if let Some(c) = cache
        && (c.heads != heads || c.head_dim != hd || c.len + n > c.max_len)
    {
        return Err(KernelError::shape(
            "cache",
            format!(
                "cache holds {} of {} tokens of {}x{}; the layer needs {heads}x{hd} and {n} more",
                c.len, c.max_len, c.heads, c.head_dim
            ),
        ));
    }
    Ok(n)
}

/// Wall time per stage, accumulated over calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// Both layer norms.
    pub ln: Duration,
    /// The fused QKV projection.
    pub qkv: Duration,
    /// Attention (and the KV-cache append).
    pub attention: Duration,
    /// The output projection with the residual add.
    pub out_proj: Duration,
    /// MLP up projection with the fused bias-GELU.
    pub mlp_up: Duration,
    /// MLP down projection with the residual add.
    pub mlp_down: Duration,
}

impl StageTimes {
    /// Sum of all stages.
    pub fn total(&self) -> Duration {
        self.ln + self.qkv + self.attention + self.out_proj + self.mlp_up + self.mlp_down
    }
}

/// A layer and its activation buffers (grown on demand, reused).
#[derive(Debug, Clone)]
pub struct Gpt2Layer {
    w: Gpt2Weights,
    /// The four matrices (QKV, O, up, down) in a low-precision format, when
    /// one was asked for.
    lowp: Option<Box<[OwnedWeights; 4]>>,
    /// Block formats multiplied in the int8 mode.
    int8: bool,
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    up: Vec<f32>,
}

impl Gpt2Layer {
    /// # Errors
    /// [`KernelError::ShapeMismatch`] / [`KernelError::InvalidArgument`]
    /// (`weights`) on inconsistent weight shapes.
    pub fn new(w: Gpt2Weights) -> Result<Self, KernelError> {
        w.check()?;
        Ok(Gpt2Layer {
            w,
            lowp: None,
            int8: false,
            h: Vec::new(),
            qkv: Vec::new(),
            att: Vec::new(),
            up: Vec::new(),
        })
    }

    /// The weights (f32, as given).
    pub fn weights(&self) -> &Gpt2Weights {
        &self.w
    }

    /// The layer with its four matrices converted to `format` (rounded to
    /// bf16/f16 and kept `[in, out]`, or quantized with llama.cpp's
    /// Q8_0/Q4_0 rounding and stored `[out, in]`) and multiplied through
    /// [`crate::matmul_weights`]; norms and biases stay f32. `WeightFormat::F32`
    /// goes back to the f32 matrices.
    ///
    /// # Errors
    /// [`KernelError::ShapeMismatch`] naming `k` when a block format meets
    /// an input width (d or the MLP width) that is not a multiple of 32.
    pub fn with_weight_format(mut self, format: WeightFormat) -> Result<Self, KernelError> {
        if format == WeightFormat::F32 {
            self.lowp = None;
            return Ok(self);
        }
        let (d, mlp) = (self.w.d, self.w.mlp);
        let conv = |m: &[f32], k: usize, n: usize| {
            OwnedWeights::from_f32(m, k, n, format, crate::quant::WeightLayout::InOut)
        };
        let w = &self.w;
        self.lowp = Some(Box::new([
            conv(&w.w_qkv, d, 3 * d)?,
            conv(&w.w_o, d, d)?,
            conv(&w.w_up, d, mlp)?,
            conv(&w.w_down, mlp, d)?,
        ]));
        Ok(self)
    }

    /// Multiplies the block-format matrices (Q8_0, Q4_0, Q4_1) in the
    /// opt-in int8 mode ([`crate::matmul_weights_int8`]: activations
    /// quantized per 32 to i8, integer dot products — llama.cpp's scheme;
    /// AVX-512 VNNI where the CPU has it) instead of with f32 activations.
    /// Other formats are unaffected. The outputs then move by the
    /// quantization of the activations (the bound in that function's
    /// documentation), not by rounding alone.
    pub fn with_int8(mut self, on: bool) -> Self {
        self.int8 = on;
        self
    }

    /// Whether [`Self::with_int8`] is on.
    pub fn int8(&self) -> bool {
        self.int8
    }

    /// The format the layer's matrices are multiplied in.
    pub fn weight_format(&self) -> WeightFormat {
        self.lowp
            .as_ref()
            .map_or(WeightFormat::F32, |l| l[0].view().format())
    }

    /// The weights the layer computes with, as f32: [`Gpt2Layer::weights`]
    /// with each matrix replaced by its exact low-precision values (for
    /// comparing a converted layer with [`crate::reference::gpt2_layer`]).
    pub fn effective_weights(&self) -> Gpt2Weights {
        let mut w = self.w.clone();
        if let Some(l) = &self.lowp {
            let back = |o: &OwnedWeights| crate::reference::weights_f32(&o.view());
            w.w_qkv = back(&l[0]);
            w.w_o = back(&l[1]);
            w.w_up = back(&l[2]);
            w.w_down = back(&l[3]);
        }
        w
    }

    /// Weight matrix `i` (0 QKV, 1 O, 2 up, 3 down) as a view.
    fn wref<'a>(
        w: &'a Gpt2Weights,
        lowp: &'a Option<Box<[OwnedWeights; 4]>>,
        i: usize,
    ) -> Result<WeightsRef<'a>, KernelError> {
        if let Some(l) = lowp {
            return Ok(l[i].view());
        }
        let (d, mlp) = (w.d, w.mlp);
        let (m, k, n) = match i {
            0 => (&w.w_qkv, d, 3 * d),
            1 => (&w.w_o, d, d),
            2 => (&w.w_up, d, mlp),
            _ => (&w.w_down, mlp, d),
        };
        Ok(WeightsRef::f32(MatRef::row_major(m, k, n)?))
    }

    /// Runs the layer over the `n = x.len() / d` new tokens in `x` (the
    /// residual stream, updated in place). With a cache, their keys and
    /// values are appended and attention covers every cached token (a decode
    /// step is `n = 1`); without one, attention reads K and V straight from
    /// the fused QKV buffer. Stage times are added to `times` if given.
    ///
    /// # Errors
    /// [`KernelError::ShapeMismatch`] (`x`) if `x` is not whole rows of d,
    /// (`cache`) if the cache's shape differs or it would overflow; any
    /// kernel error.
    pub fn forward(
        &mut self,
        x: &mut [f32],
        cache: Option<&mut KvCache>,
        cfg: &Config,
        times: Option<&mut StageTimes>,
    ) -> Result<(), KernelError> {
        // Inside the pool, the layer's ~10 parallel sections fork from a
        // worker (see `threads::threads_for`).
        crate::threads::install(cfg.parallelism.threads(), || self.run(x, cache, cfg, times))
    }

    /// As [`Gpt2Layer::forward`], every kernel on `simd`, one thread: for
    /// running the layer at a width this CPU has no [`Isa`](crate::Isa) for
    /// (the tests run it on `pulp::Scalar128b`, NEON's 4 lanes).
    ///
    /// # Errors
    /// As [`Gpt2Layer::forward`].
    pub fn forward_on<S: pulp::Simd>(
        &mut self,
        simd: S,
        x: &mut [f32],
        cache: Option<&mut KvCache>,
        times: Option<&mut StageTimes>,
    ) -> Result<(), KernelError> {
        self.run(x, cache, ops::On(simd), times)
    }

    fn run<O: LayerOps>(
        &mut self,
        x: &mut [f32],
        cache: Option<&mut KvCache>,
        cfg: O,
        times: Option<&mut StageTimes>,
    ) -> Result<(), KernelError> {
        let (d, heads, mlp) = (self.w.d, self.w.heads, self.w.mlp);
        let hd = d / heads;
        cfg.validate()?;
        let n = check_tokens(x, d, cache.as_deref(), heads, hd)?;
        if n == 0 {
            return Ok(());
        }
        let mut local = StageTimes::default();
        let t = times.map_or(&mut local as *mut StageTimes, |t| t as *mut StageTimes);
        // SAFETY: `t` points at either the caller's StageTimes (borrowed for
        // this call) or `local`, both alive until we return.
        let t = unsafe { &mut *t };
        self.h.resize(n * d, 0.0);
        self.qkv.resize(n * 3 * d, 0.0);
        self.att.resize(n * d, 0.0);
        self.up.resize(n * mlp, 0.0);
        let (w, lw) = (&self.w, &self.lowp);

        let s = Instant::now();
        cfg.layer_norm(x, &w.ln1_g, &w.ln1_b, &mut self.h, w.eps)?;
        t.ln += s.elapsed();

        let s = Instant::now();
        cfg.product(
            self.int8,
            MatMut::row_major(&mut self.qkv, n, 3 * d)?,
            MatRef::row_major(&self.h, n, d)?,
            Self::wref(w, lw, 0)?,
            1.0,
            0.0,
            Epilogue::Bias(&w.b_qkv),
        )?;
        t.qkv += s.elapsed();

        let s = Instant::now();
        let st = [n * 3 * d, 3 * d, hd];
        let q = HeadsRef::strided(&self.qkv, 1, n, heads, hd, st)?;
        let out = HeadsMut::bshd(&mut self.att, 1, n, heads, hd)?;
        let opts = AttentionOptions {
            causal: true,
            scale: None,
        };
        match cache {
            None => {
                let k = HeadsRef::strided(&self.qkv[d..], 1, n, heads, hd, st)?;
                let v = HeadsRef::strided(&self.qkv[2 * d..], 1, n, heads, hd, st)?;
                cfg.attention(out, q, k, v, &opts)?;
            }
            Some(c) => {
                c.append(&self.qkv, 3 * d, d, 2 * d, n);
                c.attend(cfg, out, q, &opts)?;
            }
        }
        t.attention += s.elapsed();

        let s = Instant::now();
        cfg.product(
            self.int8,
            MatMut::row_major(x, n, d)?,
            MatRef::row_major(&self.att, n, d)?,
            Self::wref(w, lw, 1)?,
            1.0,
            1.0,
            Epilogue::Bias(&w.b_o),
        )?;
        t.out_proj += s.elapsed();

        let s = Instant::now();
        cfg.layer_norm(x, &w.ln2_g, &w.ln2_b, &mut self.h, w.eps)?;
        t.ln += s.elapsed();

        let s = Instant::now();
        cfg.product(
            self.int8,
            MatMut::row_major(&mut self.up, n, mlp)?,
            MatRef::row_major(&self.h, n, d)?,
            Self::wref(w, lw, 2)?,
            1.0,
            0.0,
            Epilogue::BiasGelu(&w.b_up, GeluKind::Tanh),
        )?;
        t.mlp_up += s.elapsed();

        let s = Instant::now();
        cfg.product(
            self.int8,
            MatMut::row_major(x, n, d)?,
            MatRef::row_major(&self.up, n, mlp)?,
            Self::wref(w, lw, 3)?,
            1.0,
            1.0,
            Epilogue::Bias(&w.b_down),
        )?;
        t.mlp_down += s.elapsed();
        Ok(())
    }
}

mod llama;
mod ops;
pub use llama::{LlamaDims, LlamaLayer, LlamaScratch, LlamaStageTimes, LlamaWeights, WeightLayout};
