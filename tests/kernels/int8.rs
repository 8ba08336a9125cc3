//! The opt-in int8 mode (`matmul_weights_int8`): activations quantized per
//! 32 along k, Q8_0/Q4_0/Q4_1 weights as integers.
//!
//! Against `reference::matmul_weights_int8` (f64 on the same quantized
//! operands, A quantized by the crate's own `quantize_activations`): the
//! integer block sums are exact in every path, so the only roundings are the
//! f32 scalings and the accumulation, at most k/4 + 3 of them in a chain
//! (the VNNI decode path sums 16 lanes of partial sums over k/64 pairs of
//! blocks; the others one term per block):
//!   t = 2·(k/4 + 3)·u·(|α|·M + |β·c_ij| + |bias_j|),
//!   M = Σ_b (|d_a·d_w|·Σ|q_a·q_w| + |m_w·d_a|·Σ|q_a|)   (m_w: Q4_1's minimum, else 0)
//! (Q4_1's `m_w·(d_a·Σq_a)` adds two roundings per block, well inside the
//! k/4 + 3 of the chain for a 32-element block)
//! (u = 2⁻²⁴), and for `SiluMul` (|silu'| ≤ 1.1): 1.1·t·|u_ij| + 4 ULP + 1e-7.
//!
//! Against the f32-activation product (`matmul_weights`): quantizing A moves
//! each activation by at most d_a/2 + 2⁻²³|a|, so the two differ by at most
//! Σ_p (d_a(p)/2 + 2⁻²³|a_p|)·|w_pj| plus both products' rounding bounds.

use crate::common::*;
use proptest::prelude::*;
use transformer_kernels::matmul::generic;
use transformer_kernels::quant::WeightLayout;
use transformer_kernels::{
    Config, Epilogue, Isa, KernelError, MatMut, MatRef, OwnedWeights, Parallelism, WeightFormat,
    int8_accelerated, matmul_weights, matmul_weights_int8, quantize_activations, reference,
};

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Which levels run integer dot-product instructions is what this CPU
/// offers, so the property tests below exercise those kernels wherever the
/// CPU has them (and the portable code where it does not: the aarch64
/// script runs this file again on an emulated core without `dotprod`).
#[test]
fn integer_instructions_run_where_the_cpu_has_them() {
    assert!(!int8_accelerated(Isa::Scalar));
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        int8_accelerated(Isa::Avx2),
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    );
    #[cfg(target_arch = "aarch64")]
    assert_eq!(
        int8_accelerated(Isa::Neon),
        std::arch::is_aarch64_feature_detected!("dotprod")
    );
}

#[test]
fn activations_quantize_with_llama_cpp_rounding_and_an_f32_scale() {
    let x: Vec<f32> = (0..64).map(|e| (e as f32 - 20.0) * 0.37).collect();
    let mut q = vec![0i8; 64];
    let mut d = vec![0f32; 2];
    quantize_activations(&x, &mut q, &mut d).unwrap();
    for b in 0..2 {
        let amax = x[b * 32..][..32].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert_eq!(d[b], amax / 127.0, "the scale stays f32");
        let id = 1.0 / d[b];
        for e in 0..32 {
            let v = x[b * 32 + e];
            assert_eq!(q[b * 32 + e], (v * id).round() as i8);
            assert!((d[b] as f64 * q[b * 32 + e] as f64 - v as f64).abs() <= d[b] as f64 * 0.5001);
        }
        assert_eq!(q[b * 32..][..32].iter().map(|v| v.abs()).max(), Some(127));
    }
    // Tiny blocks, where 1/d overflows to ∞: every nonzero q is ±127 (an
    // error of at most amax < 2⁻¹²¹), zero stays 0, none wraps around.
    let tiny: Vec<f32> = (0..32).map(|e| (e as f32 - 16.0) * 1e-39).collect();
    quantize_activations(&tiny, &mut q[..32], &mut d[..1]).unwrap();
    assert_eq!((q[0], q[16], q[31]), (-127, 0, 127), "{:?}", &q[..32]);
    // Zeros give d = 0 and q = 0; a bad value or length is an error.
    quantize_activations(&[0.0; 32], &mut q[..32], &mut d[..1]).unwrap();
    assert_eq!((d[0], q[..32].iter().all(|&v| v == 0)), (0.0, true));
    let mut bad = vec![1.0f32; 32];
    bad[9] = f32::NAN;
    let e = quantize_activations(&bad, &mut q[..32], &mut d[..1]).unwrap_err();
    assert_eq!(e.arg(), "x");
    let e = quantize_activations(&x[..40], &mut q[..40], &mut d[..1]).unwrap_err();
    assert_eq!(e.arg(), "x");
}

