//! `matmul` vs `reference::matmul` (f64) on every level this CPU runs plus
//! `pulp::Scalar128b` (the NEON tile shape in portable code), over random
//! shapes, layouts, alpha/beta and epilogues; vs the `gemm` crate on larger
//! shapes; thread-count invariance; special values; every error path.
//!
//! Tolerance, per element, with u = 2⁻²⁴ (f32 unit roundoff) and
//! S = Σ_p |a_ip·b_pj|:
//!   before the activation: t = 2·(k + 3)·u·(|α|·S + |β·c_ij| + |bias_j|)
//! — the k-step FMA chain contributes at most k·u·S (each rounding is at most
//! u times a partial sum bounded by S), the α multiply, β FMA and bias add
//! one rounding each of at most u times a magnitude bounded by the bracket;
//! the factor 2 covers second-order terms; (k + 4)·2⁻¹⁴⁹ covers results in
//! the subnormal range, where each rounding is off by up to 2⁻¹⁵⁰ absolute.
//! The GELU epilogue then adds
//! 1.13·t (|gelu'| ≤ 1.13 for both forms) + 4 ULP + 1e-7 (its own bound,
//! asserted in tests/math.rs).

use crate::common::*;
use proptest::prelude::*;
use transformer_kernels::matmul::generic;
use transformer_kernels::{
    Config, Epilogue, GeluKind, Isa, KernelError, MatMut, MatRef, Parallelism, matmul, reference,
};

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// How a matrix is laid out in its buffer.
#[derive(Debug, Clone, Copy)]
enum Layout {
    RowMajor,
    ColMajor,
    /// Row-major with 3 spare elements after each row.
    PaddedRows,
    /// The transpose of a column-major buffer viewed through `.t()`.
    TransposedView,
    /// A block at (1, 2) of a larger row-major matrix.
    Sub,
    /// Every other element of every other row: no unit stride (A is packed).
    Sparse,
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        Just(Layout::RowMajor),
        Just(Layout::ColMajor),
        Just(Layout::PaddedRows),
        Just(Layout::TransposedView),
        Just(Layout::Sub),
        Just(Layout::Sparse),
    ]
}

/// A buffer holding `vals` (row-major r×c) in the given layout.
struct Mat {
    buf: Vec<f32>,
    rows: usize,
    cols: usize,
    layout: Layout,
}

impl Mat {
    fn new(vals: &[f32], rows: usize, cols: usize, layout: Layout) -> Mat {
        let mut buf;
        match layout {
            Layout::RowMajor => buf = vals.to_vec(),
            Layout::ColMajor | Layout::TransposedView => {
                buf = vec![0.0; rows * cols];
                for i in 0..rows {
                    for j in 0..cols {
                        buf[j * rows + i] = vals[i * cols + j];
                    }
                }
            }
            Layout::PaddedRows => {
                buf = vec![f32::NAN; rows * (cols + 3)];
                for i in 0..rows {
                    buf[i * (cols + 3)..][..cols].copy_from_slice(&vals[i * cols..][..cols]);
                }
            }
            Layout::Sparse => {
                buf = vec![f32::NAN; 4 * rows * cols];
                for i in 0..rows {
                    for j in 0..cols {
                        buf[i * 4 * cols + 2 * j] = vals[i * cols + j];
                    }
                }
            }
            Layout::Sub => {
                let w = cols + 5;
                buf = vec![f32::NAN; (rows + 2) * w];
                for i in 0..rows {
                    buf[(i + 1) * w + 2..][..cols].copy_from_slice(&vals[i * cols..][..cols]);
                }
            }
        }
        Mat {
            buf,
            rows,
            cols,
            layout,
        }
    }

