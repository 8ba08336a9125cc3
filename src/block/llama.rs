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
use crate::attention::{AttentionOptions, HeadsMut, HeadsRef, attention};
use crate::error::KernelError;
use crate::isa::Config;
use crate::matmul::{Epilogue, MatMut, MatRef, matmul};
use crate::norm::rms_norm;
pub use crate::quant::WeightLayout;
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
    table: RopeTable,
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
            table,
            h: Vec::new(),
            qkv: Vec::new(),
            att: Vec::new(),
            up: Vec::new(),
            gate: Vec::new(),
        })
    }

    /// The weights.
    pub fn weights(&self) -> &LlamaWeights {
        &self.w
    }

    /// A KV cache of the right shape for this layer (`kv_heads × head_dim`).
    pub fn new_cache(&self, max_len: usize) -> KvCache {
        KvCache::new(max_len, self.w.dims.kv_heads, self.w.dims.head_dim)
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
        let dm = self.w.dims;
        let (d, hd, ffn) = (dm.d, dm.head_dim, dm.ffn);
        let (hq, hk) = (dm.heads, dm.kv_heads);
        let wq = dm.qkv_width();
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
        let mut local = LlamaStageTimes::default();
        let t = times.unwrap_or(&mut local);
        self.h.resize(n * d, 0.0);
        self.qkv.resize(n * wq, 0.0);
        self.att.resize(n * hq * hd, 0.0);
        self.up.resize(n * ffn, 0.0);
        self.gate.resize(n * ffn, 0.0);
        let w = &self.w;

        let s = Instant::now();
        rms_norm(x, &w.attn_norm, &mut self.h, dm.eps, cfg)?;
        t.norms += s.elapsed();

        let s = Instant::now();
        matmul(
            MatMut::row_major(&mut self.qkv, n, wq)?,
            MatRef::row_major(&self.h, n, d)?,
            w.view(&w.w_qkv, d, wq)?,
            1.0,
            0.0,
            Epilogue::None,
            cfg,
        )?;
        t.qkv += s.elapsed();

        // Q heads at column 0, K heads at hq·hd, V heads at (hq + hk)·hd of
        // each row of the fused buffer.
        let st = [n * wq, wq, hd];
        let (k_at, v_at) = (hq * hd, (hq + hk) * hd);
        let s = Instant::now();
        let pos = Positions::Start(pos0);
        self.table.apply(
            HeadsMut::strided(&mut self.qkv, 1, n, hq, hd, st)?,
            pos,
            cfg,
        )?;
        self.table.apply(
            HeadsMut::strided(&mut self.qkv[k_at..], 1, n, hk, hd, st)?,
            pos,
            cfg,
        )?;
        t.rope += s.elapsed();

        let s = Instant::now();
        let q = HeadsRef::strided(&self.qkv, 1, n, hq, hd, st)?;
        let out = HeadsMut::bshd(&mut self.att, 1, n, hq, hd)?;
        let opts = AttentionOptions {
            causal: true,
            scale: None,
        };
        match cache {
            None => {
                let k = HeadsRef::strided(&self.qkv[k_at..], 1, n, hk, hd, st)?;
                let v = HeadsRef::strided(&self.qkv[v_at..], 1, n, hk, hd, st)?;
                attention(out, q, k, v, &opts, cfg)?;
            }
            Some(c) => {
                let kvw = hk * hd;
                c.append(&self.qkv, wq, k_at, v_at, n);
                let len = c.len;
                let k = HeadsRef::bshd(&c.k[..len * kvw], 1, len, hk, hd)?;
                let v = HeadsRef::bshd(&c.v[..len * kvw], 1, len, hk, hd)?;
                attention(out, q, k, v, &opts, cfg)?;
            }
        }
        t.attention += s.elapsed();

        let s = Instant::now();
        matmul(
            MatMut::row_major(x, n, d)?,
            MatRef::row_major(&self.att, n, hq * hd)?,
            w.view(&w.w_o, hq * hd, d)?,
            1.0,
            1.0,
            Epilogue::None,
            cfg,
        )?;
        t.out_proj += s.elapsed();

        let s = Instant::now();
        rms_norm(x, &w.ffn_norm, &mut self.h, dm.eps, cfg)?;
        t.norms += s.elapsed();

        let s = Instant::now();
        let h = MatRef::row_major(&self.h, n, d)?;
        matmul(
            MatMut::row_major(&mut self.up, n, ffn)?,
            h,
            w.view(&w.w_up, d, ffn)?,
            1.0,
            0.0,
            Epilogue::None,
            cfg,
        )?;
        matmul(
            MatMut::row_major(&mut self.gate, n, ffn)?,
            h,
            w.view(&w.w_gate, d, ffn)?,
            1.0,
            0.0,
            Epilogue::SiluMul(MatRef::row_major(&self.up, n, ffn)?),
            cfg,
        )?;
        t.gate_up += s.elapsed();

        let s = Instant::now();
        matmul(
            MatMut::row_major(x, n, d)?,
            MatRef::row_major(&self.gate, n, ffn)?,
            w.view(&w.w_down, ffn, d)?,
            1.0,
            1.0,
            Epilogue::None,
            cfg,
        )?;
        t.down += s.elapsed();
        Ok(())
    }
}
