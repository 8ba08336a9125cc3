//! SiLU, SwiGLU and the fused `SiluMul` matmul epilogue against the f64
//! references, on every level this CPU runs plus `pulp::Scalar128b` (the
//! 4-lane NEON width).

use crate::common::*;
use proptest::prelude::*;
use transformer_kernels::gelu::generic;
use transformer_kernels::matmul::generic as mm_generic;
use transformer_kernels::{
    Config, Epilogue, KernelError, MatMut, MatRef, MathFn, Parallelism, map, matmul, reference,
    silu, silu_inplace, swiglu, swiglu_inplace,
};

const EPS: f64 = f32::EPSILON as f64;

/// silu: ≤ 4 ULP + 3e-37 over a dense grid spanning the whole range where
/// the result is normal, and beyond it (flushed to −0.0 below x ≈ −88.7).
#[test]
fn silu_within_4_ulp_on_a_dense_grid() {
    // 2²⁰ points per range; 2¹⁶ in the light (emulated) run.
    let points = if light() { 1 << 16 } else { 1 << 20 };
    for (lo, hi) in [(-120.0f32, 120.0f32), (-4.0, 4.0), (-1e-3, 1e-3)] {
        let xs = grid(lo, hi, points + 1);
        let mut outs: Vec<(String, Vec<f32>)> = Vec::new();
        for cfg in configs() {
            let mut out = vec![0.0; xs.len()];
            map(MathFn::Silu, &xs, &mut out, &cfg).unwrap();
            outs.push((cfg.isa.to_string(), out));
        }
        let mut out = vec![0.0; xs.len()];
        generic::map(pulp::Scalar128b, MathFn::Silu, &xs, &mut out).unwrap();
        outs.push(("scalar128b".into(), out));
        for (level, out) in outs {
            let (u, at, abs) = worst(&xs, &out, reference::silu);
            println!("silu on {level} [{lo}, {hi}]: max {u:.2} ULP at {at}, max abs {abs:.2e}");
            for (&x, &g) in xs.iter().zip(&out) {
                let e = reference::silu(x as f64);
                let err = (g as f64 - e).abs();
                assert!(
                    err <= 4.0 * ulp_f32(e) + 3e-37,
                    "silu on {level}: x = {x:e}: got {g:e}, exact {e:e}"
                );
            }
        }
    }
}

#[test]
fn silu_special_values() {
    let xs = [
        -100.0f32,
        100.0,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
        0.0,
        -0.0,
        -88.0,
        89.0,
        1e-40,
    ];
    for cfg in configs() {
        let mut out = [0.0f32; 10];
        silu(&xs, &mut out, &cfg).unwrap();
        let l = cfg.isa;
        assert!(
            out[0] == 0.0 && out[0].is_sign_negative(),
            "{l}: silu(-100) = {}",
            out[0]
        );
        assert_eq!(out[1], 100.0, "{l}: silu(100)");
        assert!(
            out[2] == 0.0 && out[2].is_sign_negative(),
            "{l}: silu(-inf) = {}",
            out[2]
        );
        assert_eq!(out[3], f32::INFINITY, "{l}: silu(inf)");
        assert!(out[4].is_nan(), "{l}: silu(NaN)");
        assert_eq!(out[5], 0.0, "{l}: silu(0)");
        assert!(
            out[6] == 0.0 && out[6].is_sign_negative(),
            "{l}: silu(-0) = {}",
            out[6]
        );
        // −88 still gives a normal result (−88·e^−88 ≈ −5.4e-37).
        let e = reference::silu(-88.0);
        assert!(
            (out[7] as f64 - e).abs() <= 4.0 * ulp_f32(e),
            "{l}: silu(-88) = {}",
            out[7]
        );
        assert_eq!(out[8], 89.0, "{l}: silu(89)");
        // Subnormal input: x/2, not flushed.
        assert_eq!(out[9], 1e-40 / 2.0, "{l}: silu(1e-40)");
    }
}

/// Runs silu, silu_inplace, swiglu and swiglu_inplace into four outputs.
type RunAll = dyn Fn(&mut [f32], &mut [f32], &mut [f32], &mut [f32]);

