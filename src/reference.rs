//! Naive scalar reference implementations: the oracles the tests compare every
//! SIMD path against, and that users can compare against too.
//!
//! Written for clarity, not speed; they compute in f64 and return f64 so a
//! test can measure the error of an f32 kernel against something better than
//! itself. They assume valid shapes and panic otherwise (they are oracles, not
//! the API).

use crate::attention::{AttentionOptions, HeadsRef};
use crate::gelu::GeluKind;
use crate::matmul::{Epilogue, MatRef};

/// Exact GELU in f64: `0.5·x·(1 + erf(x/√2))`, written as `0.5·x·erfc(−x/√2)`
/// so negative x keeps full relative accuracy. `gelu(−∞) = −0.0`, the limit.
pub fn gelu_erf(x: f64) -> f64 {
    if x == f64::NEG_INFINITY {
        return -0.0;
    }
    0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Tanh-approximated GELU in f64: `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))`,
/// evaluated as `x / (1 + exp(−2u))` (the same value without cancellation);
/// `gelu(−∞) = −0.0`.
pub fn gelu_tanh(x: f64) -> f64 {
    if x == f64::NEG_INFINITY {
        return -0.0;
    }
    let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
    x / (1.0 + (-2.0 * u).exp())
}

/// GELU of the given kind, in f64.
pub fn gelu(x: f64, kind: GeluKind) -> f64 {
    match kind {
        GeluKind::Erf => gelu_erf(x),
        GeluKind::Tanh => gelu_tanh(x),
    }
}

/// SiLU in f64: `x / (1 + e^(−x))`; `silu(−∞) = −0.0`, `silu(+∞) = +∞`.
pub fn silu(x: f64) -> f64 {
    if x == f64::NEG_INFINITY {
        return -0.0;
    }
    x / (1.0 + (-x).exp())
}

/// `silu(gate[i])·up[i]` in f64 (SwiGLU given both projections).
///
/// # Panics
/// If the lengths differ.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f64> {
    assert_eq!(gate.len(), up.len(), "gate and up lengths");
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| silu(g as f64) * u as f64)
        .collect()
}

/// `gelu(x[r][c] + bias[c])` for row-major `x` with rows of `bias.len()`,
/// the bias added in f32 (as the kernel's contract says) and GELU in f64.
///
/// # Panics
/// If `bias` is empty while `x` is not, or `x.len() % bias.len() != 0`.
pub fn bias_gelu(x: &[f32], bias: &[f32], kind: GeluKind) -> Vec<f64> {
    if x.is_empty() {
        return Vec::new();
    }
    assert!(
        !bias.is_empty() && x.len().is_multiple_of(bias.len()),
        "bad shapes"
    );
    x.iter()
        .enumerate()
        .map(|(i, &v)| gelu((v + bias[i % bias.len()]) as f64, kind))
        .collect()
}

/// `epilogue(alpha·A·B + beta·C)` in f64, row-major `m × n`.
///
/// `c` is read only when `beta != 0` (pass `None` otherwise); with `k = 0`
/// or `alpha = 0` the product term is skipped, as in BLAS.
///
/// # Panics
/// On mismatched shapes, or `beta != 0` without `c`.
pub fn matmul(
    c: Option<MatRef<'_>>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    alpha: f32,
    beta: f32,
    epilogue: Epilogue<'_>,
) -> Vec<f64> {
    let k = a.cols();
    assert_eq!(b.rows(), k, "b rows");
    let dot = |i: usize, j: usize| -> f64 {
        (0..k)
            .map(|p| a.get(i, p).unwrap() as f64 * b.get(p, j).unwrap() as f64)
            .sum()
    };
    with_epilogue(c, (a.rows(), k, b.cols()), dot, alpha, beta, epilogue)
}