    fn view(&self) -> MatRef<'_> {
        let (r, c) = (self.rows, self.cols);
        match self.layout {
            Layout::RowMajor => MatRef::row_major(&self.buf, r, c).unwrap(),
            Layout::ColMajor => MatRef::col_major(&self.buf, r, c).unwrap(),
            Layout::PaddedRows => MatRef::new(&self.buf, r, c, c + 3, 1).unwrap(),
            Layout::TransposedView => MatRef::row_major(&self.buf, c, r).unwrap().t(),
            Layout::Sub => MatRef::row_major(&self.buf, r + 2, c + 5)
                .unwrap()
                .submatrix(1, 2, r, c)
                .unwrap(),
            Layout::Sparse => MatRef::new(&self.buf, r, c, 4 * c, 2).unwrap(),
        }
    }

    fn view_mut(&mut self) -> MatMut<'_> {
        let (r, c) = (self.rows, self.cols);
        match self.layout {
            Layout::RowMajor => MatMut::row_major(&mut self.buf, r, c).unwrap(),
            Layout::ColMajor => MatMut::col_major(&mut self.buf, r, c).unwrap(),
            Layout::PaddedRows => MatMut::new(&mut self.buf, r, c, c + 3, 1).unwrap(),
            Layout::TransposedView => MatMut::row_major(&mut self.buf, c, r).unwrap().t(),
            Layout::Sub => MatMut::row_major(&mut self.buf, r + 2, c + 5)
                .unwrap()
                .submatrix(1, 2, r, c)
                .unwrap(),
            Layout::Sparse => MatMut::new(&mut self.buf, r, c, 4 * c, 2).unwrap(),
        }
    }

    /// The logical matrix back, row-major.
    fn values(&self) -> Vec<f32> {
        let v = self.view();
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for i in 0..self.rows {
            for j in 0..self.cols {
                out.push(v.get(i, j).unwrap());
            }
        }
        out
    }
}

/// Per-element bound (see the module docs).
#[allow(clippy::too_many_arguments)]
fn bound(
    a: &[f32],
    b: &[f32],
    c0: &[f32],
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    beta: f32,
    ep: &Ep,
    exact: &[f64],
) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| (a[i * k + p] as f64 * b[p * n + j] as f64).abs())
                .sum();
            let bias = ep.bias.get(j).map_or(0.0, |v| v.abs() as f64);
            let cterm = if beta != 0.0 {
                (beta as f64 * c0[i * n + j] as f64).abs()
            } else {
                0.0
            };
            let s = if alpha == 0.0 {
                0.0
            } else {
                alpha.abs() as f64 * s
            };
            let t = 2.0 * (k as f64 + 3.0) * U * (s + cterm + bias)
                + (k as f64 + 4.0) * 2f64.powi(-149);
            out[i * n + j] = match ep.kind {
                None => t,
                Some(_) => 1.13 * t + 4.0 * ulp_f32(exact[i * n + j]) + 1e-7,
            };
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Ep {
    bias: Vec<f32>,
    kind: Option<GeluKind>,
    use_bias: bool,
}

impl Ep {
    fn epilogue(&self) -> Epilogue<'_> {
        match (self.use_bias, self.kind) {
            (false, _) => Epilogue::None,
            (true, None) => Epilogue::Bias(&self.bias),
            (true, Some(k)) => Epilogue::BiasGelu(&self.bias, k),
        }
    }
}

/// Dimensions: uniform in 0..=max or from the edge list (tile edges of
/// every level: MR 4/6/8/14, NR 4/12/16/32/64, ±1; KC 256 ±1). The KC, MC
/// and NC boundaries of the vector levels are crossed by
/// `blocks_cross_kc_mc_nc_on_every_level`.
fn dim(max: usize) -> impl Strategy<Value = usize> {
    let edges: Vec<usize> = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 97,
        127, 128, 129, 255, 256, 257,
    ]
    .into_iter()
    .filter(|&d| d <= max)
    .collect();
    prop_oneof![0..=max, prop::sample::select(edges)]
}

fn vals(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-2.0f32..2.0, len)
}

type Case = (
    usize,
    usize,
    usize,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    Ep,
    f32,
    f32,
    [Layout; 3],
);

fn case() -> impl Strategy<Value = Case> {
    case_with(
        (dim(160), dim(160), dim(260)),
        vec![1.0f32, 0.0, -0.5, 2.25],
        0.5,
    )
}

