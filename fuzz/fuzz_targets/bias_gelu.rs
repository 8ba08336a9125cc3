//! bias_gelu / bias_gelu_inplace / gelu / gelu_inplace / add_bias with
//! fuzzer-chosen shapes (valid or not), ISA, threads and values (NaN, ±∞,
//! subnormals, huge). Invalid arguments: an `Err` and an untouched output
//! (in place too). Valid: every GELU within 4 ULP + 1e-7 of the f64
//! reference (NaN where it is NaN), add_bias exact, canaries intact.
#![no_main]

#[path = "common.rs"]
mod common;
use arbitrary::{Arbitrary, Unstructured};
use common::*;
use libfuzzer_sys::fuzz_target;
use transformer_kernels::{
    GeluKind, add_bias, bias_gelu, bias_gelu_inplace, gelu, gelu_inplace, reference,
};

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
    // 0 bias_gelu, 1 bias_gelu_inplace, 2 gelu, 3 gelu_inplace, 4 add_bias.
    let mode = u.int_in_range(0..=4u8)?;
    let in_place = mode == 1 || mode == 3;
    let with_bias = mode != 2 && mode != 3;

    let mut out = padded(olen, 123.0);
    if in_place {
        out[PAD..PAD + olen.min(x.len())].copy_from_slice(&x[..olen.min(x.len())]);
    }
    let before = out.clone();
    let o = &mut out[PAD..PAD + olen];
    let res = match mode {
        0 => bias_gelu(&x, &bias, o, kind, &cfg),
        1 if olen == x.len() => bias_gelu_inplace(o, &bias, kind, &cfg),
        1 => bias_gelu(&x, &bias, o, kind, &cfg),
        2 => gelu(&x, o, kind, &cfg),
        3 if olen == x.len() => gelu_inplace(o, kind, &cfg),
        3 => gelu(&x, o, kind, &cfg),
        _ => add_bias(&x, &bias, o, &cfg),
    };
    check_canaries(&out, "bias_gelu out");
    let valid = cfg.isa.is_available()
        && olen == x.len()
        && (!with_bias || (x.is_empty() || (!bias.is_empty() && x.len() % bias.len() == 0)));
    match res {
        Err(_) => {
            assert!(!valid, "valid call refused: {res:?}");
            // Untouched on every error, in-place modes included.
            assert!(
                out.iter()
                    .zip(&before)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "output written on Err (mode {mode})"
            );
        }
        Ok(()) => {
            assert!(valid, "invalid call accepted");
            for i in 0..x.len() {
                let s = if with_bias {
                    x[i] + bias[i % bias.len()]
                } else {
                    x[i]
                };
                if mode == 4 {
                    let g = out[PAD + i];
                    assert!(
                        g.to_bits() == s.to_bits() || (g.is_nan() && s.is_nan()),
                        "add_bias [{i}] = {g}, want {s}"
                    );
                    continue;
                }
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