#[derive(Debug, Clone)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    fmt: WeightFormat,
    a: Vec<f32>,
    w: Vec<f32>,
    c0: Vec<f32>,
    extra: Vec<f32>,
    a_stride: usize,
    alpha: f32,
    beta: f32,
    epi: u8,
}

/// m across the decode range (1–8: groups of 4 and their tails) and the
/// packed range (9+: tiles of 4, padded); n across the 32-column panels and
/// 128-column chunks; k from one block to past the packed kernel's 32-block
/// passes (k = 1056, 1088), with odd block counts (the decode path's lone
/// last block) and odd pair counts (k = 224: two pairs, then one alone).
fn case() -> impl Strategy<Value = Case> {
    let m = prop_oneof![
        1usize..=10,
        prop::sample::select(vec![1usize, 4, 5, 8, 9, 12, 17, 33])
    ];
    let n = prop_oneof![
        1usize..=70,
        prop::sample::select(vec![1usize, 31, 32, 33, 127, 128, 129, 300])
    ];
    let fmt = prop::sample::select(vec![
        WeightFormat::Q8_0,
        WeightFormat::Q4_0,
        WeightFormat::Q4_1,
    ]);
    (m, n, fmt, 0usize..8).prop_flat_map(|(m, n, fmt, kk)| {
        let k = [32usize, 64, 96, 160, 224, 288, 1056, 1088][kk];
        let v = |len: usize| prop::collection::vec(-2.0f32..2.0, len);
        (
            v(m * k),
            v(k * n),
            v(m * n),
            v(m * n.max(1)),
            prop::sample::select(vec![1usize, 3]),
            prop::sample::select(vec![1.0f32, -0.5]),
            prop::sample::select(vec![0.0f32, 1.0, 0.75]),
            0u8..3,
        )
            .prop_map(move |(a, w, c0, extra, a_stride, alpha, beta, epi)| Case {
                m,
                n,
                k,
                fmt,
                a,
                w,
                c0,
                extra,
                a_stride,
                alpha,
                beta,
                epi,
            })
    })
}

