//! Accuracy of the vector math against f64 over dense grids, on every level
//! this CPU runs plus `pulp::Scalar128b` (the 4-lane width NEON uses).
//! Run with `--nocapture` to see the measured figures.

mod common;
use common::*;
use transformer_kernels::gelu::generic;
use transformer_kernels::{MathFn, map};

const N: usize = (1 << 20) + 1;

/// Evaluates `f` at every level (+ Scalar128b) and returns (level, output).
fn eval_all(f: MathFn, xs: &[f32]) -> Vec<(String, Vec<f32>)> {
    let mut res = Vec::new();
    for cfg in configs() {
        let mut out = vec![0.0; xs.len()];
        map(f, xs, &mut out, &cfg).unwrap();
        res.push((cfg.isa.to_string(), out));
    }
    let mut out = vec![0.0; xs.len()];
    generic::map(pulp::Scalar128b, f, xs, &mut out).unwrap();
    res.push(("scalar128b (NEON width)".into(), out));
    res
}

fn check(f: MathFn, lo: f32, hi: f32, exact: fn(f64) -> f64, max_ulp: f64, abs_slack: f64) {
    let xs = grid(lo, hi, N);
    for (level, out) in eval_all(f, &xs) {
        let (u, at, abs) = worst(&xs, &out, exact);
        // Where |f| ≥ 1e-3 the absolute slack is irrelevant: the ULP figure
        // there is the one that matters.
        let big: Vec<(f32, f32)> = xs
            .iter()
            .zip(&out)
            .filter(|(x, _)| exact(**x as f64).abs() >= 1e-3)
            .map(|(x, g)| (*x, *g))
            .collect();
        let (bx, bg): (Vec<f32>, Vec<f32>) = big.into_iter().unzip();
        let (ub, atb, _) = worst(&bx, &bg, exact);
        println!(
            "{f:?} on {level} [{lo}, {hi}]: max {u:.2} ULP (at x = {at}), max abs {abs:.3e}; \
             where |f| >= 1e-3: max {ub:.2} ULP (at x = {atb})"
        );
        for (&x, &g) in xs.iter().zip(&out) {
            let e = exact(x as f64);
            let err = (g as f64 - e).abs();
            assert!(
                err <= max_ulp * ulp_f32(e) + abs_slack,
                "{f:?} on {level}: x = {x:e}: got {g:e}, exact {e:e} ({:.2} ULP)",
                err / ulp_f32(e)
            );
        }
    }
}

#[test]
fn exp_within_2_ulp() {
    check(MathFn::Exp, -87.3, 88.7, f64::exp, 2.0, 0.0);
    check(MathFn::Exp, -1.0, 1.0, f64::exp, 2.0, 0.0);
}

#[test]
fn erf_within_3_ulp() {
    check(MathFn::Erf, -6.0, 6.0, libm::erf, 3.0, 0.0);
    check(MathFn::Erf, -1e-3, 1e-3, libm::erf, 3.0, 0.0);
}

#[test]
fn erfc_within_8_plus_2z2_ulp() {
    // erfc(z) = t·exp(−z² + P(t)): the argument is rounded once at magnitude
    // z², which is a relative error of up to z²·2⁻²⁴ in the result, i.e. z²/2
    // ULP, plus the fit (1.2e-7 ≈ 1 ULP) and the rest of the evaluation.
    // Checked on [0, 9] (erfc(9) = 4e-37) in slices of growing z.
    for (lo, hi) in [(0.0f32, 1.0f32), (1.0, 3.0), (3.0, 6.0), (6.0, 9.0)] {
        let bound = 8.0 + 2.0 * (hi as f64).powi(2);
        check(MathFn::Erfc, lo, hi, libm::erfc, bound, 0.0);
    }
    check(MathFn::Erfc, -6.0, 0.0, libm::erfc, 3.0, 0.0);
}

#[test]
fn tanh_within_3_ulp() {
    check(MathFn::Tanh, -10.0, 10.0, f64::tanh, 3.0, 0.0);
    check(MathFn::Tanh, -0.7, 0.7, f64::tanh, 3.0, 0.0);
}

#[test]
fn gelu_within_4_ulp_plus_1e7() {
    use transformer_kernels::reference;
    check(MathFn::GeluErf, -10.0, 10.0, reference::gelu_erf, 4.0, 1e-7);
    check(
        MathFn::GeluTanh,
        -10.0,
        10.0,
        reference::gelu_tanh,
        4.0,
        1e-7,
    );
    // Near zero, where only the relative bound matters.
    check(MathFn::GeluErf, -1e-3, 1e-3, reference::gelu_erf, 4.0, 0.0);
    check(
        MathFn::GeluTanh,
        -1e-3,
        1e-3,
        reference::gelu_tanh,
        4.0,
        0.0,
    );
}

#[test]
fn special_values() {
    let xs = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e-40,
        -1e-40,
        f32::MAX,
        f32::MIN,
        -88.0,
        -200.0,
        89.0,
    ];
    for (level, out) in eval_all(MathFn::Erfc, &xs) {
        assert!(out[0].is_nan(), "{level}");
        assert_eq!(&out[1..5], &[0.0, 2.0, 1.0, 1.0], "erfc {level}");
    }
    for (level, out) in eval_all(MathFn::Exp, &xs) {
        assert!(out[0].is_nan(), "{level}");
        assert_eq!(
            &out[1..],
            &[
                f32::INFINITY,
                0.0,
                1.0,
                1.0,
                1.0,
                1.0,
                f32::INFINITY,
                0.0,
                0.0,
                0.0,
                f32::INFINITY
            ],
            "exp {level}"
        );
    }
    for f in [MathFn::GeluErf, MathFn::GeluTanh] {
        for (level, out) in eval_all(f, &xs) {
            assert!(out[0].is_nan(), "{f:?} {level}");
            assert_eq!(out[1], f32::INFINITY, "{f:?} {level}");
            assert_eq!(out[2], 0.0, "{f:?} {level}: gelu(-inf)");
            assert_eq!(out[3], 0.0);
            assert_eq!(out[7], f32::MAX, "{f:?} {level}");
            assert_eq!(out[8], 0.0, "{f:?} {level}");
        }
    }
    for f in [MathFn::Erf, MathFn::Tanh] {
        for (level, out) in eval_all(f, &xs) {
            assert!(out[0].is_nan(), "{f:?} {level}");
            assert_eq!(&out[1..5], &[1.0, -1.0, 0.0, -0.0], "{f:?} {level}");
            assert!(out[4].is_sign_negative());
        }
    }
}
