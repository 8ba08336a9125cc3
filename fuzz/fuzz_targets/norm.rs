//! layer_norm / rms_norm and their in-place forms with fuzzer-chosen shapes
//! (valid or not), eps, ISA, threads and values. Invalid: `Err`, output untouched. Valid finite
//! rows of moderate spread: within the property tests' bound of the f64
//! reference; canaries intact.
#![no_main]

#[path = "common.rs"]
mod common;
use arbitrary::{Arbitrary, Unstructured};
use common::*;
use libfuzzer_sys::fuzz_target;
use transformer_kernels::{layer_norm, layer_norm_inplace, reference, rms_norm, rms_norm_inplace};

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

const U: f64 = 1.0 / (1u64 << 24) as f64;

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let cfg = config(u)?;
    let hostile = u.ratio(1, 4)?;
    let rows = u.int_in_range(0..=20usize)?;
    let d = u.int_in_range(0..=150usize)?;
    let xlen = if u.ratio(1, 10)? {
        u.int_in_range(0..=rows * d + 5)?
    } else {
        rows * d
    };
    let glen = if u.ratio(1, 12)? {
        u.int_in_range(0..=160usize)?
    } else {
        d
    };
    let olen = if u.ratio(1, 12)? {
        u.int_in_range(0..=xlen + 2)?
    } else {
        xlen
    };
    let eps = *u.choose(&[1e-5f32, 0.0, 1.0, -1.0, f32::NAN])?;
    let rms = bool::arbitrary(u)?;
    let x = values(u, xlen, hostile)?;
    let g = values(u, glen, hostile)?;
    let b = values(u, glen, hostile)?;
    // In place (x copied into out first) when the lengths allow, half the time.
    let in_place = olen == xlen && bool::arbitrary(u)?;
    let mut out = padded(olen, 5.0);
    if in_place {
        out[PAD..PAD + olen].copy_from_slice(&x);
    }
    let before = out.clone();
    let o = &mut out[PAD..PAD + olen];
    let res = match (rms, in_place) {
        (true, false) => rms_norm(&x, &g, o, eps, &cfg),
        (true, true) => rms_norm_inplace(o, &g, eps, &cfg),
        (false, false) => layer_norm(&x, &g, &b, o, eps, &cfg),
        (false, true) => layer_norm_inplace(o, &g, &b, eps, &cfg),
    };
    check_canaries(&out, "norm out");
    let valid = cfg.isa.is_available()
        && olen == xlen
        && eps.is_finite()
        && eps >= 0.0
        && (xlen == 0 || (glen > 0 && xlen % glen == 0));
    match res {
        Err(e) => {
            assert!(!valid, "valid call refused: {e}");
            assert!(
                out.iter()
                    .zip(&before)
                    .all(|(a, c)| a.to_bits() == c.to_bits()),
                "out written on Err (in place: {in_place})"
            );
        }
        Ok(()) => {
            assert!(
                valid,
                "invalid call accepted: rows={rows} d={d} xlen={xlen} glen={glen} olen={olen} eps={eps} rms={rms} {cfg:?}"
            );
            if xlen == 0
                || !x
                    .iter()
                    .chain(&g)
                    .chain(&b)
                    .all(|v| v.is_finite() && v.abs() < 1e6)
            {
                return Ok(());
            }
            if std::env::var("FUZZ_DEBUG").is_ok() {
                eprintln!(
                    "rows={rows} glen={glen} eps={eps} rms={rms} {cfg:?}\nx={x:?}\ng={g:?}\nb={b:?}"
                );
            }
            let want = if rms {
                reference::rms_norm(&x, &g, eps)
            } else {
                reference::layer_norm(&x, &g, &b, eps)
            };
            for (r, row) in x.chunks(glen).enumerate() {
                let n = glen as f64;
                let mean = if rms {
                    0.0
                } else {
                    row.iter().map(|&v| v as f64).sum::<f64>() / n
                };
                let sd = (row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n
                    + eps as f64)
                    .sqrt()
                    .max(1e-30);
                let k = if rms { 0.0 } else { row[0] as f64 };
                let spread = (row
                    .iter()
                    .map(|&v| (v as f64 - k).abs())
                    .fold(0.0, f64::max)
                    / sd)
                    .max(1.0);
                for j in 0..glen {
                    let i = r * glen + j;
                    if !want[i].is_finite() {
                        continue; // eps = 0 on a constant row: 0/0, undefined
                    }
                    let bb = if rms { 0.0 } else { b[j].abs() as f64 };
                    let tol = 2.0 * U * (n + 8.0) * spread * (g[j].abs() as f64 + 1.0)
                        + 2.0 * U * (want[i].abs() + bb)
                        + 1e-30;
                    let got = out[PAD + i] as f64;
                    assert!(
                        (got - want[i]).abs() <= tol,
                        "{:?} row {r} col {j}: {got} vs {}",
                        cfg.isa,
                        want[i]
                    );
                }
            }
        }
    }
    Ok(())
}