fn check(case: &Case) {
    let Case { m, n, k, fmt, .. } = *case;
    let owned = OwnedWeights::from_f32(&case.w, k, n, fmt, WeightLayout::OutIn).unwrap();
    let w = owned.view();
    let s = case.a_stride;
    let mut abuf = vec![f32::NAN; (m * k).max(1) * s];
    for i in 0..m * k {
        abuf[i * s] = case.a[i];
    }
    let a = MatRef::new(&abuf, m, k, k * s, s).unwrap();
    let bias = &case.extra[..n];
    let u = MatRef::row_major(&case.extra, m, n).unwrap();
    let epi = match case.epi {
        0 => Epilogue::None,
        1 => Epilogue::Bias(bias),
        _ => Epilogue::SiluMul(u),
    };
    let ldc = n + 2;
    let mut c0 = vec![f32::NAN; m * ldc];
    for i in 0..m {
        c0[i * ldc..][..n].copy_from_slice(&case.c0[i * n..][..n]);
    }
    let cref = Some(MatRef::new(&c0, m, n, ldc, 1).unwrap());
    let (exact, mag) = reference::matmul_weights_int8(cref, a, &w, case.alpha, case.beta, epi);
    let tol = |idx: usize| {
        let j = idx % n;
        let cterm = (case.beta as f64 * case.c0[idx] as f64).abs();
        let b = if case.epi == 1 {
            bias[j].abs() as f64
        } else {
            0.0
        };
        let t = 2.0 * (k as f64 / 4.0 + 3.0) * U * (case.alpha.abs() as f64 * mag[idx] + cterm + b)
            + 2f64.powi(-140);
        if case.epi == 2 {
            1.1 * t * case.extra[idx].abs() as f64 + 4.0 * ulp_f32(exact[idx]) + 1e-7
        } else {
            t
        }
    };
    let run = |cfg: &Config| {
        let mut c = c0.clone();
        matmul_weights_int8(
            MatMut::new(&mut c, m, n, ldc, 1).unwrap(),
            a,
            w,
            case.alpha,
            case.beta,
            epi,
            cfg,
        )
        .unwrap();
        c
    };
    // The 4-lane width (NEON's) through `generic`, beside every level.
    let mut c4 = c0.clone();
    generic::matmul_weights_int8(
        pulp::Scalar128b,
        MatMut::new(&mut c4, m, n, ldc, 1).unwrap(),
        a,
        w,
        case.alpha,
        case.beta,
        epi,
    )
    .unwrap();
    let runs = configs()
        .into_iter()
        .map(|cfg| (format!("{}", cfg.isa), Some(cfg)))
        .chain([("Scalar128b".to_string(), None)]);
    for (name, cfg) in runs {
        let c = match cfg {
            Some(cfg) => run(&cfg),
            None => c4.clone(),
        };
        for (idx, &want) in exact.iter().enumerate() {
            let (i, j) = (idx / n, idx % n);
            let g = c[i * ldc + j] as f64;
            let err = (g - want).abs();
            assert!(
                err <= tol(idx),
                "{name} {fmt:?} {m}x{n}x{k}: ({i}, {j}) got {g}, want {want} (err {err:e} > {:e})",
                tol(idx)
            );
        }
        for i in 0..m {
            assert!(
                c[i * ldc + n].is_nan() && c[i * ldc + n + 1].is_nan(),
                "{name}: padding written"
            );
        }
        let Some(cfg) = cfg else { continue };
        let c2 = run(&Config {
            isa: cfg.isa,
            parallelism: Parallelism::Threads(2),
        });
        assert!(
            c.iter().zip(&c2).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}: two threads changed the result",
            cfg.isa
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(96)))]

    #[test]
    fn matches_reference_on_every_level(c in case()) {
        check(&c);
    }
}

