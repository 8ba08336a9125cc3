//! Flash attention vs the naive materialised version (scores as a full
//! N×N matrix through our own matmul, softmax, then P·V), causal and not,
//! across sequence lengths: the time grows as N², the plots use a
//! logarithmic axis. Plus decode (one query against a KV cache, f32 and
//! f16) next to a plain read of the f32 bytes, 1 and 2 threads, and
//! grouped-query decode (`decode_gqa`: SmolLM2's 9 heads on 3 KV heads,
//! Llama-3-8B's 32 on 8 of 128).
//!
//! Throughput is useful FLOPs as elements (causal 2·N²·D·H, non-causal
//! 4·N²·D·H; decode 4·kv_len·D·H): criterion's "Gelem/s" reads as GFLOP/s.
//!
//! Also this core's FMA peak (`attention/peak`), for "% of peak". PyTorch
//! at the same shapes: `scripts/peers/torch_bench.py`, joined by
//! `scripts/bench_table.py --peers`.
//!
//! `cargo bench --bench attention`; a subset: `cargo bench --bench attention -- prefill_causal/h12_d64`.

use criterion::{
    AxisScale, BenchmarkId, Criterion, PlotConfiguration, Throughput, black_box, criterion_group,
    criterion_main,
};
use std::time::Duration;
use transformer_kernels::isa::fma_peak_gflops;
use transformer_kernels::{
    AttentionOptions, Config, Epilogue, HeadsElem, HeadsMut, HeadsRef, Isa, MatMut, MatRef,
    Parallelism, attention, matmul,
};

fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed)) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

#[allow(clippy::too_many_arguments)]
/// The naive version: per head, S = scale·Q·Kᵀ materialised (N×N), masked,
/// softmax row by row, O = P·V. Q, K, V, O are `[N, H, D]` (BSHD, B = 1).
fn naive(
    out: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    h: usize,
    d: usize,
    causal: bool,
    s: &mut Vec<f32>,
) {
    let cfg = Config::default();
    s.resize(n * n, 0.0);
    let scale = 1.0 / (d as f32).sqrt();
    for hh in 0..h {
        let qv = MatRef::new(&q[hh * d..], n, d, h * d, 1).unwrap();
        let kv = MatRef::new(&k[hh * d..], n, d, h * d, 1).unwrap();
        matmul(
            MatMut::row_major(s, n, n).unwrap(),
            qv,
            kv.t(),
            scale,
            0.0,
            Epilogue::None,
            &cfg,
        )
        .unwrap();
        for i in 0..n {
            let row = &mut s[i * n..(i + 1) * n];
            let vis = if causal { i + 1 } else { n };
            let m = row[..vis].iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for x in row[..vis].iter_mut() {
                *x = (*x - m).exp();
                sum += *x;
            }
            for x in row[..vis].iter_mut() {
                *x /= sum;
            }
            row[vis..].fill(0.0);
        }
        let vv = MatRef::new(&v[hh * d..], n, d, h * d, 1).unwrap();
        let om = MatMut::new(&mut out[hh * d..], n, d, h * d, 1).unwrap();
        matmul(
            om,
            MatRef::row_major(s, n, n).unwrap(),
            vv,
            1.0,
            0.0,
            Epilogue::None,
            &cfg,
        )
        .unwrap();
    }
}

fn prefill(c: &mut Criterion, h: usize, d: usize, causal: bool, ns: &[usize]) {
    let name = format!(
        "attention/prefill_{}/h{h}_d{d}",
        if causal { "causal" } else { "full" }
    );
    let mut g = c.benchmark_group(name);
    g.plot_config(PlotConfiguration::default().summary_scale(AxisScale::Logarithmic));
    let opts = AttentionOptions {
        causal,
        scale: None,
    };
    let mut scratch = Vec::new();
    for &n in ns {
        let (q, k, v) = (data(n * h * d, 1), data(n * h * d, 2), data(n * h * d, 3));
        let mut out = vec![0.0f32; n * h * d];
        let flops = (if causal { 2 } else { 4 }) * n * n * d * h;
        g.throughput(Throughput::Elements(flops as u64));
        let t = 2.0 * flops as f64 / 150e9; // rough seconds per call
        if t > 0.05 {
            g.sample_size(10)
                .measurement_time(Duration::from_secs_f64((12.0 * t).max(3.0)));
        } else {
            g.sample_size(30).measurement_time(Duration::from_secs(3));
        }
        let (qr, kr, vr) = (
            HeadsRef::bshd(&q, 1, n, h, d).unwrap(),
            HeadsRef::bshd(&k, 1, n, h, d).unwrap(),
            HeadsRef::bshd(&v, 1, n, h, d).unwrap(),
        );
        for threads in [1usize, 2] {
            if threads == 2 && !causal {
                continue;
            }
            let cfg = config(threads);
            g.bench_with_input(
                BenchmarkId::new(format!("flash_{threads}t"), n),
                &n,
                |b, _| {
                    b.iter(|| {
                        attention(
                            HeadsMut::bshd(&mut out, 1, n, h, d).unwrap(),
                            black_box(qr),
                            kr,
                            vr,
                            &opts,
                            &cfg,
                        )
                        .unwrap()
                    })
                },
            );
        }
        // Naive: up to the N where one call stays well under 2 s.
        if n <= 2048 {
            g.bench_with_input(BenchmarkId::new("naive_materialised_1t", n), &n, |b, _| {
                b.iter(|| {
                    naive(
                        &mut out,
                        black_box(&q),
                        &k,
                        &v,
                        n,
                        h,
                        d,
                        causal,
                        &mut scratch,
                    )
                })
            });
        }
    }
    g.finish();
}

