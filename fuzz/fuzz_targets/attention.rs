//! attention / attention_with_lse with fuzzer-chosen shapes (GQA groupings
//! valid or not, causal with q_len > kv_len, kv_len = 0), layouts, scale,
//! ISA, threads and values. Invalid: `Err`, output untouched. Valid with
//! finite moderate inputs: within the property tests' bound of the f64
//! reference. Non-finite inputs: no crash, canaries intact.
#![no_main]

#[path = "common.rs"]
mod common;
use arbitrary::{Arbitrary, Unstructured};
use common::*;
use libfuzzer_sys::fuzz_target;
use transformer_kernels::{AttentionOptions, HeadsMut, HeadsRef, attention_with_lse, reference};

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

const U: f64 = 1.0 / (1u64 << 24) as f64;

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let cfg = config(u)?;
    let hostile = u.ratio(1, 4)?;
    // Mostly small; 1 in 8 long: several 256-key blocks in prefill, or a
    // decode (q_len ≤ 4) long enough to split its keys over two threads.
    let long = u.ratio(1, 8)?;
    let b = u.int_in_range(if long { 1..=1 } else { 0..=2usize })?;
    let h = u.int_in_range(0..=4usize)?;
    let hk = u.int_in_range(0..=4usize)?;
    let (lq, lk) = if long {
        if bool::arbitrary(u)? {
            let lq = u.int_in_range(1..=4usize)?;
            (lq, u.int_in_range(2048..=2600usize)?)
        } else {
            let lq = u.int_in_range(200..=300usize)?;
            (lq, lq + u.int_in_range(0..=300usize)?)
        }
    } else {
        (u.int_in_range(0..=24usize)?, u.int_in_range(0..=48usize)?)
    };
    let d = u.int_in_range(0..=20usize)?;
    let causal = bool::arbitrary(u)?;
    let scale = if u.ratio(1, 4)? {
        Some(*u.choose(&[0.5f32, 2.0, f32::NAN, f32::INFINITY])?)
    } else {
        None
    };
    let bhsd = bool::arbitrary(u)?;
    let q = values(u, b * lq * h * d, hostile)?;
    let k = values(u, b * lk * hk * d, hostile)?;
    let v = values(u, b * lk * hk * d, hostile)?;
    let ctor = if bhsd { HeadsRef::bhsd } else { HeadsRef::bshd };
    let (qr, kr, vr) = (
        ctor(&q, b, lq, h, d).unwrap(),
        ctor(&k, b, lk, hk, d).unwrap(),
        ctor(&v, b, lk, hk, d).unwrap(),
    );
    let olen = b * lq * h * d;
    let mut out = padded(olen, 9.0);
    let lse_len = if u.ratio(1, 10)? {
        u.int_in_range(0..=b * h * lq + 2)?
    } else {
        b * h * lq
    };
    let mut lse = padded(lse_len, 9.0);
    let om = if bhsd {
        HeadsMut::bhsd(&mut out[PAD..PAD + olen], b, lq, h, d).unwrap()
    } else {
        HeadsMut::bshd(&mut out[PAD..PAD + olen], b, lq, h, d).unwrap()
    };
    let opts = AttentionOptions { causal, scale };
    let res = attention_with_lse(om, qr, kr, vr, &opts, &mut lse[PAD..PAD + lse_len], &cfg);
    check_canaries(&out, "out");
    check_canaries(&lse, "lse");
    let nothing = b == 0 || h == 0 || lq == 0;
    let valid = cfg.isa.is_available()
        && hk > 0
        && h % hk == 0
        && lse_len == b * h * lq
        && scale.is_none_or(|s| s.is_finite())
        && (nothing || (lk > 0 && !(causal && lq > lk)));
    match res {
        Err(e) => {
            assert!(!valid, "valid call refused: {e}");
            assert!(
                out[PAD..PAD + olen].iter().all(|&x| x == 9.0),
                "out written on Err"
            );
        }
        Ok(()) => {
            assert!(valid, "invalid call accepted");
            // Exact comparison only where f32 scores cannot overflow (q·k
            // beyond 3.4e38 is ±∞ in f32, or NaN for ∞ − ∞ within one dot
            // product — documented; the f64 reference does not overflow).
            if nothing
                || d == 0
                || !q
                    .iter()
                    .chain(&k)
                    .chain(&v)
                    .all(|x| x.is_finite() && x.abs() < 1e15)
            {
                return Ok(());
            }
            if std::env::var("FUZZ_DEBUG").is_ok() {
                eprintln!(
                    "b={b} h={h} hk={hk} lq={lq} lk={lk} d={d} causal={causal} scale={scale:?} bhsd={bhsd} cfg={cfg:?}\nq={q:?}\nk={k:?}\nv={v:?}"
                );
            }
            let (want, want_lse) = reference::attention(qr, kr, vr, &opts);
            let sc = scale.unwrap_or(1.0 / (d as f32).sqrt()) as f64;
            // The property tests' bound (tests/attention.rs), with the fuzz
            // inputs' magnitudes: |q|, |k|, |v| ≤ 4, so Σ_d |q·k| ≤ 16·d and
            // max|v| = 4.
            let delta = (d as f64 + 2.0) * U * sc.abs() * 16.0 * d as f64;
            let tol = 4.0 * 2.0 * (2.0 * delta + (2.0 * lk as f64 + d as f64 + 16.0) * 2.0 * U);
            for bb in 0..b {
                for i in 0..lq {
                    for hh in 0..h {
                        for dd in 0..d {
                            let w = want[((bb * lq + i) * h + hh) * d + dd];
                            let off = if bhsd {
                                ((bb * h + hh) * lq + i) * d + dd
                            } else {
                                ((bb * lq + i) * h + hh) * d + dd
                            };
                            let g = out[PAD + off] as f64;
                            assert!(
                                (g - w).abs() <= tol,
                                "{:?} ({bb},{i},{hh},{dd}): {g} vs {w}",
                                cfg.isa
                            );
                        }
                    }
                }
            }
            // The log-sum-exp, [b, h, q_len]: scores off by δ each, the log
            // of the sum by lk·u more, relative to its magnitude.
            for (r, (&g, &w)) in lse[PAD..PAD + lse_len].iter().zip(&want_lse).enumerate() {
                let (g, w) = (g as f64, w);
                assert!(
                    (g - w).abs() <= tol + 1e-5 * (1.0 + w.abs()),
                    "{:?} lse[{r}]: {g} vs {w}",
                    cfg.isa
                );
            }
        }
    }
    Ok(())
}
