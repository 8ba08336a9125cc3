//! RoPE against the f64 reference on every level this CPU runs plus
//! `pulp::Scalar128b` (the 4-lane NEON width): both layouts, partial rotary,
//! every scaling, start offsets up to 10⁶ and explicit position ids, BSHD,
//! BHSD and fused-QKV strided views, GQA head counts.
//!
//! Tolerance: a rotated element is `a·cos − b·sin` (or `b·cos + a·sin`)
//! with cos and sin rounded once from f64 (ε/2 each) and two f32 products
//! and a sum (≤ 1.5ε of `|a| + |b|`): `3ε·(|a| + |b|)` holds with margin.
//! An angle computed in f32 at position 10⁵ would be off by up to 4e-3 rad,
//! ~30 000 ε — far outside it. Elements past `rotary_dim` and every element
//! outside the view must come back bit for bit.

mod common;
use common::*;
use proptest::prelude::*;
use transformer_kernels::rope::generic as rope_generic;
use transformer_kernels::{
    Config, HeadsMut, HeadsRef, KernelError, Parallelism, Positions, RopeLayout, RopeParams,
    RopeScaling, RopeTable, reference, rope,
};

const EPS: f64 = f32::EPSILON as f64;

#[derive(Debug, Clone)]
struct Case {
    batch: usize,
    seq: usize,
    heads: usize,
    head_dim: usize,
    params: RopeParams,
    /// 0: BSHD, 1: BHSD, 2: inside a fused `[B, S, 3, H, D]`-like buffer
    /// with a gap of 3 floats after each token's row.
    view: u8,
    start: usize,
    ids: Option<Vec<usize>>,
    data: Vec<f32>,
    threads: usize,
}

impl Case {
    /// (strides, data length) of the view.
    fn layout(&self) -> ([usize; 3], usize) {
        let (b, s, h, d) = (self.batch, self.seq, self.heads, self.head_dim);
        match self.view {
            0 => ([s * h * d, h * d, d], b * s * h * d),
            1 => ([h * s * d, d, s * d], b * s * h * d),
            _ => {
                let row = 3 * h * d + 3;
                ([s * row, row, d], b * s * row)
            }
        }
    }

    fn view<'a>(&self, d: &'a mut [f32]) -> HeadsMut<'a> {
        let (st, _) = self.layout();
        HeadsMut::strided(d, self.batch, self.seq, self.heads, self.head_dim, st).unwrap()
    }

    fn positions(&self) -> Positions<'_> {
        match &self.ids {
            Some(ids) => Positions::Ids(ids),
            None => Positions::Start(self.start),
        }
    }

    fn position_list(&self) -> Vec<usize> {
        match &self.ids {
            Some(ids) => ids.clone(),
            None => (0..self.batch)
                .flat_map(|_| (0..self.seq).map(|s| self.start + s))
                .collect(),
        }
    }

    fn max_position(&self) -> usize {
        self.position_list().into_iter().max().unwrap_or(0)
    }

    /// Checks `got` (the whole buffer after the kernel) against the reference
    /// and the untouched elements against the input.
    fn check(&self, got: &[f32], what: &str) -> Result<(), TestCaseError> {
        let (st, len) = self.layout();
        let (b_n, s_n, h_n, d) = (self.batch, self.seq, self.heads, self.head_dim);
        let x = HeadsRef::strided(&self.data, b_n, s_n, h_n, d, st).unwrap();
        let want = reference::rope(x, &self.params, &self.position_list());
        let r = self.params.rotary_dim;
        let mut inside = vec![false; len];
        for b in 0..b_n {
            for s in 0..s_n {
                for h in 0..h_n {
                    let at = b * st[0] + s * st[1] + h * st[2];
                    let w = &want[((b * s_n + s) * h_n + h) * d..][..d];
                    for e in 0..d {
                        inside[at + e] = true;
                        let (g, x0) = (got[at + e], self.data[at + e]);
                        if e >= r {
                            prop_assert_eq!(
                                g.to_bits(),
                                x0.to_bits(),
                                "{}: ({}, {}, {}) element {} past rotary_dim {} changed",
                                what,
                                b,
                                s,
                                h,
                                e,
                                r
                            );
                            continue;
                        }
                        let partner = match self.params.layout {
                            RopeLayout::HalfSplit => {
                                if e < r / 2 {
                                    e + r / 2
                                } else {
                                    e - r / 2
                                }
                            }
                            RopeLayout::Interleaved => e ^ 1,
                        };
                        let mag = (x0.abs() + self.data[at + partner].abs()) as f64;
                        let err = (g as f64 - w[e]).abs();
                        prop_assert!(
                            err <= 3.0 * EPS * mag + 1e-45,
                            "{}: ({}, {}, {}) element {}: got {}, want {} (err {:.2e}, bound {:.2e})",
                            what,
                            b,
                            s,
                            h,
                            e,
                            g,
                            w[e],
                            err,
                            3.0 * EPS * mag
                        );
                    }
                }
            }
        }
        for (i, (&g, &x0)) in got.iter().zip(&self.data).enumerate() {
            if !inside[i] {
                prop_assert_eq!(
                    g.to_bits(),
                    x0.to_bits(),
                    "{}: element {} outside the view written",
                    what,
                    i
                );
            }
        }
        Ok(())
    }
}

