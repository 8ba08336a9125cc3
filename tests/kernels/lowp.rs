//! Low-precision weights (`quant`, `matmul_weights`): the quantizers against
//! llama.cpp's rounding (golden bytes and error bounds), and the product with
//! bf16 / f16 / Q8_0 / Q4_0 weights in both layouts against
//! `reference::matmul_weights` (f64, on the weights' exact values decoded
//! from the formats' definitions) on every level this CPU runs plus
//! `pulp::Scalar128b`, through all three paths: the dot-product decode path
//! (m ≤ 8, `[n, k]`), the axpy decode path (m = 1, `[k, n]` bf16/f16) and the
//! packed driver converting while it packs (every other m).
//!
//! Tolerance: the f32 matmul's (tests/kernels/matmul.rs), with `S = Σ_p |a_ip·w_pj|`
//! over the dequantized weights — widening bf16/f16 and `d·q` are exact, so
//! the kernel's only roundings are the f32 FMA chain and the epilogue's:
//!   t = 2·(k + 3)·u·(|α|·S + |β·c_ij| + |bias_j|) + (k + 4)·2⁻¹⁴⁹,
//! and for `SiluMul` (|silu'| ≤ 1.1): 1.1·t·|u_ij| + 4 ULP + 1e-7.

use crate::common::*;
use proptest::prelude::*;
use transformer_kernels::matmul::generic;
use transformer_kernels::quant::{Block, WeightLayout, dequantize};
use transformer_kernels::{
    BlockQ4_0, BlockQ4_1, BlockQ8_0, Config, Epilogue, KernelError, MatMut, MatRef, OwnedWeights,
    Parallelism, WeightFormat, WeightsRef, f16, matmul_weights, quantize_q4_0, quantize_q4_1,
    quantize_q8_0, reference,
};

const U: f64 = 1.0 / (1u64 << 24) as f64;

#[test]
fn q8_0_matches_llama_cpp_rounding() {
    // amax = 31·0.5 = 15.5 → d = 15.5/127 (rounded to f16), q = round(x/d).
    let x: Vec<f32> = (0..32).map(|e| (e as f32 - 16.0) * 0.5 + 0.25).collect();
    let b = quantize_q8_0(&x).unwrap();
    assert_eq!(b.len(), 1);
    let d = 7.75f32 / 127.0;
    assert_eq!(b[0].d, f16::from_f32(d));
    let id = 1.0 / d;
    for (e, &xe) in x.iter().enumerate() {
        assert_eq!(b[0].qs[e], (xe * id).round() as i8, "element {e}");
    }
    // Golden bytes: x = e − 16 → amax 16, d = 16/127, q = round((e−16)·127/16).
    let x: Vec<f32> = (0..32).map(|e| e as f32 - 16.0).collect();
    let b = quantize_q8_0(&x).unwrap();
    let bytes = BlockQ8_0::as_bytes(&b);
    assert_eq!(bytes.len(), 34);
    assert_eq!(&bytes[2..6], &[0x81u8, 0x89, 0x91, 0x99]); // −127, −119, −111, −103
    assert_eq!(bytes[2 + 16], 0); // x = 0
    assert_eq!(bytes[2 + 31] as i8, 119); // 15·127/16 = 119.06
    // All-zero block: d = 0, every q = 0.
    let z = quantize_q8_0(&[0.0; 32]).unwrap();
    assert_eq!(z[0].d.to_bits(), 0);
    assert!(z[0].qs.iter().all(|&q| q == 0));
}