/// The int8 product is within the quantization bound of the f32-activation
/// product on the same weights, and not equal to it (A really was
/// quantized); wide enough to cross thread splits and chunks.
#[test]
fn within_the_quantization_bound_of_the_f32_activation_product() {
    for (m, n, k) in [(1usize, 700usize, 256usize), (3, 130, 96), (40, 260, 320)] {
        for fmt in [WeightFormat::Q8_0, WeightFormat::Q4_0, WeightFormat::Q4_1] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 2654435761) % 1999) as f32 / 999.5 - 1.0)
                .collect();
            let wf: Vec<f32> = (0..k * n)
                .map(|i| ((i * 40503) % 997) as f32 / 498.5 - 1.0)
                .collect();
            let owned = OwnedWeights::from_f32(&wf, k, n, fmt, WeightLayout::OutIn).unwrap();
            let w = owned.view();
            let wq = reference::weights_f32(&w);
            let av = MatRef::row_major(&a, m, k).unwrap();
            let mut q = vec![0i8; m * k];
            let mut d = vec![0f32; m * k / 32];
            quantize_activations(&a, &mut q, &mut d).unwrap();
            for cfg in configs() {
                let (mut c8, mut cf) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
                let c8v = MatMut::row_major(&mut c8, m, n).unwrap();
                matmul_weights_int8(c8v, av, w, 1.0, 0.0, Epilogue::None, &cfg).unwrap();
                let cfv = MatMut::row_major(&mut cf, m, n).unwrap();
                matmul_weights(cfv, av, w, 1.0, 0.0, Epilogue::None, &cfg).unwrap();
                let mut differs = false;
                for i in 0..m {
                    for j in 0..n {
                        let (mut bound, mut sum) = (0.0f64, 0.0f64);
                        for p in 0..k {
                            let wv = (wq[p * n + j] as f64).abs();
                            let ap = a[i * k + p] as f64;
                            bound +=
                                (d[(i * k + p) / 32] as f64 / 2.0 + ap.abs() * 2f64.powi(-23)) * wv;
                            sum += ap.abs() * wv;
                        }
                        // Both products' own rounding on top (k/4 and k terms).
                        bound += 2.0 * (k as f64 + 3.0) * U * sum * 2.0;
                        let diff = (c8[i * n + j] as f64 - cf[i * n + j] as f64).abs();
                        assert!(
                            diff <= bound,
                            "{} {fmt:?} {m}x{n}x{k} ({i}, {j}): int8 {} vs f32 {} (diff {diff:e} > {bound:e})",
                            cfg.isa,
                            c8[i * n + j],
                            cf[i * n + j]
                        );
                        differs |= diff > 0.0;
                    }
                }
                assert!(differs, "{}: the int8 product equals the f32 one", cfg.isa);
            }
        }
    }
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let (m, n, k) = (2, 3, 64);
    let wf = vec![0.5f32; k * n];
    let a = vec![1.0f32; m * k];
    let mut c = vec![7.0f32; m * n];
    let cfg = Config::default();
    let run = |c: &mut [f32], a: &[f32], w: transformer_kernels::WeightsRef<'_>| {
        matmul_weights_int8(
            MatMut::row_major(c, m, n).unwrap(),
            MatRef::row_major(a, m, k).unwrap(),
            w,
            1.0,
            0.0,
            Epilogue::None,
            &cfg,
        )
    };
    for fmt in [WeightFormat::F32, WeightFormat::Bf16, WeightFormat::F16] {
        let o = OwnedWeights::from_f32(&wf, k, n, fmt, WeightLayout::OutIn).unwrap();
        let e = run(&mut c, &a, o.view()).unwrap_err();
        assert!(
            matches!(e, KernelError::InvalidArgument { arg: "w", .. }),
            "{fmt:?}: {e:?}"
        );
    }
    let o = OwnedWeights::from_f32(&wf, k, n, WeightFormat::Q4_0, WeightLayout::OutIn).unwrap();
    let mut bad = a.clone();
    bad[70] = f32::INFINITY;
    let e = run(&mut c, &bad, o.view()).unwrap_err();
    assert!(
        matches!(e, KernelError::InvalidArgument { arg: "a", .. }),
        "{e:?}"
    );
    // A of the wrong width.
    let o2 = OwnedWeights::from_f32(
        &vec![0.5f32; 32 * n],
        32,
        n,
        WeightFormat::Q8_0,
        WeightLayout::OutIn,
    )
    .unwrap();
    assert_eq!(run(&mut c, &a, o2.view()).unwrap_err().arg(), "b");
    assert_eq!(c, vec![7.0; m * n], "nothing written on an error");
    // An unavailable level is an error, not a fallback.
    for isa in [Isa::Avx512, Isa::Avx2, Isa::Neon] {
        if !isa.is_available() {
            let e = matmul_weights_int8(
                MatMut::row_major(&mut c, m, n).unwrap(),
                MatRef::row_major(&a, m, k).unwrap(),
                o.view(),
                1.0,
                0.0,
                Epilogue::None,
                &Config { isa, ..cfg },
            )
            .unwrap_err();
            assert!(matches!(e, KernelError::IsaUnavailable { .. }), "{e:?}");
        }
    }
    // The good call still works after the errors (scratch given back).
    run(&mut c, &a, o.view()).unwrap();
    assert!(c.iter().all(|v| (v - 32.0).abs() < 0.2), "{c:?}");
}