/// Values, epilogue (a bias with probability `p_bias`, then no GELU, erf
/// or tanh), alpha from `alphas`, beta and layouts, for shapes from `dims`.
fn case_with(
    dims: impl Strategy<Value = (usize, usize, usize)>,
    alphas: Vec<f32>,
    p_bias: f64,
) -> impl Strategy<Value = Case> {
    dims.prop_flat_map(move |(m, n, k)| {
        (
            Just(m),
            Just(n),
            Just(k),
            vals(m * k),
            vals(k * n),
            vals(m * n),
            (
                vals(n),
                prop::sample::select(vec![None, Some(GeluKind::Erf), Some(GeluKind::Tanh)]),
                prop::bool::weighted(p_bias),
            )
                .prop_map(|(bias, kind, use_bias)| Ep {
                    bias,
                    kind: if use_bias { kind } else { None },
                    use_bias,
                }),
            prop::sample::select(alphas.clone()),
            prop::sample::select(vec![0.0f32, 1.0, 0.75]),
            [layout(), layout(), layout()],
        )
    })
}

/// Every element of `c`'s buffer outside the view is what `untouched`
/// (the same matrix before the call) holds there.
fn check_padding(level: &str, c: &Mat, untouched: &Mat) {
    for (i, (x, y)) in c.buf.iter().zip(&untouched.buf).enumerate() {
        if y.is_nan() {
            assert!(x.is_nan(), "{level}: padding element {i} written ({x})");
        }
    }
}

/// One dimension from the block boundaries of the levels (KC for k, MC
/// for m, NC for n: 128/256/512/1020/1024/1036, each ±1), the other two
/// small; bias + GELU in most cases.
fn block_case() -> impl Strategy<Value = Case> {
    let big_k = prop::sample::select(vec![255usize, 257, 511, 513, 1023, 1025, 2049]);
    let big_m = prop::sample::select(vec![1019usize, 1021, 1025, 1037, 1100]);
    let big_n = prop::sample::select(vec![127usize, 129, 257, 513, 1021, 1025]);
    let small = || 1usize..=9;
    let dims = prop_oneof![
        (small(), 1usize..=40, big_k),
        (big_m, small(), 1usize..=5),
        (small(), big_n, 1usize..=5),
    ];
    case_with(dims, vec![1.0f32, -0.5], 0.8)
}

/// One case on every level and `Scalar128b`: within the bound of the f64
/// reference, padding around C untouched (on every level: the masked stores
/// of the vector levels are where a write one lane too wide would land),
/// and with `threads` the two-thread result bitwise equal.
fn check_every_level((m, n, k, a, b, c0, ep, alpha, beta, lay): Case, threads: bool) {
    let am = Mat::new(&a, m, k, lay[0]);
    let bm = Mat::new(&b, k, n, lay[1]);
    let c0m = Mat::new(&c0, m, n, lay[2]);
    let exact = reference::matmul(
        Some(c0m.view()),
        am.view(),
        bm.view(),
        alpha,
        beta,
        ep.epilogue(),
    );
    let tol = bound(&a, &b, &c0, (m, n, k), alpha, beta, &ep, &exact);
    let untouched = Mat::new(&c0, m, n, lay[2]);
    for cfg in configs() {
        let level = format!(
            "{} {m}x{n}x{k} {lay:?} a={alpha} b={beta} {:?}",
            cfg.isa,
            ep.epilogue()
        );
        let mut cm = Mat::new(&c0, m, n, lay[2]);
        matmul(
            cm.view_mut(),
            am.view(),
            bm.view(),
            alpha,
            beta,
            ep.epilogue(),
            &cfg,
        )
        .unwrap();
        check_case(&level, &cm, &exact, &tol);
        check_padding(&level, &cm, &untouched);
        if threads {
            let mut cp = Mat::new(&c0, m, n, lay[2]);
            let par = Config {
                isa: cfg.isa,
                parallelism: Parallelism::Threads(2),
            };
            matmul(
                cp.view_mut(),
                am.view(),
                bm.view(),
                alpha,
                beta,
                ep.epilogue(),
                &par,
            )
            .unwrap();
            assert!(
                bits_eq(&cp.buf, &cm.buf),
                "{level}: threads changed the result"
            );
        }
    }
    let mut cm = Mat::new(&c0, m, n, lay[2]);
    generic::matmul(
        pulp::Scalar128b,
        cm.view_mut(),
        am.view(),
        bm.view(),
        alpha,
        beta,
        ep.epilogue(),
    )
    .unwrap();
    let level = format!("scalar128b {m}x{n}x{k} {lay:?}");
    check_case(&level, &cm, &exact, &tol);
    check_padding(&level, &cm, &untouched);
}

