//! `layer_norm` / `rms_norm` vs the f64 reference on every level, over
//! random shapes and magnitudes (constant rows, huge and tiny values); error
//! paths.
//!
//! Tolerance: the statistics are f32 shifted sums combined in f64, so the
//! normalised value t = (x − mean)·rstd is off by at most (d + 4)·u·(1 +
//! |x − K|max/σ) relative... bounded here by u·(d + 8)·(|t| + R) with
//! R = max|x − K|/σ (the spread of the row in standard deviations, ≥ 1);
//! the affine step adds a rounding of |t·γ| + |β|. Written out:
//! |y − exact| ≤ 2·u·(d + 8)·R·(|γ| + 1) + 2u·(|t·γ| + |β|).

mod common;
use common::*;
use proptest::prelude::*;
use transformer_kernels::norm::generic;
use transformer_kernels::{
    Config, KernelError, Parallelism, layer_norm, layer_norm_inplace, reference, rms_norm,
    rms_norm_inplace,
};

const U: f64 = 1.0 / (1u64 << 24) as f64;

fn rows_case() -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>, Vec<f32>)> {
    (
        0usize..12,
        prop_oneof![
            1usize..200,
            prop::sample::select(vec![1usize, 15, 16, 17, 64, 768, 1023])
        ],
        // 1e20: x² overflows f32, so the statistics take the f64 fallback.
        prop::sample::select(vec![1e-6f32, 1e-3, 1.0, 1e3, 1e12, 1e20]),
        any::<bool>(),
    )
        .prop_flat_map(|(rows, d, mag, offset)| {
            let off = if offset { mag * 37.0 } else { 0.0 };
            (
                Just(rows),
                prop::collection::vec((-1.0f32..1.0).prop_map(move |v| off + v * mag), rows * d),
                prop::collection::vec(-2.0f32..2.0, d),
                prop::collection::vec(-2.0f32..2.0, d),
            )
        })
}