fn vals(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-30.0f32..30.0, n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    /// silu, silu_inplace, swiglu and swiglu_inplace on every level and the
    /// 4-lane width, lengths 0..200 (every tail length of every width).
    #[test]
    fn elementwise_match_reference(
        (g, u) in (0usize..200).prop_flat_map(|n| (vals(n), vals(n))),
        threads in 1usize..3,
    ) {
        let n = g.len();
        let want_silu: Vec<f64> = g.iter().map(|&x| reference::silu(x as f64)).collect();
        let want_sw = reference::swiglu(&g, &u);
        let check = |got: &[f32], want: &[f64], what: &str, extra: f64| -> Result<(), TestCaseError> {
            for i in 0..n {
                let err = (got[i] as f64 - want[i]).abs();
                prop_assert!(
                    err <= (4.0 + extra) * ulp_f32(want[i]) + 3e-37 * (1.0 + u[i].abs() as f64),
                    "{what}[{i}]: got {}, want {} (gate {}, up {})", got[i], want[i], g[i], u[i]
                );
            }
            Ok(())
        };
        let mut levels: Vec<(String, Box<RunAll>)> = Vec::new();
        for cfg in configs() {
            let cfg = Config { parallelism: Parallelism::Threads(threads), ..cfg };
            let (g, u) = (g.clone(), u.clone());
            levels.push((cfg.isa.to_string(), Box::new(move |a, b, c, d| {
                silu(&g, a, &cfg).unwrap();
                b.copy_from_slice(&g);
                silu_inplace(b, &cfg).unwrap();
                swiglu(&g, &u, c, &cfg).unwrap();
                d.copy_from_slice(&g);
                swiglu_inplace(d, &u, &cfg).unwrap();
            })));
        }
        {
            let (g, u) = (g.clone(), u.clone());
            let s = pulp::Scalar128b;
            levels.push(("scalar128b".into(), Box::new(move |a, b, c, d| {
                generic::silu(s, &g, a).unwrap();
                b.copy_from_slice(&g);
                generic::silu_inplace(s, b).unwrap();
                generic::swiglu(s, &g, &u, c).unwrap();
                d.copy_from_slice(&g);
                generic::swiglu_inplace(s, d, &u).unwrap();
            })));
        }
        for (level, run) in &levels {
            let (mut a, mut b, mut c, mut d) = (vec![f32::NAN; n], vec![0.0; n], vec![f32::NAN; n], vec![0.0; n]);
            run(&mut a, &mut b, &mut c, &mut d);
            check(&a, &want_silu, &format!("{level} silu"), 0.0)?;
            prop_assert_eq!(&a, &b, "{} silu_inplace differs from silu", level);
            check(&c, &want_sw, &format!("{level} swiglu"), 1.0)?;
            prop_assert_eq!(&c, &d, "{} swiglu_inplace differs from swiglu", level);
        }
    }
}

#[test]
fn swiglu_shape_errors_name_the_argument() {
    let cfg = Config::default();
    let (g, u3, mut o3, mut o2) = ([1.0f32; 3], [1.0f32; 2], [7.0f32; 3], [7.0f32; 2]);
    let e = swiglu(&g, &u3, &mut o3, &cfg).unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "up", .. }),
        "{e}"
    );
    assert_eq!(o3, [7.0; 3], "nothing written on error");
    let e = swiglu(&g, &[1.0; 3], &mut o2, &cfg).unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "out", .. }),
        "{e}"
    );
    let mut gm = [1.0f32; 3];
    let e = swiglu_inplace(&mut gm, &u3, &cfg).unwrap_err();
    assert_eq!(e.arg(), "up");
    let e = silu(&g, &mut o2, &cfg).unwrap_err();
    assert_eq!(e.arg(), "out");
}

/// The fused gate: `C ← silu(alpha·A·B + beta·C) ⊙ U`.
#[derive(Debug, Clone)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    u: Vec<f32>,
    c0: Vec<f32>,
    beta: f32,
    /// U stored column-major (a strided, non-unit column stride view).
    u_col_major: bool,
    /// B given as the transpose of an `[n, k]` matrix (`nn.Linear`).
    b_out_in: bool,
    threads: usize,
}