/// `epilogue(alpha·dot(i, j) + beta·C)` in f64 over an `m × n` result.
fn with_epilogue(
    c: Option<MatRef<'_>>,
    (m, k, n): (usize, usize, usize),
    dot: impl Fn(usize, usize) -> f64,
    alpha: f32,
    beta: f32,
    epilogue: Epilogue<'_>,
) -> Vec<f64> {
    let (bias, kind, mul) = match epilogue {
        Epilogue::None => (None, None, None),
        Epilogue::Bias(b) => (Some(b), None, None),
        Epilogue::BiasGelu(b, kind) => (Some(b), Some(kind), None),
        Epilogue::SiluMul(u) => (None, None, Some(u)),
    };
    let mut out = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut v = 0.0f64;
            if k > 0 && alpha != 0.0 {
                v = alpha as f64 * dot(i, j);
            }
            if beta != 0.0 {
                let c = c.expect("beta != 0 needs c");
                v += beta as f64 * c.get(i, j).unwrap() as f64;
            }
            if let Some(bias) = bias {
                v += bias[j] as f64;
            }
            if let Some(kind) = kind {
                v = gelu(v, kind);
            }
            if let Some(u) = mul {
                v = silu(v) * u.get(i, j).unwrap() as f64;
            }
            out[i * n + j] = v;
        }
    }
    out
}

/// Naive attention in f64: materialises every score, masks (bottom-right
/// causal), softmax, weighted sum. Returns the output in `[batch, q_len,
/// heads, head_dim]` order and the log-sum-exp in `[batch, heads, q_len]`
/// order. A row whose scores are all −∞ gives zeros and −∞.
///
/// # Panics
/// On shapes the kernel would refuse.
pub fn attention(
    q: HeadsRef<'_>,
    k: HeadsRef<'_>,
    v: HeadsRef<'_>,
    opts: &AttentionOptions,
) -> (Vec<f64>, Vec<f64>) {
    let (b_n, lq, h_n, d) = (q.batch(), q.seq(), q.heads(), q.head_dim());
    let (lk, hk_n) = (k.seq(), k.heads());
    assert!(hk_n > 0 && h_n % hk_n == 0 && (!opts.causal || lq <= lk));
    let group = h_n / hk_n;
    // The default scale in f64, not the kernels' f32 expression: a wrong
    // default there must not be copied here.
    let scale = opts.scale.map_or(1.0 / (d as f64).sqrt(), |s| s as f64);
    let mut out = vec![0.0f64; b_n * lq * h_n * d];
    let mut lse = vec![0.0f64; b_n * h_n * lq];
    for b in 0..b_n {
        for h in 0..h_n {
            let hk = h / group;
            for i in 0..lq {
                let qi = q.row(b, i, h).unwrap();
                let visible = if opts.causal { i + lk - lq + 1 } else { lk };
                let scores: Vec<f64> = (0..lk)
                    .map(|j| {
                        if j >= visible {
                            return f64::NEG_INFINITY;
                        }
                        let kj = k.row(b, j, hk).unwrap();
                        scale
                            * qi.iter()
                                .zip(kj)
                                .map(|(&x, &y)| x as f64 * y as f64)
                                .sum::<f64>()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let o = &mut out[((b * lq + i) * h_n + h) * d..][..d];
                if m == f64::NEG_INFINITY {
                    lse[(b * h_n + h) * lq + i] = f64::NEG_INFINITY;
                    continue;
                }
                let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let l: f64 = w.iter().sum();
                for (j, &wj) in w.iter().enumerate() {
                    if wj == 0.0 {
                        continue;
                    }
                    let vj = v.row(b, j, hk).unwrap();
                    for (oo, &x) in o.iter_mut().zip(vj) {
                        *oo += wj / l * x as f64;
                    }
                }
                lse[(b * h_n + h) * lq + i] = m + l.ln();
            }
        }
    }
    (out, lse)
}

/// Layer norm of each row of `d = gamma.len()` elements, in f64 (two-pass
/// mean and biased variance).
///
/// # Panics
/// On mismatched lengths.
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f64> {
    let d = gamma.len();
    assert!(d > 0 && x.len().is_multiple_of(d) && beta.len() == d);
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (var + eps as f64).sqrt();
        for (j, &v) in row.iter().enumerate() {
            out.push((v as f64 - mean) * r * gamma[j] as f64 + beta[j] as f64);
        }
    }
    out
}

/// RMS norm of each row of `d = gamma.len()` elements, in f64.
///
/// # Panics
/// On mismatched lengths.
pub fn rms_norm(x: &[f32], gamma: &[f32], eps: f32) -> Vec<f64> {
    let d = gamma.len();
    assert!(d > 0 && x.len().is_multiple_of(d));
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + eps as f64).sqrt();
        for (j, &v) in row.iter().enumerate() {
            out.push(v as f64 * r * gamma[j] as f64);
        }
    }
    out
}