#[test]
fn q4_0_matches_llama_cpp_rounding_and_nibble_order() {
    // x = e − 16: the largest magnitude is −16 (e = 0), so d = −16/−8 = 2,
    // nib = min(15, trunc(x/2 + 8.5)); element j < 16 in the low nibble of
    // byte j, element j + 16 in its high nibble.
    let x: Vec<f32> = (0..32).map(|e| e as f32 - 16.0).collect();
    let b = quantize_q4_0(&x).unwrap();
    let bytes = BlockQ4_0::as_bytes(&b);
    assert_eq!(bytes.len(), 18);
    assert_eq!(&bytes[..2], &[0x00, 0x40]); // f16 2.0, little-endian
    assert_eq!(bytes[2], 0x80); // nib(−16) = 0, nib(0) = 8
    assert_eq!(bytes[3], 0x91); // nib(−15) = 1, nib(1) = 9
    assert_eq!(bytes[4], 0x91); // nib(−14) = trunc(1.5) = 1, nib(2) = trunc(9.5) = 9
    assert_eq!(bytes[5], 0xA2);
    assert_eq!(bytes[17], 0xF8); // nib(−1) = 8, nib(15) = min(15, 16) = 15
    // The sign of the largest-magnitude value is kept: d < 0 here.
    let y: Vec<f32> = (0..32).map(|e| if e == 5 { 3.0 } else { 0.1 }).collect();
    let b = quantize_q4_0(&y).unwrap();
    assert_eq!(b[0].d, f16::from_f32(3.0 / -8.0));
    assert_eq!(b[0].dequantize()[5], 3.0);
}

#[test]
fn q4_1_matches_llama_cpp_rounding_and_nibble_order() {
    // x = e − 16: min −16, max 15, d = 31/15, m = −16, nib = min(15,
    // trunc((x + 16)·(15/31) + 0.5)); element j < 16 in the low nibble of
    // byte j, element j + 16 in its high nibble.
    let x: Vec<f32> = (0..32).map(|e| e as f32 - 16.0).collect();
    let b = quantize_q4_1(&x).unwrap();
    let bytes = BlockQ4_1::as_bytes(&b);
    assert_eq!(bytes.len(), 20);
    assert_eq!(b[0].d, f16::from_f32(31.0 / 15.0));
    assert_eq!(&bytes[2..4], &[0x00, 0xCC]); // f16 −16.0, little-endian
    let id = 1.0f32 / (31.0f32 / 15.0);
    let nib = |v: f32| (((v + 16.0) * id + 0.5) as u8).min(15);
    for j in 0..16 {
        let want = nib(x[j]) | (nib(x[j + 16]) << 4);
        assert_eq!(bytes[4 + j], want, "byte {j}");
    }
    assert_eq!(bytes[4] & 0x0f, 0); // the minimum is nibble 0
    assert_eq!(bytes[19] >> 4, 15); // the maximum nibble 15
    // A constant block: d = 0, every value m.
    let c = quantize_q4_1(&[2.5f32; 32]).unwrap();
    assert_eq!(c[0].d.to_bits(), 0);
    assert!(c[0].dequantize().iter().all(|&v| v == 2.5));
}

