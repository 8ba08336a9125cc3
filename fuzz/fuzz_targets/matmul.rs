//! matmul with fuzzer-chosen views (shapes, strides, offsets: valid or
//! not), alpha/beta, epilogue, ISA, threads and values. Constructors refuse
//! views that leave their data; matmul refuses mismatched shapes with the
//! output untouched; valid finite calls match the f64 reference within the
//! property tests' bound; canaries around C are never written. A quarter of
//! the views are built as the transpose of a view, a quarter as a
//! `submatrix` of a larger one (sometimes out of bounds, which must be an
//! `Err`); every element of every view is checked against its position
//! computed here by hand, apart from the crate's own index code.
#![no_main]

#[path = "common.rs"]
mod common;
use arbitrary::Unstructured;
use common::*;
use libfuzzer_sys::fuzz_target;
use transformer_kernels::{Epilogue, GeluKind, MatMut, MatRef, matmul, reference};

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

const U: f64 = 1.0 / (1u64 << 24) as f64;

/// (rows, cols, row stride, col stride, buffer length) for a view, usually
/// consistent, sometimes not.
fn view_shape(
    u: &mut Unstructured,
    rows: usize,
    cols: usize,
) -> arbitrary::Result<(usize, usize, usize, usize, usize)> {
    let (rows, cols) = if u.ratio(1, 16)? {
        (u.int_in_range(0..=40)?, u.int_in_range(0..=40)?)
    } else {
        (rows, cols)
    };
    let (rs, cs) = match u.int_in_range(0..=4u8)? {
        0 => (cols, 1),
        1 => (1, rows),
        2 => (cols + u.int_in_range(0..=5usize)?, 1),
        3 => (1, rows + u.int_in_range(0..=5usize)?),
        _ => (u.int_in_range(0..=64usize)?, u.int_in_range(0..=64usize)?),
    };
    let need = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    };
    let len = if u.ratio(1, 10)? {
        need.saturating_sub(u.int_in_range(0..=3usize)?)
    } else {
        need
    };
    Ok((rows, cols, rs, cs, len))
}

/// How a view is built from its buffer.
#[derive(Clone, Copy)]
enum How {
    Plain,
    /// `new(data, cols, rows, cs, rs).t()`.
    Transposed,
    /// `new(data, rows + er, cols + ec, rs, cs).submatrix(r0, c0, rows, cols)`.
    Sub {
        r0: usize,
        c0: usize,
        er: usize,
        ec: usize,
    },
}

/// A view's logical shape, its parent's strides and buffer length, and how
/// it is built.
#[derive(Clone, Copy)]
struct Shape {
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    len: usize,
    how: How,
}

impl Shape {
    /// Usually a `rows × cols` view (plain, transposed or a sub-block);
    /// sometimes other dimensions, strides that overlap or a short buffer.
    fn draw(u: &mut Unstructured, rows: usize, cols: usize) -> arbitrary::Result<Shape> {
        match u.int_in_range(0..=3u8)? {
            0 => {
                let (c, r, cs, rs, len) = view_shape(u, cols, rows)?;
                Ok(Shape {
                    rows: r,
                    cols: c,
                    rs,
                    cs,
                    len,
                    how: How::Transposed,
                })
            }
            1 => {
                let (er, ec) = (u.int_in_range(0..=4usize)?, u.int_in_range(0..=4usize)?);
                let (pr, pc, rs, cs, len) = view_shape(u, rows + er, cols + ec)?;
                let (r, c) = (pr.saturating_sub(er), pc.saturating_sub(ec));
                // 1 in 8 starts one past the room left: out of bounds.
                let over = usize::from(u.ratio(1, 8)?);
                let r0 = u.int_in_range(0..=er)? + over;
                let c0 = u.int_in_range(0..=ec)?;
                Ok(Shape {
                    rows: r,
                    cols: c,
                    rs,
                    cs,
                    len,
                    how: How::Sub { r0, c0, er, ec },
                })
            }
            _ => {
                let (r, c, rs, cs, len) = view_shape(u, rows, cols)?;
                Ok(Shape {
                    rows: r,
                    cols: c,
                    rs,
                    cs,
                    len,
                    how: How::Plain,
                })
            }
        }
    }

    /// Where element (i, j) of the view lives in the buffer, by hand.
    fn index(&self, i: usize, j: usize) -> usize {
        match self.how {
            How::Plain | How::Transposed => i * self.rs + j * self.cs,
            How::Sub { r0, c0, .. } => (r0 + i) * self.rs + (c0 + j) * self.cs,
        }
    }

    /// Whether the sub-block lies inside its parent.
    fn in_bounds(&self) -> bool {
        match self.how {
            How::Sub { r0, c0, er, ec } => r0 <= er && c0 <= ec,
            _ => true,
        }
    }