/// One GPT-2 layer (see [`crate::block`]) over `n` tokens from an empty
/// cache, composed from the reference kernels above. Each stage runs in f64
/// and hands f32 to the next, as the kernels do. Returns the new residual
/// stream, `[n, d]` (empty for `n = 0`).
///
/// # Panics
/// On inconsistent weights or `x.len() != n·d`.
pub fn gpt2_layer(w: &crate::block::Gpt2Weights, x: &[f32], n: usize) -> Vec<f32> {
    let (d, h, mlp) = (w.d, w.heads, w.mlp);
    let hd = d / h;
    assert_eq!(x.len(), n * d);
    if n == 0 {
        return Vec::new();
    }
    let to32 = |v: Vec<f64>| v.into_iter().map(|y| y as f32).collect::<Vec<f32>>();
    let mm = |a: &[f32],
              m: usize,
              k: usize,
              b: &[f32],
              nn: usize,
              bias: &[f32],
              kind: Option<GeluKind>| {
        let ep = match kind {
            None => Epilogue::Bias(bias),
            Some(kind) => Epilogue::BiasGelu(bias, kind),
        };
        to32(matmul(
            None,
            MatRef::row_major(a, m, k).unwrap(),
            MatRef::row_major(b, k, nn).unwrap(),
            1.0,
            0.0,
            ep,
        ))
    };
    let h1 = to32(layer_norm(x, &w.ln1_g, &w.ln1_b, w.eps));
    let qkv = mm(&h1, n, d, &w.w_qkv, 3 * d, &w.b_qkv, None);
    let st = [n * 3 * d, 3 * d, hd];
    let q = HeadsRef::strided(&qkv, 1, n, h, hd, st).unwrap();
    let k = HeadsRef::strided(&qkv[d..], 1, n, h, hd, st).unwrap();
    let v = HeadsRef::strided(&qkv[2 * d..], 1, n, h, hd, st).unwrap();
    let (att, _) = attention(
        q,
        k,
        v,
        &AttentionOptions {
            causal: true,
            scale: None,
        },
    );
    let att = to32(att);
    let proj = mm(&att, n, d, &w.w_o, d, &w.b_o, None);
    let x1: Vec<f32> = x.iter().zip(&proj).map(|(a, b)| a + b).collect();
    let h2 = to32(layer_norm(&x1, &w.ln2_g, &w.ln2_b, w.eps));
    let up = mm(&h2, n, d, &w.w_up, mlp, &w.b_up, Some(GeluKind::Tanh));
    let down = mm(&up, n, mlp, &w.w_down, d, &w.b_down, None);
    x1.iter().zip(&down).map(|(a, b)| a + b).collect()
}

/// The `rotary_dim/2` RoPE frequencies of `p` in f64, written out from the
/// formulas in [`mod@crate::rope`] (independently of the kernels' code).
pub fn rope_frequencies(p: &crate::rope::RopeParams) -> Vec<f64> {
    use crate::rope::RopeScaling;
    let half = p.rotary_dim / 2;
    let mut out = Vec::with_capacity(half);
    for i in 0..half {
        let base = 1.0 / p.theta.powf((2 * i) as f64 / p.rotary_dim as f64);
        let w = match p.scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base / factor,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions,
            } => {
                let wavelen = 2.0 * std::f64::consts::PI / base;
                let lo_wavelen = original_max_positions as f64 / low_freq_factor;
                let hi_wavelen = original_max_positions as f64 / high_freq_factor;
                if wavelen > lo_wavelen {
                    base / factor
                } else if wavelen < hi_wavelen {
                    base
                } else {
                    let smooth = (original_max_positions as f64 / wavelen - low_freq_factor)
                        / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * base / factor + smooth * base
                }
            }
        };
        out.push(w);
    }
    out
}

