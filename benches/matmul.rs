//! Our matmul vs the `gemm` crate (built with `x86-v4`, so it uses AVX-512)
//! in the same run, 1 and 2 threads, plus a tiny FMA loop measuring this
//! core's peak so "% of peak" comes from the same run.
//!
//! Throughput is reported as elements = floating-point operations (2·m·n·k):
//! criterion's "Gelem/s" reads as GFLOP/s.
//!
//! `cargo bench --bench matmul`; one group: `cargo bench --bench matmul -- 512x768x3072`.

#[path = "common/llc.rs"]
mod llc;
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use llc::llc_bytes;
use std::time::Duration;
use transformer_kernels::isa::fma_peak_gflops;
use transformer_kernels::{
    Config, Epilogue, GeluKind, Isa, MatMut, MatRef, Parallelism, bias_gelu_inplace, matmul,
};

/// (m, n, k, label)
const SHAPES: &[(usize, usize, usize, &str)] = &[
    (32, 32, 32, "square"),
    (48, 48, 48, "square"),
    (64, 64, 64, "square"),
    (96, 96, 96, "square"),
    (128, 128, 128, "square"),
    (256, 256, 256, "square"),
    (512, 512, 512, "square"),
    (1024, 1024, 1024, "square"),
    (2048, 2048, 2048, "square"),
    (512, 2304, 768, "gpt2_qkv"),
    (512, 3072, 768, "gpt2_mlp_up"),
    (512, 768, 3072, "gpt2_mlp_down"),
    (1024, 1024, 64, "attn_scores"),
    (1, 3072, 768, "decode"),
    (1, 4096, 4096, "decode_warm"),
];

fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed)) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn ours(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    ep: Epilogue,
    cfg: &Config,
) {
    matmul(
        MatMut::row_major(c, m, n).unwrap(),
        MatRef::row_major(a, m, k).unwrap(),
        MatRef::row_major(b, k, n).unwrap(),
        1.0,
        0.0,
        ep,
        cfg,
    )
    .unwrap();
}

fn peer(c: &mut [f32], a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize), threads: usize) {
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: row-major buffers of exactly m×k, k×n and m×n elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

fn bench_shapes(c: &mut Criterion) {
    let isa = Isa::detect();
    for &(m, n, k, label) in SHAPES {
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let mut out = vec![0.0f32; m * n];
        let mut g = c.benchmark_group(format!("matmul/{label}/{m}x{n}x{k}"));
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        if m * n * k >= 1 << 30 {
            g.sample_size(10).measurement_time(Duration::from_secs(5));
        }
        for threads in [1usize, 2] {
            let cfg = Config {
                isa,
                parallelism: if threads == 1 {
                    Parallelism::Serial
                } else {
                    Parallelism::Threads(threads)
                },
            };
            g.bench_function(
                BenchmarkId::new(format!("ours_{isa}"), format!("{threads}t")),
                |bch| {
                    bch.iter(|| {
                        ours(
                            &mut out,
                            black_box(&a),
                            black_box(&b),
                            (m, n, k),
                            Epilogue::None,
                            &cfg,
                        )
                    })
                },
            );
            g.bench_function(
                BenchmarkId::new("gemm_crate", format!("{threads}t")),
                |bch| bch.iter(|| peer(&mut out, black_box(&a), black_box(&b), (m, n, k), threads)),
            );
        }
        g.finish();
    }
}

/// Decode with the weights streamed from DRAM: rotate through 64 MiB
/// matrices that together are 1.5× the last-level cache (read from sysfs),
/// at least four of them.
fn bench_decode_cold(c: &mut Criterion) {
    let (m, n, k) = (1usize, 4096usize, 4096usize);
    let a = data(k, 1);
    let count = (llc_bytes() * 3 / 2).div_ceil(k * n * 4).max(4);
    let bs: Vec<Vec<f32>> = (0..count).map(|s| data(k * n, 10 + s)).collect();
    let mut out = vec![0.0f32; n];
    let mut g = c.benchmark_group(format!("matmul/decode_cold/{m}x{n}x{k}"));
    g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
    g.sample_size(20);
    for threads in [1usize, 2] {
        let cfg = Config {
            isa: Isa::detect(),
            parallelism: if threads == 1 {
                Parallelism::Serial
            } else {
                Parallelism::Threads(threads)
            },
        };
        let mut i = 0;
        g.bench_function(BenchmarkId::new("ours", format!("{threads}t")), |bch| {
            bch.iter(|| {
                i = (i + 1) % bs.len();
                ours(&mut out, &a, &bs[i], (m, n, k), Epilogue::None, &cfg)
            })
        });
        let mut i = 0;
        g.bench_function(
            BenchmarkId::new("gemm_crate", format!("{threads}t")),
            |bch| {
                bch.iter(|| {
                    i = (i + 1) % bs.len();
                    peer(&mut out, &a, &bs[i], (m, n, k), threads)
                })
            },
        );
    }
    g.finish();
}

/// The MLP's `x·W_up + b → GELU`: fused epilogue vs matmul then bias_gelu;
/// and the residual form `C ← A·B + bias + C` (beta = 1).
fn bench_epilogue(c: &mut Criterion) {
    let (m, n, k) = (512usize, 3072usize, 768usize);
    let (a, b, bias) = (data(m * k, 1), data(k * n, 2), data(n, 3));
    let mut out = vec![0.0f32; m * n];
    let cfg = Config::default();
    let mut g = c.benchmark_group(format!("matmul/epilogue/{m}x{n}x{k}"));
    g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
    g.bench_function("plain", |bch| {
        bch.iter(|| ours(&mut out, black_box(&a), &b, (m, n, k), Epilogue::None, &cfg))
    });
    g.bench_function("fused_bias_gelu", |bch| {
        bch.iter(|| {
            ours(
                &mut out,
                black_box(&a),
                &b,
                (m, n, k),
                Epilogue::BiasGelu(&bias, GeluKind::Erf),
                &cfg,
            )
        })
    });
    g.bench_function("matmul_then_bias_gelu", |bch| {
        bch.iter(|| {
            ours(&mut out, black_box(&a), &b, (m, n, k), Epilogue::None, &cfg);
            bias_gelu_inplace(&mut out, &bias, GeluKind::Erf, &cfg).unwrap();
        })
    });
    g.bench_function("residual_beta1_bias", |bch| {
        bch.iter(|| {
            matmul(
                MatMut::row_major(&mut out, m, n).unwrap(),
                MatRef::row_major(black_box(&a), m, k).unwrap(),
                MatRef::row_major(&b, k, n).unwrap(),
                1.0,
                1.0,
                Epilogue::Bias(&bias),
                &cfg,
            )
            .unwrap()
        })
    });
    g.finish();
}

/// This core's FMA peak (`isa::fma_peak_gflops`'s loop) as a criterion
/// bench, so "% of peak" comes from the same run.
fn bench_peak(c: &mut Criterion) {
    let iters = 100_000usize;
    let mut g = c.benchmark_group("matmul/peak");
    for isa in Isa::available().into_iter().filter(|&i| i != Isa::Scalar) {
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

criterion_group!(
    benches,
    bench_peak,
    bench_shapes,
    bench_decode_cold,
    bench_epilogue
);
criterion_main!(benches);