#[test]
fn bytes_round_trip_and_bad_bytes_are_refused() {
    let x: Vec<f32> = (0..96).map(|e| ((e * 37) % 23) as f32 - 11.0).collect();
    let q8 = quantize_q8_0(&x).unwrap();
    let q4 = quantize_q4_0(&x).unwrap();
    let b8 = BlockQ8_0::as_bytes(&q8).to_vec();
    let b4 = BlockQ4_0::as_bytes(&q4).to_vec();
    assert_eq!(BlockQ8_0::from_bytes(&b8).unwrap(), &q8[..]);
    assert_eq!(BlockQ4_0::from_bytes(&b4).unwrap(), &q4[..]);
    let q41 = quantize_q4_1(&x).unwrap();
    let b41 = BlockQ4_1::as_bytes(&q41).to_vec();
    assert_eq!(BlockQ4_1::from_bytes(&b41).unwrap(), &q41[..]);
    assert_eq!(
        BlockQ4_1::from_bytes(&b41[..21]).unwrap_err().arg(),
        "bytes"
    );
    let e = BlockQ8_0::from_bytes(&b8[..33]).unwrap_err();
    assert_eq!(e.arg(), "bytes");
    // An odd address: slicing one byte in from a 2-aligned buffer.
    let odd = [0u8; 34 * 2 + 1];
    let start = if (odd.as_ptr() as usize).is_multiple_of(2) {
        1
    } else {
        0
    };
    let e = BlockQ8_0::from_bytes(&odd[start..start + 34]).unwrap_err();
    assert_eq!(e.arg(), "bytes");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// Dequantized Q8_0 is within d/2 of the input (round to nearest), Q4_0
    /// within |d|/2 except where the top of the range clamps to 15 (then
    /// within |d|); `dequantize` agrees with the reference decoding.
    #[test]
    fn quantizers_round_to_nearest(x in prop::collection::vec(-100.0f32..100.0, 32..=160), scale in prop::sample::select(vec![1e-6f32, 1.0, 300.0])) {
        let x: Vec<f32> = x.iter().take(x.len() / 32 * 32).map(|v| v * scale).collect();
        let q8 = quantize_q8_0(&x).unwrap();
        let d8_all = dequantize(&q8);
        let q4 = quantize_q4_0(&x).unwrap();
        let d4_all = dequantize(&q4);
        let q41 = quantize_q4_1(&x).unwrap();
        let d41_all = dequantize(&q41);
        for (bi, b) in q41.iter().enumerate() {
            let r = reference::q4_1_values(b);
            let blk = &x[bi * 32..][..32];
            let lo = blk.iter().fold(f32::MAX, |m, &v| m.min(v)) as f64;
            let hi = blk.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
            // d = (max − min)/15 and m = min, each rounded to f16 (2^-11
            // relative, 2^-25 absolute among subnormals); nib = round((x −
            // m)/d), within 15 steps: within d/2 of x, plus 15 times d's
            // rounding, plus m's rounding, plus the f32 arithmetic.
            let d = (hi - lo) / 15.0;
            let (sd, sm) = (b.d.to_f32() as f64, b.m.to_f32() as f64);
            let half_ulp = |v: f64| v.abs() * 4.9e-4 + 2f64.powi(-25);
            prop_assert!((sd - d).abs() <= half_ulp(d));
            prop_assert!((sm - lo).abs() <= half_ulp(lo));
            for e in 0..32 {
                let (i, v) = (bi * 32 + e, x[bi * 32 + e] as f64);
                prop_assert_eq!(d41_all[i] as f64, r[e]);
                let bound = 0.5 * d + 15.0 * (sd - d).abs() + (sm - lo).abs()
                    + 1e-6 * (d + lo.abs() + hi.abs());
                prop_assert!((r[e] - v).abs() <= bound, "q4_1 {e}: {} vs {v}", r[e]);
            }
        }
        for (bi, (b8, b4)) in q8.iter().zip(&q4).enumerate() {
            let r8 = reference::q8_0_values(b8);
            let r4 = reference::q4_0_values(b4);
            let (s8, s4) = (b8.d.to_f32().abs() as f64, b4.d.to_f32().abs() as f64);
            let amax = x[bi * 32..][..32].iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            // The f32 scales d = amax/127 and amax/8, stored rounded to f16:
            // within 2^-11 relative, or 2^-25 absolute among subnormal halves.
            let (d8, d4) = (amax / 127.0, amax / 8.0);
            let half_ulp = |d: f64| d * 4.9e-4 + 2f64.powi(-25);
            prop_assert!((s8 - d8).abs() <= half_ulp(d8));
            prop_assert!((s4 - d4).abs() <= half_ulp(d4));
            for e in 0..32 {
                let (i, v) = (bi * 32 + e, x[bi * 32 + e] as f64);
                prop_assert_eq!(d8_all[i] as f64, r8[e]);
                prop_assert_eq!(d4_all[i] as f64, r4[e]);
                // q = round(x/d) with the f32 d: within d/2 (Q4_0: |d|, where
                // the top of the range clamps to 15), plus |q| times the
                // rounding of d to f16 (|q| ≤ 127, |nib − 8| ≤ 8), plus the
                // f32 rounding of x·(1/d).
                let e8 = 0.5 * d8 + 127.0 * (s8 - d8).abs() + 1e-6 * d8;
                let e4 = d4 + 8.0 * (s4 - d4).abs() + 1e-6 * d4;
                prop_assert!((r8[e] - v).abs() <= e8, "q8 {e}: {} vs {v}", r8[e]);
                prop_assert!((r4[e] - v).abs() <= e4, "q4 {e}: {} vs {v}", r4[e]);
            }
        }
    }
}

