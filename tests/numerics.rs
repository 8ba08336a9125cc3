//! Documented numeric semantics (README, "Numeric semantics"):
//! - attention: a NaN in K or V poisons exactly the rows that attend to it;
//! - no kernel reads or changes the caller's MXCSR, and with FTZ/DAZ set
//!   by the caller the results stay within the stated tolerances;
//! - subnormal inputs are computed, not trapped or flushed by the crate.

mod common;
use common::*;
use transformer_kernels::{
    AttentionOptions, Config, GeluKind, HeadsMut, HeadsRef, Parallelism, attention, bias_gelu,
    layer_norm, reference,
};

fn fill(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 2654435761 + seed * 97) % 1999) as f32 / 1000.0 - 1.0)
        .collect()
}

/// Rows (query index) of the output holding a NaN.
fn nan_rows(o: &[f32], lq: usize, d: usize) -> Vec<usize> {
    (0..lq)
        .filter(|&i| o[i * d..(i + 1) * d].iter().any(|x| x.is_nan()))
        .collect()
}

#[test]
fn nan_in_k_or_v_poisons_exactly_the_rows_that_see_it() {
    let d = 16;
    for &(lq, lk) in &[(40usize, 40usize), (13, 300), (1, 50), (3, 600)] {
        for causal in [true, false] {
            for which in ["k", "v"] {
                for j in [0, lk / 2, lk - 1] {
                    let q = fill(lq * d, 1);
                    let mut k = fill(lk * d, 2);
                    let mut v = fill(lk * d, 3);
                    if which == "k" {
                        k[j * d + 3] = f32::NAN
                    } else {
                        v[j * d + 5] = f32::NAN
                    }
                    for cfg in configs().into_iter().chain([Config {
                        parallelism: Parallelism::Threads(2),
                        ..Config::default()
                    }]) {
                        let mut o = vec![0.0f32; lq * d];
                        attention(
                            HeadsMut::bshd(&mut o, 1, lq, 1, d).unwrap(),
                            HeadsRef::bshd(&q, 1, lq, 1, d).unwrap(),
                            HeadsRef::bshd(&k, 1, lk, 1, d).unwrap(),
                            HeadsRef::bshd(&v, 1, lk, 1, d).unwrap(),
                            &AttentionOptions {
                                causal,
                                scale: None,
                            },
                            &cfg,
                        )
                        .unwrap();
                        // Row i sees key j iff not causal or j ≤ i + lk − lq.
                        let want: Vec<usize> =
                            (0..lq).filter(|&i| !causal || j <= i + lk - lq).collect();
                        assert_eq!(
                            nan_rows(&o, lq, d),
                            want,
                            "{} {which}[{j}] NaN, lq={lq} lk={lk} causal={causal}",
                            cfg.isa
                        );
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(deprecated)] // _mm_getcsr/_mm_setcsr: the only way to read MXCSR
mod mxcsr {
    use super::*;
    use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
    use transformer_kernels::{Epilogue, MatMut, MatRef, matmul};

    const FTZ: u32 = 1 << 15;
    const DAZ: u32 = 1 << 6;
    /// Control bits (masks, rounding, FTZ, DAZ); bits 0–5 are sticky
    /// exception flags that any float operation may set.
    const CONTROL: u32 = !0x3f;

    fn run_all(cfg: &Config) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let (m, n, k) = (37, 45, 70);
        let (a, b) = (fill(m * k, 1), fill(k * n, 2));
        let bias = fill(n, 3);
        let mut c = vec![0.0f32; m * n];
        matmul(
            MatMut::row_major(&mut c, m, n).unwrap(),
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
            1.0,
            0.0,
            Epilogue::BiasGelu(&bias, GeluKind::Erf),
            cfg,
        )
        .unwrap();
        let x: Vec<f32> = fill(300, 4).iter().map(|v| v * 8.0).collect();
        let mut g = vec![0.0f32; 300];
        bias_gelu(&x, &fill(30, 5), &mut g, GeluKind::Tanh, cfg).unwrap();
        let (lq, d) = (50, 32);
        let q = fill(lq * d, 6);
        let mut o = vec![0.0f32; lq * d];
        let r = HeadsRef::bshd(&q, 1, lq, 1, d).unwrap();
        attention(
            HeadsMut::bshd(&mut o, 1, lq, 1, d).unwrap(),
            r,
            r,
            r,
            &AttentionOptions {
                causal: true,
                scale: None,
            },
            cfg,
        )
        .unwrap();
        let mut ln = vec![0.0f32; 300];
        layer_norm(&x, &[1.0; 30], &[0.0; 30], &mut ln, 1e-5, cfg).unwrap();
        (c, g, o, ln)
    }

    #[test]
    fn kernels_leave_mxcsr_alone_and_tolerate_ftz_daz() {
        // SAFETY: reading/writing this thread's MXCSR; restored at the end.
        let saved = unsafe { _mm_getcsr() };
        for cfg in configs() {
            let plain = run_all(&cfg);
            assert_eq!(
                unsafe { _mm_getcsr() } & CONTROL,
                saved & CONTROL,
                "{}: MXCSR changed",
                cfg.isa
            );
            unsafe { _mm_setcsr(saved | FTZ | DAZ) };
            let flushed = run_all(&cfg);
            let now = unsafe { _mm_getcsr() };
            unsafe { _mm_setcsr(saved) };
            assert_eq!(
                now & CONTROL,
                (saved | FTZ | DAZ) & CONTROL,
                "{}: MXCSR changed under FTZ/DAZ",
                cfg.isa
            );
            // Normal data: FTZ/DAZ may only touch results at subnormal
            // magnitude (< 1.2e-38), far inside every tolerance.
            for (p, f) in [
                (&plain.0, &flushed.0),
                (&plain.1, &flushed.1),
                (&plain.2, &flushed.2),
                (&plain.3, &flushed.3),
            ] {
                for (x, y) in p.iter().zip(f) {
                    assert!(
                        (x - y).abs() <= 1.2e-38,
                        "{}: {x} vs {y} under FTZ/DAZ",
                        cfg.isa
                    );
                }
            }
        }
    }
}

#[test]
fn subnormal_inputs_are_computed() {
    let x = [1e-40f32, -3e-42, 1.17e-38, -1e-45];
    for cfg in configs() {
        let mut out = [0.0f32; 4];
        bias_gelu(&x, &[0.0], &mut out, GeluKind::Erf, &cfg).unwrap();
        for (i, (&o, &v)) in out.iter().zip(&x).enumerate() {
            let e = reference::gelu_erf(v as f64);
            // gelu(x) ≈ x/2 here, a subnormal: the bound is in subnormal
            // ULPs (2⁻¹⁴⁹) with no absolute slack, so a kernel (or an
            // FTZ/DAZ setting it left on) that flushes to zero fails.
            assert!(
                ((o as f64) - e).abs() <= 4.0 * ulp_f32(e),
                "{} [{i}]: gelu({v:e}) = {o:e}, want {e:e}",
                cfg.isa
            );
        }
    }
}

/// Found by the attention fuzz target: q·k overflowing f32 gives a +∞
/// score; the row takes the limit (all weight on the +∞ keys), not NaN.
#[test]
fn overflowing_scores_take_the_limit() {
    let (lk, d) = (8, 1);
    let q = [3.4e38f32, -0.5];
    let k = [-0.761f32, -0.761, 2.735, 2.735, 2.735, 2.735, 2.735, 2.735];
    let v: Vec<f32> = (0..lk).map(|j| j as f32).collect();
    for cfg in configs() {
        for lq in [1usize, 2] {
            let mut o = vec![f32::NAN; lq];
            attention(
                HeadsMut::bshd(&mut o, 1, lq, 1, d).unwrap(),
                HeadsRef::bshd(&q[..lq], 1, lq, 1, d).unwrap(),
                HeadsRef::bshd(&k, 1, lk, 1, d).unwrap(),
                HeadsRef::bshd(&v, 1, lk, 1, d).unwrap(),
                &AttentionOptions {
                    causal: false,
                    scale: None,
                },
                &cfg,
            )
            .unwrap();
            // Keys 2..8 overflow to +∞: equal weights, mean of v[2..8] = 4.5.
            assert_eq!(o[0], 4.5, "{} lq={lq}", cfg.isa);
        }
    }
}

/// Found by the norm fuzz target: a row whose spread is tiny against its
/// mean (mean/σ ≈ 1e7) keeps full accuracy, even with eps = 0.
#[test]
fn ill_conditioned_rows_keep_accuracy() {
    let d = 37;
    let x: Vec<f32> = (0..d)
        .map(|j| 1.0e4 + (j % 5) as f32 * 9.765625e-4)
        .collect();
    let g = vec![1.0f32; d];
    let b = vec![0.0f32; d];
    let want = reference::layer_norm(&x, &g, &b, 0.0);
    for cfg in configs() {
        let mut out = vec![0.0f32; d];
        layer_norm(&x, &g, &b, &mut out, 0.0, &cfg).unwrap();
        for (j, (&o, &w)) in out.iter().zip(&want).enumerate() {
            assert!(
                ((o as f64) - w).abs() < 1e-5 * (1.0 + w.abs()),
                "{} [{j}]: {o} vs {w}",
                cfg.isa
            );
        }
    }
}
