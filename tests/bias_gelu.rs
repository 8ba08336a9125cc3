//! `bias_gelu` and friends vs `reference`, on every level this CPU runs and
//! on the 4-lane NEON width (`pulp::Scalar128b`), over random shapes and
//! values; plus every error path.
//!
//! Tolerance: the kernel adds the bias in f32 (exactly as the reference does)
//! and evaluates GELU within 4 ULP + 1e-7 of the exact f64 value (the bound
//! `tests/math.rs` asserts over 2²⁰ points), so each element must satisfy
//! |got − exact| ≤ 4·ulp(exact) + 1e-7, with NaN where the input is NaN.

mod common;
use common::*;
use proptest::prelude::*;
use transformer_kernels::gelu::generic;
use transformer_kernels::{
    Config, GeluKind, Isa, KernelError, Parallelism, add_bias, bias_gelu, bias_gelu_inplace, gelu,
    gelu_inplace, reference,
};

fn assert_close(level: &str, kind: GeluKind, input: &[f32], got: &[f32], exact: &[f64]) {
    assert_eq!(got.len(), exact.len());
    for i in 0..got.len() {
        let (g, e) = (got[i] as f64, exact[i]);
        if e.is_nan() {
            assert!(
                g.is_nan(),
                "{level} {kind:?} [{i}] in {}: got {g}, want NaN",
                input[i]
            );
        } else if e.is_infinite() {
            assert_eq!(g, e, "{level} {kind:?} [{i}]");
        } else {
            let err = (g - e).abs();
            assert!(
                err <= 4.0 * ulp_f32(e) + 1e-7,
                "{level} {kind:?} [{i}]: input+bias {}, got {g:e}, exact {e:e}",
                input[i]
            );
        }
    }
}

/// Values from a wide range of magnitudes (±1e-3 … ±1e4), NaN/±∞ now and then.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        20 => -1e-3f32..1e-3,
        40 => -10f32..10.0,
        20 => -1e4f32..1e4,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
    ]
}

fn case() -> impl Strategy<Value = (usize, Vec<f32>, Vec<f32>, bool)> {
    (0usize..40, 1usize..300).prop_flat_map(|(rows, cols)| {
        (
            Just(rows),
            prop::collection::vec(value(), rows * cols),
            prop::collection::vec(-3f32..3.0, cols),
            any::<bool>(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(200)))]

    #[test]
    fn matches_reference_on_every_level((_rows, x, bias, tanh) in case()) {
        let kind = if tanh { GeluKind::Tanh } else { GeluKind::Erf };
        let exact = reference::bias_gelu(&x, &bias, kind);
        let summed: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + bias[i % bias.len()]).collect();
        for cfg in configs() {
            let level = cfg.isa.to_string();
            let mut out = vec![f32::NAN; x.len()];
            bias_gelu(&x, &bias, &mut out, kind, &cfg).unwrap();
            assert_close(&level, kind, &summed, &out, &exact);

            let mut inplace = x.clone();
            bias_gelu_inplace(&mut inplace, &bias, kind, &cfg).unwrap();
            // Same kernel, same order of operations: bitwise equal.
            prop_assert!(bits_eq(&inplace, &out), "{} in-place differs", level);

            // Unfused: add_bias then gelu_inplace gives the same bits too.
            let mut two = vec![0.0; x.len()];
            add_bias(&x, &bias, &mut two, &cfg).unwrap();
            gelu_inplace(&mut two, kind, &cfg).unwrap();
            prop_assert!(bits_eq(&two, &out), "{} two-pass differs", level);

            // Plain gelu on the summed input.
            let mut g = vec![0.0; x.len()];
            gelu(&summed, &mut g, kind, &cfg).unwrap();
            prop_assert!(bits_eq(&g, &out), "{} gelu differs", level);

            // Threads split rows; the result must not change.
            let par = Config { isa: cfg.isa, parallelism: Parallelism::Threads(2) };
            let mut p = vec![0.0; x.len()];
            bias_gelu(&x, &bias, &mut p, kind, &par).unwrap();
            prop_assert!(bits_eq(&p, &out), "{} threaded differs", level);
        }
        // The 4-lane width (NEON's) in portable code: every entry point.
        let s4 = pulp::Scalar128b;
        let mut out = vec![f32::NAN; x.len()];
        generic::bias_gelu(s4, &x, &bias, &mut out, kind).unwrap();
        assert_close("scalar128b", kind, &summed, &out, &exact);
        let mut inplace = x.clone();
        generic::bias_gelu_inplace(s4, &mut inplace, &bias, kind).unwrap();
        prop_assert!(bits_eq(&inplace, &out), "scalar128b in-place differs");
        let mut two = vec![0.0; x.len()];
        generic::add_bias(s4, &x, &bias, &mut two).unwrap();
        prop_assert!(bits_eq(&two, &summed), "scalar128b add_bias differs");
        generic::gelu_inplace(s4, &mut two, kind).unwrap();
        prop_assert!(bits_eq(&two, &out), "scalar128b two-pass differs");
        let mut g = vec![0.0; x.len()];
        generic::gelu(s4, &summed, &mut g, kind).unwrap();
        prop_assert!(bits_eq(&g, &out), "scalar128b gelu differs");
    }
}