fn check_case(level: &str, c: &Mat, exact: &[f64], tol: &[f64]) {
    let got = c.values();
    for (idx, ((&g, &e), &t)) in got.iter().zip(exact).zip(tol).enumerate() {
        let err = (g as f64 - e).abs();
        assert!(
            err <= t,
            "{level}: element {idx} (row {}, col {}): got {g}, want {e} (err {err:e} > tol {t:e})",
            idx / c.cols,
            idx % c.cols
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(96)))]

    #[test]
    fn matches_reference_on_every_level(c in case()) {
        check_every_level(c, true);
    }

    /// The epilogue (bias, GELU) belongs to the last k-block only, and β to
    /// the first: products with k across every level's KC (256, 512, 1024;
    /// 512 with packed A), m across MC and n across NC, kept cheap by making
    /// the other two dimensions small.
    #[test]
    fn blocks_cross_kc_mc_nc_on_every_level(c in block_case()) {
        check_every_level(c, false);
    }

    /// Small integers make every summation order exact: every level must
    /// equal the reference exactly.
    #[test]
    fn small_integers_are_exact_on_every_level(m in dim(70), n in dim(70), k in dim(160), seed in any::<u64>(), beta in prop::sample::select(vec![0.0f32, 1.0])) {
        let ints = |len: usize, s: u64| -> Vec<f32> {
            (0..len).map(|i| (((i as u64).wrapping_mul(2654435761).wrapping_add(s) >> 7) % 17) as f32 - 8.0).collect()
        };
        let (a, b, c0) = (ints(m * k, seed), ints(k * n, seed ^ 1), ints(m * n, seed ^ 2));
        let bias = ints(n, seed ^ 3);
        let am = MatRef::row_major(&a, m, k).unwrap();
        let bm = MatRef::row_major(&b, k, n).unwrap();
        let exact = reference::matmul(Some(MatRef::row_major(&c0, m, n).unwrap()), am, bm, 1.0, beta, Epilogue::Bias(&bias));
        for cfg in configs() {
            let mut c = c0.clone();
            matmul(MatMut::row_major(&mut c, m, n).unwrap(), am, bm, 1.0, beta, Epilogue::Bias(&bias), &cfg).unwrap();
            let got: Vec<f64> = c.iter().map(|&x| x as f64).collect();
            prop_assert_eq!(&got, &exact, "{}", cfg.isa);
        }
    }
}

fn bits_eq(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// `gemm` crate result for row-major operands: C = A·B.
fn peer(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    // SAFETY: row-major buffers of exactly m×k, k×n and m×n elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    c
}

#[test]
fn large_shapes_match_the_gemm_crate() {
    // Around the block boundaries: KC 256/512/1024 (scalar and 4-lane /
    // AVX2 / AVX-512), NC 128/256/512/1020, MC 1036/1020/1024 (1037 rows:
    // one block; 1300: two of 654), column panels narrower than the
    // 64-wide tile, and shallow products whose B blocks widen to all of n
    // (k = 40) or to 384 columns (k = 300).
    for &(m, n, k) in &[
        (1300, 130, 300),
        (500, 1100, 300),
        (300, 1100, 40),
        (257, 1025, 513),
        (169, 1040, 1024),
        (1037, 129, 1025),
        (1024, 520, 255),
        (31, 257, 2049),
        (1, 1024, 1100),
        (700, 1, 600),
    ] {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 2654435761) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 40503) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let want = peer(&a, &b, m, n, k);
        let aa: Vec<f32> = a.iter().map(|x| x.abs()).collect();
        let ab: Vec<f32> = b.iter().map(|x| x.abs()).collect();
        let s = peer(&aa, &ab, m, n, k);
        for isa in Isa::available() {
            for par in [Parallelism::Serial, Parallelism::Threads(2)] {
                let mut c = vec![f32::NAN; m * n];
                let cfg = Config {
                    isa,
                    parallelism: par,
                };
                matmul(
                    MatMut::row_major(&mut c, m, n).unwrap(),
                    MatRef::row_major(&a, m, k).unwrap(),
                    MatRef::row_major(&b, k, n).unwrap(),
                    1.0,
                    0.0,
                    Epilogue::None,
                    &cfg,
                )
                .unwrap();
                for i in 0..m * n {
                    // Both sides within 2(k+3)u·S of the exact value.
                    let tol = 4.0 * (k as f64 + 3.0) * U * (s[i] as f64 * 1.01);
                    let err = (c[i] as f64 - want[i] as f64).abs();
                    assert!(
                        err <= tol,
                        "{isa} {par:?} {m}x{n}x{k} [{i}]: {} vs gemm {} (err {err:e}, tol {tol:e})",
                        c[i],
                        want[i]
                    );
                }
            }
        }
    }
}

