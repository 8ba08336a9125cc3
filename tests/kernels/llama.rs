//! The Llama layer built from the kernels equals the same layer composed
//! from the reference kernels (`reference::llama_layer`), for prefill with
//! and without a cache, chunked prefill and every decode step, in both
//! weight orientations; decoding token by token gives the prefill's hidden
//! states.
//!
//! Tolerance 1e-5 absolute on a residual stream of magnitude ≤ ~2, as for
//! the GPT-2 layer (`tests/kernels/block.rs`, which says why a bound stacked from
//! the kernels' worst cases would be too loose): the errors seen are
//! rounding-sized (printed with `--nocapture`). It still sees what matters:
//! the wrong pair layout, frequency scaling left out, or gate and up
//! swapped each change the output by ≥ 100× the tolerance (asserted below).

use crate::common::*;
use transformer_kernels::{
    Config, KernelError, LlamaDims, LlamaLayer, LlamaWeights, Parallelism, RopeLayout, RopeParams,
    RopeScaling, WeightLayout, reference,
};

const TOL: f32 = 1e-5;

/// Small dims with GQA (6 query heads over 2 KV heads), partial rotary,
/// head_dim not a multiple of 16, and Llama 3 scaling.
fn dims(layout: RopeLayout) -> LlamaDims {
    LlamaDims {
        d: 48,
        heads: 6,
        kv_heads: 2,
        head_dim: 12,
        ffn: 100,
        eps: 1e-5,
        rope: RopeParams {
            rotary_dim: 8,
            theta: 10_000.0,
            layout,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_positions: 32,
            },
        },
    }
}

fn cfgs() -> Vec<Config> {
    configs()
        .into_iter()
        .chain([Config {
            parallelism: Parallelism::Threads(2),
            ..Config::default()
        }])
        .collect()
}

#[test]
fn prefill_chunks_and_decode_match_reference() {
    for (rl, wl) in [
        (RopeLayout::HalfSplit, WeightLayout::InOut),
        (RopeLayout::Interleaved, WeightLayout::OutIn),
    ] {
        let dm = dims(rl);
        let w = LlamaWeights::random(dm, wl, 5);
        let d = dm.d;
        for cfg in cfgs() {
            for n in shapes(&[9usize, 1, 33], 1) {
                let x0 = layer_input(n, d, 3 + n as u64);
                let want = reference::llama_layer(&w, &x0, n);
                let mut layer = LlamaLayer::new(w.clone(), 64).unwrap();
                let what = format!("{} {rl:?} {wl:?} n={n}", cfg.isa);

                let mut x = x0.clone();
                layer.forward(&mut x, None, &cfg, None).unwrap();
                let e = max_diff(&x, &want);
                println!("{what}: prefill max diff {e:.2e}");
                assert!(e <= TOL, "{what}: prefill max diff {e}");

                // Chunked prefill through a cache: chunks of 4 tokens.
                let mut cache = layer.new_cache(64);
                let mut xc = x0.clone();
                for chunk in xc.chunks_mut(4 * d) {
                    layer.forward(chunk, Some(&mut cache), &cfg, None).unwrap();
                }
                assert_eq!(cache.len(), n);
                let e = max_diff(&xc, &want);
                assert!(e <= TOL, "{what}: chunked prefill max diff {e}");

                // Token by token: step t is row t of the reference.
                let mut cache = layer.new_cache(64);
                let mut xt = x0.clone();
                for row in xt.chunks_mut(d) {
                    layer.forward(row, Some(&mut cache), &cfg, None).unwrap();
                }
                let e = max_diff(&xt, &want);
                assert!(e <= TOL, "{what}: decode max diff {e}");
                let e = max_diff(&xt, &x);
                assert!(e <= TOL, "{what}: decode vs prefill max diff {e}");
            }
        }
    }
}