#[test]
fn quantizers_and_views_refuse_bad_input() {
    let err = |r: Result<Vec<BlockQ8_0>, KernelError>| r.unwrap_err().arg();
    assert_eq!(err(quantize_q8_0(&[0.0; 31])), "x");
    let mut x = vec![0.0f32; 32];
    x[3] = f32::NAN;
    assert_eq!(err(quantize_q8_0(&x)), "x");
    x[3] = f32::INFINITY;
    assert_eq!(quantize_q4_0(&x).unwrap_err().arg(), "x");
    // A scale past f16's range.
    x[3] = 1e10;
    assert_eq!(err(quantize_q8_0(&x)), "x");

    let w = quantize_q8_0(&vec![1.0f32; 64 * 3]).unwrap();
    assert!(WeightsRef::q8_0(&w, 64, 3).is_ok());
    assert_eq!(WeightsRef::q8_0(&w, 48, 4).unwrap_err().arg(), "k");
    assert_eq!(WeightsRef::q8_0(&w, 64, 4).unwrap_err().arg(), "data");
    assert_eq!(WeightsRef::q8_0(&w[..5], 64, 3).unwrap_err().arg(), "data");
    for bad in [f16::NAN, f16::INFINITY, f16::NEG_INFINITY] {
        let mut w2 = w.clone();
        w2[4].d = bad;
        let e = WeightsRef::q8_0(&w2, 64, 3).unwrap_err();
        assert_eq!(e.arg(), "data");
        assert!(e.to_string().contains("block 4"), "{e}");
        let mut w4 = quantize_q4_0(&vec![1.0f32; 64 * 3]).unwrap();
        w4[1].d = bad;
        assert_eq!(WeightsRef::q4_0(&w4, 64, 3).unwrap_err().arg(), "data");
        // Q4_1: its minimum is checked as its scale is.
        let mut w41 = quantize_q4_1(&vec![1.0f32; 64 * 3]).unwrap();
        assert!(WeightsRef::q4_1(&w41, 64, 3).is_ok());
        w41[2].m = bad;
        assert_eq!(WeightsRef::q4_1(&w41, 64, 3).unwrap_err().arg(), "data");
    }
    let h = vec![f16::ZERO; 12];
    assert_eq!(
        WeightsRef::f16(&h, 4, 4, WeightLayout::InOut)
            .unwrap_err()
            .arg(),
        "data"
    );
    // A product whose weights do not match A.
    let wv = WeightsRef::q8_0(&w, 64, 3).unwrap();
    let a = vec![0.0f32; 32];
    let mut c = vec![7.0f32; 3];
    let e = matmul_weights(
        MatMut::row_major(&mut c, 1, 3).unwrap(),
        MatRef::row_major(&a, 1, 32).unwrap(),
        wv,
        1.0,
        0.0,
        Epilogue::None,
        &Config::default(),
    )
    .unwrap_err();
    assert_eq!(e.arg(), "b");
    assert_eq!(c, [7.0; 3], "nothing written on an error");
    assert!("q4_0".parse::<WeightFormat>().is_ok());
    assert_eq!("q5_k".parse::<WeightFormat>().unwrap_err().arg(), "format");
}

/// A product case: shapes, format, layout, A's column stride, C padded,
/// alpha, beta, epilogue (0 none, 1 bias, 2 SiluMul).
#[derive(Debug, Clone)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    fmt: WeightFormat,
    layout: WeightLayout,
    a: Vec<f32>,
    w: Vec<f32>,
    c0: Vec<f32>,
    extra: Vec<f32>,
    a_stride: usize,
    alpha: f32,
    beta: f32,
    epi: u8,
}

fn fmt() -> impl Strategy<Value = WeightFormat> {
    prop::sample::select(vec![
        WeightFormat::Bf16,
        WeightFormat::F16,
        WeightFormat::Q8_0,
        WeightFormat::Q4_0,
        WeightFormat::Q4_1,
    ])
}