fn scaling() -> impl Strategy<Value = RopeScaling> {
    prop_oneof![
        Just(RopeScaling::None),
        (0.5f64..8.0).prop_map(|factor| RopeScaling::Linear { factor }),
        (1.0f64..40.0, 0.5f64..2.0, 2.5f64..6.0, 16usize..9000).prop_map(
            |(factor, lo, hi, orig)| {
                RopeScaling::Llama3 {
                    factor,
                    low_freq_factor: lo,
                    high_freq_factor: hi,
                    original_max_positions: orig,
                }
            }
        ),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let dims = (
        1usize..3,
        prop_oneof![Just(1usize), 1usize..20],
        1usize..5,
        prop_oneof![Just(2usize), Just(64), Just(128), 1usize..80],
    );
    (dims, any::<bool>(), scaling(), 0u8..3, 1usize..3).prop_flat_map(
        |((batch, seq, heads, hd), inter, scaling, view, threads)| {
            let hd = hd.max(2);
            // rotary_dim: even, ≤ head_dim; often all of it.
            let rot = prop_oneof![Just(hd - hd % 2), (1..=hd / 2).prop_map(|h| 2 * h)];
            let theta = prop_oneof![Just(10_000.0f64), Just(500_000.0), 2.0f64..1e6];
            let start = prop_oneof![Just(0usize), 0usize..5000, Just(100_000), Just(999_990)];
            let ids = prop_oneof![
                Just(None),
                prop::collection::vec(0usize..200_000, batch * seq).prop_map(Some)
            ];
            (rot, theta, start, ids).prop_flat_map(move |(rot, theta, start, ids)| {
                let params = RopeParams {
                    rotary_dim: rot,
                    theta,
                    layout: if inter {
                        RopeLayout::Interleaved
                    } else {
                        RopeLayout::HalfSplit
                    },
                    scaling,
                };
                let c = Case {
                    batch,
                    seq,
                    heads,
                    head_dim: hd,
                    params,
                    view,
                    start,
                    ids,
                    data: vec![],
                    threads,
                };
                let len = c.layout().1;
                // Elements outside the view (the fused layout's other
                // heads and gaps) are random too and checked bit for bit.
                prop::collection::vec(-4.0f32..4.0, len)
                    .prop_map(move |data| Case { data, ..c.clone() })
            })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(96)))]

    #[test]
    fn rope_matches_reference_on_every_level(c in case()) {
        // A table only where it is small (positions up to 10⁶ would make
        // it 0.5 GB); `rope` computes the same rows in the call.
        let table = (c.max_position() < 20_000)
            .then(|| RopeTable::new(&c.params, c.max_position() + 1).unwrap());
        for cfg in configs() {
            let cfg = Config { parallelism: Parallelism::Threads(c.threads), ..cfg };
            let mut got = c.data.clone();
            rope(c.view(&mut got), &c.params, c.positions(), &cfg).unwrap();
            c.check(&got, &format!("{} rope", cfg.isa))?;
            if let Some(table) = &table {
                // The same rows from the table: the same bits.
                let mut got2 = c.data.clone();
                table.apply(c.view(&mut got2), c.positions(), &cfg).unwrap();
                prop_assert_eq!(&got, &got2, "{}: the table differs from rope()", cfg.isa);
            }
        }
        let mut got = c.data.clone();
        rope_generic::rope(pulp::Scalar128b, c.view(&mut got), &c.params, c.positions()).unwrap();
        c.check(&got, "scalar128b")?;
        if let Some(table) = &table {
            let mut got2 = c.data.clone();
            table.apply_on(pulp::Scalar128b, c.view(&mut got2), c.positions()).unwrap();
            prop_assert_eq!(&got, &got2, "scalar128b: the table differs from rope()");
        }
    }
}