/// The whole layer at the 4-lane width (`pulp::Scalar128b`) through
/// `forward_on`: prefill, chunked prefill and token-by-token decode, both
/// RoPE layouts and weight orientations, f32 and Q4_1 weights.
#[test]
fn four_lane_layer_matches_reference() {
    use transformer_kernels::{LlamaScratch, WeightFormat};
    let s4 = pulp::Scalar128b;
    for (rl, wl, fmt) in [
        (
            RopeLayout::HalfSplit,
            WeightLayout::InOut,
            WeightFormat::F32,
        ),
        (
            RopeLayout::Interleaved,
            WeightLayout::OutIn,
            WeightFormat::F32,
        ),
        (
            RopeLayout::Interleaved,
            WeightLayout::OutIn,
            WeightFormat::Q4_1,
        ),
    ] {
        let dm = LlamaDims {
            d: 64,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            ffn: 96,
            ..dims(rl)
        };
        let layer = LlamaLayer::new(LlamaWeights::random(dm, wl, 13), 64)
            .unwrap()
            .with_weight_format(fmt)
            .unwrap();
        let eff = layer.effective_weights();
        let mut scratch = LlamaScratch::default();
        for n in [1usize, 6, 19] {
            let what = format!("4-lane {rl:?} {wl:?} {fmt:?} n={n}");
            let x0 = layer_input(n, dm.d, 40 + n as u64);
            let want = reference::llama_layer(&eff, &x0, n);
            let mut x = x0.clone();
            layer
                .forward_on(s4, &mut x, None, &mut scratch, None)
                .unwrap();
            let e = max_diff(&x, &want);
            assert!(e <= TOL, "{what}: prefill max diff {e}");
            let mut cache = layer.new_cache(64);
            let mut xc = x0.clone();
            for chunk in xc.chunks_mut(4 * dm.d) {
                layer
                    .forward_on(s4, chunk, Some(&mut cache), &mut scratch, None)
                    .unwrap();
            }
            let e = max_diff(&xc, &want);
            assert!(e <= TOL, "{what}: chunked prefill max diff {e}");
            let mut cache = layer.new_cache(64);
            let mut xt = x0.clone();
            for row in xt.chunks_mut(dm.d) {
                layer
                    .forward_on(s4, row, Some(&mut cache), &mut scratch, None)
                    .unwrap();
            }
            let e = max_diff(&xt, &want);
            assert!(e <= TOL, "{what}: decode max diff {e}");
        }
    }
}

/// A layer on bf16 / f16 / Q8_0 / Q4_0 weights equals the reference layer
/// on those weights' exact values (`effective_weights`), for prefill
/// through the packed driver (n = 20) and the decode paths (n ≤ 8, and
/// token by token through a cache), in both orientations — and differs
/// from the f32 layer by far more than the tolerance (the conversion
/// really happened).
#[test]
fn low_precision_layers_match_reference_on_their_weights() {
    use transformer_kernels::WeightFormat;
    let dm = LlamaDims {
        d: 64,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        ffn: 96,
        ..dims(RopeLayout::HalfSplit)
    };
    for wl in [WeightLayout::InOut, WeightLayout::OutIn] {
        let w = LlamaWeights::random(dm, wl, 9);
        for fmt in [
            WeightFormat::Bf16,
            WeightFormat::F16,
            WeightFormat::Q8_0,
            WeightFormat::Q4_0,
        ] {
            let layer = LlamaLayer::new(w.clone(), 64).unwrap();
            let f32_layer = layer.clone();
            let mut layer = layer.with_weight_format(fmt).unwrap();
            assert_eq!(layer.weight_format(), fmt);
            let eff = layer.effective_weights();
            for n in [1usize, 5, 20] {
                let x0 = layer_input(n, dm.d, 40 + n as u64);
                let want = reference::llama_layer(&eff, &x0, n);
                for cfg in cfgs() {
                    let what = format!("{} {fmt:?} {wl:?} n={n}", cfg.isa);
                    let mut x = x0.clone();
                    layer.forward(&mut x, None, &cfg, None).unwrap();
                    let e = max_diff(&x, &want);
                    assert!(e <= TOL, "{what}: prefill max diff {e}");
                    let mut cache = layer.new_cache(64);
                    let mut xt = x0.clone();
                    for row in xt.chunks_mut(dm.d) {
                        layer.forward(row, Some(&mut cache), &cfg, None).unwrap();
                    }
                    let e = max_diff(&xt, &want);
                    assert!(e <= TOL, "{what}: decode max diff {e}");
                }
                let mut xf = x0.clone();
                let mut fl = f32_layer.clone();
                fl.forward(&mut xf, None, &Config::default(), None).unwrap();
                let e = max_diff(&xf, &want);
                assert!(
                    e > 10.0 * TOL,
                    "{fmt:?}: the f32 layer is within {e} of the converted one"
                );
            }
        }
    }
    // The block formats need input widths that are multiples of 32.
    let w = LlamaWeights::random(dims(RopeLayout::HalfSplit), WeightLayout::OutIn, 1);
    let e = LlamaLayer::new(w, 8)
        .unwrap()
        .with_weight_format(WeightFormat::Q8_0)
        .unwrap_err();
    assert_eq!(e.arg(), "k");
}

