//! `attention` vs `reference::attention` (f64, materialised) on every level
//! this CPU runs, over random shapes, GQA groupings, causal/non-causal,
//! scales and layouts (BSHD, BHSD, strided from a fused QKV buffer); decode
//! against the last row of a full causal pass; thread invariance; −∞ rows;
//! every error path. f16 keys and values give exactly the f32 result on
//! their widened values (the widening is exact; the kernels then do the
//! same arithmetic), on every level, one thread and two.
//!
//! Tolerance per output element, u = 2⁻²⁴: a score is an FMA chain over D,
//! scaled by the rounded `scale·log2 e` (the kernel works in log2 units), so
//! off by at most δ = (D + 3)·u·|scale|·max_j Σ_d |q_d·k_jd|; a softmax
//! weight then carries relative error ≤ 2δ (numerator and the max shift) +
//! 2 ULP of exp + kv_len·u of the running sum; the output, a convex
//! combination of V rows, adds kv_len·u·max|v| for its own sum. So
//! |out − exact| ≤ max|v|·(2δ + (2·kv_len + D + 16)·2u), doubled for
//! second-order terms.

mod common;
use common::*;
use proptest::prelude::*;
use transformer_kernels::attention::generic;
use transformer_kernels::{
    AttentionOptions, Config, HeadsElem, HeadsMut, HeadsRef, Isa, KernelError, Parallelism,
    attention, attention_with_lse, reference,
};

const U: f64 = 1.0 / (1u64 << 24) as f64;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Lay {
    Bshd,
    Bhsd,
    /// q, k, v interleaved in one `[B, S, 3, H, D]` buffer (needs
    /// q_len = kv_len and equal head counts; otherwise falls back to BSHD).
    FusedQkv,
}

struct Tensors {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    qkv: Vec<f32>,
}

#[derive(Debug, Clone)]
struct Case {
    b: usize,
    h: usize,
    hk: usize,
    lq: usize,
    lk: usize,
    d: usize,
    causal: bool,
    scale: Option<f32>,
    lay: Lay,
    seed: u64,
}

fn fill(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

impl Case {
    fn fused(&self) -> bool {
        self.lay == Lay::FusedQkv && self.lq == self.lk && self.h == self.hk
    }
    fn tensors(&self) -> Tensors {
        let (b, h, hk, lq, lk, d) = (self.b, self.h, self.hk, self.lq, self.lk, self.d);
        Tensors {
            q: fill(b * lq * h * d, self.seed),
            k: fill(b * lk * hk * d, self.seed ^ 1),
            v: fill(b * lk * hk * d, self.seed ^ 2),
            qkv: fill(b * lq * 3 * h * d, self.seed ^ 3),
        }
    }
    fn views<'a>(&self, t: &'a Tensors) -> (HeadsRef<'a>, HeadsRef<'a>, HeadsRef<'a>) {
        let (b, h, hk, lq, lk, d) = (self.b, self.h, self.hk, self.lq, self.lk, self.d);
        if self.fused() {
            let st = [lq * 3 * h * d, 3 * h * d, d];
            return (
                HeadsRef::strided(&t.qkv, b, lq, h, d, st).unwrap(),
                HeadsRef::strided(&t.qkv[h * d..], b, lk, h, d, st).unwrap(),
                HeadsRef::strided(&t.qkv[2 * h * d..], b, lk, h, d, st).unwrap(),
            );
        }
        let f = if self.lay == Lay::Bhsd {
            HeadsRef::bhsd
        } else {
            HeadsRef::bshd
        };
        (
            f(&t.q, b, lq, h, d).unwrap(),
            f(&t.k, b, lk, hk, d).unwrap(),
            f(&t.v, b, lk, hk, d).unwrap(),
        )
    }
    fn opts(&self) -> AttentionOptions {
        AttentionOptions {
            causal: self.causal,
            scale: self.scale,
        }
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..=2,
        prop::sample::select(vec![
            (1usize, 1usize),
            (2, 1),
            (2, 2),
            (3, 1),
            (3, 3),
            (4, 1),
            (4, 2),
            (4, 4),
            // Groups past decode's 4-head P·V group: 4 + 1, 4 + 2.
            (5, 1),
            (6, 1),
        ]),
        // q_len: 2–4 (the decode path with several queries) in ~19% of
        // cases, a tile edge in ~25%.
        prop_oneof![
            2 => 1usize..=150,
            1 => prop::sample::select(vec![1usize, 5, 6, 7, 12, 13]),
            1 => 1usize..=4,
        ],
        // kv_len = q_len in half the cases (and always for the fused layout).
        prop_oneof![Just(0usize), 0usize..=150],
        prop::sample::select(vec![1usize, 3, 8, 16, 31, 32, 64, 65, 80, 96, 128]),
        any::<bool>(),
        prop::option::of(0.01f32..1.0),
        prop::sample::select(vec![Lay::Bshd, Lay::Bhsd, Lay::FusedQkv]),
        any::<u64>(),
    )
        .prop_map(
            |(b, (h, hk), lq, extra, d, causal, scale, lay, seed)| Case {
                b,
                h,
                // The fused QKV layout ([S, 3, H, D]) has lk = lq and as many
                // KV heads as query heads: a third of the cases.
                hk: if lay == Lay::FusedQkv { h } else { hk },
                lq,
                lk: if lay == Lay::FusedQkv {
                    lq
                } else {
                    (lq + extra).min(300)
                },
                d,
                causal,
                scale,
                lay,
                seed,
            },
        )
}

