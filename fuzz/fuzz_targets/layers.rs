//! The GPT-2 and Llama layers and their `KvCache` over fuzzer-chosen
//! shapes, weight formats, ISA, threads, cache sizes and call sequences
//! (prefill in chunks, decode steps, rows that are not whole, a cache that
//! overflows or has the wrong shape, positions past the RoPE table).
//! Every call is `Ok` or an `Err` that leaves `x` and the cache as they
//! were; a sequence of accepted calls on finite inputs equals the reference
//! layer over all its tokens at once.
#![no_main]

#[path = "common.rs"]
mod common;
use arbitrary::Unstructured;
use common::*;
use libfuzzer_sys::fuzz_target;
use transformer_kernels::{
    Config, Gpt2Layer, Gpt2Weights, KvCache, LlamaDims, LlamaLayer, LlamaScratch, LlamaWeights,
    RopeLayout, RopeParams, WeightFormat, WeightLayout, reference,
};

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

/// One layer under test: forward `x` through it with `cache`.
enum Layer {
    Gpt2(Box<Gpt2Layer>),
    Llama(Box<LlamaLayer>, LlamaScratch),
}

impl Layer {
    fn forward(
        &mut self,
        x: &mut [f32],
        cache: Option<&mut KvCache>,
        cfg: &Config,
    ) -> Result<(), transformer_kernels::KernelError> {
        match self {
            Layer::Gpt2(l) => l.forward(x, cache, cfg, None),
            Layer::Llama(l, s) => l.forward_with(x, cache, s, cfg, None),
        }
    }

    /// The reference layer over `n` tokens from position 0.
    fn reference(&self, x: &[f32], n: usize) -> Vec<f32> {
        match self {
            Layer::Gpt2(l) => reference::gpt2_layer(&l.effective_weights(), x, n),
            Layer::Llama(l, _) => reference::llama_layer(&l.effective_weights(), x, n),
        }
    }
}

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let cfg = config(u)?;
    let fmt = if u.ratio(1, 4)? {
        *u.choose(&WeightFormat::ALL)?
    } else {
        WeightFormat::F32
    };
    let seed = u.int_in_range(0..=1000u64)?;
    // (layer, model width, KV heads, head dim, RoPE positions)
    let (mut layer, d, kv_heads, hd, max_pos) = if u.arbitrary::<bool>()? {
        // Widths of 32 or 64 now and then, so that the block formats load.
        let (heads, hd) = if u.ratio(1, 4)? {
            (u.int_in_range(1..=2usize)?, 32)
        } else {
            (u.int_in_range(1..=3usize)?, u.int_in_range(1..=9usize)?)
        };
        let mlp = *u.choose(&[1usize, 5, 32, 64])?;
        let w = Gpt2Weights::random(heads * hd, heads, mlp, seed);
        let Ok(l) = Gpt2Layer::new(w).and_then(|l| l.with_weight_format(fmt)) else {
            return Ok(());
        };
        (Layer::Gpt2(Box::new(l)), heads * hd, heads, hd, usize::MAX)
    } else {
        let kv_heads = u.int_in_range(1..=2usize)?;
        let heads = kv_heads * u.int_in_range(1..=3usize)?;
        let hd = *u.choose(&[2usize, 4, 6, 16, 32])?;
        let rotary_dim = 2 * u.int_in_range(1..=hd / 2)?;
        let layout = *u.choose(&[RopeLayout::HalfSplit, RopeLayout::Interleaved])?;
        let dims = LlamaDims {
            d: *u.choose(&[3usize, 8, 32, 64])?,
            heads,
            kv_heads,
            head_dim: hd,
            ffn: *u.choose(&[1usize, 7, 32])?,
            eps: 1e-5,
            rope: RopeParams {
                layout,
                ..RopeParams::new(rotary_dim, 10_000.0)
            },
        };
        let wl = *u.choose(&[WeightLayout::InOut, WeightLayout::OutIn])?;
        let max_pos = u.int_in_range(0..=12usize)?;
        let w = LlamaWeights::random(dims, wl, seed);
        let Ok(l) = LlamaLayer::new(w, max_pos).and_then(|l| l.with_weight_format(fmt)) else {
            return Ok(());
        };
        let d = dims.d;
        (
            Layer::Llama(Box::new(l), LlamaScratch::default()),
            d,
            kv_heads,
            hd,
            max_pos,
        )
    };

    let hostile = u.ratio(1, 8)?;
    let cache_len = u.int_in_range(0..=12usize)?;
    // 1 in 8: a cache of the wrong shape, which every call must refuse.
    let wrong_cache = u.ratio(1, 8)?;
    let mut cache = if wrong_cache {
        KvCache::new(cache_len, kv_heads + 1, hd)
    } else {
        KvCache::new(cache_len, kv_heads, hd)
    };
    let use_cache = !u.ratio(1, 4)?;
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for _ in 0..u.int_in_range(1..=4usize)? {
        let n = u.int_in_range(0..=6usize)?;
        // 1 in 10: rows that are not whole.
        let len = if u.ratio(1, 10)? { n * d + 1 } else { n * d };
        let x0 = values(u, len, hostile)?;
        let mut x = x0.clone();
        let before = cache.len();
        let res = layer.forward(&mut x, use_cache.then_some(&mut cache), &cfg);
        let start = if use_cache { before } else { 0 };
        // Whole rows (with d = 1 the extra element is one more row).
        let rows = len.is_multiple_of(d).then_some(len / d);
        let valid = cfg.isa.is_available()
            && rows.is_some_and(|r| {
                (!use_cache || (!wrong_cache && start + r <= cache_len)) && start + r <= max_pos
            });
        let n = rows.unwrap_or(n);
        match res {
            Err(e) => {
                assert!(!valid, "{:?}: valid call refused: {e}", cfg.isa);
                assert!(
                    x.iter().zip(&x0).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "x written on Err"
                );
                assert_eq!(cache.len(), before, "cache grew on Err");
            }
            Ok(()) => {
                assert!(valid, "{:?}: invalid call accepted", cfg.isa);
                if use_cache {
                    assert_eq!(cache.len(), before + n);
                    inputs.extend_from_slice(&x0);
                    outputs.extend_from_slice(&x);
                } else if !hostile && n > 0 {
                    check(&layer, &x0, &x, n, &cfg);
                }
            }
        }
    }
    let total = cache.len();
    if use_cache && !hostile && total > 0 {
        check(&layer, &inputs, &outputs, total, &cfg);
    }
    Ok(())
}

/// `got` (the layer over `n` tokens of `x`) equals the reference within
/// 1e-4 · (1 + |want|): the property tests hold the layers to 1e-5 on
/// residual streams of magnitude ≤ 2; this allows for the larger inputs
/// (±4) and random shapes here while a wrong mask, head or offset is off
/// by ≥ 1e-2.
fn check(layer: &Layer, x: &[f32], got: &[f32], n: usize, cfg: &Config) {
    let want = layer.reference(x, n);
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let tol = 1e-4 * (1.0 + w.abs());
        assert!(
            (g - w).abs() <= tol || (g.is_nan() && w.is_nan()),
            "{:?}: element {i} of {n} tokens: {g} vs {w}",
            cfg.isa
        );
    }
}