/// The tolerance is tight enough to see the bugs that matter.
/// The int8 mode in a layer (`with_int8`, Q8_0 / Q4_0 / Q4_1) is the
/// layer composed by hand from the public kernels with every product in
/// `matmul_weights_int8` — bit for bit, on every level, for prefill (the
/// packed path at 20 tokens) and token-by-token decode. The products
/// themselves are held to the f64 reference by `tests/kernels/int8.rs`; this checks
/// the wiring (which products go int8, their epilogues and residuals). No
/// tolerance against another level or the f32-activation layer is claimed:
/// quantizing activations is discontinuous, so a rounding-sized difference
/// upstream can move a quantized activation by a whole step (1/127 of its
/// block's largest value). The int8 layer does differ from the
/// f32-activation one (the mode ran).
#[test]
fn int8_layers_are_the_composition_of_int8_products() {
    use transformer_kernels::{
        AttentionOptions, Epilogue, HeadsMut, HeadsRef, MatMut, MatRef, Positions, RopeTable,
        WeightFormat, attention, matmul_weights_int8, rms_norm,
    };
    let dm = LlamaDims {
        d: 64,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        ffn: 96,
        ..dims(RopeLayout::Interleaved)
    };
    let (d, hd, ffn, hq, hk) = (dm.d, dm.head_dim, dm.ffn, dm.heads, dm.kv_heads);
    let wq = dm.qkv_width();
    let w = LlamaWeights::random(dm, WeightLayout::OutIn, 17);
    let table = RopeTable::new(&dm.rope, 64).unwrap();
    // One token block of the layer from position `pos0`, by hand; `kv`
    // holds the K and V rows of earlier tokens ([pos][hk·hd] each).
    let by_hand = |layer: &LlamaLayer,
                   x: &mut [f32],
                   kv: &mut (Vec<f32>, Vec<f32>),
                   pos0: usize,
                   cfg: &Config| {
        let mats = layer.formatted().unwrap();
        let n = x.len() / d;
        let mut h = vec![0.0f32; n * d];
        rms_norm(x, &layer.weights().attn_norm, &mut h, dm.eps, cfg).unwrap();
        let mut qkv = vec![0.0f32; n * wq];
        let prod = |c: MatMut<'_>, a: MatRef<'_>, i: usize, beta: f32, e: Epilogue<'_>| {
            matmul_weights_int8(c, a, mats[i].view(), 1.0, beta, e, cfg).unwrap()
        };
        prod(
            MatMut::row_major(&mut qkv, n, wq).unwrap(),
            MatRef::row_major(&h, n, d).unwrap(),
            0,
            0.0,
            Epilogue::None,
        );
        let st = [n * wq, wq, hd];
        let pos = Positions::Start(pos0);
        table
            .apply(
                HeadsMut::strided(&mut qkv, 1, n, hq, hd, st).unwrap(),
                pos,
                cfg,
            )
            .unwrap();
        table
            .apply(
                HeadsMut::strided(&mut qkv[hq * hd..], 1, n, hk, hd, st).unwrap(),
                pos,
                cfg,
            )
            .unwrap();
        for t in 0..n {
            let row = &qkv[t * wq..(t + 1) * wq];
            kv.0.extend_from_slice(&row[hq * hd..(hq + hk) * hd]);
            kv.1.extend_from_slice(&row[(hq + hk) * hd..]);
        }
        let len = pos0 + n;
        let mut att = vec![0.0f32; n * hq * hd];
        attention(
            HeadsMut::bshd(&mut att, 1, n, hq, hd).unwrap(),
            HeadsRef::strided(&qkv, 1, n, hq, hd, st).unwrap(),
            HeadsRef::bshd(&kv.0, 1, len, hk, hd).unwrap(),
            HeadsRef::bshd(&kv.1, 1, len, hk, hd).unwrap(),
            &AttentionOptions {
                causal: true,
                scale: None,
            },
            cfg,
        )
        .unwrap();
        prod(
            MatMut::row_major(x, n, d).unwrap(),
            MatRef::row_major(&att, n, hq * hd).unwrap(),
            1,
            1.0,
            Epilogue::None,
        );
        rms_norm(x, &layer.weights().ffn_norm, &mut h, dm.eps, cfg).unwrap();
        let (mut up, mut gate) = (vec![0.0f32; n * ffn], vec![0.0f32; n * ffn]);
        let hv = MatRef::row_major(&h, n, d).unwrap();
        prod(
            MatMut::row_major(&mut up, n, ffn).unwrap(),
            hv,
            3,
            0.0,
            Epilogue::None,
        );
        prod(
            MatMut::row_major(&mut gate, n, ffn).unwrap(),
            hv,
            2,
            0.0,
            Epilogue::SiluMul(MatRef::row_major(&up, n, ffn).unwrap()),
        );
        prod(
            MatMut::row_major(x, n, d).unwrap(),
            MatRef::row_major(&gate, n, ffn).unwrap(),
            4,
            1.0,
            Epilogue::None,
        );
    };
    for fmt in [WeightFormat::Q8_0, WeightFormat::Q4_0, WeightFormat::Q4_1] {
        let f32_act = LlamaLayer::new(w.clone(), 64)
            .unwrap()
            .with_weight_format(fmt)
            .unwrap();
        let mut layer = f32_act.clone().with_int8(true);
        assert!(layer.int8() && !f32_act.int8());
        for cfg in cfgs() {
            let what = format!("{} {fmt:?}", cfg.isa);
            let x0 = layer_input(20, d, 71);
            let mut want = x0.clone();
            by_hand(&layer, &mut want, &mut (Vec::new(), Vec::new()), 0, &cfg);
            let mut x = x0.clone();
            layer.forward(&mut x, None, &cfg, None).unwrap();
            assert_eq!(x, want, "{what}: prefill");
            // Token by token through the cache, against the same by hand.
            let (mut cache, mut kv) = (layer.new_cache(64), (Vec::new(), Vec::new()));
            for t in 0..5 {
                let mut row = x0[t * d..(t + 1) * d].to_vec();
                let mut want = row.clone();
                by_hand(&layer, &mut want, &mut kv, t, &cfg);
                layer
                    .forward(&mut row, Some(&mut cache), &cfg, None)
                    .unwrap();
                assert_eq!(row, want, "{what}: decode step {t}");
            }
            let mut base = x0.clone();
            let mut f = f32_act.clone();
            f.forward(&mut base, None, &cfg, None).unwrap();
            let e = max_diff(&x, &base);
            assert!(e > TOL, "{what}: int8 within {e} of f32 activations");
        }
    }
}