/// Per-row tolerance (see the module docs); the inputs are in [−1, 1].
fn tolerance(c: &Case) -> f64 {
    let scale = c.scale.unwrap_or(1.0 / (c.d as f32).sqrt()) as f64;
    let delta = (c.d as f64 + 3.0) * U * scale * c.d as f64;
    2.0 * (2.0 * delta + (2.0 * c.lk as f64 + c.d as f64 + 16.0) * 2.0 * U)
}

/// Where a call runs: a run-time level, or the 4-lane portable token
/// (`pulp::Scalar128b`, NEON's width) through `attention::generic`.
#[derive(Clone, Copy)]
enum On {
    Cfg(Config),
    Lanes4(Parallelism),
}

fn run(c: &Case, t: &Tensors, cfg: &Config) -> (Vec<f32>, Vec<f32>) {
    run_on(c, t, On::Cfg(*cfg))
}

fn run_on(c: &Case, t: &Tensors, on: On) -> (Vec<f32>, Vec<f32>) {
    let (q, k, v) = c.views(t);
    call(c, q, k, v, on)
}

/// Output (in BSHD order) and LSE of the case on these views.
fn call<T: HeadsElem>(
    c: &Case,
    q: HeadsRef<'_>,
    k: HeadsRef<'_, T>,
    v: HeadsRef<'_, T>,
    on: On,
) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![f32::NAN; c.b * c.lq * c.h * c.d];
    let mut lse = vec![f32::NAN; c.b * c.h * c.lq];
    let om = if c.lay == Lay::Bhsd {
        HeadsMut::bhsd(&mut out, c.b, c.lq, c.h, c.d).unwrap()
    } else {
        HeadsMut::bshd(&mut out, c.b, c.lq, c.h, c.d).unwrap()
    };
    match on {
        On::Cfg(cfg) => attention_with_lse(om, q, k, v, &c.opts(), &mut lse, &cfg).unwrap(),
        On::Lanes4(par) => generic::attention(
            pulp::Scalar128b,
            par,
            om,
            q,
            k,
            v,
            &c.opts(),
            Some(&mut lse),
        )
        .unwrap(),
    }
    // Back to BSHD order for comparison.
    if c.lay == Lay::Bhsd {
        out = bhsd_to_bshd(c, &out);
    }
    (out, lse)
}

