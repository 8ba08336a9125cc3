//! bias_gelu / bias_gelu_inplace / gelu with fuzzer-chosen shapes (valid or
//! not), ISA, threads and values (NaN, ±∞, subnormals, huge). Invalid
//! arguments: an `Err` and an untouched output. Valid: every element within
//! 4 ULP + 1e-7 of the f64 reference (NaN where it is NaN), canaries intact.
#![no_main]

#[path = "common.rs"]
mod common;
use arbitrary::{Arbitrary, Unstructured};
use common::*;
use libfuzzer_sys::fuzz_target;
use transformer_kernels::{GeluKind, bias_gelu, bias_gelu_inplace, gelu, reference};

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let cfg = config(u)?;
    let hostile = bool::arbitrary(u)?;
    let rows = u.int_in_range(0..=40usize)?;
    let cols = u.int_in_range(0..=140usize)?;
    // Sometimes a bias or output of the wrong length.
    let blen = if u.ratio(1, 8)? {
        u.int_in_range(0..=150usize)?
    } else {
        cols
    };
    let olen = if u.ratio(1, 8)? {
        u.int_in_range(0..=rows * cols + 3)?
    } else {
        rows * cols
    };
    let kind = if bool::arbitrary(u)? {
        GeluKind::Erf
    } else {
        GeluKind::Tanh
    };
    let x = values(u, rows * cols, hostile)?;
    let bias = values(u, blen, hostile)?;
    let mode = u.int_in_range(0..=2u8)?;

    let mut out = padded(olen, 123.0);
    let res = match mode {
        0 => bias_gelu(&x, &bias, &mut out[PAD..PAD + olen], kind, &cfg),
        1 => {
            out[PAD..PAD + olen.min(x.len())].copy_from_slice(&x[..olen.min(x.len())]);
            if olen == x.len() {
                bias_gelu_inplace(&mut out[PAD..PAD + olen], &bias, kind, &cfg)
            } else {
                bias_gelu(&x, &bias, &mut out[PAD..PAD + olen], kind, &cfg)
            }
        }
        _ => gelu(&x, &mut out[PAD..PAD + olen], kind, &cfg),
    };
    check_canaries(&out, "bias_gelu out");
    let valid = cfg.isa.is_available()
        && olen == x.len()
        && (mode == 2 || (x.is_empty() || (!bias.is_empty() && x.len() % bias.len() == 0)));
    match res {
        Err(_) => {
            assert!(!valid, "valid call refused: {res:?}");
            if mode != 1 {
                assert!(
                    out[PAD..PAD + olen].iter().all(|&v| v == 123.0),
                    "output written on Err"
                );
            }
        }
        Ok(()) => {
            assert!(valid, "invalid call accepted");
            for i in 0..x.len() {
                let s = if mode == 2 {
                    x[i]
                } else {
                    x[i] + bias[i % bias.len()]
                };
                let e = reference::gelu(s as f64, kind);
                let g = out[PAD + i] as f64;
                if e.is_nan() {
                    assert!(g.is_nan(), "gelu({s}) = {g}, want NaN");
                } else if e.is_infinite() {
                    assert_eq!(g, e, "gelu({s})");
                } else {
                    assert!(
                        (g - e).abs() <= 4.0 * ulp(e) + 1e-7,
                        "{:?} gelu({s}) = {g}, want {e}",
                        cfg.isa
                    );
                }
            }
        }
    }
    Ok(())
}