fn bench_prefill(c: &mut Criterion) {
    let ns = [128, 256, 512, 1024, 2048, 4096, 8192];
    prefill(c, 12, 64, true, &ns);
    prefill(c, 8, 128, true, &ns);
    prefill(c, 12, 64, false, &[256, 1024, 4096]);
}

/// One query row per head against a KV cache of kv_len, next to a plain
/// read of the same K and V bytes (the bandwidth bound).
fn bench_decode(c: &mut Criterion) {
    decode_group(
        c,
        "attention/decode/h12_d64",
        (12, 12, 64),
        &[512, 2048, 8192, 32768],
        true,
    );
    // Grouped-query attention: SmolLM2-135M (9 query heads on 3 KV heads)
    // and Llama-3-8B (32 on 8, D = 128).
    decode_group(
        c,
        "attention/decode_gqa/h9_kv3_d64",
        (9, 3, 64),
        &[2048, 8192],
        false,
    );
    decode_group(
        c,
        "attention/decode_gqa/h32_kv8_d128",
        (32, 8, 128),
        &[2048, 8192],
        false,
    );
}

/// One decode group: `(query heads, KV heads, D)` at each kv_len, f32 (and
/// with `f16`, an f16 KV cache) next to the read of K and V.
fn decode_group(
    c: &mut Criterion,
    name: &str,
    (h, hk, d): (usize, usize, usize),
    lks: &[usize],
    f16: bool,
) {
    let mut g = c.benchmark_group(name);
    g.plot_config(PlotConfiguration::default().summary_scale(AxisScale::Logarithmic));
    for &lk in lks {
        let (k, v, q) = (data(lk * hk * d, 2), data(lk * hk * d, 3), data(h * d, 1));
        let mut out = vec![0.0f32; h * d];
        g.throughput(Throughput::Elements((4 * lk * d * h) as u64));
        g.sample_size(if lk >= 8192 { 20 } else { 50 })
            .measurement_time(Duration::from_secs(3));
        let (kr, vr) = (
            HeadsRef::bshd(&k, 1, lk, hk, d).unwrap(),
            HeadsRef::bshd(&v, 1, lk, hk, d).unwrap(),
        );
        let qr = HeadsRef::bshd(&q, 1, 1, h, d).unwrap();
        decode_step(&mut g, "flash", lk, &mut out, qr, kr, vr);
        if f16 {
            // The same step from an f16 KV cache (half the bytes).
            let to_f16 = |x: &[f32]| -> Vec<half::f16> {
                x.iter().map(|&e| half::f16::from_f32(e)).collect()
            };
            let (k16, v16) = (to_f16(&k), to_f16(&v));
            let (kr16, vr16) = (
                HeadsRef::bshd(&k16, 1, lk, hk, d).unwrap(),
                HeadsRef::bshd(&v16, 1, lk, hk, d).unwrap(),
            );
            decode_step(&mut g, "flash_f16kv", lk, &mut out, qr, kr16, vr16);
        }
        // Read K and V once (vectorised sum): the memory-bound floor.
        g.bench_with_input(BenchmarkId::new("read_kv_1t", lk), &lk, |b, _| {
            b.iter(|| {
                let f = |x: &[f32]| {
                    x.chunks_exact(16).fold([0f32; 16], |mut a, c| {
                        for i in 0..16 {
                            a[i] += c[i];
                        }
                        a
                    })
                };
                black_box((f(black_box(&k)), f(black_box(&v))))
            })
        });
    }
    g.finish();
}

/// The detected level on `threads` threads (1: the caller alone).
fn config(threads: usize) -> Config {
    Config {
        isa: Isa::detect(),
        parallelism: if threads == 1 {
            Parallelism::Serial
        } else {
            Parallelism::Threads(threads)
        },
    }
}

/// `{name}_{1,2}t/{lk}`: one decode step (causal, one query per head).
fn decode_step<T: HeadsElem>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    lk: usize,
    out: &mut [f32],
    q: HeadsRef<'_>,
    k: HeadsRef<'_, T>,
    v: HeadsRef<'_, T>,
) {
    let (h, d) = (q.heads(), q.head_dim());
    let opts = AttentionOptions {
        causal: true,
        scale: None,
    };
    for threads in [1usize, 2] {
        let cfg = config(threads);
        g.bench_with_input(
            BenchmarkId::new(format!("{name}_{threads}t"), lk),
            &lk,
            |b, _| {
                b.iter(|| {
                    attention(
                        HeadsMut::bshd(out, 1, 1, h, d).unwrap(),
                        black_box(q),
                        k,
                        v,
                        &opts,
                        &cfg,
                    )
                    .unwrap()
                })
            },
        );
    }
}

/// This core's FMA peak in the same run (as in the matmul bench), so
/// `scripts/bench_table.py` can give each prefill figure as % of peak.
fn bench_peak(c: &mut Criterion) {
    let iters = 100_000usize;
    let mut g = c.benchmark_group("attention/peak");
    let isa = Isa::detect();
    if isa != Isa::Scalar {
        // fma_peak_gflops runs its loop three times (best of three).
        g.throughput(Throughput::Elements(
            (3 * iters * 12 * isa.f32_lanes() * 2) as u64,
        ));
        g.bench_function(format!("fma_{isa}_1t"), |b| {
            b.iter(|| fma_peak_gflops(isa, iters).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench_peak, bench_prefill, bench_decode);
criterion_main!(benches);
