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
///
/// On aarch64 the list must hold `Neon`: a build or CPU where detection
/// silently fell back to scalar would otherwise pass every "all levels"
/// test without running a vector instruction.
pub fn configs() -> Vec<Config> {
    let levels = Isa::available();
    #[cfg(target_arch = "aarch64")]
    assert!(
        levels.contains(&Isa::Neon),
        "aarch64 without the Neon level: {levels:?}"
    );
    levels.into_iter().map(Config::with_isa).collect()
}

/// The number of cases a property test runs: `default`, or the value of
/// `PROPTEST_CASES` when it is set (proptest's own variable, which
/// `ProptestConfig::with_cases` would otherwise override). Emulated runs
/// (NEON under qemu) lower it; the cases themselves and their assertions
/// are the same.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
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

/// Whether the tests run in their light form: `TK_TEST_LIGHT` set (the
/// emulated aarch64 run sets it, where a scalar level runs ~100× slower).
pub fn light() -> bool {
    std::env::var_os("TK_TEST_LIGHT").is_some()
}

/// The shapes a loop-over-shapes test runs: all of `all`, or in the light
/// form the first `n_light` (lists are ordered so that those still reach
/// every code path the test is for). Fewer cases, the same assertions.
pub fn shapes<T: Copy>(all: &[T], n_light: usize) -> Vec<T> {
    let n = if light() {
        n_light.min(all.len())
    } else {
        all.len()
    };
    all[..n].to_vec()
}

/// `n × d` deterministic values in [−1, 1) (xorshift64 from `seed`), the
/// layers' test inputs.
pub fn layer_input(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n * d)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The largest absolute difference between two equal-length slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
