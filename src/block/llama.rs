//! A Llama-family pre-norm decoder layer (Llama 2/3, SmolLM2, Mistral,
//! Qwen2 without biases):
//!
//! ```text
//! x ─ RMSNorm ─ x·W_qkv ([S, H + 2·H_kv, D], no bias) ─ RoPE on Q and K in
//!   place ─ causal GQA attention (against the KV cache) ─ ·W_o + x (β = 1)
//!   ─ RMSNorm ─ U = x·W_up; G = silu(x·W_gate) ⊙ U (fused epilogue) ─
//!   ·W_down + x (β = 1)
//! ```

use super::KvCache;
use super::ops::{LayerOps, On};
use crate::attention::{AttentionOptions, HeadsMut, HeadsRef};
use crate::error::KernelError;
use crate::isa::Config;
use crate::matmul::{Epilogue, MatMut, MatRef};
pub use crate::quant::WeightLayout;
use crate::quant::{OwnedWeights, WeightFormat, WeightsRef};
use crate::rope::{Positions, RopeLayout, RopeParams, RopeScaling, RopeTable};
use std::time::{Duration, Instant};

/// The shape of a Llama-family layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlamaDims {
    /// Model width.
    pub d: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (dividing `heads`; `heads` for plain multi-head).
    pub kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// MLP width (gate and up projections' outputs).
    pub ffn: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Rotary embedding (its `rotary_dim` ≤ `head_dim`).
    pub rope: RopeParams,
}

impl LlamaDims {
    /// SmolLM2-135M: d 576, 9 query and 3 KV heads of 64, MLP 1536, eps
    /// 1e-5, θ 100 000, half-split pairs (Hugging Face layout).
    pub fn smollm2_135m() -> Self {
        LlamaDims {
            d: 576,
            heads: 9,
            kv_heads: 3,
            head_dim: 64,
            ffn: 1536,
            eps: 1e-5,
            rope: RopeParams::new(64, 100_000.0),
        }
    }

    /// Llama-3.2-1B: d 2048, 32 query and 8 KV heads of 64, MLP 8192, eps
    /// 1e-5, θ 500 000 with Llama 3 scaling (factor 32, low 1, high 4,
    /// original context 8192).
    pub fn llama_3_2_1b() -> Self {
        LlamaDims {
            d: 2048,
            heads: 32,
            kv_heads: 8,
            head_dim: 64,
            ffn: 8192,
            eps: 1e-5,
            rope: RopeParams {
                rotary_dim: 64,
                theta: 500_000.0,
                layout: RopeLayout::HalfSplit,
                scaling: RopeScaling::Llama3 {
                    factor: 32.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_positions: 8192,
                },
            },
        }
    }

    /// Columns of the fused QKV projection: `(heads + 2·kv_heads)·head_dim`.
    pub fn qkv_width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    fn check(&self) -> Result<(), KernelError> {
        if self.d == 0 || self.head_dim == 0 || self.ffn == 0 {
            return Err(KernelError::invalid(
                "weights",
                format!(
                    "d = {}, head_dim = {}, ffn = {} must be positive",
                    self.d, self.head_dim, self.ffn
                ),
            ));
        }
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(KernelError::invalid(
                "weights",
                format!(
                    "kv_heads = {} must be positive and divide heads = {}",
                    self.kv_heads, self.heads
                ),
            ));
        }
        self.rope.validate()?;
        if self.rope.rotary_dim > self.head_dim {
            return Err(KernelError::invalid(
                "rotary_dim",
                format!(
                    "rotary_dim = {} exceeds head_dim = {}",
                    self.rope.rotary_dim, self.head_dim
                ),
            ));
        }
        Ok(())
    }
}