#[test]
fn threads_do_not_change_bits_on_threaded_sizes() {
    // Sizes where the thread heuristics really split (≥ 2·2²⁴ flops; GEMV
    // ≥ 2·2¹⁷ matrix elements), along m and along n, and the GEMV paths.
    for &(m, n, k) in &[
        (300, 200, 300),
        (200, 300, 300),
        (1, 2048, 700),
        (2048, 1, 700),
        (333, 257, 301),
    ] {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 991) as f32 / 991.0 - 0.5)
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 / n as f32).collect();
        for isa in Isa::available() {
            let run = |par| {
                let mut c = vec![0.5f32; m * n];
                let cfg = Config {
                    isa,
                    parallelism: par,
                };
                matmul(
                    MatMut::row_major(&mut c, m, n).unwrap(),
                    MatRef::row_major(&a, m, k).unwrap(),
                    MatRef::row_major(&b, k, n).unwrap(),
                    1.5,
                    1.0,
                    Epilogue::BiasGelu(&bias, GeluKind::Erf),
                    &cfg,
                )
                .unwrap();
                c
            };
            let s = run(Parallelism::Serial);
            for t in [
                Parallelism::Threads(2),
                Parallelism::Threads(3),
                Parallelism::Threads(0),
            ] {
                assert!(bits_eq(&s, &run(t)), "{isa} {m}x{n}x{k} {t:?}");
            }
        }
    }
}

#[test]
fn beta_zero_never_reads_c_and_k_zero_scales_c() {
    for cfg in configs() {
        let (m, n, k) = (5, 37, 9);
        let a = vec![1.0f32; m * k];
        let b = vec![0.5f32; k * n];
        let mut c = vec![f32::NAN; m * n];
        matmul(
            MatMut::row_major(&mut c, m, n).unwrap(),
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
            1.0,
            0.0,
            Epilogue::None,
            &cfg,
        )
        .unwrap();
        assert!(
            c.iter().all(|&x| x == 4.5),
            "{}: NaN leaked from C with beta = 0",
            cfg.isa
        );

        // k = 0: C ← epilogue(beta·C), A and B not read.
        let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
        let mut c: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
        let empty: [f32; 0] = [];
        matmul(
            MatMut::row_major(&mut c, m, n).unwrap(),
            MatRef::row_major(&empty, m, 0).unwrap(),
            MatRef::row_major(&empty, 0, n).unwrap(),
            3.0,
            2.0,
            Epilogue::Bias(&bias),
            &cfg,
        )
        .unwrap();
        for (i, &x) in c.iter().enumerate() {
            assert_eq!(x, 2.0 * i as f32 + (i % n) as f32, "{}", cfg.isa);
        }
        // k = 0, beta = 0: C ← bias (C, even NaN, not read).
        let mut c = vec![f32::NAN; m * n];
        matmul(
            MatMut::row_major(&mut c, m, n).unwrap(),
            MatRef::row_major(&empty, m, 0).unwrap(),
            MatRef::row_major(&empty, 0, n).unwrap(),
            1.0,
            0.0,
            Epilogue::Bias(&bias),
            &cfg,
        )
        .unwrap();
        assert!(c.iter().enumerate().all(|(i, &x)| x == (i % n) as f32));

        // alpha = 0: A and B not used (NaN in A does not reach C).
        let a = vec![f32::NAN; m * k];
        let mut c = vec![1.0f32; m * n];
        matmul(
            MatMut::row_major(&mut c, m, n).unwrap(),
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
            0.0,
            1.0,
            Epilogue::None,
            &cfg,
        )
        .unwrap();
        assert!(c.iter().all(|&x| x == 1.0));
    }
}