fn case() -> impl Strategy<Value = Case> {
    // k crosses every level's KC (256, 512, 1024) only in a few cases: the
    // SiLU and ·U must be applied once, on the last k-block.
    let dims = (
        prop_oneof![Just(1usize), 1usize..40],
        prop_oneof![4 => 0usize..70, 1 => 1020usize..1100],
        prop_oneof![Just(1usize), 1usize..100],
    );
    (dims, any::<bool>(), any::<bool>(), any::<bool>(), 1usize..3).prop_flat_map(
        |((m, k, n), beta_on, ucm, boi, threads)| {
            (vals(m * k), vals(k * n), vals(m * n), vals(m * n)).prop_map(move |(a, b, u, c0)| {
                Case {
                    m,
                    k,
                    n,
                    a: a.iter().map(|x| x / 30.0).collect(),
                    b: b.iter().map(|x| x / 30.0).collect(),
                    u: u.iter().map(|x| x / 30.0).collect(),
                    c0: c0.iter().map(|x| x / 30.0).collect(),
                    beta: if beta_on { 0.5 } else { 0.0 },
                    u_col_major: ucm,
                    b_out_in: boi,
                    threads,
                }
            })
        },
    )
}

impl Case {
    fn views(&self) -> (MatRef<'_>, MatRef<'_>, MatRef<'_>) {
        let a = MatRef::row_major(&self.a, self.m, self.k).unwrap();
        let b = if self.b_out_in {
            MatRef::row_major(&self.b, self.n, self.k).unwrap().t()
        } else {
            MatRef::row_major(&self.b, self.k, self.n).unwrap()
        };
        let u = if self.u_col_major {
            MatRef::col_major(&self.u, self.m, self.n).unwrap()
        } else {
            MatRef::row_major(&self.u, self.m, self.n).unwrap()
        };
        (a, b, u)
    }