fn check_rows(level: &str, x: &[f32], g: &[f32], b: Option<&[f32]>, got: &[f32], want: &[f64]) {
    let d = g.len();
    for (r, row) in x.chunks(d).enumerate() {
        let n = d as f64;
        let (k, spread) = if b.is_some() {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
            let sd =
                (row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n + 1e-5).sqrt();
            let k = row[0] as f64;
            (
                k,
                (row.iter()
                    .map(|&v| (v as f64 - k).abs())
                    .fold(0.0, f64::max)
                    / sd)
                    .max(1.0),
            )
        } else {
            let rms = (row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n + 1e-5).sqrt();
            (
                0.0,
                (row.iter().map(|&v| (v as f64).abs()).fold(0.0, f64::max) / rms).max(1.0),
            )
        };
        let _ = k;
        for j in 0..d {
            let i = r * d + j;
            let gg = g[j].abs() as f64;
            let bb = b.map_or(0.0, |b| b[j].abs() as f64);
            let tol =
                2.0 * U * (n + 8.0) * spread * (gg + 1.0) + 2.0 * U * (want[i].abs() + bb) + 1e-30;
            let err = (got[i] as f64 - want[i]).abs();
            assert!(
                err <= tol,
                "{level} row {r} col {j} (d {d}): got {}, want {} (err {err:e} > {tol:e})",
                got[i],
                want[i]
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    #[test]
    fn layer_norm_matches_reference((_rows, x, g, b) in rows_case()) {
        let want = if g.is_empty() || x.is_empty() { vec![] } else { reference::layer_norm(&x, &g, &b, 1e-5) };
        for cfg in configs() {
            let mut out = vec![f32::NAN; x.len()];
            layer_norm(&x, &g, &b, &mut out, 1e-5, &cfg).unwrap();
            check_rows(cfg.isa.name(), &x, &g, Some(&b), &out, &want);
            let mut y = x.clone();
            layer_norm_inplace(&mut y, &g, &b, 1e-5, &cfg).unwrap();
            prop_assert!(y.iter().zip(&out).all(|(a, c)| a.to_bits() == c.to_bits()));
            let par = Config { parallelism: Parallelism::Threads(2), ..cfg };
            let mut p = vec![0.0; x.len()];
            layer_norm(&x, &g, &b, &mut p, 1e-5, &par).unwrap();
            prop_assert!(p.iter().zip(&out).all(|(a, c)| a.to_bits() == c.to_bits()));
        }
        // The 4-lane width (NEON's) in portable code, and its in-place form.
        let mut out = vec![f32::NAN; x.len()];
        generic::layer_norm(pulp::Scalar128b, &x, &g, &b, &mut out, 1e-5).unwrap();
        check_rows("scalar128b", &x, &g, Some(&b), &out, &want);
        let mut y = x.clone();
        generic::layer_norm_inplace(pulp::Scalar128b, &mut y, &g, &b, 1e-5).unwrap();
        prop_assert!(y.iter().zip(&out).all(|(a, c)| a.to_bits() == c.to_bits()));
    }

    #[test]
    fn rms_norm_matches_reference((_rows, x, g, _b) in rows_case()) {
        let want = if x.is_empty() { vec![] } else { reference::rms_norm(&x, &g, 1e-5) };
        for cfg in configs() {
            let mut out = vec![f32::NAN; x.len()];
            rms_norm(&x, &g, &mut out, 1e-5, &cfg).unwrap();
            check_rows(cfg.isa.name(), &x, &g, None, &out, &want);
            let mut y = x.clone();
            rms_norm_inplace(&mut y, &g, 1e-5, &cfg).unwrap();
            prop_assert!(y.iter().zip(&out).all(|(a, c)| a.to_bits() == c.to_bits()));
        }
        let mut out = vec![f32::NAN; x.len()];
        generic::rms_norm(pulp::Scalar128b, &x, &g, &mut out, 1e-5).unwrap();
        check_rows("scalar128b", &x, &g, None, &out, &want);
        let mut y = x.clone();
        generic::rms_norm_inplace(pulp::Scalar128b, &mut y, &g, 1e-5).unwrap();
        prop_assert!(y.iter().zip(&out).all(|(a, c)| a.to_bits() == c.to_bits()));
    }
}

#[test]
fn constant_rows_normalise_to_beta() {
    for cfg in configs() {
        for (v, d) in [(5.0f32, 768usize), (-1e9, 33), (3e-20, 16)] {
            let x = vec![v; 3 * d];
            let g: Vec<f32> = (0..d).map(|j| j as f32).collect();
            let b: Vec<f32> = (0..d).map(|j| 0.5 - j as f32).collect();
            let mut out = vec![f32::NAN; x.len()];
            layer_norm(&x, &g, &b, &mut out, 1e-5, &cfg).unwrap();
            for (i, &o) in out.iter().enumerate() {
                assert_eq!(o, b[i % d], "{} v={v} d={d} [{i}]", cfg.isa);
            }
        }
    }
}

#[test]
fn large_inputs_use_threads_and_match_serial() {
    let (rows, d) = (300, 769);
    let x: Vec<f32> = (0..rows * d)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
        .collect();
    let g = vec![1.5f32; d];
    let b = vec![0.25f32; d];
    for cfg in configs() {
        let mut s = vec![0.0; x.len()];
        let mut p = vec![0.0; x.len()];
        layer_norm(&x, &g, &b, &mut s, 1e-5, &cfg).unwrap();
        layer_norm(
            &x,
            &g,
            &b,
            &mut p,
            1e-5,
            &Config {
                parallelism: Parallelism::Threads(0),
                ..cfg
            },
        )
        .unwrap();
        assert!(
            s.iter().zip(&p).all(|(a, c)| a.to_bits() == c.to_bits()),
            "{}",
            cfg.isa
        );
        check_rows(
            cfg.isa.name(),
            &x,
            &g,
            Some(&b),
            &s,
            &reference::layer_norm(&x, &g, &b, 1e-5),
        );
    }
}

#[test]
fn error_paths() {
    let cfg = Config::default();
    let x = [1.0f32; 12];
    let mut out = [7.0f32; 12];
    let e = layer_norm(&x, &[1.0; 5], &[0.0; 5], &mut out, 1e-5, &cfg).unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "x", .. }),
        "{e:?}"
    );
    let e = layer_norm(&x, &[1.0; 4], &[0.0; 3], &mut out, 1e-5, &cfg).unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "beta", .. }),
        "{e:?}"
    );
    let e = layer_norm(&x, &[], &[], &mut out, 1e-5, &cfg).unwrap_err();
    assert!(
        matches!(e, KernelError::Empty { arg: "gamma", .. }),
        "{e:?}"
    );
    let e = layer_norm(&x, &[1.0; 4], &[0.0; 4], &mut out[..8], 1e-5, &cfg).unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "out", .. }),
        "{e:?}"
    );
    let e = rms_norm(&x, &[1.0; 4], &mut out, -1.0, &cfg).unwrap_err();
    assert!(
        matches!(e, KernelError::InvalidArgument { arg: "eps", .. }),
        "{e:?}"
    );
    let e = rms_norm(&x, &[1.0; 4], &mut out, f32::NAN, &cfg).unwrap_err();
    assert_eq!(e.arg(), "eps");
    assert_eq!(out, [7.0; 12], "out written on error");
    // No rows is fine.
    layer_norm(&[], &[1.0; 4], &[0.0; 4], &mut [], 1e-5, &cfg).unwrap();
    rms_norm_inplace(&mut [], &[], 1e-5, &cfg).unwrap();
    // A bad eps is an error whatever the size (found by fuzzing).
    assert!(matches!(
        rms_norm_inplace(&mut [], &[], -1.0, &cfg),
        Err(KernelError::InvalidArgument { arg: "eps", .. })
    ));
}