/// m from the decode range (1–8, each path's group edges) and past it; n
/// at tile and chunk edges; k a multiple of 32 for the block formats
/// (32 = one block, up to past KC = 256/512/1024), any k for bf16/f16. A
/// quarter of the cases scale the weights by 1e-5, so the block scales
/// (and Q4_1's minimum, and bf16/f16 weights) are subnormal halves.
fn case() -> impl Strategy<Value = Case> {
    let m = prop_oneof![
        1usize..=9,
        prop::sample::select(vec![1usize, 4, 5, 8, 9, 15, 17, 33])
    ];
    let n = prop_oneof![
        1usize..=70,
        prop::sample::select(vec![1usize, 3, 15, 16, 17, 33, 63, 64, 65, 129, 513, 600])
    ];
    (m, n, fmt(), prop::bool::ANY, 0usize..6).prop_flat_map(|(m, n, fmt, out_in, kk)| {
        let k = if fmt.is_quantized() {
            [32usize, 64, 96, 288, 544, 1056][kk]
        } else {
            [1usize, 7, 16, 33, 257, 1031][kk]
        };
        let layout = if out_in || fmt.is_quantized() {
            WeightLayout::OutIn
        } else {
            WeightLayout::InOut
        };
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
            prop::sample::select(vec![1.0f32, 1.0, 1.0, 1e-5]),
        )
            .prop_map(
                move |(a, w, c0, extra, a_stride, alpha, beta, epi, ws)| Case {
                    m,
                    n,
                    k,
                    fmt,
                    layout,
                    a,
                    w: w.into_iter().map(|v| v * ws).collect(),
                    c0,
                    extra,
                    a_stride,
                    alpha,
                    beta,
                    epi,
                },
            )
    })
}

fn check(case: &Case) {
    let Case {
        m,
        n,
        k,
        fmt,
        layout,
        ..
    } = *case;
    let owned = OwnedWeights::from_f32(&case.w, k, n, fmt, layout).unwrap();
    let w = owned.view();
    let wq = reference::weights_f32(&w);
    // A with column stride a_stride (NaN between), C row-major padded by 2.
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
    let exact = reference::matmul_weights(
        Some(MatRef::new(&c0, m, n, ldc, 1).unwrap()),
        a,
        &w,
        case.alpha,
        case.beta,
        epi,
    );
    let tol: Vec<f64> = (0..m * n)
        .map(|idx| {
            let (i, j) = (idx / n, idx % n);
            let sum: f64 = (0..k)
                .map(|p| (case.a[i * k + p] as f64 * wq[p * n + j] as f64).abs())
                .sum();
            let cterm = (case.beta as f64 * case.c0[idx] as f64).abs();
            let b = if case.epi == 1 {
                bias[j].abs() as f64
            } else {
                0.0
            };
            let t = 2.0 * (k as f64 + 3.0) * U * (case.alpha.abs() as f64 * sum + cterm + b)
                + (k as f64 + 4.0) * 2f64.powi(-149);
            if case.epi == 2 {
                1.1 * t * case.extra[idx].abs() as f64 + 4.0 * ulp_f32(exact[idx]) + 1e-7
            } else {
                t
            }
        })
        .collect();
    let run = |c: &mut Vec<f32>, f: &dyn Fn(MatMut<'_>) -> Result<(), KernelError>| {
        f(MatMut::new(c, m, n, ldc, 1).unwrap()).unwrap();
    };
    let verify = |level: &str, c: &[f32]| {
        for idx in 0..m * n {
            let (i, j) = (idx / n, idx % n);
            let g = c[i * ldc + j] as f64;
            let err = (g - exact[idx]).abs();
            assert!(
                err <= tol[idx],
                "{level} {fmt:?} {layout:?} {m}x{n}x{k}: ({i}, {j}) got {g}, want {} (err {err:e} > {:e})",
                exact[idx],
                tol[idx]
            );
        }
        for i in 0..m {
            assert!(
                c[i * ldc + n].is_nan() && c[i * ldc + n + 1].is_nan(),
                "{level}: padding written"
            );
        }
    };
    for cfg in configs() {
        let mut c = c0.clone();
        run(&mut c, &|cv| {
            matmul_weights(cv, a, w, case.alpha, case.beta, epi, &cfg)
        });
        verify(&format!("{}", cfg.isa), &c);
        let par = Config {
            isa: cfg.isa,
            parallelism: Parallelism::Threads(2),
        };
        let mut c2 = c0.clone();
        run(&mut c2, &|cv| {
            matmul_weights(cv, a, w, case.alpha, case.beta, epi, &par)
        });
        assert!(
            c.iter().zip(&c2).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}: two threads changed the result",
            cfg.isa
        );
    }
    let mut c = c0.clone();
    run(&mut c, &|cv| {
        generic::matmul_weights(pulp::Scalar128b, cv, a, w, case.alpha, case.beta, epi)
    });
    verify("scalar128b", &c);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(160)))]

    #[test]
    fn matches_reference_on_every_level(c in case()) {
        check(&c);
    }
}