/// RoPE in f64 over a `[batch, seq, heads, head_dim]` view: token `(b, s)`
/// at position `positions[b·seq + s]`. Returns the rotated heads in `[batch,
/// seq, heads, head_dim]` order (elements past `rotary_dim` copied).
///
/// # Panics
/// On `positions.len() != batch·seq` or `rotary_dim > head_dim`.
pub fn rope(x: HeadsRef<'_>, p: &crate::rope::RopeParams, positions: &[usize]) -> Vec<f64> {
    use crate::rope::RopeLayout;
    let (bn, sn, hn, d) = (x.batch(), x.seq(), x.heads(), x.head_dim());
    let r = p.rotary_dim;
    assert!(positions.len() == bn * sn && r <= d && r.is_multiple_of(2));
    let freqs = rope_frequencies(p);
    let mut out = Vec::with_capacity(bn * sn * hn * d);
    for b in 0..bn {
        for s in 0..sn {
            let pos = positions[b * sn + s] as f64;
            for h in 0..hn {
                let v: Vec<f64> = x.row(b, s, h).unwrap().iter().map(|&e| e as f64).collect();
                let mut o = v.clone();
                for (i, &w) in freqs.iter().enumerate() {
                    let (ia, ib) = match p.layout {
                        RopeLayout::HalfSplit => (i, i + r / 2),
                        RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                    };
                    let (sn_, cs) = (pos * w).sin_cos();
                    o[ia] = v[ia] * cs - v[ib] * sn_;
                    o[ib] = v[ib] * cs + v[ia] * sn_;
                }
                out.extend(o);
            }
        }
    }
    out
}

/// One Llama-family layer (see [`crate::block::LlamaLayer`]) over `n`
/// tokens at positions `0..n`, composed from the reference kernels above;
/// each stage runs in f64 and hands f32 to the next, as the kernels do.
/// Returns the new residual stream, `[n, d]` (empty for `n = 0`).
///
/// # Panics
/// On inconsistent weights or `x.len() != n·d`.
pub fn llama_layer(w: &crate::block::LlamaWeights, x: &[f32], n: usize) -> Vec<f32> {
    let dm = &w.dims;
    let (d, hd, ffn, hq, hk) = (dm.d, dm.head_dim, dm.ffn, dm.heads, dm.kv_heads);
    let wq = dm.qkv_width();
    assert_eq!(x.len(), n * d);
    if n == 0 {
        return Vec::new();
    }
    let to32 = |v: Vec<f64>| v.into_iter().map(|y| y as f32).collect::<Vec<f32>>();
    let mm = |a: &[f32], k: usize, wt: &[f32], out: usize, ep: Epilogue<'_>| {
        let b = match w.layout {
            crate::block::WeightLayout::InOut => MatRef::row_major(wt, k, out).unwrap(),
            crate::block::WeightLayout::OutIn => MatRef::row_major(wt, out, k).unwrap().t(),
        };
        to32(matmul(
            None,
            MatRef::row_major(a, n, k).unwrap(),
            b,
            1.0,
            0.0,
            ep,
        ))
    };
    let h1 = to32(rms_norm(x, &w.attn_norm, dm.eps));
    let qkv = mm(&h1, d, &w.w_qkv, wq, Epilogue::None);
    let positions: Vec<usize> = (0..n).collect();
    let st = [n * wq, wq, hd];
    let q = to32(rope(
        HeadsRef::strided(&qkv, 1, n, hq, hd, st).unwrap(),
        &dm.rope,
        &positions,
    ));
    let k = to32(rope(
        HeadsRef::strided(&qkv[hq * hd..], 1, n, hk, hd, st).unwrap(),
        &dm.rope,
        &positions,
    ));
    let (att, _) = attention(
        HeadsRef::bshd(&q, 1, n, hq, hd).unwrap(),
        HeadsRef::bshd(&k, 1, n, hk, hd).unwrap(),
        HeadsRef::strided(&qkv[(hq + hk) * hd..], 1, n, hk, hd, st).unwrap(),
        &AttentionOptions {
            causal: true,
            scale: None,
        },
    );
    let att = to32(att);
    let proj = mm(&att, hq * hd, &w.w_o, d, Epilogue::None);
    let x1: Vec<f32> = x.iter().zip(&proj).map(|(a, b)| a + b).collect();
    let h2 = to32(rms_norm(&x1, &w.ffn_norm, dm.eps));
    let up = mm(&h2, d, &w.w_up, ffn, Epilogue::None);
    let gate = mm(&h2, d, &w.w_gate, ffn, Epilogue::None);
    let g = to32(swiglu(&gate, &up));
    let down = mm(&g, ffn, &w.w_down, d, Epilogue::None);
    x1.iter().zip(&down).map(|(a, b)| a + b).collect()
}