fn compare(what: &str, got: &[f32], want: &[f64], tol: f64) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w == f64::NEG_INFINITY {
            assert_eq!(g, f32::NEG_INFINITY, "{what} [{i}]");
            continue;
        }
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol,
            "{what} [{i}]: got {g}, want {w} (err {err:e} > {tol:e})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn matches_reference_on_every_level(c in case()) {
        let t = c.tensors();
        let (q, k, v) = c.views(&t);
        let (want, want_lse) = reference::attention(q, k, v, &c.opts());
        let tol = tolerance(&c);
        for cfg in configs() {
            let (out, lse) = run(&c, &t, &cfg);
            compare(&format!("{} {c:?}", cfg.isa), &out, &want, tol);
            // lse: scores off by δ each, the log of the sum by kv_len·u more.
            compare(&format!("{} lse {c:?}", cfg.isa), &lse, &want_lse, tol + 1e-5);
            let par = Config { isa: cfg.isa, parallelism: Parallelism::Threads(2) };
            let (out2, lse2) = run(&c, &t, &par);
            compare(&format!("{} 2 threads {c:?}", cfg.isa), &out2, &want, tol);
            compare(&format!("{} 2 threads lse {c:?}", cfg.isa), &lse2, &want_lse, tol + 1e-5);
        }
        // The 4-lane width in portable code: prefill tiles and decode, one
        // thread and two.
        for par in [Parallelism::Serial, Parallelism::Threads(2)] {
            let (out, lse) = run_on(&c, &t, On::Lanes4(par));
            compare(&format!("scalar128b {par:?} {c:?}"), &out, &want, tol);
            compare(&format!("scalar128b {par:?} lse {c:?}"), &lse, &want_lse, tol + 1e-5);
        }
    }
}

/// `x` rounded to f16, and those values widened back to f32.
fn halves(x: &[f32]) -> (Vec<half::f16>, Vec<f32>) {
    let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
    let w = h.iter().map(|v| v.to_f32()).collect();
    (h, w)
}

/// Runs the case with K and V given as f16 views over `k16`/`v16` (or the
/// fused buffer `qkv16`), laid out as the f32 views of `t` are.
fn run_f16(
    c: &Case,
    t: &Tensors,
    (k16, v16, qkv16): (&[half::f16], &[half::f16], &[half::f16]),
    on: On,
) -> (Vec<f32>, Vec<f32>) {
    let (q, k, v) = c.views(t);
    let (kd, vd) = if c.fused() {
        (&qkv16[c.h * c.d..], &qkv16[2 * c.h * c.d..])
    } else {
        (k16, v16)
    };
    let view = |data, x: &HeadsRef<'_>| {
        HeadsRef::strided(
            data,
            x.batch(),
            x.seq(),
            x.heads(),
            x.head_dim(),
            x.strides(),
        )
        .unwrap()
    };
    call(c, q, view(kd, &k), view(vd, &v), on)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn f16_keys_and_values_give_the_f32_result_on_their_widened_values(c in case()) {
        let t = c.tensors();
        let ((k16, kw), (v16, vw), (qkv16, qkvw)) = (halves(&t.k), halves(&t.v), halves(&t.qkv));
        // The f32 run sees the widened values (the fused buffer's q too, so
        // both runs have the same queries).
        let tw = Tensors { q: t.q.clone(), k: kw, v: vw, qkv: qkvw };
        let bufs = (&k16[..], &v16[..], &qkv16[..]);
        let mut ons: Vec<On> = configs()
            .into_iter()
            .flat_map(|cfg| {
                let two = Config { isa: cfg.isa, parallelism: Parallelism::Threads(2) };
                [On::Cfg(cfg), On::Cfg(two)]
            })
            .collect();
        ons.extend([On::Lanes4(Parallelism::Serial), On::Lanes4(Parallelism::Threads(2))]);
        for on in ons {
            let (want, want_lse) = run_on(&c, &tw, on);
            let (got, got_lse) = run_f16(&c, &tw, bufs, on);
            let same = |a: &[f32], b: &[f32]| {
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            };
            prop_assert!(same(&got, &want), "out differs {c:?}");
            prop_assert!(same(&got_lse, &want_lse), "lse differs {c:?}");
        }
    }
}

