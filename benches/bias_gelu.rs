//! Fused bias + GELU vs the unfused two-pass version, the scalar level, the
//! f64 reference and a plain copy of the same bytes (the bandwidth roofline).
//! Throughput is 8 bytes per element (read x, write out) for every entry, so
//! criterion's GB/s compare directly with the copy's.
//!
//! `cargo bench --bench bias_gelu`; a subset: `cargo bench --bench bias_gelu -- 512x3072`.

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use std::time::Duration;
use transformer_kernels::{
    Config, GeluKind, Isa, Parallelism, add_bias, bias_gelu, gelu_inplace, reference,
};

const SHAPES: [(usize, usize); 5] = [
    (1, 3072),
    (64, 3072),
    (512, 3072),
    (4096, 3072),
    (16384, 4096),
];

fn bench(c: &mut Criterion) {
    let best = Config::with_isa(Isa::detect());
    for (rows, cols) in SHAPES {
        let n = rows * cols;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i % 1999) as f32 - 999.0) / 150.0)
            .collect();
        let bias: Vec<f32> = (0..cols).map(|c| (c % 17) as f32 / 17.0 - 0.5).collect();
        let mut out = vec![0.0f32; n];
        let mut g = c.benchmark_group(format!("bias_gelu/{rows}x{cols}"));
        g.throughput(Throughput::Bytes(8 * n as u64));
        let big = n * 8 > 64 << 20;
        if big {
            g.sample_size(10).measurement_time(Duration::from_secs(6));
        } else if n * 8 > 8 << 20 {
            g.sample_size(20);
        }
        g.bench_function("copy", |b| b.iter(|| out.copy_from_slice(black_box(&x))));
        for (name, kind) in [("fused_erf", GeluKind::Erf), ("fused_tanh", GeluKind::Tanh)] {
            g.bench_function(BenchmarkId::new(name, best.isa), |b| {
                b.iter(|| bias_gelu(black_box(&x), &bias, &mut out, kind, &best).unwrap())
            });
        }
        if n >= 512 * 3072 {
            let par = Config {
                parallelism: Parallelism::Threads(2),
                ..best
            };
            g.bench_function(BenchmarkId::new("fused_erf_2threads", best.isa), |b| {
                b.iter(|| bias_gelu(black_box(&x), &bias, &mut out, GeluKind::Erf, &par).unwrap())
            });
        }
        g.bench_function(BenchmarkId::new("unfused_erf", best.isa), |b| {
            b.iter(|| {
                add_bias(black_box(&x), &bias, &mut out, &best).unwrap();
                gelu_inplace(&mut out, GeluKind::Erf, &best).unwrap();
            })
        });
        if !big {
            for isa in Isa::available().into_iter().filter(|&i| i != best.isa) {
                let cfg = Config::with_isa(isa);
                g.bench_function(BenchmarkId::new("fused_erf", isa), |b| {
                    b.iter(|| {
                        bias_gelu(black_box(&x), &bias, &mut out, GeluKind::Erf, &cfg).unwrap()
                    })
                });
            }
        }
        if n <= 512 * 3072 {
            g.bench_function("reference_f64", |b| {
                b.iter(|| reference::bias_gelu(black_box(&x), &bias, GeluKind::Erf))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
