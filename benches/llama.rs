//! The Llama MLP's gate, and a whole Llama layer, one thread:
//!
//! - `swiglu/<m>x<n>x<k>`: the gate projection `x·W_gate` alone (`plain`),
//!   with SwiGLU fused into its epilogue (`fused_silu_mul`: `silu(x·W_gate)
//!   ⊙ U`, U the up projection), and unfused (`matmul_then_swiglu`: the
//!   plain product, then a separate `swiglu` pass). Shapes of SmolLM2-135M
//!   (512×1536×576) and Llama-3.2-1B (512×8192×2048), weights `[in, out]`.
//! - `layer/llama-3.2-1b/prefill512`: [`LlamaLayer::forward`] over 512
//!   tokens (weights `[out, in]`, as checkpoints store them). The example
//!   `llama_layer` prints its per-stage breakdown.
//!
//! Throughput: flops (2·m·n·k per product), so "Gelem/s" reads as GFLOP/s.
//!
//! `cargo bench --bench llama`

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use std::time::Duration;
use transformer_kernels::{
    Config, Epilogue, LlamaDims, LlamaLayer, LlamaWeights, MatMut, MatRef, WeightLayout, matmul,
    swiglu_inplace,
};

fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed)) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn bench_swiglu(c: &mut Criterion) {
    let cfg = Config::default();
    for (m, n, k) in [(512usize, 1536usize, 576usize), (512, 8192, 2048)] {
        let (a, b, u) = (data(m * k, 1), data(k * n, 2), data(m * n, 3));
        let mut out = vec![0.0f32; m * n];
        let mut g = c.benchmark_group(format!("swiglu/{m}x{n}x{k}"));
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        if m * n * k > 1 << 30 {
            g.sample_size(10);
            g.measurement_time(Duration::from_secs(6));
        }
        let mm = |out: &mut [f32], ep: Epilogue| {
            matmul(
                MatMut::row_major(out, m, n).unwrap(),
                MatRef::row_major(black_box(&a), m, k).unwrap(),
                MatRef::row_major(&b, k, n).unwrap(),
                1.0,
                0.0,
                ep,
                &cfg,
            )
            .unwrap()
        };
        g.bench_function("plain", |bch| bch.iter(|| mm(&mut out, Epilogue::None)));
        g.bench_function("fused_silu_mul", |bch| {
            bch.iter(|| {
                let uv = MatRef::row_major(&u, m, n).unwrap();
                mm(&mut out, Epilogue::SiluMul(uv))
            })
        });
        g.bench_function("matmul_then_swiglu", |bch| {
            bch.iter(|| {
                mm(&mut out, Epilogue::None);
                swiglu_inplace(&mut out, &u, &cfg).unwrap();
            })
        });
        g.finish();
    }
}

fn bench_layer(c: &mut Criterion) {
    let cfg = Config::default();
    let dims = LlamaDims::llama_3_2_1b();
    let w = LlamaWeights::random(dims, WeightLayout::OutIn, 7);
    let n = 512;
    let mut layer = LlamaLayer::new(w, n).unwrap();
    let x0 = data(n * dims.d, 5);
    let mut g = c.benchmark_group("layer/llama-3.2-1b");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function(format!("prefill{n}"), |bch| {
        bch.iter(|| {
            let mut x = x0.clone();
            layer.forward(&mut x, None, &cfg, None).unwrap();
            black_box(x)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_swiglu, bench_layer);
criterion_main!(benches);