fn bhsd_to_bshd(c: &Case, out: &[f32]) -> Vec<f32> {
    let mut o2 = vec![0.0; out.len()];
    for b in 0..c.b {
        for h in 0..c.h {
            for i in 0..c.lq {
                let src = ((b * c.h + h) * c.lq + i) * c.d;
                let dst = ((b * c.lq + i) * c.h + h) * c.d;
                o2[dst..dst + c.d].copy_from_slice(&out[src..src + c.d]);
            }
        }
    }
    o2
}

#[test]
fn decode_step_equals_last_row_of_full_causal() {
    // The first four in the light form: 2500 keys still split on two threads.
    for (lk, h, hk, d) in shapes(
        &[
            (1usize, 1usize, 1usize, 64usize),
            (77, 4, 2, 64),
            (600, 2, 1, 128),
            (2500, 2, 1, 64),
            (3000, 12, 12, 64),
            (5000, 8, 2, 80),
            (300, 9, 1, 48),
        ],
        4,
    ) {
        let (q, k, v) = (
            fill(lk * h * d, 1),
            fill(lk * hk * d, 2),
            fill(lk * hk * d, 3),
        );
        let opts = AttentionOptions {
            causal: true,
            scale: None,
        };
        let kr = HeadsRef::bshd(&k, 1, lk, hk, d).unwrap();
        let vr = HeadsRef::bshd(&v, 1, lk, hk, d).unwrap();
        let c = Case {
            b: 1,
            h,
            hk,
            lq: 1,
            lk,
            d,
            causal: true,
            scale: None,
            lay: Lay::Bshd,
            seed: 0,
        };
        let tol = tolerance(&c);
        // The decode step at the 4-lane width (split-KV on two threads).
        let last_view = HeadsRef::bshd(&q[(lk - 1) * h * d..], 1, 1, h, d).unwrap();
        let (want, want_lse) = reference::attention(last_view, kr, vr, &opts);
        for par in [Parallelism::Serial, Parallelism::Threads(2)] {
            let mut step = vec![0.0f32; h * d];
            let mut lse = vec![f32::NAN; h];
            generic::attention(
                pulp::Scalar128b,
                par,
                HeadsMut::bshd(&mut step, 1, 1, h, d).unwrap(),
                last_view,
                kr,
                vr,
                &opts,
                Some(&mut lse),
            )
            .unwrap();
            compare(
                &format!("scalar128b {par:?} decode lk={lk}"),
                &step,
                &want,
                tol,
            );
            let what = format!("scalar128b {par:?} decode lse lk={lk}");
            compare(&what, &lse, &want_lse, tol + 1e-5);
        }
        for isa in Isa::available() {
            for par in [Parallelism::Serial, Parallelism::Threads(2)] {
                let cfg = Config {
                    isa,
                    parallelism: par,
                };
                let mut full = vec![0.0f32; lk * h * d];
                attention(
                    HeadsMut::bshd(&mut full, 1, lk, h, d).unwrap(),
                    HeadsRef::bshd(&q, 1, lk, h, d).unwrap(),
                    kr,
                    vr,
                    &opts,
                    &cfg,
                )
                .unwrap();
                let last = &q[(lk - 1) * h * d..];
                let last_view = HeadsRef::bshd(last, 1, 1, h, d).unwrap();
                let mut step = vec![0.0f32; h * d];
                let mut lse = vec![f32::NAN; h];
                attention_with_lse(
                    HeadsMut::bshd(&mut step, 1, 1, h, d).unwrap(),
                    last_view,
                    kr,
                    vr,
                    &opts,
                    &mut lse,
                    &cfg,
                )
                .unwrap();
                // The decode path (split-KV on two threads from 2048 keys)
                // against the reference, output and log-sum-exp: not only
                // against our own prefill path, which shares its softmax.
                let (want, want_lse) = reference::attention(last_view, kr, vr, &opts);
                compare(&format!("{isa} {par:?} decode lk={lk}"), &step, &want, tol);
                compare(
                    &format!("{isa} {par:?} decode lse lk={lk}"),
                    &lse,
                    &want_lse,
                    tol + 1e-5,
                );
                let full_last = &full[(lk - 1) * h * d..];
                for (i, (a, b)) in step.iter().zip(full_last).enumerate() {
                    assert!(
                        ((a - b) as f64).abs() <= 2.0 * tol,
                        "{isa} {par:?} lk={lk} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn prefill_threads_do_not_change_bits() {
    // Prefill splits queries, never keys: every row is summed the same way.
    for (n, h) in shapes(&[(300usize, 3usize), (129, 12), (700, 1)], 2) {
        let d = 64;
        let x = fill(n * h * d, 9);
        let r = HeadsRef::bshd(&x, 1, n, h, d).unwrap();
        for isa in Isa::available() {
            let go = |par| {
                let mut o = vec![0.0f32; n * h * d];
                attention(
                    HeadsMut::bshd(&mut o, 1, n, h, d).unwrap(),
                    r,
                    r,
                    r,
                    &AttentionOptions {
                        causal: true,
                        scale: None,
                    },
                    &Config {
                        isa,
                        parallelism: par,
                    },
                )
                .unwrap();
                o
            };
            let s = go(Parallelism::Serial);
            for par in [Parallelism::Threads(2), Parallelism::Threads(3)] {
                let p = go(par);
                assert!(
                    s.iter().zip(&p).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa} n={n} h={h} {par:?}"
                );
            }
        }
    }
}

#[test]
fn all_minus_infinity_rows_give_zeros() {
    let (n, d) = (20, 16);
    let q = vec![1.0f32; n * d];
    let k = vec![f32::NEG_INFINITY; n * d];
    let v = fill(n * d, 4);
    for cfg in configs() {
        for lq in [1usize, n] {
            let mut o = vec![f32::NAN; lq * d];
            let mut lse = vec![0.0f32; lq];
            attention_with_lse(
                HeadsMut::bshd(&mut o, 1, lq, 1, d).unwrap(),
                HeadsRef::bshd(&q[..lq * d], 1, lq, 1, d).unwrap(),
                HeadsRef::bshd(&k, 1, n, 1, d).unwrap(),
                HeadsRef::bshd(&v, 1, n, 1, d).unwrap(),
                &AttentionOptions {
                    causal: false,
                    scale: None,
                },
                &mut lse,
                &cfg,
            )
            .unwrap();
            assert!(o.iter().all(|&x| x == 0.0), "{} lq={lq}: {o:?}", cfg.isa);
            assert!(lse.iter().all(|&x| x == f32::NEG_INFINITY));
        }
    }
}

#[test]
fn empty_and_error_paths() {
    let cfg = Config::default();
    let x = fill(2 * 8 * 4 * 16, 5);
    let opts = AttentionOptions::default();
    let q = HeadsRef::bshd(&x, 2, 8, 4, 16).unwrap();
    let mut o = vec![7.0f32; 2 * 8 * 4 * 16];

    // kv heads must divide q heads.
    let k3 = HeadsRef::bshd(&x[..2 * 8 * 3 * 16], 2, 8, 3, 16).unwrap();
    let e = attention(
        HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
        q,
        k3,
        k3,
        &opts,
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "k", .. }),
        "{e:?}"
    );
    // head_dim mismatch.
    let k8 = HeadsRef::bshd(&x, 2, 8, 8, 8).unwrap();
    let e = attention(
        HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
        q,
        k8,
        k8,
        &opts,
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "k", .. }),
        "{e:?}"
    );
    // batch mismatch on v.
    let v1 = HeadsRef::bshd(&x, 1, 16, 4, 16).unwrap();
    let e = attention(
        HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
        q,
        q,
        v1,
        &opts,
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "v", .. }),
        "{e:?}"
    );
    // v seq differs from k.
    let v4 = HeadsRef::bshd(&x[..2 * 4 * 4 * 16], 2, 4, 4, 16).unwrap();
    let e = attention(
        HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
        q,
        q,
        v4,
        &opts,
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "v", .. }),
        "{e:?}"
    );
    // out shape.
    let e = attention(
        HeadsMut::bshd(&mut o, 2, 8, 2, 32).unwrap(),
        q,
        q,
        q,
        &opts,
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "out", .. }),
        "{e:?}"
    );
    // causal with q_len > kv_len.
    let k4 = HeadsRef::bshd(&x[..2 * 4 * 4 * 16], 2, 4, 4, 16).unwrap();
    let causal = AttentionOptions {
        causal: true,
        scale: None,
    };
    let e = attention(
        HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
        q,
        k4,
        k4,
        &causal,
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, KernelError::InvalidArgument { arg: "opts", .. }),
        "{e:?}"
    );
    // ... but fine without the mask.
    attention(
        HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
        q,
        k4,
        k4,
        &opts,
        &cfg,
    )
    .unwrap();
    o.fill(7.0);
    // kv_len = 0.
    let k0 = HeadsRef::<f32>::bshd(&[], 2, 0, 4, 16).unwrap();
    let e = attention(
        HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
        q,
        k0,
        k0,
        &opts,
        &cfg,
    )
    .unwrap_err();
    assert!(matches!(e, KernelError::Empty { arg: "k", .. }), "{e:?}");
    // Bad scale, bad lse length.
    let e = attention(
        HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
        q,
        q,
        q,
        &AttentionOptions {
            causal: false,
            scale: Some(f32::NAN),
        },
        &cfg,
    )
    .unwrap_err();
    assert_eq!(e.arg(), "opts");
    // A finite scale whose log2-unit form (scale·log2 e) overflows.
    let e = attention(
        HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
        q,
        q,
        q,
        &AttentionOptions {
            causal: false,
            scale: Some(-f32::MAX),
        },
        &cfg,
    )
    .unwrap_err();
    assert_eq!(e.arg(), "opts");
    let e = attention_with_lse(
        HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
        q,
        q,
        q,
        &opts,
        &mut [0.0; 5],
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "lse", .. }),
        "{e:?}"
    );
    for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
        let e = attention(
            HeadsMut::bshd(&mut o, 2, 8, 4, 16).unwrap(),
            q,
            q,
            q,
            &opts,
            &Config::with_isa(isa),
        )
        .unwrap_err();
        assert_eq!(e, KernelError::IsaUnavailable { requested: isa });
    }
    assert!(o.iter().all(|&x| x == 7.0), "out written on error");

    // Empty batch / heads / q_len: no-ops, even with kv_len = 0.
    attention(
        HeadsMut::bshd(&mut [], 0, 8, 4, 16).unwrap(),
        HeadsRef::bshd(&[], 0, 8, 4, 16).unwrap(),
        HeadsRef::<f32>::bshd(&[], 0, 0, 4, 16).unwrap(),
        HeadsRef::bshd(&[], 0, 0, 4, 16).unwrap(),
        &causal,
        &cfg,
    )
    .unwrap();
    attention(
        HeadsMut::bshd(&mut [], 2, 0, 4, 16).unwrap(),
        HeadsRef::bshd(&[], 2, 0, 4, 16).unwrap(),
        k0,
        k0,
        &opts,
        &cfg,
    )
    .unwrap();

    // Views: bounds, overflow, overlap.
    assert!(matches!(
        HeadsRef::bshd(&x, 2, 8, 4, 17),
        Err(KernelError::OutOfBounds { .. })
    ));
    assert!(HeadsRef::strided(&x, 2, 2, 2, 2, [usize::MAX, 1, 1]).is_err());
    assert!(matches!(
        HeadsMut::strided(&mut o, 2, 8, 4, 16, [512, 64, 8]),
        Err(KernelError::Overlapping { .. })
    ));
    assert!(HeadsMut::bhsd(&mut o, 2, 8, 4, 16).is_ok());
    let r = HeadsRef::bhsd(&x, 2, 8, 4, 16).unwrap();
    assert_eq!(r.strides(), [512, 16, 128]);
    assert_eq!(r.row(1, 7, 3).unwrap()[0], x[512 + 3 * 128 + 7 * 16]);
    assert!(r.row(2, 0, 0).is_none());
}