#[test]
fn tolerance_sees_plausible_bugs() {
    let dm = dims(RopeLayout::HalfSplit);
    let w = LlamaWeights::random(dm, WeightLayout::InOut, 5);
    let (n, d) = (12, dm.d);
    let x0 = layer_input(n, d, 77);
    let want = reference::llama_layer(&w, &x0, n);
    let mut bugs: Vec<(&str, LlamaWeights)> = Vec::new();
    let mut other_layout = w.clone();
    other_layout.dims.rope.layout = RopeLayout::Interleaved;
    bugs.push(("interleaved pairs", other_layout));
    let mut swapped = w.clone();
    std::mem::swap(&mut swapped.w_gate, &mut swapped.w_up);
    bugs.push(("gate and up swapped", swapped));
    let mut no_scaling = w.clone();
    no_scaling.dims.rope.scaling = RopeScaling::None;
    bugs.push(("no frequency scaling", no_scaling));
    for (what, wb) in bugs {
        let got = reference::llama_layer(&wb, &x0, n);
        let e = max_diff(&got, &want);
        assert!(e >= 100.0 * TOL, "{what}: only {e} from the right layer");
    }
}

#[test]
fn bad_weights_and_inputs_are_errors() {
    let dm = dims(RopeLayout::HalfSplit);
    let w = LlamaWeights::random(dm, WeightLayout::InOut, 1);
    assert!(reference::llama_layer(&w, &[], 0).is_empty());
    let mut bad = w.clone();
    bad.w_up.pop();
    let e = LlamaLayer::new(bad, 16).unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "weights", .. }),
        "{e}"
    );
    let mut bad = w.clone();
    bad.dims.kv_heads = 4; // does not divide 6
    assert_eq!(LlamaLayer::new(bad, 16).unwrap_err().arg(), "weights");
    let mut bad = w.clone();
    bad.dims.rope.rotary_dim = 14; // > head_dim 12
    assert_eq!(LlamaLayer::new(bad, 16).unwrap_err().arg(), "rotary_dim");

    let mut layer = LlamaLayer::new(w, 4).unwrap();
    let cfg = Config::default();
    let mut x = vec![0.5f32; 47];
    assert_eq!(
        layer.forward(&mut x, None, &cfg, None).unwrap_err().arg(),
        "x"
    );
    // Past the RoPE table: 5 tokens, 4 positions.
    let mut x = vec![0.5f32; 5 * 48];
    let orig = x.clone();
    let e = layer.forward(&mut x, None, &cfg, None).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::OutOfBounds {
                arg: "positions",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(x, orig);
    // A cache of the wrong shape (GPT-style: one KV head per query head).
    let mut cache = transformer_kernels::KvCache::new(4, 6, 12);
    let mut x = vec![0.5f32; 48];
    let e = layer
        .forward(&mut x, Some(&mut cache), &cfg, None)
        .unwrap_err();
    assert_eq!(e.arg(), "cache");
    // A full cache.
    let mut cache = layer.new_cache(1);
    layer.forward(&mut x, Some(&mut cache), &cfg, None).unwrap();
    assert_eq!(
        layer
            .forward(&mut x, Some(&mut cache), &cfg, None)
            .unwrap_err()
            .arg(),
        "cache"
    );
}

