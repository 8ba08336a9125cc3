//! Shared by the fuzz targets: ISA choice, hostile values, canaries.
#![allow(dead_code)]

use arbitrary::{Arbitrary, Unstructured};
use transformer_kernels::{Config, Isa, Parallelism};

/// A config among the levels this CPU runs (and, rarely, one it does not,
/// which must be an `Err`), serial or two threads.
pub fn config(u: &mut Unstructured) -> arbitrary::Result<Config> {
    let all = Isa::ALL;
    let isa = if u.ratio(1, 16)? {
        all[u.choose_index(all.len())?]
    } else {
        let avail = Isa::available();
        avail[u.choose_index(avail.len())?]
    };
    let parallelism = if bool::arbitrary(u)? {
        Parallelism::Threads(2)
    } else {
        Parallelism::Serial
    };
    Ok(Config { isa, parallelism })
}

/// A value: mostly moderate, sometimes hostile (NaN, ±∞, ±0, subnormal,
/// huge), when `hostile` is set.
pub fn value(u: &mut Unstructured, hostile: bool) -> arbitrary::Result<f32> {
    if hostile && u.ratio(1, 8)? {
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1e-40,
            -3e-42,
            f32::MAX,
            f32::MIN,
            1e30,
            -1e30,
        ];
        return Ok(specials[u.choose_index(specials.len())?]);
    }
    Ok((u.int_in_range(-4000i32..=4000)? as f32) / 1000.0)
}

pub fn values(u: &mut Unstructured, n: usize, hostile: bool) -> arbitrary::Result<Vec<f32>> {
    (0..n).map(|_| value(u, hostile)).collect()
}

pub const CANARY: f32 = -7.777e7;
pub const PAD: usize = 19;

/// A buffer of `n` elements with `PAD` canaries on each side.
pub fn padded(n: usize, fill: f32) -> Vec<f32> {
    let mut v = vec![CANARY; n + 2 * PAD];
    v[PAD..PAD + n].fill(fill);
    v
}

/// Panics if a canary was overwritten.
pub fn check_canaries(v: &[f32], what: &str) {
    let n = v.len() - 2 * PAD;
    for (i, x) in v[..PAD].iter().chain(&v[PAD + n..]).enumerate() {
        assert_eq!(
            x.to_bits(),
            CANARY.to_bits(),
            "{what}: canary {i} overwritten"
        );
    }
}

/// f32 ULP at the magnitude of `y`.
pub fn ulp(y: f64) -> f64 {
    let f = (y as f32).abs();
    if !f.is_finite() {
        return f64::INFINITY;
    }
    let e = (f.to_bits() >> 23) as i32;
    if e == 0 {
        2f64.powi(-149)
    } else {
        2f64.powi(e - 150)
    }
}