/// The two layouts are the same rotation on permuted elements: interleaved
/// on `x` equals half-split on `x` with its pairs de-interleaved.
#[test]
fn interleaved_is_half_split_on_permuted_pairs() {
    let (seq, d) = (7, 10);
    let x: Vec<f32> = (0..seq * d).map(|i| (i as f32 * 0.37).sin()).collect();
    let perm = |i: usize| {
        if i < d / 2 {
            2 * i
        } else {
            2 * (i - d / 2) + 1
        }
    };
    let xp: Vec<f32> = (0..seq * d).map(|i| x[(i / d) * d + perm(i % d)]).collect();
    let mut p = RopeParams::new(d, 10_000.0);
    for cfg in configs() {
        let mut a = xp.clone();
        p.layout = RopeLayout::HalfSplit;
        rope(
            HeadsMut::bshd(&mut a, 1, seq, 1, d).unwrap(),
            &p,
            Positions::Start(3),
            &cfg,
        )
        .unwrap();
        let mut b = x.clone();
        p.layout = RopeLayout::Interleaved;
        rope(
            HeadsMut::bshd(&mut b, 1, seq, 1, d).unwrap(),
            &p,
            Positions::Start(3),
            &cfg,
        )
        .unwrap();
        for (i, &ai) in a.iter().enumerate() {
            let j = (i / d) * d + perm(i % d);
            assert!((ai - b[j]).abs() <= 1e-6, "{}: element {i}", cfg.isa);
        }
    }
}

/// Position 0 is the identity; a rotation keeps each pair's norm.
#[test]
fn position_zero_is_identity_and_norms_are_kept() {
    let d = 64;
    let x: Vec<f32> = (0..d).map(|i| (i as f32 * 0.9).cos() * 3.0).collect();
    let p = RopeParams::new(d, 10_000.0);
    for cfg in configs() {
        let mut y = x.clone();
        rope(
            HeadsMut::bshd(&mut y, 1, 1, 1, d).unwrap(),
            &p,
            Positions::Start(0),
            &cfg,
        )
        .unwrap();
        assert_eq!(x, y, "{}: position 0 must be the identity", cfg.isa);
        let mut z = x.clone();
        rope(
            HeadsMut::bshd(&mut z, 1, 1, 1, d).unwrap(),
            &p,
            Positions::Start(123_456),
            &cfg,
        )
        .unwrap();
        for i in 0..d / 2 {
            let n0 = x[i].hypot(x[i + d / 2]);
            let n1 = z[i].hypot(z[i + d / 2]);
            assert!(
                (n0 - n1).abs() <= 4e-6 * n0.max(1.0),
                "{}: pair {i} norm {n0} -> {n1}",
                cfg.isa
            );
        }
    }
}

