//! Helpers shared by the integration tests.
#![allow(dead_code)]

use transformer_kernels::{Config, Isa};

/// The f32 ULP at the magnitude of `y` (the spacing of f32 values there).
pub fn ulp_f32(y: f64) -> f64 {
    let f = (y as f32).abs();
    if !f.is_finite() {
        return f64::INFINITY;
    }
    let e = (f.to_bits() >> 23) as i32;
    if e == 0 {
        2f64.powi(-149)
    } else {
        2f64.powi(e - 127 - 23)
    }
}

/// Every level this CPU runs, as serial configs.
pub fn configs() -> Vec<Config> {
    Isa::available().into_iter().map(Config::with_isa).collect()
}

/// `n` points spread evenly over `[lo, hi]`, both ends included.
pub fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (lo as f64 + (hi as f64 - lo as f64) * i as f64 / (n - 1) as f64) as f32)
        .collect()
}

/// Worst error of `got` against `exact` as (max ULP, at x, max abs).
pub fn worst(xs: &[f32], got: &[f32], exact: impl Fn(f64) -> f64) -> (f64, f32, f64) {
    let mut w = (0.0f64, 0.0f32, 0.0f64);
    for (&x, &g) in xs.iter().zip(got) {
        let e = exact(x as f64);
        let err = (g as f64 - e).abs();
        let u = err / ulp_f32(e);
        if u > w.0 {
            w.0 = u;
            w.1 = x;
        }
        w.2 = w.2.max(err);
    }
    w
}