    fn make_ref<'a>(&self, data: &'a [f32]) -> Option<MatRef<'a>> {
        let v = match self.how {
            How::Plain => MatRef::new(data, self.rows, self.cols, self.rs, self.cs).ok()?,
            How::Transposed => MatRef::new(data, self.cols, self.rows, self.cs, self.rs)
                .ok()?
                .t(),
            How::Sub { r0, c0, er, ec } => {
                let p = MatRef::new(data, self.rows + er, self.cols + ec, self.rs, self.cs).ok()?;
                let sub = p.submatrix(r0, c0, self.rows, self.cols);
                assert_eq!(sub.is_ok(), self.in_bounds(), "submatrix bounds check");
                sub.ok()?
            }
        };
        assert_eq!((v.rows(), v.cols()), (self.rows, self.cols));
        for i in 0..self.rows {
            for j in 0..self.cols {
                let want = data[self.index(i, j)];
                assert_eq!(
                    v.get(i, j).map(f32::to_bits),
                    Some(want.to_bits()),
                    "view ({i},{j})"
                );
            }
        }
        Some(v)
    }

    fn make_mut<'a>(&self, data: &'a mut [f32]) -> Option<MatMut<'a>> {
        let v = match self.how {
            How::Plain => MatMut::new(data, self.rows, self.cols, self.rs, self.cs).ok()?,
            How::Transposed => MatMut::new(data, self.cols, self.rows, self.cs, self.rs)
                .ok()?
                .t(),
            How::Sub { r0, c0, er, ec } => {
                let p = MatMut::new(data, self.rows + er, self.cols + ec, self.rs, self.cs).ok()?;
                let sub = p.submatrix(r0, c0, self.rows, self.cols);
                assert_eq!(sub.is_ok(), self.in_bounds(), "submatrix bounds check");
                sub.ok()?
            }
        };
        assert_eq!((v.rows(), v.cols()), (self.rows, self.cols));
        Some(v)
    }
}

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let cfg = config(u)?;
    let hostile = u.ratio(1, 4)?;
    // Mostly small; 1 in 8 a shape that reaches the blocked paths: k across
    // every level's KC (several k-blocks, the epilogue on the last), m
    // across MC, n across NC, the packed-A path (no unit stride, n > 2·NR),
    // or (1 in 64 overall) enough work for two threads.
    let (m, n, k) = if u.ratio(1, 8)? {
        match u.int_in_range(0..=4u8)? {
            0 => (
                u.int_in_range(1..=8usize)?,
                u.int_in_range(1..=40usize)?,
                u.int_in_range(250..=2100usize)?,
            ),
            1 => (
                u.int_in_range(1000..=1100usize)?,
                u.int_in_range(1..=6usize)?,
                u.int_in_range(1..=5usize)?,
            ),
            2 => (
                u.int_in_range(1..=6usize)?,
                u.int_in_range(120..=1100usize)?,
                u.int_in_range(1..=5usize)?,
            ),
            3 => (
                u.int_in_range(40..=80usize)?,
                u.int_in_range(65..=140usize)?,
                u.int_in_range(40..=80usize)?,
            ),
            _ => (
                u.int_in_range(200..=260usize)?,
                u.int_in_range(200..=260usize)?,
                u.int_in_range(250..=300usize)?,
            ),
        }
    } else {
        (
            u.int_in_range(0..=40usize)?,
            u.int_in_range(0..=40usize)?,
            u.int_in_range(0..=70usize)?,
        )
    };
    let sa = Shape::draw(u, m, k)?;
    let sb = Shape::draw(u, k, n)?;
    let sc = Shape::draw(u, m, n)?;
    let (ar, ac, alen) = (sa.rows, sa.cols, sa.len);
    let (br, bc, blen) = (sb.rows, sb.cols, sb.len);
    let (cr, cc, clen) = (sc.rows, sc.cols, sc.len);
    let a = values(u, alen, hostile)?;
    let b = values(u, blen, hostile)?;
    let c0 = values(u, clen, hostile)?;
    let alpha = *u.choose(&[1.0f32, 0.0, -0.5, 2.0])?;
    let beta = *u.choose(&[0.0f32, 1.0, 0.5])?;
    let blen_bias = if u.ratio(1, 10)? {
        u.int_in_range(0..=45usize)?
    } else {
        bc
    };
    let bias = values(u, blen_bias, hostile)?;
    // SwiGLU's U: any view, usually (not always) C's shape.
    let (ur, uc, urs, ucs, ulen) = view_shape(u, m, n)?;
    let uvals = values(u, ulen, hostile)?;
    let Ok(uview) = MatRef::new(&uvals, ur, uc, urs, ucs) else {
        return Ok(());
    };
    let ep = match u.int_in_range(0..=4u8)? {
        0 => Epilogue::None,
        1 => Epilogue::Bias(&bias),
        2 => Epilogue::BiasGelu(&bias, GeluKind::Erf),
        3 => Epilogue::BiasGelu(&bias, GeluKind::Tanh),
        _ => Epilogue::SiluMul(uview),
    };

    let (Some(av), Some(bv)) = (sa.make_ref(&a), sb.make_ref(&b)) else {
        return Ok(()); // refused at construction: nothing else to check
    };
    let mut cbuf = padded(clen, 0.0);
    cbuf[PAD..PAD + clen].copy_from_slice(&c0);
    let Some(cv) = sc.make_mut(&mut cbuf[PAD..PAD + clen]) else {
        check_canaries(&cbuf, "c");
        return Ok(());
    };
    let res = matmul(cv, av, bv, alpha, beta, ep, &cfg);
    check_canaries(&cbuf, "c");
    // Inside C's buffer, the elements the view does not cover (the gaps
    // between rows or columns) are never written, on any level.
    let mut live = vec![false; clen];
    for i in 0..cr {
        for j in 0..cc {
            live[sc.index(i, j)] = true;
        }
    }
    for (idx, (&x, &y)) in cbuf[PAD..PAD + clen].iter().zip(&c0).enumerate() {
        assert!(
            live[idx] || x.to_bits() == y.to_bits(),
            "{:?}: gap element {idx} of C written",
            cfg.isa
        );
    }
    let bias_len_ok = match ep {
        Epilogue::None => true,
        Epilogue::Bias(b) | Epilogue::BiasGelu(b, _) => b.len() == bc,
        Epilogue::SiluMul(uv) => uv.rows() == ar && uv.cols() == bc,
    };
    let valid = cfg.isa.is_available() && br == ac && cr == ar && cc == bc && bias_len_ok;
    let got = &cbuf[PAD..PAD + clen];
    match res {
        Err(e) => {
            assert!(!valid, "valid call refused: {e}");
            assert!(
                got.iter().zip(&c0).all(|(x, y)| x.to_bits() == y.to_bits()),
                "C written on Err"
            );
        }
        Ok(()) => {
            assert!(valid, "invalid call accepted");
            let finite = a
                .iter()
                .chain(&b)
                .chain(&c0)
                .chain(&bias)
                .chain(&uvals)
                .all(|v| v.is_finite() && v.abs() < 1e6);
            if !finite {
                return Ok(());
            }
            let c0v = sc.make_ref(&c0).unwrap();
            let want = reference::matmul(Some(c0v), av, bv, alpha, beta, ep);
            let cview = sc.make_ref(got).unwrap();
            for i in 0..cr {
                for j in 0..cc {
                    let s: f64 = (0..ac)
                        .map(|p| {
                            (av.get(i, p).unwrap() as f64 * bv.get(p, j).unwrap() as f64).abs()
                        })
                        .sum();
                    let cterm = if beta != 0.0 {
                        (beta as f64 * c0v.get(i, j).unwrap() as f64).abs()
                    } else {
                        0.0
                    };
                    let bterm = match ep {
                        Epilogue::Bias(b) | Epilogue::BiasGelu(b, _) => b[j].abs() as f64,
                        _ => 0.0,
                    };
                    let s = if alpha == 0.0 {
                        0.0
                    } else {
                        alpha.abs() as f64 * s
                    };
                    // + the absolute underflow term: each rounding of a
                    // subnormal is off by up to 2⁻¹⁵⁰.
                    let t = 2.0 * (ac as f64 + 3.0) * U * (s + cterm + bterm)
                        + (ac as f64 + 4.0) * 2f64.powi(-149);
                    let w = want[i * cc + j];
                    let tol = match ep {
                        Epilogue::BiasGelu(..) => 1.13 * t + 4.0 * ulp(w) + 1e-7,
                        // silu is 1.1-Lipschitz and within 4 ULP + 3e-37;
                        // then one rounded product with U.
                        Epilogue::SiluMul(uv) => {
                            let uij = (uv.get(i, j).unwrap() as f64).abs();
                            let sil = if uij > 0.0 { w.abs() / uij } else { 0.0 };
                            uij * (1.1 * t + 4.0 * ulp(sil) + 3e-37) + ulp(w)
                        }
                        _ => t,
                    };
                    let g = cview.get(i, j).unwrap() as f64;
                    assert!(
                        (g - w).abs() <= tol,
                        "{:?} ({i},{j}) of {cr}x{cc}x{ac}: {g} vs {w}",
                        cfg.isa
                    );
                }
            }
        }
    }
    Ok(())
}