#[test]
fn nan_in_a_poisons_exactly_its_row() {
    for &(m, n, k) in &[(20, 40, 30), (1, 100, 50), (40, 1, 30), (300, 300, 300)] {
        let mut a = vec![0.25f32; m * k];
        let r = m / 2;
        a[r * k + k / 2] = f32::NAN;
        let b = vec![1.0f32; k * n];
        for cfg in configs() {
            let mut c = vec![0.0f32; m * n];
            matmul(
                MatMut::row_major(&mut c, m, n).unwrap(),
                MatRef::row_major(&a, m, k).unwrap(),
                MatRef::row_major(&b, k, n).unwrap(),
                1.0,
                0.0,
                Epilogue::None,
                &cfg,
            )
            .unwrap();
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(
                        c[i * n + j].is_nan(),
                        i == r,
                        "{} {m}x{n}x{k} ({i}, {j})",
                        cfg.isa
                    );
                }
            }
        }
    }
}

#[test]
fn empty_shapes_are_no_ops() {
    for cfg in configs() {
        let empty: [f32; 0] = [];
        let a = [1.0f32; 6];
        // m = 0 and n = 0: Ok, and a buffer behind the empty C view (a
        // 0×3 / 3×0 view of it) is not touched.
        let mut c = [7.0f32; 6];
        matmul(
            MatMut::row_major(&mut c, 0, 3).unwrap(),
            MatRef::row_major(&empty, 0, 2).unwrap(),
            MatRef::row_major(&a, 2, 3).unwrap(),
            1.0,
            0.0,
            Epilogue::Bias(&[5.0; 3]),
            &cfg,
        )
        .unwrap();
        matmul(
            MatMut::new(&mut c, 3, 0, 2, 1).unwrap(),
            MatRef::row_major(&a, 3, 2).unwrap(),
            MatRef::row_major(&empty, 2, 0).unwrap(),
            1.0,
            0.0,
            Epilogue::None,
            &cfg,
        )
        .unwrap();
        assert_eq!(c, [7.0; 6], "{}", cfg.isa);
    }
}