/// An IEEE half's value, from its definition: `(−1)^s · 2^(e−15) · (1 +
/// m/1024)` for `0 < e < 31`, `(−1)^s · 2^−14 · m/1024` for `e = 0`, ±∞ or
/// NaN for `e = 31`.
pub fn f16_value(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let e = i32::from((bits >> 10) & 0x1f);
    let m = f64::from(bits & 0x3ff);
    sign * match e {
        0 => 2f64.powi(-14) * m / 1024.0,
        31 if m == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => 2f64.powi(e - 15) * (1.0 + m / 1024.0),
    }
}

/// A bfloat16's value: the f32 whose top 16 bits these are.
pub fn bf16_value(bits: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(bits) << 16))
}

/// The 32 values of a Q8_0 block: `d · qs[e]`.
pub fn q8_0_values(b: &crate::quant::BlockQ8_0) -> [f64; 32] {
    let d = f16_value(b.d.to_bits());
    core::array::from_fn(|e| d * f64::from(b.qs[e]))
}

/// The 32 values of a Q4_0 block: `d · (nib − 8)`, elements 0–15 in the low
/// nibbles of bytes 0–15, elements 16–31 in their high nibbles.
pub fn q4_0_values(b: &crate::quant::BlockQ4_0) -> [f64; 32] {
    let d = f16_value(b.d.to_bits());
    core::array::from_fn(|e| {
        let nib = if e < 16 {
            b.qs[e] & 0x0f
        } else {
            b.qs[e - 16] >> 4
        };
        d * (f64::from(nib) - 8.0)
    })
}

/// The 32 values of a Q4_1 block: `d · nib + m` rounded once to f32 (as
/// llama.cpp computes it), nibbles ordered as Q4_0's.
pub fn q4_1_values(b: &crate::quant::BlockQ4_1) -> [f64; 32] {
    let (d, m) = (f16_value(b.d.to_bits()), f16_value(b.m.to_bits()));
    core::array::from_fn(|e| {
        let nib = if e < 16 {
            b.qs[e] & 0x0f
        } else {
            b.qs[e - 16] >> 4
        };
        // d·nib is exact in f32; the sum rounds once.
        f64::from((d * f64::from(nib)) as f32 + m as f32)
    })
}

/// The weights as a row-major `[k, n]` f32 matrix (every value is exact in
/// f32), decoded here from the formats' definitions.
pub fn weights_f32(w: &crate::quant::WeightsRef<'_>) -> Vec<f32> {
    use crate::quant::{Data, WeightLayout};
    let (k, n) = (w.k(), w.n());
    let mut out = vec![0.0f32; k * n];
    let idx = |l: WeightLayout, p: usize, j: usize| match l {
        WeightLayout::InOut => p * n + j,
        WeightLayout::OutIn => j * k + p,
    };
    for p in 0..k {
        for j in 0..n {
            out[p * n + j] = match w.data {
                Data::F32(b) => b.get(p, j).unwrap_or(f32::NAN) as f64,
                Data::Bf16(d, l) => bf16_value(d[idx(l, p, j)].to_bits()),
                Data::F16(d, l) => f16_value(d[idx(l, p, j)].to_bits()),
                Data::Q8_0(b) => q8_0_values(&b[j * (k / 32) + p / 32])[p % 32],
                Data::Q4_0(b) => q4_0_values(&b[j * (k / 32) + p / 32])[p % 32],
                Data::Q4_1(b) => q4_1_values(&b[j * (k / 32) + p / 32])[p % 32],
            } as f32;
        }
    }
    out
}

/// [`matmul`] with weights in any format: the f64 product with the
/// weights' exact values ([`weights_f32`]).
///
/// # Panics
/// As [`matmul`].
pub fn matmul_weights(
    c: Option<MatRef<'_>>,
    a: MatRef<'_>,
    w: &crate::quant::WeightsRef<'_>,
    alpha: f32,
    beta: f32,
    epilogue: Epilogue<'_>,
) -> Vec<f64> {
    let b = weights_f32(w);
    let bv = MatRef::row_major(&b, w.k(), w.n()).expect("k·n elements");
    matmul(c, a, bv, alpha, beta, epilogue)
}