/// The weights of one layer. Matrices are given in `layout`'s orientation;
/// the shapes below are `[in, out]` (`OutIn` stores the transpose).
#[derive(Debug, Clone)]
pub struct LlamaWeights {
    /// Shape.
    pub dims: LlamaDims,
    /// Orientation of every matrix below.
    pub layout: WeightLayout,
    /// Attention RMSNorm scale, `[d]`.
    pub attn_norm: Vec<f32>,
    /// Fused Q, K, V projection `[d, (heads + 2·kv_heads)·head_dim]`;
    /// output columns: the query heads, then the key heads, then the value
    /// heads (Hugging Face's `q_proj`, `k_proj`, `v_proj` concatenated).
    pub w_qkv: Vec<f32>,
    /// Output projection `[heads·head_dim, d]`.
    pub w_o: Vec<f32>,
    /// MLP RMSNorm scale, `[d]`.
    pub ffn_norm: Vec<f32>,
    /// Gate projection `[d, ffn]` (SiLU applied to it).
    pub w_gate: Vec<f32>,
    /// Up projection `[d, ffn]`.
    pub w_up: Vec<f32>,
    /// Down projection `[ffn, d]`.
    pub w_down: Vec<f32>,
}

impl LlamaWeights {
    /// Deterministic pseudo-random weights (uniform, scaled by 1/√fan-in,
    /// norm scales near 1), for tests, benches and examples.
    pub fn random(dims: LlamaDims, layout: WeightLayout, seed: u64) -> Self {
        let mut uniform = super::uniform_source(seed);
        let (d, f) = (dims.d, dims.ffn);
        let hq = dims.heads * dims.head_dim;
        let sd = 1.0 / (d as f32).sqrt();
        LlamaWeights {
            dims,
            layout,
            attn_norm: uniform(d, 0.1, 1.0),
            w_qkv: uniform(d * dims.qkv_width(), sd, 0.0),
            w_o: uniform(hq * d, 1.0 / (hq as f32).sqrt(), 0.0),
            ffn_norm: uniform(d, 0.1, 1.0),
            w_gate: uniform(d * f, sd, 0.0),
            w_up: uniform(d * f, sd, 0.0),
            w_down: uniform(f * d, 1.0 / (f as f32).sqrt(), 0.0),
        }
    }

