//! # transformer-kernels
//!
//! Hand-tuned SIMD CPU kernels for the hot loops of a transformer, chosen at
//! run time for the CPU at hand (AVX-512, AVX2+FMA, NEON, scalar):
//!
//! - [`mod@matmul`]: packed, cache- and register-blocked f32 matmul with fused
//!   epilogues (bias, bias + GELU) and a streamed matrix-vector path;
//! - [`mod@attention`]: flash-style causal / non-causal multi-head attention
//!   with GQA, KV-cache decode (split-KV) and strided layouts;
//! - [`layer_norm`], [`rms_norm`]: row norms, one pass for the statistics;
//! - [`block`]: a GPT-2 decoder layer with KV cache built from the above;
//! - [`bias_gelu`]: fused bias add + GELU (exact erf or tanh form) in one pass;
//!   [`silu`], [`swiglu`] (and the matmul epilogue [`Epilogue::SiluMul`]);
//! - [`mod@quant`]: bf16, f16 and GGUF Q8_0/Q4_0/Q4_1 weights for
//!   [`matmul_weights`] (widened in registers, or while packing);
//! - [`mod@rope`]: rotary position embeddings in place on strided head views
//!   (half-split and interleaved, partial rotary, Llama 3 scaling);
//! - [`math`]: vector `exp`, `erf`, `erfc`, `tanh`, GELU shared by all kernels;
//! - `model` (feature `model`, on by default): a GGUF reader, its byte-level
//!   BPE tokenizer and a Llama-architecture model on the kernels above;
//! - [`mod@reference`]: naive scalar (f64) oracles for every kernel.
//!
//! Every kernel takes a [`Config`] (ISA level and thread budget), checks its
//! arguments and returns a [`KernelError`] naming the argument at fault
//! instead of panicking.
//!
//! ```
//! use transformer_kernels::{bias_gelu, Config, GeluKind};
//!
//! let (rows, cols) = (2, 3);
//! let x = vec![0.5f32; rows * cols];
//! let bias = [0.0f32, 1.0, -1.0];
//! let mut out = vec![0.0f32; rows * cols];
//! bias_gelu(&x, &bias, &mut out, GeluKind::Erf, &Config::default())?;
//! assert!((out[1] - 1.399_789).abs() < 1e-5); // gelu(1.5)
//! # Ok::<(), transformer_kernels::KernelError>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod act;
mod arch;
pub mod attention;
pub mod block;
pub mod error;
pub mod gelu;
#[doc(hidden)]
pub mod internals;
pub mod isa;
pub mod math;
pub mod matmul;
#[cfg(feature = "model")]
pub mod model;
pub mod norm;
pub mod quant;
pub mod reference;
pub mod rope;
mod simd;
mod threads;

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use attention::{
    AttentionOptions, HeadsElem, HeadsMut, HeadsRef, attention, attention_with_lse,
};
pub use block::{
    Gpt2Layer, Gpt2Weights, KvCache, LlamaDims, LlamaLayer, LlamaScratch, LlamaStageTimes,
    LlamaWeights, StageTimes, WeightLayout,
};
pub use error::KernelError;
pub use gelu::{
    GeluKind, MathFn, add_bias, bias_gelu, bias_gelu_inplace, gelu, gelu_inplace, map, silu,
    silu_inplace, swiglu, swiglu_inplace,
};
pub use isa::{Config, ISA_ENV, Isa, Parallelism};
pub use matmul::{
    Epilogue, MatMut, MatRef, int8_accelerated, matmul, matmul_weights, matmul_weights_int8,
};
pub use norm::{layer_norm, layer_norm_inplace, rms_norm, rms_norm_inplace};
pub use quant::{
    BlockQ4_0, BlockQ4_1, BlockQ8_0, OwnedWeights, WeightFormat, WeightsRef, bf16, f16,
    quantize_activations, quantize_q4_0, quantize_q4_1, quantize_q8_0,
};
pub use rope::{Positions, RopeLayout, RopeParams, RopeScaling, RopeTable, rope};