/// The int8 mode of [`crate::matmul_weights_int8`] in f64: each row of A
/// quantized per 32 along k by [`crate::quant::quantize_activations`] (the
/// kernel's own quantizer), then `Σ_blocks d_a·d_w·Σ q_a·q_w` with the
/// weights' integers (`q`, `q − 8` for Q4_0, the nibble for Q4_1) and
/// scales, plus `m_w·d_a·Σ q_a` for Q4_1, then the epilogue as [`matmul`].
/// Also returns, per element, `Σ_blocks (|d_a·d_w|·Σ |q_a·q_w| + |m_w·d_a|·
/// Σ |q_a|)` (the magnitude the kernel's rounding bound scales with).
///
/// # Panics
/// As [`matmul`]; on f32/bf16/f16 weights or activations that do not
/// quantize (NaN, ∞).
pub fn matmul_weights_int8(
    c: Option<MatRef<'_>>,
    a: MatRef<'_>,
    w: &crate::quant::WeightsRef<'_>,
    alpha: f32,
    beta: f32,
    epilogue: Epilogue<'_>,
) -> (Vec<f64>, Vec<f64>) {
    use crate::quant::{Data, QK};
    let (m, k, n) = (a.rows(), a.cols(), w.n());
    assert_eq!(w.k(), k, "w rows");
    let nb = k / QK;
    let mut qa = vec![0i8; m * k];
    let mut da = vec![0f32; m * nb];
    for i in 0..m {
        let row: Vec<f32> = (0..k).map(|p| a.get(i, p).unwrap()).collect();
        crate::quant::quantize_activations(
            &row,
            &mut qa[i * k..(i + 1) * k],
            &mut da[i * nb..(i + 1) * nb],
        )
        .expect("finite activations");
    }
    // The weights' integers and scales, [n][k] and [n][nb]; Q4_1's m.
    let mut mw = vec![0f64; n * nb];
    let (qw, dw): (Vec<i32>, Vec<f64>) = match w.data {
        Data::Q8_0(b) => (
            b.iter()
                .flat_map(|blk| blk.qs.iter().map(|&q| q as i32))
                .collect(),
            b.iter().map(|blk| f16_value(blk.d.to_bits())).collect(),
        ),
        Data::Q4_0(b) => (
            b.iter().flat_map(q4_0_values_raw).collect(),
            b.iter().map(|blk| f16_value(blk.d.to_bits())).collect(),
        ),
        Data::Q4_1(b) => {
            mw = b.iter().map(|blk| f16_value(blk.m.to_bits())).collect();
            (
                b.iter()
                    .flat_map(|blk| {
                        (0..QK).map(|e| {
                            let byte = blk.qs[e % 16];
                            (if e < 16 { byte & 15 } else { byte >> 4 }) as i32
                        })
                    })
                    .collect(),
                b.iter().map(|blk| f16_value(blk.d.to_bits())).collect(),
            )
        }
        _ => panic!("the int8 mode takes Q8_0, Q4_0 or Q4_1 weights"),
    };
    let term = |i: usize, j: usize, abs: bool| -> f64 {
        (0..nb)
            .map(|b| {
                let isum: i64 = (0..QK)
                    .map(|t| {
                        let v = qa[i * k + b * QK + t] as i64 * qw[j * k + b * QK + t] as i64;
                        if abs { v.abs() } else { v }
                    })
                    .sum();
                let s = da[i * nb + b] as f64 * dw[j * nb + b];
                let qs = &qa[i * k + b * QK..i * k + (b + 1) * QK];
                let ms = da[i * nb + b] as f64 * mw[j * nb + b];
                if abs {
                    let qabs: i64 = qs.iter().map(|&q| (q as i64).abs()).sum();
                    (s * isum as f64).abs() + (ms * qabs as f64).abs()
                } else {
                    let qsum: i64 = qs.iter().map(|&q| q as i64).sum();
                    s * isum as f64 + ms * qsum as f64
                }
            })
            .sum()
    };
    let out = with_epilogue(
        c,
        (m, k, n),
        |i, j| term(i, j, false),
        alpha,
        beta,
        epilogue,
    );
    let mag = (0..m * n)
        .map(|e| term(e / n.max(1), e % n.max(1), true))
        .collect();
    (out, mag)
}

/// A Q4_0 block's integers `q − 8`, in element order.
fn q4_0_values_raw(b: &crate::quant::BlockQ4_0) -> [i32; 32] {
    core::array::from_fn(|e| {
        let byte = b.qs[e % 16];
        (if e < 16 { byte & 15 } else { byte >> 4 }) as i32 - 8
    })
}