#[test]
fn long_sequences_across_query_super_blocks() {
    // Prefill cuts a head's queries into super-blocks of ~1 MiB of Q + O
    // rows (1024 rows at D = 128, 1638 at D = 80): these cases span 2–3 of
    // them, against the reference and across thread counts (bitwise).
    for (n, h, hk, d, causal) in shapes(
        &[
            (1100usize, 2usize, 1usize, 128usize, true),
            (1100, 1, 1, 128, false),
            (3300, 1, 1, 80, true),
        ],
        1,
    ) {
        let c = Case {
            b: 1,
            h,
            hk,
            lq: n,
            lk: n,
            d,
            causal,
            scale: None,
            lay: Lay::Bshd,
            seed: 11,
        };
        let t = c.tensors();
        let (q, k, v) = c.views(&t);
        let (want, want_lse) = reference::attention(q, k, v, &c.opts());
        let tol = tolerance(&c);
        for isa in Isa::available() {
            let serial = Config {
                isa,
                parallelism: Parallelism::Serial,
            };
            let (out, lse) = run(&c, &t, &serial);
            compare(&format!("{isa} {c:?}"), &out, &want, tol);
            compare(&format!("{isa} lse {c:?}"), &lse, &want_lse, tol + 1e-5);
            let par = Config {
                isa,
                parallelism: Parallelism::Threads(3),
            };
            let (out3, _) = run(&c, &t, &par);
            assert!(
                out.iter()
                    .zip(&out3)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{isa} {c:?}: 3 threads changed bits"
            );
        }
    }
}

