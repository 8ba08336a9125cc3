//! RoPE on Q and K inside a fused QKV buffer, in place, against two peers in
//! the same run:
//!
//! - `copy`: a plain copy of the same bytes (Q and K of every token, read
//!   and written once) — the memory-bound ceiling;
//! - `scalar_loop`: the straightforward per-pair loop engines write (cos and
//!   sin from the same precomputed f32 table, as candle does; llama.cpp
//!   computes them inside the loop, which is slower still), compiled with
//!   the same optimisation flags (LLVM may vectorise it where it can).
//!
//! Shapes: 32 heads × 128 (MHA, Llama-2-7B) and SmolLM2's 9 query / 3 KV
//! heads × 64, N = 128 … 8192 tokens, both pair layouts, one thread.
//! Throughput is bytes of Q and K (read + written), so "GiB/s" compares
//! directly with the copy.
//!
//! `cargo bench --bench rope`

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use std::time::Duration;
use transformer_kernels::{Config, HeadsMut, Positions, RopeLayout, RopeParams, RopeTable};

/// (label, query heads, kv heads, head_dim, tokens)
const SHAPES: &[(&str, usize, usize, usize, &[usize])] = &[
    ("32x128", 32, 32, 128, &[128, 512, 2048, 8192]),
    ("9+3x64", 9, 3, 64, &[128, 2048, 8192]),
];

/// The scalar peer: every token, every head, every pair.
#[allow(clippy::too_many_arguments)]
fn scalar_loop(
    qkv: &mut [f32],
    n: usize,
    row: usize,
    at: usize,
    heads: usize,
    d: usize,
    table: &[f32],
    interleaved: bool,
) {
    let h = d / 2;
    for t in 0..n {
        let cs = &table[t * d..(t + 1) * d];
        for hh in 0..heads {
            let x = &mut qkv[t * row + at + hh * d..][..d];
            for i in 0..h {
                if interleaved {
                    let (c, s) = (cs[2 * i], cs[2 * i + 1]);
                    let (a, b) = (x[2 * i], x[2 * i + 1]);
                    x[2 * i] = a * c - b * s;
                    x[2 * i + 1] = b * c + a * s;
                } else {
                    let (c, s) = (cs[i], cs[h + i]);
                    let (a, b) = (x[i], x[h + i]);
                    x[i] = a * c - b * s;
                    x[h + i] = b * c + a * s;
                }
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let cfg = Config::default();
    for &(label, hq, hk, d, ns) in SHAPES {
        let row = (hq + 2 * hk) * d;
        let mut g = c.benchmark_group(format!("rope/{label}"));
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        g.sample_size(10);
        for &n in ns {
            let mut qkv: Vec<f32> = (0..n * row).map(|i| (i % 97) as f32 * 0.01).collect();
            // Q and K of every token: read and written once.
            let bytes = 2 * 4 * n * (hq + hk) * d;
            g.throughput(Throughput::Bytes(bytes as u64));
            let qk = (hq + hk) * d;
            let mut dst = vec![0.0f32; n * qk];
            g.bench_with_input(BenchmarkId::new("copy", n), &n, |b, _| {
                b.iter(|| {
                    for t in 0..n {
                        dst[t * qk..(t + 1) * qk].copy_from_slice(&qkv[t * row..t * row + qk]);
                    }
                    black_box(&mut dst);
                })
            });
            for layout in [RopeLayout::HalfSplit, RopeLayout::Interleaved] {
                let params = RopeParams {
                    layout,
                    ..RopeParams::new(d, 10_000.0)
                };
                let table = RopeTable::new(&params, n).unwrap();
                let name = match layout {
                    RopeLayout::HalfSplit => "half",
                    RopeLayout::Interleaved => "interleaved",
                };
                let st = [n * row, row, d];
                g.bench_with_input(BenchmarkId::new(format!("ours_{name}"), n), &n, |b, _| {
                    b.iter(|| {
                        let q = HeadsMut::strided(&mut qkv, 1, n, hq, d, st).unwrap();
                        table.apply(q, Positions::Start(0), &cfg).unwrap();
                        let k = HeadsMut::strided(&mut qkv[hq * d..], 1, n, hk, d, st).unwrap();
                        table.apply(k, Positions::Start(0), &cfg).unwrap();
                    })
                });
                // The same table rows, as a flat array for the peer.
                let mut flat = vec![0.0f32; n * d];
                let mut probe = vec![0.0f32; n * d];
                // Rotating (1, 0) pairs reads cos and sin back out of the
                // kernel: cos at the first element, sin at its partner.
                for t in 0..n {
                    for i in 0..d / 2 {
                        let (ia, ib) = match layout {
                            RopeLayout::HalfSplit => (i, d / 2 + i),
                            RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                        };
                        probe[t * d + ia] = 1.0;
                        probe[t * d + ib] = 0.0;
                    }
                }
                table
                    .apply(
                        HeadsMut::bshd(&mut probe, 1, n, 1, d).unwrap(),
                        Positions::Start(0),
                        &cfg,
                    )
                    .unwrap();
                flat.copy_from_slice(&probe);
                let inter = layout == RopeLayout::Interleaved;
                g.bench_with_input(
                    BenchmarkId::new(format!("scalar_loop_{name}"), n),
                    &n,
                    |b, _| {
                        b.iter(|| {
                            scalar_loop(&mut qkv, n, row, 0, hq, d, &flat, inter);
                            scalar_loop(&mut qkv, n, row, hq * d, hk, d, &flat, inter);
                        })
                    },
                );
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