    /// Matrix `w` of shape `[inp, out]` as a view, in either orientation.
    pub(crate) fn view<'a>(
        &self,
        w: &'a [f32],
        inp: usize,
        out: usize,
    ) -> Result<MatRef<'a>, KernelError> {
        Ok(match self.layout {
            WeightLayout::InOut => MatRef::row_major(w, inp, out)?,
            WeightLayout::OutIn => MatRef::row_major(w, out, inp)?.t(),
        })
    }

    fn check(&self) -> Result<(), KernelError> {
        let dm = &self.dims;
        dm.check()?;
        let (d, f, hq) = (dm.d, dm.ffn, dm.heads * dm.head_dim);
        for (name, len, want) in [
            ("attn_norm", self.attn_norm.len(), d),
            ("w_qkv", self.w_qkv.len(), d * dm.qkv_width()),
            ("w_o", self.w_o.len(), hq * d),
            ("ffn_norm", self.ffn_norm.len(), d),
            ("w_gate", self.w_gate.len(), d * f),
            ("w_up", self.w_up.len(), d * f),
            ("w_down", self.w_down.len(), f * d),
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

/// Wall time per stage of [`LlamaLayer::forward`], accumulated over calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct LlamaStageTimes {
    /// Both RMSNorms.
    pub norms: Duration,
    /// The fused QKV projection.
    pub qkv: Duration,
    /// RoPE on Q and K.
    pub rope: Duration,
    /// Attention (and the KV-cache append).
    pub attention: Duration,
    /// The output projection with the residual add.
    pub out_proj: Duration,
    /// Up projection, then the gate projection with the fused SwiGLU.
    pub gate_up: Duration,
    /// Down projection with the residual add.
    pub down: Duration,
}

impl LlamaStageTimes {
    /// Sum of all stages.
    pub fn total(&self) -> Duration {
        self.norms
            + self.qkv
            + self.rope
            + self.attention
            + self.out_proj
            + self.gate_up
            + self.down
    }
}

/// A Llama-family layer, its RoPE table and activation buffers (grown on
/// demand, reused).
#[derive(Debug, Clone)]
pub struct LlamaLayer {
    w: LlamaWeights,
    /// The five matrices in a low-precision format (QKV, O, gate, up,
    /// down), when the layer runs on them.
    lowp: Option<Box<[OwnedWeights; 5]>>,
    /// Block formats multiplied in the int8 mode.
    int8: bool,
    table: RopeTable,
    scratch: LlamaScratch,
}

/// Activation buffers of a Llama layer's forward pass (grown on demand,
/// reused; one set can serve every layer of a model).
#[derive(Debug, Clone, Default)]
pub struct LlamaScratch {
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    up: Vec<f32>,
    gate: Vec<f32>,
}

impl LlamaLayer {
    /// A layer for positions `0..max_positions` (the RoPE table's extent).
    ///
    /// # Errors
    /// [`KernelError::ShapeMismatch`] / [`KernelError::InvalidArgument`]
    /// naming `weights`, `rotary_dim`, `theta` or `scaling` on inconsistent
    /// weights or dimensions.
    pub fn new(w: LlamaWeights, max_positions: usize) -> Result<Self, KernelError> {
        w.check()?;
        let table = RopeTable::new(&w.dims.rope, max_positions)?;
        Ok(LlamaLayer {
            w,
            lowp: None,
            int8: false,
            table,
            scratch: LlamaScratch::default(),
        })
    }

    /// A layer whose five matrices come already in their formats (QKV
    /// fused `[d, qkv_width]`, O `[heads·head_dim, d]`, gate and up `[d,
    /// ffn]`, down `[ffn, d]`, each as a k×n weight matrix; any format and
    /// orientation), as a model loader holds them: nothing is converted
    /// and no f32 copy is kept ([`LlamaLayer::weights`] then has empty
    /// matrices; [`LlamaLayer::effective_weights`] decodes them).
    ///
    /// # Errors
    /// As [`LlamaLayer::new`]; [`KernelError::ShapeMismatch`] naming
    /// `weights` when a matrix or norm has the wrong shape.
    pub fn from_formatted(
        dims: LlamaDims,
        attn_norm: Vec<f32>,
        ffn_norm: Vec<f32>,
        mats: [OwnedWeights; 5],
        max_positions: usize,
    ) -> Result<Self, KernelError> {
        dims.check()?;
        let (d, f, hq) = (dims.d, dims.ffn, dims.heads * dims.head_dim);
        let want = [(d, dims.qkv_width()), (hq, d), (d, f), (d, f), (f, d)];
        let names = ["w_qkv", "w_o", "w_gate", "w_up", "w_down"];
        for ((m, (k, n)), name) in mats.iter().zip(want).zip(names) {
            let v = m.view();
            if (v.k(), v.n()) != (k, n) {
                return Err(KernelError::shape(
                    "weights",
                    format!("{name} is {}x{}, expected {k}x{n}", v.k(), v.n()),
                ));
            }
        }
        for (name, len) in [("attn_norm", attn_norm.len()), ("ffn_norm", ffn_norm.len())] {
            if len != d {
                return Err(KernelError::shape(
                    "weights",
                    format!("{name} has {len} elements, expected {d}"),
                ));
            }
        }
        let table = RopeTable::new(&dims.rope, max_positions)?;
        let w = LlamaWeights {
            dims,
            layout: WeightLayout::OutIn,
            attn_norm,
            w_qkv: Vec::new(),
            w_o: Vec::new(),
            ffn_norm,
            w_gate: Vec::new(),
            w_up: Vec::new(),
            w_down: Vec::new(),
        };
        Ok(LlamaLayer {
            w,
            lowp: Some(Box::new(mats)),
            int8: false,
            table,
            scratch: LlamaScratch::default(),
        })
    }

    /// The weights as given to [`LlamaLayer::new`] (f32); for a layer
    /// built by [`LlamaLayer::from_formatted`], the dimensions and norms
    /// with empty matrices.
    pub fn weights(&self) -> &LlamaWeights {
        &self.w
    }

    /// The five matrices the layer multiplies by (QKV, O, gate, up, down),
    /// when they are held in a format of their own.
    pub fn formatted(&self) -> Option<&[OwnedWeights; 5]> {
        self.lowp.as_deref()
    }

    /// The layer with its five matrices converted to `format` (rounded to
    /// bf16/f16, or quantized with llama.cpp's Q8_0/Q4_0 rounding) and
    /// multiplied through [`crate::matmul_weights`]; the norms stay f32. bf16/f16
    /// keep the weights' orientation; the block formats are stored `[out,
    /// in]`. `WeightFormat::F32` goes back to the f32 matrices.
    ///
    /// # Errors
    /// [`KernelError::ShapeMismatch`] naming `k` when a block format meets
    /// an input width that is not a multiple of 32.
    pub fn with_weight_format(mut self, format: WeightFormat) -> Result<Self, KernelError> {
        if self.w.w_qkv.is_empty() {
            // Built from formatted matrices: start from their values.
            self.w = self.effective_weights();
        }
        if format == WeightFormat::F32 {
            self.lowp = None;
            return Ok(self);
        }
        let dm = self.w.dims;
        let (d, f, hq) = (dm.d, dm.ffn, dm.heads * dm.head_dim);
        let w = &self.w;
        let conv = |m: &[f32], inp: usize, out: usize| -> Result<OwnedWeights, KernelError> {
            // Row-major [in, out] values, whatever the stored orientation.
            let kn = w.view(m, inp, out)?;
            let vals: Vec<f32> = (0..inp * out)
                .map(|i| kn.get(i / out, i % out).unwrap_or(0.0))
                .collect();
            OwnedWeights::from_f32(&vals, inp, out, format, w.layout)
        };
        self.lowp = Some(Box::new([
            conv(&w.w_qkv, d, dm.qkv_width())?,
            conv(&w.w_o, hq, d)?,
            conv(&w.w_gate, d, f)?,
            conv(&w.w_up, d, f)?,
            conv(&w.w_down, f, d)?,
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

    /// The weights the layer computes with, as f32: [`LlamaLayer::weights`]
    /// with each matrix replaced by its exact low-precision values (for
    /// comparing a converted layer with [`crate::reference::llama_layer`]).
    pub fn effective_weights(&self) -> LlamaWeights {
        let mut w = self.w.clone();
        if let Some(l) = &self.lowp {
            let back = |o: &OwnedWeights| -> Vec<f32> {
                let v = o.view();
                let kn = crate::reference::weights_f32(&v);
                let (k, n) = (v.k(), v.n());
                match w.layout {
                    WeightLayout::InOut => kn,
                    WeightLayout::OutIn => (0..n * k).map(|i| kn[(i % k) * n + i / k]).collect(),
                }
            };
            w.w_qkv = back(&l[0]);
            w.w_o = back(&l[1]);
            w.w_gate = back(&l[2]);
            w.w_up = back(&l[3]);
            w.w_down = back(&l[4]);
        }
        w
    }

    /// Weight matrix `i` (0 QKV, 1 O, 2 gate, 3 up, 4 down) as a view.
    fn wref<'a>(
        w: &'a LlamaWeights,
        lowp: &'a Option<Box<[OwnedWeights; 5]>>,
        i: usize,
    ) -> Result<WeightsRef<'a>, KernelError> {
        if let Some(l) = lowp {
            return Ok(l[i].view());
        }
        let dm = w.dims;
        let (d, f, hq) = (dm.d, dm.ffn, dm.heads * dm.head_dim);
        let (m, inp, out) = match i {
            0 => (&w.w_qkv, d, dm.qkv_width()),
            1 => (&w.w_o, hq, d),
            2 => (&w.w_gate, d, f),
            3 => (&w.w_up, d, f),
            _ => (&w.w_down, f, d),
        };
        Ok(WeightsRef::f32(w.view(m, inp, out)?))
    }

    /// A KV cache of the right shape for this layer (`kv_heads × head_dim`).
    pub fn new_cache(&self, max_len: usize) -> KvCache {
        KvCache::new(max_len, self.w.dims.kv_heads, self.w.dims.head_dim)
    }

    /// As [`LlamaLayer::new_cache`], keeping keys and values as f16
    /// ([`KvCache::new_f16`]).
    pub fn new_cache_f16(&self, max_len: usize) -> KvCache {
        KvCache::new_f16(max_len, self.w.dims.kv_heads, self.w.dims.head_dim)
    }

    /// Runs the layer over the `n = x.len() / d` new tokens in `x` (the
    /// residual stream, updated in place), at positions `cache.len() ..
    /// cache.len() + n` (`0 .. n` without a cache). With a cache their keys
    /// and values (after RoPE) are appended and attention covers every
    /// cached token: a prefill, a chunk of a chunked prefill, or a decode
    /// step (n = 1). Stage times are added to `times` if given.
    ///
    /// # Errors
    /// [`KernelError::ShapeMismatch`] (`x`) if `x` is not whole rows of d,
    /// (`cache`) if the cache's shape differs or it would overflow;
    /// [`KernelError::OutOfBounds`] (`positions`) past the RoPE table; any
    /// kernel error.
    pub fn forward(
        &mut self,
        x: &mut [f32],
        cache: Option<&mut KvCache>,
        cfg: &Config,
        times: Option<&mut LlamaStageTimes>,
    ) -> Result<(), KernelError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = self.forward_with(x, cache, &mut scratch, cfg, times);
        self.scratch = scratch;
        r
    }

    /// [`LlamaLayer::forward`] with the activation buffers in `scratch`
    /// (grown on demand), so that the layers of a model share one set
    /// instead of each keeping buffers for its largest call (30 layers ×
    /// 10 MB after a 504-token SmolLM2 prefill).
    ///
    /// # Errors
    /// As [`LlamaLayer::forward`].
    pub fn forward_with(
        &self,
        x: &mut [f32],
        cache: Option<&mut KvCache>,
        scratch: &mut LlamaScratch,
        cfg: &Config,
        times: Option<&mut LlamaStageTimes>,
    ) -> Result<(), KernelError> {
        // Inside the pool, the layer's ~10 parallel sections fork from a
        // worker (see `threads::threads_for`).
        crate::threads::install(cfg.parallelism.threads(), || {
            self.run(x, cache, scratch, cfg, times)
        })
    }

    /// As [`LlamaLayer::forward_with`], every kernel on `simd`, one thread:
    /// for running the layer at a width this CPU has no
    /// [`Isa`](crate::Isa) for (the tests run it on `pulp::Scalar128b`,
    /// NEON's 4 lanes).
    ///
    /// # Errors
    /// As [`LlamaLayer::forward`].
    pub fn forward_on<S: pulp::Simd>(
        &self,
        simd: S,
        x: &mut [f32],
        cache: Option<&mut KvCache>,
        scratch: &mut LlamaScratch,
        times: Option<&mut LlamaStageTimes>,
    ) -> Result<(), KernelError> {
        self.run(x, cache, scratch, On(simd), times)
    }

    fn run<O: LayerOps>(
        &self,
        x: &mut [f32],
        cache: Option<&mut KvCache>,
        scratch: &mut LlamaScratch,
        cfg: O,
        times: Option<&mut LlamaStageTimes>,
    ) -> Result<(), KernelError> {
        let dm = self.w.dims;
        let (d, hd, ffn) = (dm.d, dm.head_dim, dm.ffn);
        let (hq, hk) = (dm.heads, dm.kv_heads);
        let wq = dm.qkv_width();
        cfg.validate()?;
        let n = super::check_tokens(x, d, cache.as_deref(), hk, hd)?;
        let pos0 = cache.as_ref().map_or(0, |c| c.len);
        if pos0 + n > self.table.max_positions() {
            return Err(KernelError::bounds(
                "positions",
                format!(
                    "tokens {pos0}..{} are past the layer's {} positions",
                    pos0 + n,
                    self.table.max_positions()
                ),
            ));
        }
        if n == 0 {
            return Ok(());
        }
        let LlamaScratch {
            h,
            qkv,
            att,
            up,
            gate,
        } = scratch;
        let mut local = LlamaStageTimes::default();
        let t = times.unwrap_or(&mut local);
        h.resize(n * d, 0.0);
        qkv.resize(n * wq, 0.0);
        att.resize(n * hq * hd, 0.0);
        up.resize(n * ffn, 0.0);
        gate.resize(n * ffn, 0.0);
        let w = &self.w;

        let s = Instant::now();
        cfg.rms_norm(x, &w.attn_norm, h, dm.eps)?;
        t.norms += s.elapsed();

        let s = Instant::now();
        let lw = &self.lowp;
        cfg.product(
            self.int8,
            MatMut::row_major(qkv, n, wq)?,
            MatRef::row_major(h, n, d)?,
            Self::wref(w, lw, 0)?,
            1.0,
            0.0,
            Epilogue::None,
        )?;
        t.qkv += s.elapsed();

        // Q heads at column 0, K heads at hq·hd, V heads at (hq + hk)·hd of
        // each row of the fused buffer.
        let st = [n * wq, wq, hd];
        let (k_at, v_at) = (hq * hd, (hq + hk) * hd);
        let s = Instant::now();
        let pos = Positions::Start(pos0);
        cfg.rope(&self.table, HeadsMut::strided(qkv, 1, n, hq, hd, st)?, pos)?;
        cfg.rope(
            &self.table,
            HeadsMut::strided(&mut qkv[k_at..], 1, n, hk, hd, st)?,
            pos,
        )?;
        t.rope += s.elapsed();

        let s = Instant::now();
        let q = HeadsRef::strided(qkv, 1, n, hq, hd, st)?;
        let out = HeadsMut::bshd(att, 1, n, hq, hd)?;
        let opts = AttentionOptions {
            causal: true,
            scale: None,
        };
        match cache {
            None => {
                let k = HeadsRef::strided(&qkv[k_at..], 1, n, hk, hd, st)?;
                let v = HeadsRef::strided(&qkv[v_at..], 1, n, hk, hd, st)?;
                cfg.attention(out, q, k, v, &opts)?;
            }
            Some(c) => {
                c.append(qkv, wq, k_at, v_at, n);
                c.attend(cfg, out, q, &opts)?;
            }
        }
        t.attention += s.elapsed();

        let s = Instant::now();
        cfg.product(
            self.int8,
            MatMut::row_major(x, n, d)?,
            MatRef::row_major(att, n, hq * hd)?,
            Self::wref(w, lw, 1)?,
            1.0,
            1.0,
            Epilogue::None,
        )?;
        t.out_proj += s.elapsed();

        let s = Instant::now();
        cfg.rms_norm(x, &w.ffn_norm, h, dm.eps)?;
        t.norms += s.elapsed();

        let s = Instant::now();
        let h = MatRef::row_major(h, n, d)?;
        cfg.product(
            self.int8,
            MatMut::row_major(up, n, ffn)?,
            h,
            Self::wref(w, lw, 3)?,
            1.0,
            0.0,
            Epilogue::None,
        )?;
        cfg.product(
            self.int8,
            MatMut::row_major(gate, n, ffn)?,
            h,
            Self::wref(w, lw, 2)?,
            1.0,
            0.0,
            Epilogue::SiluMul(MatRef::row_major(up, n, ffn)?),
        )?;
        t.gate_up += s.elapsed();

        let s = Instant::now();
        cfg.product(
            self.int8,
            MatMut::row_major(x, n, d)?,
            MatRef::row_major(gate, n, ffn)?,
            Self::wref(w, lw, 4)?,
            1.0,
            1.0,
            Epilogue::None,
        )?;
        t.down += s.elapsed();
        Ok(())
    }
}