/// The dot-product path splits n over threads in 64-column steps and keeps
/// CHUNK = 512 columns of accumulators: a wide decode product crosses both.
#[test]
fn wide_decode_crosses_chunks_and_thread_splits() {
    for fmt in [WeightFormat::Q4_0, WeightFormat::Bf16] {
        let case = Case {
            m: 1,
            n: 1500,
            k: 96,
            fmt,
            layout: WeightLayout::OutIn,
            a: (0..96).map(|i| (i % 7) as f32 - 3.0).collect(),
            w: (0..96 * 1500)
                .map(|i| ((i * 13) % 29) as f32 / 7.0 - 2.0)
                .collect(),
            c0: vec![0.5; 1500],
            extra: (0..1500).map(|i| (i % 5) as f32 - 2.0).collect(),
            a_stride: 1,
            alpha: 1.0,
            beta: 1.0,
            epi: 1,
        };
        check(&case);
    }
}

/// Products with the same f32 weights in every format agree with the f32
/// product to within each format's rounding of the weights — a check on
/// the conversions that does not go through `reference::weights_f32`.
#[test]
fn formats_agree_with_f32_within_their_rounding() {
    let (m, n, k) = (3, 40, 128);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0)
        .collect();
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i * 31) % 53) as f32 / 26.0 - 1.0)
        .collect();
    let mut want = vec![0.0f32; m * n];
    let av = MatRef::row_major(&a, m, k).unwrap();
    let f32w = OwnedWeights::from_f32(&w, k, n, WeightFormat::F32, WeightLayout::InOut).unwrap();
    matmul_weights(
        MatMut::row_major(&mut want, m, n).unwrap(),
        av,
        f32w.view(),
        1.0,
        0.0,
        Epilogue::None,
        &Config::default(),
    )
    .unwrap();
    // Relative weight rounding: bf16 2^-9, f16 2^-11; Q8_0 ≤ d/2 = max/254,
    // Q4_0 ≤ |d| = max/8 per weight (max ≤ 1 here).
    for (fmt, per_weight) in [
        (WeightFormat::Bf16, 2f64.powi(-9)),
        (WeightFormat::F16, 2f64.powi(-11)),
        (WeightFormat::Q8_0, 1.0 / 254.0 * 1.01),
        (WeightFormat::Q4_0, 1.0 / 8.0 * 1.01),
    ] {
        for layout in [WeightLayout::InOut, WeightLayout::OutIn] {
            let ow = OwnedWeights::from_f32(&w, k, n, fmt, layout).unwrap();
            let mut got = vec![0.0f32; m * n];
            matmul_weights(
                MatMut::row_major(&mut got, m, n).unwrap(),
                av,
                ow.view(),
                1.0,
                0.0,
                Epilogue::None,
                &Config::default(),
            )
            .unwrap();
            for i in 0..m {
                let asum: f64 = (0..k).map(|p| a[i * k + p].abs() as f64).sum();
                for j in 0..n {
                    let d = (got[i * n + j] - want[i * n + j]).abs() as f64;
                    assert!(
                        d <= per_weight * asum + 1e-4,
                        "{fmt:?} {layout:?} ({i},{j}): off by {d}"
                    );
                }
            }
            // The format's bytes: what a decode streams.
            assert_eq!(ow.bytes(), fmt.bytes(k * n));
        }
    }
}