#[test]
fn error_paths() {
    let cfg = Config::default();
    let a = vec![1.0f32; 12];
    let b = vec![1.0f32; 12];
    let mut c = vec![9.0f32; 12];
    let am = MatRef::row_major(&a, 3, 4).unwrap();
    let bm = MatRef::row_major(&b, 3, 4).unwrap(); // 3 rows, but a has 4 columns
    let e = matmul(
        MatMut::row_major(&mut c, 3, 4).unwrap(),
        am,
        bm,
        1.0,
        0.0,
        Epilogue::None,
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "b", .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("b has 3 rows but a has 4 columns"),
        "{e}"
    );

    let bm = MatRef::row_major(&b, 4, 3).unwrap();
    let e = matmul(
        MatMut::row_major(&mut c, 4, 3).unwrap(),
        am,
        bm,
        1.0,
        0.0,
        Epilogue::None,
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "c", .. }),
        "{e:?}"
    );

    let e = matmul(
        MatMut::row_major(&mut c[..9], 3, 3).unwrap(),
        am,
        bm,
        1.0,
        0.0,
        Epilogue::Bias(&[0.0; 4]),
        &cfg,
    )
    .unwrap_err();
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "bias", .. }),
        "{e:?}"
    );
    let e = matmul(
        MatMut::row_major(&mut c[..9], 3, 3).unwrap(),
        am,
        bm,
        1.0,
        0.0,
        Epilogue::BiasGelu(&[0.0; 2], GeluKind::Tanh),
        &cfg,
    )
    .unwrap_err();
    assert_eq!(e.arg(), "bias");
    assert_eq!(c, vec![9.0; 12], "c written on error");

    // Unavailable ISA: an Err, nothing written.
    for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
        let e = matmul(
            MatMut::row_major(&mut c[..9], 3, 3).unwrap(),
            am,
            bm,
            1.0,
            0.0,
            Epilogue::None,
            &Config::with_isa(isa),
        )
        .unwrap_err();
        assert_eq!(e, KernelError::IsaUnavailable { requested: isa });
        assert_eq!(c, vec![9.0; 12]);
    }

    // Views: out of bounds, overflowing extents, overlapping mutable views.
    assert!(matches!(
        MatRef::row_major(&a, 4, 4),
        Err(KernelError::OutOfBounds { .. })
    ));
    assert!(matches!(
        MatRef::new(&a, 2, 2, 6, 6),
        Err(KernelError::OutOfBounds { .. })
    ));
    let e = MatRef::new(&a, 3, 3, usize::MAX / 2, 1).unwrap_err();
    assert!(matches!(e, KernelError::OutOfBounds { .. }), "{e:?}");
    assert!(e.to_string().contains("usize::MAX"), "{e}");
    assert!(MatRef::new(&a, usize::MAX, 2, 1, 1).is_err());
    assert!(matches!(
        MatMut::new(&mut c, 3, 3, 0, 1),
        Err(KernelError::Overlapping { .. })
    ));
    assert!(matches!(
        MatMut::new(&mut c, 3, 3, 2, 1),
        Err(KernelError::Overlapping { .. })
    ));
    assert!(MatMut::new(&mut c, 3, 3, 1, 3).is_ok()); // column-major
    assert!(MatMut::new(&mut c, 1, 12, 0, 1).is_ok()); // one row: row stride unused
    // A zero stride is fine for reading (a broadcast row).
    let bcast = MatRef::new(&a[..4], 3, 4, 0, 1).unwrap();
    assert_eq!(bcast.get(2, 3), Some(1.0));
    assert_eq!(bcast.get(3, 0), None);
    // Empty views need no data.
    assert!(MatRef::row_major(&[], 0, 1000).is_ok());
    assert!(MatRef::new(&[], 5, 0, usize::MAX, usize::MAX).is_ok());
    // Submatrix bounds.
    let big = MatRef::row_major(&a, 3, 4).unwrap();
    assert!(matches!(
        big.submatrix(2, 2, 2, 2),
        Err(KernelError::OutOfBounds {
            arg: "submatrix",
            ..
        })
    ));
    assert!(big.submatrix(usize::MAX, 0, 2, 1).is_err());
    let s = big.submatrix(1, 1, 2, 3).unwrap();
    assert_eq!(
        (s.rows(), s.cols(), s.row_stride(), s.col_stride()),
        (2, 3, 4, 1)
    );
}

#[test]
fn strided_a_with_no_unit_stride_takes_the_packed_path() {
    // A with strides (4k, 2): packed into micro-panels (both tile shapes of
    // the AVX-512 level and the packing code run); big enough to pack.
    let (m, n, k) = (100, 130, 150);
    let vals: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 1999) as f32 / 1000.0 - 1.0)
        .collect();
    let am = Mat::new(&vals, m, k, Layout::Sparse);
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 104729) % 1999) as f32 / 1000.0 - 1.0)
        .collect();
    let bv = MatRef::row_major(&b, k, n).unwrap();
    let exact = reference::matmul(None, am.view(), bv, 1.0, 0.0, Epilogue::None);
    let ep = Ep {
        bias: vec![],
        kind: None,
        use_bias: false,
    };
    let tol = bound(
        &vals,
        &b,
        &vec![0.0; m * n],
        (m, n, k),
        1.0,
        0.0,
        &ep,
        &exact,
    );
    for cfg in configs() {
        let mut c = Mat::new(&vec![f32::NAN; m * n], m, n, Layout::RowMajor);
        matmul(c.view_mut(), am.view(), bv, 1.0, 0.0, Epilogue::None, &cfg).unwrap();
        check_case(cfg.isa.name(), &c, &exact, &tol);
    }
}
