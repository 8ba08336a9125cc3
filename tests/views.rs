//! The views' index arithmetic pinned by hand-computed positions, so that a
//! wrong offset in `MatRef::get`, `t()`, `submatrix`, `bshd`, `bhsd` or
//! `strided` cannot hide behind the reference, which reads its operands
//! through the same views the kernels do. Every buffer holds its own index
//! (`data[i] = i`), so an element's value is where it was read from.

use transformer_kernels::reference;
use transformer_kernels::{
    Config, Epilogue, HeadsMut, HeadsRef, MatMut, MatRef, attention, matmul,
};

fn iota(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

#[test]
fn matrix_views_read_the_positions_written_out_by_hand() {
    let d = iota(60);
    // 3×4 with row stride 5, column stride 1: (2, 3) is at 2·5 + 3 = 13.
    let m = MatRef::new(&d, 3, 4, 5, 1).unwrap();
    assert_eq!(m.get(2, 3), Some(13.0));
    assert_eq!(m.get(1, 0), Some(5.0));
    assert_eq!(m.get(3, 0), None);
    assert_eq!(m.get(0, 4), None);
    // Column-major 4×3: (i, j) at i + 4j; (3, 2) at 11, (1, 2) at 9.
    let c = MatRef::col_major(&d[..12], 4, 3).unwrap();
    assert_eq!(c.get(3, 2), Some(11.0));
    assert_eq!(c.get(1, 2), Some(9.0));
    // Transpose of row-major 3×4 (row stride 4): (j, i) of the transpose is
    // (i, j) of the original: t(3, 1) = orig(1, 3) = 7.
    let t = MatRef::row_major(&d[..12], 3, 4).unwrap().t();
    assert_eq!((t.rows(), t.cols()), (4, 3));
    assert_eq!(t.get(3, 1), Some(7.0));
    assert_eq!(t.get(0, 2), Some(8.0));
    // The 2×3 block at (1, 2) of row-major 6×10: (r, c) at (1 + r)·10 + 2 + c.
    let s = MatRef::row_major(&d, 6, 10)
        .unwrap()
        .submatrix(1, 2, 2, 3)
        .unwrap();
    assert_eq!(s.get(0, 0), Some(12.0));
    assert_eq!(s.get(1, 2), Some(24.0));
    // A block of a transpose: transpose of row-major 6×10 is 10×6 with
    // (i, j) at j·10 + i; its 2×2 block at (3, 4): (0, 1) → (3, 5) → 53.
    let ts = MatRef::row_major(&d, 6, 10)
        .unwrap()
        .t()
        .submatrix(3, 4, 2, 2)
        .unwrap();
    assert_eq!(ts.get(0, 1), Some(53.0));
    assert_eq!(ts.get(1, 0), Some(44.0));
}

#[test]
fn mutable_views_write_the_positions_written_out_by_hand() {
    let mut d = vec![0.0f32; 60];
    {
        // Column-major 4×3 written through a transposed 3×4 view: element
        // (j, i) of the view is (i, j) of the column-major matrix, at i + 4j.
        let mut v = MatMut::col_major(&mut d[..12], 4, 3).unwrap().t();
        let a = iota(12);
        let id: Vec<f32> = (0..16)
            .map(|i| if i % 5 == 0 { 1.0 } else { 0.0 })
            .collect();
        // C (3×4) = A (3×4, row-major) · I (4×4): C(r, c) = r·4 + c.
        matmul(
            v.rb_mut(),
            MatRef::row_major(&a, 3, 4).unwrap(),
            MatRef::row_major(&id, 4, 4).unwrap(),
            1.0,
            0.0,
            Epilogue::None,
            &Config::default(),
        )
        .unwrap();
    }
    // View (r, c) = column-major (c, r) at c + 4r, holding r·4 + c.
    for r in 0..3 {
        for c in 0..4 {
            assert_eq!(d[c + 4 * r], (r * 4 + c) as f32, "({r}, {c})");
        }
    }
    assert!(d[12..].iter().all(|&x| x == 0.0));
}

#[test]
fn head_views_read_the_positions_written_out_by_hand() {
    let (b, s, h, dd) = (2usize, 3usize, 4usize, 5usize);
    let data = iota(b * s * h * dd);
    // BSHD: (b, s, h, d) at ((b·S + s)·H + h)·D + d.
    let v = HeadsRef::bshd(&data, b, s, h, dd).unwrap();
    let at = |b: usize, s: usize, hh: usize| ((b * 3 + s) * 4 + hh) * 5;
    assert_eq!(v.row(1, 2, 3).unwrap()[4], (at(1, 2, 3) + 4) as f32);
    assert_eq!(v.row(1, 2, 3).unwrap()[0], 115.0);
    // BHSD: (b, s, h, d) at ((b·H + h)·S + s)·D + d: (1, 0, 2, 1) →
    // ((4 + 2)·3 + 0)·5 + 1 = 91 (BSHD: 71); (0, 1, 2, 0) → (2·3 + 1)·5 =
    // 35 (BSHD: 30).
    let w = HeadsRef::bhsd(&data, b, s, h, dd).unwrap();
    assert_eq!(w.row(1, 0, 2).unwrap()[1], 91.0);
    assert_eq!(w.row(0, 1, 2).unwrap()[0], 35.0);
    assert_eq!(v.row(1, 0, 2).unwrap()[1], 71.0);
    assert_eq!(v.row(0, 1, 2).unwrap()[0], 30.0);
    // K inside a fused [B, S, 3, H, D] buffer starting at H·D: strides
    // [S·3·H·D, 3·H·D, D] = [180, 60, 5]; (1, 2, 3) → 20 + 180 + 120 + 15.
    let fused = iota(b * s * 3 * h * dd);
    let k = HeadsRef::strided(&fused[h * dd..], b, s, h, dd, [180, 60, 5]).unwrap();
    assert_eq!(k.row(1, 2, 3).unwrap()[0], 335.0);
    assert!(k.row(2, 0, 0).is_none());
}

#[test]
fn bhsd_attention_equals_bshd_on_the_same_numbers() {
    // The same Q, K, V laid out BSHD and (copied by hand) BHSD: the outputs
    // must agree element by element after the same hand-written index map,
    // and the reference must agree with both.
    let (b, s, h, dd) = (2usize, 7usize, 3usize, 8usize);
    let n = b * s * h * dd;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5)
        .collect();
    let mut xh = vec![0.0f32; n];
    for bb in 0..b {
        for ss in 0..s {
            for hh in 0..h {
                for e in 0..dd {
                    xh[((bb * h + hh) * s + ss) * dd + e] = x[((bb * s + ss) * h + hh) * dd + e];
                }
            }
        }
    }
    let opts = transformer_kernels::AttentionOptions {
        causal: true,
        scale: None,
    };
    let cfg = Config::default();
    let (mut o1, mut o2) = (vec![0.0f32; n], vec![0.0f32; n]);
    let v1 = HeadsRef::bshd(&x, b, s, h, dd).unwrap();
    let v2 = HeadsRef::bhsd(&xh, b, s, h, dd).unwrap();
    attention(
        HeadsMut::bshd(&mut o1, b, s, h, dd).unwrap(),
        v1,
        v1,
        v1,
        &opts,
        &cfg,
    )
    .unwrap();
    attention(
        HeadsMut::bhsd(&mut o2, b, s, h, dd).unwrap(),
        v2,
        v2,
        v2,
        &opts,
        &cfg,
    )
    .unwrap();
    let (want, _) = reference::attention(v1, v1, v1, &opts);
    for bb in 0..b {
        for ss in 0..s {
            for hh in 0..h {
                for e in 0..dd {
                    let i = ((bb * s + ss) * h + hh) * dd + e;
                    let j = ((bb * h + hh) * s + ss) * dd + e;
                    assert_eq!(o1[i].to_bits(), o2[j].to_bits(), "({bb}, {ss}, {hh}, {e})");
                    assert!((o1[i] as f64 - want[i]).abs() < 1e-5);
                }
            }
        }
    }
}