/// Found by fuzzing: a row whose first element (the shift) is an outlier.
/// Shifted sums lost accuracy there (the error grew with the square of the
/// spread); Welford's update does not.
#[test]
fn outlier_first_element_keeps_accuracy() {
    let mut x = vec![-2.473f32; 18];
    x[0] = 0.794;
    let g: Vec<f32> = (0..18)
        .map(|j| [-2.473f32, -2.584, 0.44, 2.003][j % 4])
        .collect();
    let b: Vec<f32> = (0..18)
        .map(|j| [0.442f32, -2.914, 3.418, -0.758][j % 4])
        .collect();
    let want = reference::layer_norm(&x, &g, &b, 1e-5);
    for cfg in configs() {
        let mut out = vec![0.0f32; 18];
        layer_norm(&x, &g, &b, &mut out, 1e-5, &cfg).unwrap();
        check_rows(cfg.isa.name(), &x, &g, Some(&b), &out, &want);
    }
}

/// Found by fuzzing: rows whose squares leave f32's range — subnormal
/// values with eps = 0 (the f32 sum of squares underflows to 0 and the
/// scale to ∞), or |x| ≈ 1e25 (squares overflow) — are redone in f64.
#[test]
fn rows_beyond_f32_squares_fall_back_to_f64() {
    for (x, eps) in [
        (vec![-3e-42f32, -3e-42, 1e-40, -2e-41], 0.0f32),
        (vec![1e25f32, -3e25, 2e25, 5e24], 1e-5),
        (vec![1e-20f32, 3e-20, -2e-20, 0.0], 0.0),
    ] {
        let d = x.len();
        let g = vec![1.5f32; d];
        let b = vec![0.25f32; d];
        for cfg in configs() {
            let mut out = vec![0.0f32; d];
            rms_norm(&x, &g, &mut out, eps, &cfg).unwrap();
            let want = reference::rms_norm(&x, &g, eps);
            for (o, w) in out.iter().zip(&want) {
                assert!(
                    ((*o as f64) - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{} rms {x:?}: {o} vs {w}",
                    cfg.isa
                );
            }
            layer_norm(&x, &g, &b, &mut out, eps, &cfg).unwrap();
            let want = reference::layer_norm(&x, &g, &b, eps);
            for (o, w) in out.iter().zip(&want) {
                assert!(
                    ((*o as f64) - w).abs() <= 1e-5 * (1.0 + w.abs()),
                    "{} ln {x:?}: {o} vs {w}",
                    cfg.isa
                );
            }
        }
    }
}