/// A causal row never touches keys after its own: a NaN in the V row (and
/// an ∞ in the K row) of key j leaves every earlier query's output finite
/// and equal to the output without it. Keys at and around the key-block
/// boundary (256), where the first query tile of a block holds rows that
/// see none of its keys: their P·V once ran over the block's first keys
/// with zero weights (0·NaN = NaN).
#[test]
fn causal_rows_never_read_later_values() {
    let (n, h, d) = (300usize, 1usize, 64usize);
    let q = fill(n * h * d, 21);
    let k = fill(n * h * d, 22);
    let v = fill(n * h * d, 23);
    let opts = AttentionOptions {
        causal: true,
        scale: None,
    };
    for cfg in configs() {
        let go = |k: &[f32], v: &[f32]| {
            let mut o = vec![0.0f32; n * h * d];
            attention(
                HeadsMut::bshd(&mut o, 1, n, h, d).unwrap(),
                HeadsRef::bshd(&q, 1, n, h, d).unwrap(),
                HeadsRef::bshd(k, 1, n, h, d).unwrap(),
                HeadsRef::bshd(v, 1, n, h, d).unwrap(),
                &opts,
                &cfg,
            )
            .unwrap();
            o
        };
        let clean = go(&k, &v);
        for j in [1usize, 7, 250, 255, 256, 257, 262, 299] {
            let (mut kp, mut vp) = (k.clone(), v.clone());
            vp[j * d..(j + 1) * d].fill(f32::NAN);
            kp[j * d] = f32::INFINITY;
            let o = go(&kp, &vp);
            for i in 0..j {
                let (a, b) = (&o[i * d..(i + 1) * d], &clean[i * d..(i + 1) * d]);
                assert!(
                    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{} key {j}: row {i} changed: {:?}",
                    cfg.isa,
                    &a[..4]
                );
            }
            assert!(o[j * d..].iter().all(|x| x.is_nan()), "{} key {j}", cfg.isa);
        }
    }
}
