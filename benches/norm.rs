//! Layer norm and RMS norm vs the f64 reference and a plain copy of the
//! same bytes. Throughput in bytes (read x, write out): GB/s.
//!
//! `cargo bench --bench norm`

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use transformer_kernels::{Config, layer_norm, reference, rms_norm};

fn bench(c: &mut Criterion) {
    let cfg = Config::default();
    for (rows, d) in [(512usize, 768usize), (4096, 768), (2048, 4096)] {
        let x: Vec<f32> = (0..rows * d)
            .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let g = vec![1.1f32; d];
        let b = vec![0.1f32; d];
        let mut out = vec![0.0f32; rows * d];
        let mut grp = c.benchmark_group(format!("norm/{rows}x{d}"));
        grp.throughput(Throughput::Bytes(8 * (rows * d) as u64));
        grp.sample_size(30);
        grp.bench_function("copy", |bch| {
            bch.iter(|| out.copy_from_slice(black_box(&x)))
        });
        grp.bench_function(format!("layer_norm_{}", cfg.isa), |bch| {
            bch.iter(|| layer_norm(black_box(&x), &g, &b, &mut out, 1e-5, &cfg).unwrap())
        });
        grp.bench_function(format!("rms_norm_{}", cfg.isa), |bch| {
            bch.iter(|| rms_norm(black_box(&x), &g, &mut out, 1e-5, &cfg).unwrap())
        });
        if rows * d <= 512 * 768 {
            grp.bench_function("layer_norm_reference_f64", |bch| {
                bch.iter(|| reference::layer_norm(black_box(&x), &g, &b, 1e-5))
            });
        }
        grp.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