#[test]
fn llama3_scaling_matches_its_three_regimes() {
    let p = RopeParams {
        rotary_dim: 64,
        theta: 500_000.0,
        layout: RopeLayout::HalfSplit,
        scaling: RopeScaling::Llama3 {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_positions: 8192,
        },
    };
    let f = p.frequencies();
    let base = RopeParams::new(64, 500_000.0).frequencies();
    for (a, b) in f.iter().zip(reference::rope_frequencies(&p)) {
        assert!((a - b).abs() <= 1e-14 * b, "{a} vs {b}");
    }
    // Highest frequency (wavelength 2π < 2048): unchanged.
    assert_eq!(f[0], base[0]);
    // Lowest (wavelength ≫ 8192): divided by 32.
    assert!((f[31] - base[31] / 32.0).abs() <= 1e-15 * base[31]);
    // Some frequency in between is strictly between the two.
    assert!(
        f.iter()
            .zip(&base)
            .any(|(&a, &b)| a < b && a > b / 32.0 * 1.0001)
    );
}

#[test]
fn bad_arguments_are_errors_naming_them() {
    let cfg = Config::default();
    let mut x = vec![1.0f32; 2 * 3 * 8];
    let orig = x.clone();
    let mut call = |p: RopeParams, pos: Positions<'_>| {
        rope(HeadsMut::bshd(&mut x, 1, 2, 3, 8).unwrap(), &p, pos, &cfg).unwrap_err()
    };
    let ok = RopeParams::new(8, 10_000.0);
    let e = call(
        RopeParams {
            rotary_dim: 7,
            ..ok
        },
        Positions::Start(0),
    );
    assert!(
        matches!(
            e,
            KernelError::InvalidArgument {
                arg: "rotary_dim",
                ..
            }
        ),
        "{e}"
    );
    let e = call(
        RopeParams {
            rotary_dim: 0,
            ..ok
        },
        Positions::Start(0),
    );
    assert_eq!(e.arg(), "rotary_dim");
    let e = call(
        RopeParams {
            rotary_dim: 10,
            ..ok
        },
        Positions::Start(0),
    );
    assert!(
        matches!(e, KernelError::ShapeMismatch { arg: "x", .. }),
        "{e}"
    );
    for theta in [f64::NAN, 1.0, -5.0, f64::INFINITY] {
        let e = call(RopeParams { theta, ..ok }, Positions::Start(0));
        assert_eq!(e.arg(), "theta", "theta = {theta}");
    }
    for scaling in [
        RopeScaling::Linear { factor: 0.0 },
        RopeScaling::Linear { factor: f64::NAN },
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 4.0,
            high_freq_factor: 1.0,
            original_max_positions: 8192,
        },
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_positions: 0,
        },
        RopeScaling::Llama3 {
            factor: -1.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_positions: 10,
        },
    ] {
        let e = call(RopeParams { scaling, ..ok }, Positions::Start(0));
        assert!(
            matches!(e, KernelError::InvalidArgument { arg: "scaling", .. }),
            "{scaling:?}: {e}"
        );
    }
    let e = call(ok, Positions::Ids(&[1, 2, 3]));
    assert!(
        matches!(
            e,
            KernelError::ShapeMismatch {
                arg: "positions",
                ..
            }
        ),
        "{e}"
    );
    let e = call(ok, Positions::Start(usize::MAX));
    assert!(
        matches!(
            e,
            KernelError::OutOfBounds {
                arg: "positions",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(x, orig, "nothing written on error");

    let table = RopeTable::new(&ok, 10).unwrap();
    let mut y = orig.clone();
    let e = table
        .apply(
            HeadsMut::bshd(&mut y, 1, 2, 3, 8).unwrap(),
            Positions::Start(9),
            &cfg,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::OutOfBounds {
                arg: "positions",
                ..
            }
        ),
        "{e}"
    );
    let e = table
        .apply(
            HeadsMut::bshd(&mut y, 1, 2, 3, 8).unwrap(),
            Positions::Ids(&[0, 10]),
            &cfg,
        )
        .unwrap_err();
    assert_eq!(e.arg(), "positions");
    assert_eq!(y, orig, "nothing written on error");
    // Positions 8 and 9, the table's last: fine.
    table
        .apply(
            HeadsMut::bshd(&mut y, 1, 2, 3, 8).unwrap(),
            Positions::Start(8),
            &cfg,
        )
        .unwrap();
    let e = RopeTable::new(&ok, usize::MAX / 2).unwrap_err();
    assert_eq!(e.arg(), "max_positions");
}