    /// `got` (row-major m×n) against the f64 reference: the matmul's bound
    /// `2k·ε·Σ|a||b|` (+ β·C rounding) through SiLU (|silu'| ≤ 1.1) times
    /// |U|, plus SiLU's 4 ULP and the product's rounding.
    fn check(&self, got: &[f32], what: &str) -> Result<(), TestCaseError> {
        let (a, b, u) = self.views();
        let c = MatRef::row_major(&self.c0, self.m, self.n).unwrap();
        let want = reference::matmul(
            (self.beta != 0.0).then_some(c),
            a,
            b,
            1.0,
            self.beta,
            Epilogue::SiluMul(u),
        );
        for i in 0..self.m {
            for j in 0..self.n {
                let mag: f64 = (0..self.k)
                    .map(|p| (a.get(i, p).unwrap() as f64 * b.get(p, j).unwrap() as f64).abs())
                    .sum::<f64>()
                    + (self.beta as f64 * self.c0[i * self.n + j] as f64).abs();
                let uij = u.get(i, j).unwrap() as f64;
                let w = want[i * self.n + j];
                let tol = 1.1 * 2.0 * (self.k + 2) as f64 * EPS * mag * uij.abs()
                    + 5.0 * ulp_f32(w)
                    + 1e-37;
                let g = got[i * self.n + j] as f64;
                prop_assert!(
                    (g - w).abs() <= tol,
                    "{what}: ({i}, {j}) of {}x{}x{}: got {g}, want {w}, tol {tol:e}",
                    self.m,
                    self.k,
                    self.n
                );
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    /// Every level and the 4-lane width, 1–2 threads, m = 1 (the
    /// matrix-vector path) and n = 1 (its transpose), k across KC, U and B
    /// strided or not, β = 0 and 0.5.
    #[test]
    fn silu_mul_epilogue_matches_reference(cs in case()) {
        let (a, b, u) = cs.views();
        for cfg in configs() {
            let cfg = Config { parallelism: Parallelism::Threads(cs.threads), ..cfg };
            let mut c = cs.c0.clone();
            matmul(MatMut::row_major(&mut c, cs.m, cs.n).unwrap(), a, b, 1.0, cs.beta,
                   Epilogue::SiluMul(u), &cfg).unwrap();
            cs.check(&c, &format!("{} ×{}", cfg.isa, cs.threads))?;
        }
        let mut c = cs.c0.clone();
        mm_generic::matmul(pulp::Scalar128b, MatMut::row_major(&mut c, cs.m, cs.n).unwrap(),
                           a, b, 1.0, cs.beta, Epilogue::SiluMul(u)).unwrap();
        cs.check(&c, "scalar128b")?;
    }
}

/// C stored column-major (the driver's strided-C tile path) with a
/// column-major U, against the row-major result.
#[test]
fn silu_mul_with_strided_c_equals_row_major() {
    let (m, k, n) = (23, 37, 45);
    let f = |i: usize| ((i * 7919 % 1000) as f32 / 500.0) - 1.0;
    let a: Vec<f32> = (0..m * k).map(f).collect();
    let b: Vec<f32> = (0..k * n).map(|i| f(i + 3)).collect();
    let u: Vec<f32> = (0..m * n).map(|i| f(i + 11)).collect();
    for cfg in configs() {
        let av = MatRef::row_major(&a, m, k).unwrap();
        let bv = MatRef::row_major(&b, k, n).unwrap();
        let uv = MatRef::col_major(&u, m, n).unwrap();
        let mut c1 = vec![0.0f32; m * n];
        matmul(
            MatMut::row_major(&mut c1, m, n).unwrap(),
            av,
            bv,
            1.0,
            0.0,
            Epilogue::SiluMul(uv),
            &cfg,
        )
        .unwrap();
        let mut c2 = vec![0.0f32; m * n];
        matmul(
            MatMut::col_major(&mut c2, m, n).unwrap(),
            av,
            bv,
            1.0,
            0.0,
            Epilogue::SiluMul(uv),
            &cfg,
        )
        .unwrap();
        for i in 0..m {
            for j in 0..n {
                assert_eq!(c1[i * n + j], c2[j * m + i], "{}: ({i}, {j})", cfg.isa);
            }
        }
        let want = reference::matmul(None, av, bv, 1.0, 0.0, Epilogue::SiluMul(uv));
        let e = c1
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(e < 1e-5, "{}: max error {e}", cfg.isa);
    }
}

#[test]
fn silu_mul_shape_error_names_the_epilogue() {
    let (a, b, u) = ([1.0f32; 6], [1.0f32; 6], [1.0f32; 6]);
    let mut c = [5.0f32; 4];
    let e = matmul(
        MatMut::row_major(&mut c, 2, 2).unwrap(),
        MatRef::row_major(&a, 2, 3).unwrap(),
        MatRef::row_major(&b, 3, 2).unwrap(),
        1.0,
        0.0,
        Epilogue::SiluMul(MatRef::row_major(&u, 2, 3).unwrap()),
        &Config::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                arg: "epilogue",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(c, [5.0; 4], "nothing written on error");
}

/// Shapes large enough for two threads: C split by columns (n ≥ m), by
/// rows (m > n), and the matrix-vector path split by columns (m = 1). The
/// U pointer must follow each part: bitwise equal to one thread, and to
/// the reference within the matmul bound.
#[test]
fn silu_mul_threads_split_u_with_c() {
    let f = |i: usize| ((i.wrapping_mul(2654435761) % 2001) as f32 / 1000.0 - 1.0) * 0.1;
    for (m, n, k) in [
        (64usize, 600usize, 700usize),
        (300, 120, 700),
        (1, 70_000, 64),
    ] {
        let a: Vec<f32> = (0..m * k).map(f).collect();
        let b: Vec<f32> = (0..k * n).map(|i| f(i + 7)).collect();
        let u: Vec<f32> = (0..m * n).map(|i| f(i + 13) * 10.0).collect(); // |u| ≤ 1
        let av = MatRef::row_major(&a, m, k).unwrap();
        let bv = MatRef::row_major(&b, k, n).unwrap();
        let uv = MatRef::row_major(&u, m, n).unwrap();
        let want = reference::matmul(None, av, bv, 1.0, 0.0, Epilogue::SiluMul(uv));
        for isa in configs().into_iter().map(|c| c.isa) {
            let mut outs = Vec::new();
            for par in [Parallelism::Serial, Parallelism::Threads(2)] {
                let cfg = Config {
                    isa,
                    parallelism: par,
                };
                let mut c = vec![f32::NAN; m * n];
                let cm = MatMut::row_major(&mut c, m, n).unwrap();
                matmul(cm, av, bv, 1.0, 0.0, Epilogue::SiluMul(uv), &cfg).unwrap();
                outs.push(c);
            }
            assert_eq!(
                outs[0], outs[1],
                "{isa} {m}x{n}x{k}: 2 threads differ from 1"
            );
            for (idx, (&g, &w)) in outs[1].iter().zip(&want).enumerate() {
                let (i, j) = (idx / n, idx % n);
                let mag: f64 = (0..k)
                    .map(|p| (a[i * k + p] * b[p * n + j]).abs() as f64)
                    .sum();
                let tol = 1.1 * 2.0 * (k + 2) as f64 * EPS * mag * u[idx].abs() as f64
                    + 5.0 * ulp_f32(w)
                    + 1e-37;
                assert!(
                    (g as f64 - w).abs() <= tol,
                    "{isa} {m}x{n}x{k}: ({i}, {j}): {g} vs {w}"
                );
            }
        }
    }
}
