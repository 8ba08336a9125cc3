//! Low-precision weights (`matmul_weights`): f32, bf16, f16, Q8_0, Q4_0.
//!
//! - `lowp_decode/<shape>/<threads>t`: 1×k·k×n with the weights cold — the
//!   call rotates through copies of the matrix whose bytes together are
//!   1.5× the last-level cache (read from sysfs) or 256 MiB, whichever is
//!   larger — next to `read/<format>`, a plain read of the same bytes
//!   (same rotation, same threads). Throughput = weight bytes: GB/s.
//!   `LOWP_ROTATE_MIB=<n>` rotates n MiB instead (e.g. 1: weights warm).
//! - `lowp_prefill/512x4096x4096/<threads>t`: the product per format next
//!   to `dequant_then_f32/<format>` (dequantize the whole matrix to f32,
//!   then the f32 product — what an engine without this does).
//!   Throughput = 2·m·n·k flops: "Gelem/s" reads as GFLOP/s.
//! - `int8_<format>`: the opt-in int8 mode (`matmul_weights_int8`,
//!   activations quantized per 32), decode and prefill, Q8_0/Q4_0/Q4_1 —
//!   only where the level runs it with integer dot products
//!   (`int8_accelerated`: AVX-512 VNNI, AVX2 `vpmaddubsw`, NEON `sdot`);
//!   `TK_ISA=avx2 cargo bench --bench lowp` times the AVX2 kernel on an
//!   AVX-512 machine.
//!
//! Weights are `[n, k]` (GGUF / `nn.Linear`) for every format.
//! `cargo bench --bench lowp`; one group: `cargo bench --bench lowp -- decode`.

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use pulp::{Simd, WithSimd};
use std::time::Duration;
use transformer_kernels::quant::WeightLayout;
#[path = "common/llc.rs"]
mod llc;
use llc::llc_bytes;
use transformer_kernels::{
    Config, Epilogue, Isa, MatMut, MatRef, OwnedWeights, Parallelism, WeightFormat, WeightsRef,
    int8_accelerated, matmul, matmul_weights, matmul_weights_int8,
};

fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed)) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn cfg(threads: usize) -> Config {
    Config {
        isa: Isa::detect(),
        parallelism: Parallelism::Threads(threads),
    }
}

/// A plain read of the bytes at the detected ISA's width: 4 vector loads
/// per step into 4 independent integer sums (one sequential stream).
struct Read<'a>(&'a [u8]);

impl WithSimd for Read<'_> {
    type Output = u32;
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) -> u32 {
        let vb = size_of::<S::u32s>();
        let steps = self.0.len() / (4 * vb);
        let p = self.0.as_ptr();
        let mut acc = [s.splat_u32s(0); 4];
        for i in 0..steps {
            for (q, a) in acc.iter_mut().enumerate() {
                // SAFETY: (4i + q + 1)·vb ≤ len.
                let v = unsafe { (p.add((4 * i + q) * vb) as *const S::u32s).read_unaligned() };
                *a = s.add_u32s(*a, v);
            }
        }
        let t = s.add_u32s(s.add_u32s(acc[0], acc[1]), s.add_u32s(acc[2], acc[3]));
        let lanes: &[u32] = bytemuck_u32(&t);
        lanes.iter().fold(0, |x, &y| x ^ y)
    }
}

fn bytemuck_u32<T>(t: &T) -> &[u32] {
    // SAFETY: a SIMD u32 vector is plain u32 lanes.
    unsafe { core::slice::from_raw_parts((t as *const T).cast(), size_of::<T>() / 4) }
}

/// [`Read`] split over `threads` halves with rayon (as `matmul_weights`
/// splits its columns over rayon's pool).
fn read(bytes: &[u8], threads: usize) -> u32 {
    let arch = pulp::Arch::new();
    if threads <= 1 {
        return arch.dispatch(Read(bytes));
    }
    let half = bytes.len() / 2 / 64 * 64;
    let (a, b) = rayon::join(
        || arch.dispatch(Read(&bytes[..half])),
        || arch.dispatch(Read(&bytes[half..])),
    );
    a ^ b
}

/// The raw bytes of a view (what a decode streams).
fn bytes_of<'a>(w: &'a OwnedWeights, f32s: &'a [f32]) -> &'a [u8] {
    w.view().as_bytes().unwrap_or_else(|| {
        // SAFETY: f32 has no padding; u8 has alignment 1.
        unsafe { core::slice::from_raw_parts(f32s.as_ptr().cast(), size_of_val(f32s)) }
    })
}

