//! matmul with fuzzer-chosen views (shapes, strides, offsets: valid or
//! not), alpha/beta, epilogue, ISA, threads and values. Constructors refuse
//! views that leave their data; matmul refuses mismatched shapes with the
//! output untouched; valid finite calls match the f64 reference within the
//! property tests' bound; canaries around C are never written.
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
    let (ar, ac, ars, acs, alen) = view_shape(u, m, k)?;
    let (br, bc, brs, bcs, blen) = view_shape(u, k, n)?;
    let (cr, cc, crs, ccs, clen) = view_shape(u, m, n)?;
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

    let (Ok(av), Ok(bv)) = (
        MatRef::new(&a, ar, ac, ars, acs),
        MatRef::new(&b, br, bc, brs, bcs),
    ) else {
        return Ok(()); // refused at construction: nothing else to check
    };
    let mut cbuf = padded(clen, 0.0);
    cbuf[PAD..PAD + clen].copy_from_slice(&c0);
    let Ok(cv) = MatMut::new(&mut cbuf[PAD..PAD + clen], cr, cc, crs, ccs) else {
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
            live[i * crs + j * ccs] = true;
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
            let c0v = MatRef::new(&c0, cr, cc, crs, ccs).unwrap();
            let want = reference::matmul(Some(c0v), av, bv, alpha, beta, ep);
            let cview = MatRef::new(got, cr, cc, crs, ccs).unwrap();
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
