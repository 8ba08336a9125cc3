//! The cost of the C entry point: `tk_matmul_f32` on 8×8×8 (its checks,
//! `catch_unwind`, the config) against the Rust `matmul` on the same
//! buffers, in the same run. The C entry points' source is compiled into
//! this bench as a module, so the call is to the same `extern "C"` function
//! a C program links.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use transformer_kernels::{Config, Epilogue, MatMut, MatRef, matmul as rust_matmul};
#[allow(dead_code, unreachable_pub)]
#[path = "../src/lib.rs"]
mod capi;
use capi::*;

fn overhead(c: &mut Criterion) {
    let (m, n, k) = (8usize, 8usize, 8usize);
    let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.01).collect();
    let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.01).collect();
    let mut out = vec![0.0f32; m * n];
    let cfg = Config::default();
    let ccfg = tk_config {
        isa: TK_ISA_AUTO,
        threads: 1,
    };
    let mut g = c.benchmark_group("capi_overhead_8x8x8");
    g.bench_function("rust_matmul", |bch| {
        bch.iter(|| {
            rust_matmul(
                MatMut::row_major(black_box(&mut out), m, n).unwrap(),
                MatRef::row_major(black_box(&a), m, k).unwrap(),
                MatRef::row_major(black_box(&b), k, n).unwrap(),
                1.0,
                0.0,
                Epilogue::None,
                &cfg,
            )
            .unwrap()
        })
    });
    g.bench_function("tk_matmul_f32", |bch| {
        bch.iter(|| {
            // SAFETY: the buffers hold the 8×8 row-major matrices described.
            let st = unsafe {
                tk_matmul_f32(
                    black_box(ccfg),
                    8,
                    8,
                    8,
                    1.0,
                    black_box(a.as_ptr()),
                    8,
                    1,
                    black_box(b.as_ptr()),
                    8,
                    1,
                    0.0,
                    black_box(out.as_mut_ptr()),
                    8,
                    1,
                    TK_EPILOGUE_NONE,
                    std::ptr::null(),
                    TK_GELU_ERF,
                )
            };
            assert_eq!(st, tk_status::TK_OK);
        })
    });
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
