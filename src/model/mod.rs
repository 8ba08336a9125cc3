//! A Llama-architecture model loaded from a GGUF file and run on the
//! crate's kernels: embedding lookup, the [`LlamaLayer`]s with their KV
//! caches, the final RMSNorm and the output projection — what an engine
//! builds around the kernels, small enough to read in one sitting.
//!
//! Weights stay in the file's formats (Q4_0, Q4_1, Q8_0, bf16, f16, f32),
//! read in place from the memory-mapped file (the mapping outlives the
//! [`GgufFile`] as long as the model holds it), or are converted once at
//! load; the Q, K and V projections of each layer are joined into one
//! matrix (their rows concatenated — copied — nothing re-rounded). GGUF stores Llama's Q and K rows permuted for the
//! interleaved RoPE pairing (`(x[2i], x[2i+1])`, llama.cpp's mode 0), so
//! the layers rotate with [`RopeLayout::Interleaved`].
//!
//! ```no_run
//! use transformer_kernels::model::{GgufFile, LlamaModel, Tokenizer};
//! use transformer_kernels::Config;
//!
//! let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let tok = Tokenizer::from_gguf(&file)?;
//! let mut model = LlamaModel::from_gguf(&file, None, 2048)?;
//! let mut cache = model.new_cache(2048);
//! let cfg = Config::default();
//! let mut ids = tok.encode("The capital of France is", true);
//! for _ in 0..8 {
//!     let logits = model.forward(&ids[cache.len()..], &mut cache, &cfg)?;
//!     ids.push(transformer_kernels::model::argmax(logits) as u32);
//! }
//! println!("{}", tok.decode(&ids));
//! # Ok::<(), transformer_kernels::KernelError>(())
//! ```

pub mod gguf;
pub mod tokenizer;

pub use gguf::{GgufFile, Strings, TensorInfo, TensorType, Value};
pub use tokenizer::{PreTokenizer, Tokenizer};

use crate::block::{KvCache, LlamaDims, LlamaLayer, LlamaScratch, LlamaStageTimes};
use crate::error::KernelError;
use crate::isa::Config;
use crate::matmul::{Epilogue, MatMut, MatRef, matmul_weights, matmul_weights_int8};
use crate::norm::rms_norm;
use crate::quant::{OwnedWeights, WeightFormat, WeightsRef};
use crate::rope::{RopeLayout, RopeParams};

/// A Llama-architecture model: embeddings, layers, final norm, output.
#[derive(Debug, Clone)]
pub struct LlamaModel {
    dims: LlamaDims,
    vocab: usize,
    /// Token embeddings, `[vocab, d]` rows (a k = d × n = vocab matrix).
    embed: OwnedWeights,
    /// The output projection when the file has its own (else the
    /// embeddings, tied).
    output: Option<OwnedWeights>,
    output_norm: Vec<f32>,
    layers: Vec<LlamaLayer>,
    /// One set of activation buffers for every layer.
    scratch: LlamaScratch,
    /// Block-format products in the int8 mode.
    int8: bool,
    x: Vec<f32>,
    h: Vec<f32>,
    logits: Vec<f32>,
}

/// The KV caches of every layer and the tokens they hold.
#[derive(Debug, Clone)]
pub struct ModelCache {
    layers: Vec<KvCache>,
}

impl ModelCache {
    /// Tokens cached (the next token's position).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, KvCache::len)
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(KvCache::clear);
    }

    /// Bytes the caches hold (keys and values of every layer, at their
    /// full length).
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(KvCache::bytes).sum()
    }
}

fn bad(msg: impl Into<String>) -> KernelError {
    KernelError::invalid("gguf", msg)
}

/// The index of the largest value (the first on ties; NaN never wins).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || v[best].is_nan() {
            best = i;
        }
    }
    best
}