fn decode(c: &mut Criterion) {
    // `LOWP_ROTATE_MIB` overrides the rotation (small = weights warm).
    let budget = std::env::var("LOWP_ROTATE_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or((llc_bytes() * 3 / 2).max(256 << 20), |m| m << 20);
    eprintln!(
        "lowp decode: last-level cache {} MiB; rotating {} MiB of weights per format",
        llc_bytes() >> 20,
        budget >> 20
    );
    for &(k, n) in &[(4096usize, 4096usize), (2048, 8192)] {
        let w32 = data(k * n, 7);
        // [n, k] f32 for the f32 case, so every format streams rows.
        let wt: Vec<f32> = (0..n * k).map(|i| w32[(i % k) * n + i / k]).collect();
        let x = data(k, 3);
        let mut g = c.benchmark_group(format!("lowp_decode/1x{k}x{n}"));
        g.sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for fmt in WeightFormat::ALL {
            let one = OwnedWeights::from_f32(&w32, k, n, fmt, WeightLayout::OutIn).unwrap();
            let bytes = fmt.bytes(k * n);
            let copies = budget.div_ceil(bytes).max(2);
            let ws: Vec<OwnedWeights> = if fmt == WeightFormat::F32 {
                vec![one]
            } else {
                vec![one; copies]
            };
            let f32s: Vec<Vec<f32>> = if fmt == WeightFormat::F32 {
                vec![wt.clone(); copies]
            } else {
                Vec::new()
            };
            let view = |i: usize| -> WeightsRef<'_> {
                if fmt == WeightFormat::F32 {
                    WeightsRef::f32(MatRef::row_major(&f32s[i], n, k).unwrap().t())
                } else {
                    ws[i].view()
                }
            };
            g.throughput(Throughput::Bytes(bytes as u64));
            for threads in [1usize, 2] {
                let cf = cfg(threads);
                let mut y = vec![0.0f32; n];
                let mut i = 0;
                g.bench_function(
                    BenchmarkId::new(format!("{fmt:?}"), format!("{threads}t")),
                    |b| {
                        b.iter(|| {
                            i = (i + 1) % copies;
                            matmul_weights(
                                MatMut::row_major(&mut y, 1, n).unwrap(),
                                MatRef::row_major(&x, 1, k).unwrap(),
                                view(i),
                                1.0,
                                0.0,
                                Epilogue::None,
                                &cf,
                            )
                            .unwrap();
                            black_box(&y);
                        })
                    },
                );
                if fmt.is_quantized() && int8_accelerated(cf.isa) {
                    let mut i = 0;
                    g.bench_function(
                        BenchmarkId::new(format!("int8_{fmt:?}"), format!("{threads}t")),
                        |b| {
                            b.iter(|| {
                                i = (i + 1) % copies;
                                matmul_weights_int8(
                                    MatMut::row_major(&mut y, 1, n).unwrap(),
                                    MatRef::row_major(&x, 1, k).unwrap(),
                                    view(i),
                                    1.0,
                                    0.0,
                                    Epilogue::None,
                                    &cf,
                                )
                                .unwrap();
                                black_box(&y);
                            })
                        },
                    );
                }
                let mut i = 0;
                g.bench_function(
                    BenchmarkId::new(format!("read_{fmt:?}"), format!("{threads}t")),
                    |b| {
                        b.iter(|| {
                            i = (i + 1) % copies;
                            let src = if fmt == WeightFormat::F32 {
                                bytes_of(&ws[0], &f32s[i])
                            } else {
                                bytes_of(&ws[i], &[])
                            };
                            black_box(read(src, threads))
                        })
                    },
                );
            }
        }
        g.finish();
    }
}

fn prefill(c: &mut Criterion) {
    let (m, k, n) = (512usize, 4096usize, 4096usize);
    let w32 = data(k * n, 11);
    let a = data(m * k, 5);
    let mut out = vec![0.0f32; m * n];
    let mut g = c.benchmark_group(format!("lowp_prefill/{m}x{k}x{n}"));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements((2 * m * n * k) as u64));
    for fmt in WeightFormat::ALL {
        let ow = OwnedWeights::from_f32(&w32, k, n, fmt, WeightLayout::OutIn).unwrap();
        for threads in [1usize, 2] {
            let cf = cfg(threads);
            g.bench_function(
                BenchmarkId::new(format!("{fmt:?}"), format!("{threads}t")),
                |b| {
                    b.iter(|| {
                        matmul_weights(
                            MatMut::row_major(&mut out, m, n).unwrap(),
                            MatRef::row_major(&a, m, k).unwrap(),
                            ow.view(),
                            1.0,
                            0.0,
                            Epilogue::None,
                            &cf,
                        )
                        .unwrap();
                        black_box(&out);
                    })
                },
            );
            if fmt == WeightFormat::F32 {
                continue;
            }
            if fmt.is_quantized() && int8_accelerated(cf.isa) {
                g.bench_function(
                    BenchmarkId::new(format!("int8_{fmt:?}"), format!("{threads}t")),
                    |b| {
                        b.iter(|| {
                            matmul_weights_int8(
                                MatMut::row_major(&mut out, m, n).unwrap(),
                                MatRef::row_major(&a, m, k).unwrap(),
                                ow.view(),
                                1.0,
                                0.0,
                                Epilogue::None,
                                &cf,
                            )
                            .unwrap();
                            black_box(&out);
                        })
                    },
                );
            }
            g.bench_function(
                BenchmarkId::new(format!("dequant_then_f32_{fmt:?}"), format!("{threads}t")),
                |b| {
                    b.iter(|| {
                        // [n, k] f32, as an engine would dequantize a GGUF
                        // tensor, then the f32 product with Wᵀ.
                        let wf = ow.view().to_f32_stored();
                        matmul(
                            MatMut::row_major(&mut out, m, n).unwrap(),
                            MatRef::row_major(&a, m, k).unwrap(),
                            MatRef::row_major(&wf, n, k).unwrap().t(),
                            1.0,
                            0.0,
                            Epilogue::None,
                            &cf,
                        )
                        .unwrap();
                        black_box(&out);
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, decode, prefill);
criterion_main!(benches);