/// An f16 KV cache (`KvCache::new_f16`): chunked prefill and token-by-token
/// decode through it stay within the rounding of each cached key and value
/// (relative 2⁻¹¹) of the f32 reference, and do move off it (the halves are
/// what attention read). The bound, measured with margin as `TOL` is: one
/// rounding of k moves a score by ≤ 2⁻¹¹·scale·Σ|q·k| (≤ ~1e-3 here) and a
/// softmax weight by twice that relatively; one of v moves the head's output
/// by ≤ 2⁻¹¹·max|v|; W_o (48 inputs of ≤ ~0.15) can add those up to ~7e-3
/// on the residual stream, worst case. Seen: 2.3e-4 on every level.
#[test]
fn f16_cache_stays_within_the_rounding_of_keys_and_values() {
    const TOL16: f32 = 2e-3;
    let dm = dims(RopeLayout::HalfSplit);
    let w = LlamaWeights::random(dm, WeightLayout::OutIn, 7);
    let d = dm.d;
    for cfg in cfgs() {
        let n = 33;
        let x0 = layer_input(n, d, 11);
        let want = reference::llama_layer(&w, &x0, n);
        let mut layer = LlamaLayer::new(w.clone(), 64).unwrap();
        let mut cache = layer.new_cache_f16(64);
        assert!(cache.is_f16());
        assert_eq!(2 * cache.bytes(), layer.new_cache(64).bytes());
        let mut xc = x0.clone();
        for chunk in xc.chunks_mut(5 * d) {
            layer.forward(chunk, Some(&mut cache), &cfg, None).unwrap();
        }
        let e = max_diff(&xc, &want);
        println!("{}: f16 cache, chunked prefill max diff {e:.2e}", cfg.isa);
        assert!(e <= TOL16, "{}: chunked prefill max diff {e}", cfg.isa);
        assert!(e > TOL, "{}: the f16 cache changed nothing ({e})", cfg.isa);

        let mut cache = layer.new_cache_f16(64);
        let mut xt = x0.clone();
        for row in xt.chunks_mut(d) {
            layer.forward(row, Some(&mut cache), &cfg, None).unwrap();
        }
        let e = max_diff(&xt, &want);
        println!("{}: f16 cache, decode max diff {e:.2e}", cfg.isa);
        assert!(e <= TOL16, "{}: decode max diff {e}", cfg.isa);
    }
}