impl LlamaModel {
    /// Loads a `general.architecture = "llama"` model. `format`: keep every
    /// matrix in the file's format (`None`), or convert the layers' and the
    /// output's matrices to one (the embeddings keep theirs). Positions up
    /// to `max_positions` (the RoPE tables' extent).
    ///
    /// # Errors
    /// [`KernelError::InvalidArgument`] naming `gguf` for another
    /// architecture, a missing or malformed key or tensor, a tensor type
    /// the crate does not read, RoPE scaling it does not implement; the
    /// layers' shape errors.
    pub fn from_gguf(
        f: &GgufFile,
        format: Option<WeightFormat>,
        max_positions: usize,
    ) -> Result<Self, KernelError> {
        let arch = f.get("general.architecture").and_then(Value::as_str);
        if arch != Some("llama") {
            return Err(bad(format!(
                "general.architecture is {arch:?}; only \"llama\" is loaded"
            )));
        }
        if let Some(t) = f.get("llama.rope.scaling.type").and_then(Value::as_str)
            && t != "none"
        {
            return Err(bad(format!("RoPE scaling {t:?} is not implemented here")));
        }
        let u = |k: &str| -> Result<usize, KernelError> { Ok(f.get_u64(k)? as usize) };
        let d = u("llama.embedding_length")?;
        let heads = u("llama.attention.head_count")?;
        let kv_heads = match f.get("llama.attention.head_count_kv") {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad("llama.attention.head_count_kv is not an integer"))?
                as usize,
            None => heads,
        };
        if heads == 0 || !d.is_multiple_of(heads) {
            return Err(bad(format!("head_count {heads} does not divide d = {d}")));
        }
        let head_dim = d / heads;
        let rotary_dim = match f.get("llama.rope.dimension_count") {
            Some(v) => v.as_u64().unwrap_or(head_dim as u64) as usize,
            None => head_dim,
        };
        let theta = match f.get("llama.rope.freq_base") {
            Some(v) => v
                .as_f32()
                .ok_or_else(|| bad("llama.rope.freq_base is not a float"))?,
            None => 10_000.0,
        };
        let dims = LlamaDims {
            d,
            heads,
            kv_heads,
            head_dim,
            ffn: u("llama.feed_forward_length")?,
            eps: f.get_f32("llama.attention.layer_norm_rms_epsilon")?,
            rope: RopeParams {
                rotary_dim,
                theta: f64::from(theta),
                layout: RopeLayout::Interleaved,
                scaling: Default::default(),
            },
        };
        let n_layers = u("llama.block_count")?;
        let embed_w = f.weights("token_embd.weight")?;
        if embed_w.k() != d {
            return Err(bad(format!(
                "token_embd.weight has rows of {}, the model d = {d}",
                embed_w.k()
            )));
        }
        let vocab = embed_w.n();
        // A matrix in the asked format, or left in the mapping.
        let convert = |name: &str| -> Result<OwnedWeights, KernelError> {
            let w = f.weights(name)?;
            match format {
                Some(fm) if fm != w.format() => OwnedWeights::concat_columns(&[w], fm),
                _ => f.mapped(name),
            }
        };
        let norm = |name: &str, len: usize| -> Result<Vec<f32>, KernelError> {
            let v = f.to_f32(name)?;
            if v.len() != len {
                return Err(bad(format!(
                    "{name} has {} values, expected {len}",
                    v.len()
                )));
            }
            Ok(v)
        };
        // Capacity bounded by the file's tensors (9 per layer), not by a
        // count the file could state wrongly.
        let mut layers = Vec::with_capacity(n_layers.min(f.tensors.len() / 9));
        for l in 0..n_layers {
            let t = |s: &str| format!("blk.{l}.{s}.weight");
            let q = f.weights(&t("attn_q"))?;
            let k = f.weights(&t("attn_k"))?;
            let v = f.weights(&t("attn_v"))?;
            let qkv_fmt = format.unwrap_or(q.format());
            let qkv = OwnedWeights::concat_columns(&[q, k, v], qkv_fmt)?;
            let mats = [
                qkv,
                convert(&t("attn_output"))?,
                convert(&t("ffn_gate"))?,
                convert(&t("ffn_up"))?,
                convert(&t("ffn_down"))?,
            ];
            let layer = LlamaLayer::from_formatted(
                dims,
                norm(&t("attn_norm"), d)?,
                norm(&t("ffn_norm"), d)?,
                mats,
                max_positions,
            )
            .map_err(|e| bad(format!("layer {l}: {e}")))?;
            layers.push(layer);
        }
        let output = match f.tensor("output.weight") {
            Some(_) => Some(convert("output.weight")?),
            None => match format {
                // Tied: the output converted when a format is asked for.
                Some(fm) if fm != embed_w.format() => {
                    Some(OwnedWeights::concat_columns(&[embed_w], fm)?)
                }
                _ => None,
            },
        };
        if let Some(o) = &output
            && (o.view().k(), o.view().n()) != (d, vocab)
        {
            return Err(bad("output.weight does not match token_embd.weight"));
        }
        Ok(LlamaModel {
            dims,
            vocab,
            embed: f.mapped("token_embd.weight")?,
            output,
            output_norm: norm("output_norm.weight", d)?,
            layers,
            scratch: LlamaScratch::default(),
            int8: false,
            x: Vec::new(),
            h: Vec::new(),
            logits: Vec::new(),
        })
    }

    /// Multiplies every block-format matrix (Q8_0, Q4_0, Q4_1: the
    /// layers' and the output projection) in the opt-in int8 mode, as
    /// llama.cpp does: activations quantized per 32 to i8, integer dot
    /// products (AVX-512 VNNI where the CPU has it, else portable and slow —
    /// see [`crate::int8_accelerated`]). See [`LlamaLayer::with_int8`].
    pub fn set_int8(&mut self, on: bool) {
        self.int8 = on;
        self.layers = std::mem::take(&mut self.layers)
            .into_iter()
            .map(|l| l.with_int8(on))
            .collect();
    }

    /// Whether [`Self::set_int8`] is on.
    pub fn int8(&self) -> bool {
        self.int8
    }

    /// The layers' shape.
    pub fn dims(&self) -> LlamaDims {
        self.dims
    }

    /// Vocabulary size (logits per token).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The layers.
    pub fn layers(&self) -> &[LlamaLayer] {
        &self.layers
    }

    /// The token embeddings (`k = d`, `n = vocab`: column t is token t's
    /// vector).
    pub fn embeddings(&self) -> WeightsRef<'_> {
        self.embed.view()
    }

    /// The output projection (`k = d`, `n = vocab`; the embeddings when
    /// tied).
    pub fn output(&self) -> WeightsRef<'_> {
        self.output.as_ref().unwrap_or(&self.embed).view()
    }

    /// The final RMSNorm's scale.
    pub fn output_norm(&self) -> &[f32] {
        &self.output_norm
    }

    /// Bytes of every weight the model holds.
    pub fn weight_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .filter_map(|l| l.formatted())
            .flat_map(|m| m.iter().map(OwnedWeights::bytes))
            .sum();
        let norms = (2 * self.layers.len() + 1) * self.dims.d * 4;
        layers + norms + self.embed.bytes() + self.output.as_ref().map_or(0, OwnedWeights::bytes)
    }

    /// Empty KV caches for up to `max_len` tokens.
    pub fn new_cache(&self, max_len: usize) -> ModelCache {
        ModelCache {
            layers: self.layers.iter().map(|l| l.new_cache(max_len)).collect(),
        }
    }

    /// Empty f16 KV caches for up to `max_len` tokens (see
    /// [`KvCache::new_f16`]): half the memory and half the bytes a decode
    /// step reads from the cache, as llama.cpp's default cache.
    pub fn new_cache_f16(&self, max_len: usize) -> ModelCache {
        ModelCache {
            layers: self
                .layers
                .iter()
                .map(|l| l.new_cache_f16(max_len))
                .collect(),
        }
    }

    /// Runs `tokens` (a prompt, a chunk of one, or the one token of a
    /// decode step) at positions `cache.len()..`, appending to the cache,
    /// and returns the logits of the last token.
    ///
    /// # Errors
    /// [`KernelError::OutOfBounds`] naming `tokens` for an id past the
    /// vocabulary; the layers' errors (cache full, positions past the RoPE
    /// tables).
    pub fn forward(
        &mut self,
        tokens: &[u32],
        cache: &mut ModelCache,
        cfg: &Config,
    ) -> Result<&[f32], KernelError> {
        self.forward_timed(tokens, cache, false, cfg, None)
    }

    /// As [`LlamaModel::forward`], returning the logits of every token
    /// (`[tokens.len(), vocab]`) when `all_logits`, and adding the layers'
    /// stage times to `times`.
    ///
    /// # Errors
    /// As [`LlamaModel::forward`].
    pub fn forward_timed(
        &mut self,
        tokens: &[u32],
        cache: &mut ModelCache,
        all_logits: bool,
        cfg: &Config,
        times: Option<&mut LlamaStageTimes>,
    ) -> Result<&[f32], KernelError> {
        let n = tokens.len();
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(KernelError::bounds(
                "tokens",
                format!("token {t} is past the vocabulary of {}", self.vocab),
            ));
        }
        if cache.layers.len() != self.layers.len() {
            return Err(KernelError::shape("cache", "a cache of another model"));
        }
        if n == 0 {
            self.logits.clear();
            return Ok(&self.logits);
        }
        // The whole step runs inside the thread pool: every kernel's
        // parallel section then starts from a worker (its helpers are still
        // spinning from the last one) instead of waking the pool from
        // outside and parking the caller — ~150 parallel sections a token.
        let threads = cfg.parallelism.threads();
        crate::threads::install(threads, || self.step(tokens, cache, all_logits, cfg, times))?;
        Ok(&self.logits)
    }

    /// The body of [`LlamaModel::forward_timed`] after its checks.
    fn step(
        &mut self,
        tokens: &[u32],
        cache: &mut ModelCache,
        all_logits: bool,
        cfg: &Config,
        mut times: Option<&mut LlamaStageTimes>,
    ) -> Result<(), KernelError> {
        let (d, n) = (self.dims.d, tokens.len());
        self.x.resize(n * d, 0.0);
        let emb = self.embed.view();
        for (i, &t) in tokens.iter().enumerate() {
            emb.column_into(t as usize, &mut self.x[i * d..(i + 1) * d])?;
        }
        for (layer, c) in self.layers.iter().zip(&mut cache.layers) {
            layer.forward_with(
                &mut self.x,
                Some(c),
                &mut self.scratch,
                cfg,
                times.as_deref_mut(),
            )?;
        }
        let rows = if all_logits { n } else { 1 };
        let x = &self.x[(n - rows) * d..];
        self.h.resize(rows * d, 0.0);
        rms_norm(x, &self.output_norm, &mut self.h, self.dims.eps, cfg)?;
        self.logits.resize(rows * self.vocab, 0.0);
        let out = self.output.as_ref().unwrap_or(&self.embed).view();
        let int8 = self.int8
            && matches!(
                out.format(),
                WeightFormat::Q8_0 | WeightFormat::Q4_0 | WeightFormat::Q4_1
            );
        let product = if int8 {
            matmul_weights_int8
        } else {
            matmul_weights
        };
        product(
            MatMut::row_major(&mut self.logits, rows, self.vocab)?,
            MatRef::row_major(&self.h, rows, d)?,
            out,
            1.0,
            0.0,
            Epilogue::None,
            cfg,
        )
    }
}