fn bits_eq(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn large_input_uses_threads_and_matches_serial() {
    // Big enough (≥ 2 · 2^16 elements) that Threads(2) really splits it.
    let (rows, cols) = (257, 769);
    let x: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919) % 2001) as f32 / 100.0 - 10.0)
        .collect();
    let bias: Vec<f32> = (0..cols).map(|c| c as f32 / cols as f32 - 0.5).collect();
    for kind in [GeluKind::Erf, GeluKind::Tanh] {
        for isa in Isa::available() {
            let mut a = vec![0.0; x.len()];
            let mut b = vec![0.0; x.len()];
            bias_gelu(&x, &bias, &mut a, kind, &Config::with_isa(isa)).unwrap();
            let cfg = Config {
                isa,
                parallelism: Parallelism::Threads(0),
            };
            bias_gelu(&x, &bias, &mut b, kind, &cfg).unwrap();
            assert!(bits_eq(&a, &b), "{isa} {kind:?}");
            let summed: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(i, v)| v + bias[i % cols])
                .collect();
            assert_close(
                isa.name(),
                kind,
                &summed,
                &a,
                &reference::bias_gelu(&x, &bias, kind),
            );
        }
    }
}

#[test]
fn zero_rows_is_fine() {
    for cfg in configs() {
        let mut out: [f32; 0] = [];
        bias_gelu(&[], &[1.0, 2.0], &mut out, GeluKind::Erf, &cfg).unwrap();
        bias_gelu(&[], &[], &mut out, GeluKind::Erf, &cfg).unwrap();
        bias_gelu_inplace(&mut [], &[1.0], GeluKind::Tanh, &cfg).unwrap();
        gelu(&[], &mut out, GeluKind::Erf, &cfg).unwrap();
    }
}

#[test]
fn error_paths_name_the_argument_and_leave_out_untouched() {
    let cfg = Config::default();
    let x = [1.0f32; 6];
    let mut out = [7.0f32; 6];

    let e = bias_gelu(&x, &[1.0; 4], &mut out, GeluKind::Erf, &cfg).unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "bias", .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("bias has 4 elements"), "{e}");

    let e = bias_gelu(&x, &[], &mut out, GeluKind::Erf, &cfg).unwrap_err();
    assert!(matches!(e, KernelError::Empty { arg: "bias", .. }), "{e:?}");

    let mut short = [7.0f32; 5];
    let e = bias_gelu(&x, &[1.0; 3], &mut short, GeluKind::Erf, &cfg).unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "out", .. }),
        "{e:?}"
    );
    assert_eq!(e.arg(), "out");

    let e = gelu(&x, &mut short, GeluKind::Tanh, &cfg).unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "out", .. }),
        "{e:?}"
    );

    let mut y = x;
    let e = bias_gelu_inplace(&mut y, &[1.0; 4], GeluKind::Erf, &cfg).unwrap_err();
    assert!(matches!(e, KernelError::ShapeMismatch { arg: "bias", .. }));
    assert_eq!(y, x, "input changed on error");
    assert_eq!(out, [7.0; 6], "output changed on error");
    assert_eq!(short, [7.0; 5], "output changed on error");
}

#[test]
fn unavailable_isa_is_an_error_not_ub() {
    for isa in Isa::ALL {
        let cfg = Config::with_isa(isa);
        let mut out = [0.0f32; 3];
        let r = bias_gelu(&[1.0; 3], &[0.0; 3], &mut out, GeluKind::Erf, &cfg);
        if isa.is_available() {
            r.unwrap();
        } else {
            let e = r.unwrap_err();
            assert_eq!(e, KernelError::IsaUnavailable { requested: isa });
            assert_eq!(out, [0.0; 3]);
        }
    }
    // Neon never runs on x86 and AVX never on aarch64.
    #[cfg(target_arch = "x86_64")]
    assert!(!Isa::Neon.is_available());
    #[cfg(target_arch = "aarch64")]
    assert!(!Isa::Avx2.is_available());
}
