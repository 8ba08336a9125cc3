//! One Llama-family layer run from this crate's kernels with deterministic
//! random weights: prefill N tokens, then T decode steps against the KV
//! cache. Two shapes:
//!
//! - `smollm2-135m`: d 576, 9 query / 3 KV heads of 64, MLP 1536, RMS eps
//!   1e-5, RoPE θ 100 000, half-split pairs;
//! - `llama-3.2-1b`: d 2048, 32 query / 8 KV heads of 64, MLP 8192, θ 500 000
//!   with Llama 3 frequency scaling.
//!
//! Prints the time per stage (norms, QKV, RoPE, attention, out proj,
//! gate + up + SwiGLU, down), tokens/s for prefill and decode, each
//! matmul's GFLOP/s against this core's FMA peak, the layer's total against
//! the same kernels timed alone, and the largest difference from the f64
//! reference composition on the first tokens. `--sweep` repeats the prefill
//! for N = 128 … 4096 and writes the per-stage shares as an SVG.
//!
//! `--weights f32,bf16,f16,q8_0,q4_0` (the default: all five) then runs the
//! decode again with the layer's matrices in each format and prints
//! tokens/s, the weight bytes per token and the speed-up over f32.
//!
//! `cargo run --release --example llama_layer -- [--config smollm2-135m|llama-3.2-1b] [--tokens 512] [--decode 32] [--threads 1] [--weights f32,q4_0] [--sweep] [--svg llama_layer_sweep.svg]`

#[path = "common/chart.rs"]
mod chart;

use std::time::{Duration, Instant};
use transformer_kernels::isa::fma_peak_gflops;
use transformer_kernels::{
    AttentionOptions, Config, Epilogue, HeadsMut, HeadsRef, Isa, LlamaDims, LlamaLayer,
    LlamaStageTimes, LlamaWeights, MatMut, MatRef, Parallelism, Positions, RopeTable, WeightFormat,
    WeightLayout, attention, matmul, reference, rms_norm,
};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn input(n: usize, d: usize) -> Vec<f32> {
    (0..n * d)
        .map(|i| ((i * 2654435761) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn stages(t: &LlamaStageTimes) -> [(&'static str, Duration); 7] {
    [
        ("RMS norms (2)", t.norms),
        ("QKV projection", t.qkv),
        ("RoPE (Q and K)", t.rope),
        ("attention", t.attention),
        ("out proj + residual", t.out_proj),
        ("gate + up + SwiGLU", t.gate_up),
        ("down + residual", t.down),
    ]
}

fn prefill_times(layer: &mut LlamaLayer, n: usize, cfg: &Config, reps: usize) -> LlamaStageTimes {
    let d = layer.weights().dims.d;
    let x0 = input(n, d);
    let mut best: Option<LlamaStageTimes> = None;
    for _ in 0..reps {
        let mut x = x0.clone();
        let mut t = LlamaStageTimes::default();
        layer.forward(&mut x, None, cfg, Some(&mut t)).unwrap();
        if best.is_none_or(|b| t.total() < b.total()) {
            best = Some(t);
        }
    }
    best.unwrap()
}

/// `[k, nn]` weight `wt` stored in `layout`'s orientation, as a view.
fn wview(layout: WeightLayout, wt: &[f32], k: usize, nn: usize) -> MatRef<'_> {
    match layout {
        WeightLayout::InOut => MatRef::row_major(wt, k, nn).unwrap(),
        WeightLayout::OutIn => MatRef::row_major(wt, nn, k).unwrap().t(),
    }
}

/// The layer's kernels on the same shapes, each timed alone (best of
/// `reps`), with the weights in the same orientation.
fn kernel_times(w: &LlamaWeights, n: usize, cfg: &Config, reps: usize) -> LlamaStageTimes {
    let dm = w.dims;
    let (d, hd, f, hq, hk, wq) = (
        dm.d,
        dm.head_dim,
        dm.ffn,
        dm.heads,
        dm.kv_heads,
        dm.qkv_width(),
    );
    let x = input(n, d);
    let mut res = x.clone();
    let (mut h, mut qkv, mut att, mut up, mut gate) = (
        vec![0.0; n * d],
        vec![0.0; n * wq],
        vec![0.0; n * hq * hd],
        vec![0.0; n * f],
        vec![0.0; n * f],
    );
    let best = |f: &mut dyn FnMut()| {
        (0..reps)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed()
            })
            .min()
            .unwrap()
    };
    let lay = w.layout;
    let (w_qkv, w_o, w_up, w_gate, w_down) = (&w.w_qkv, &w.w_o, &w.w_up, &w.w_gate, &w.w_down);
    let norm = best(&mut || rms_norm(&x, &w.attn_norm, &mut h, dm.eps, cfg).unwrap());
    let mm = |c: &mut [f32],
              a: &[f32],
              b: MatRef,
              (m, k, nn): (usize, usize, usize),
              beta: f32,
              ep: Epilogue| {
        matmul(
            MatMut::row_major(c, m, nn).unwrap(),
            MatRef::row_major(a, m, k).unwrap(),
            b,
            1.0,
            beta,
            ep,
            cfg,
        )
        .unwrap()
    };
    let qkv_t = best(&mut || {
        mm(
            &mut qkv,
            &h,
            wview(lay, w_qkv, d, wq),
            (n, d, wq),
            0.0,
            Epilogue::None,
        )
    });
    let table = RopeTable::new(&dm.rope, n).unwrap();
    let st = [n * wq, wq, hd];
    let rope_t = best(&mut || {
        let q = HeadsMut::strided(&mut qkv, 1, n, hq, hd, st).unwrap();
        table.apply(q, Positions::Start(0), cfg).unwrap();
        let k = HeadsMut::strided(&mut qkv[hq * hd..], 1, n, hk, hd, st).unwrap();
        table.apply(k, Positions::Start(0), cfg).unwrap();
    });
    let attn_t = best(&mut || {
        let q = HeadsRef::strided(&qkv, 1, n, hq, hd, st).unwrap();
        let k = HeadsRef::strided(&qkv[hq * hd..], 1, n, hk, hd, st).unwrap();
        let v = HeadsRef::strided(&qkv[(hq + hk) * hd..], 1, n, hk, hd, st).unwrap();
        let opts = AttentionOptions {
            causal: true,
            scale: None,
        };
        let out = HeadsMut::bshd(&mut att, 1, n, hq, hd).unwrap();
        attention(out, q, k, v, &opts, cfg).unwrap()
    });
    let out_t = best(&mut || {
        mm(
            &mut res,
            &att,
            wview(lay, w_o, hq * hd, d),
            (n, hq * hd, d),
            1.0,
            Epilogue::None,
        )
    });
    let gate_t = best(&mut || {
        mm(
            &mut up,
            &h,
            wview(lay, w_up, d, f),
            (n, d, f),
            0.0,
            Epilogue::None,
        );
        let u = MatRef::row_major(&up, n, f).unwrap();
        mm(
            &mut gate,
            &h,
            wview(lay, w_gate, d, f),
            (n, d, f),
            0.0,
            Epilogue::SiluMul(u),
        );
    });
    let down_t = best(&mut || {
        mm(
            &mut res,
            &gate,
            wview(lay, w_down, f, d),
            (n, f, d),
            1.0,
            Epilogue::None,
        )
    });
    LlamaStageTimes {
        norms: norm * 2,
        qkv: qkv_t,
        rope: rope_t,
        attention: attn_t,
        out_proj: out_t,
        gate_up: gate_t,
        down: down_t,
    }
}

fn main() {
    let which: String = arg("--config", "smollm2-135m".to_string());
    let dims = match which.as_str() {
        "smollm2-135m" => LlamaDims::smollm2_135m(),
        "llama-3.2-1b" => LlamaDims::llama_3_2_1b(),
        other => {
            eprintln!("unknown --config {other}: smollm2-135m or llama-3.2-1b");
            std::process::exit(2);
        }
    };
    let n: usize = arg("--tokens", 512);
    let steps: usize = arg("--decode", 32);
    let threads: usize = arg("--threads", 1);
    let cfg = Config {
        isa: Isa::detect(),
        parallelism: if threads > 1 {
            Parallelism::Threads(threads)
        } else {
            Parallelism::Serial
        },
    };
    let (d, hd, f) = (dims.d, dims.head_dim, dims.ffn);
    let (hq, hk) = (dims.heads, dims.kv_heads);
    // PyTorch / GGUF orientation: [out, in], read through transposed views.
    let w = LlamaWeights::random(dims, WeightLayout::OutIn, 2024);
    let max_pos = n.max(4096) + steps;
    let mut layer = LlamaLayer::new(w.clone(), max_pos).unwrap();
    let peak = fma_peak_gflops(cfg.isa, 2_000_000).unwrap() * threads as f64;
    println!(
        "{which} layer (d={d}, {hq} query / {hk} KV heads of {hd}, MLP {f}, RoPE θ {}, {:?}), weights [out, in], isa {}, {threads} thread(s); FMA peak here ≈ {peak:.0} GFLOP/s",
        dims.rope.theta, dims.rope.scaling, cfg.isa
    );

    let probe = n.clamp(1, 4);
    let x0 = input(probe, d);
    let want = reference::llama_layer(&w, &x0, probe);
    let mut x = x0.clone();
    layer.forward(&mut x, None, &cfg, None).unwrap();
    let err = x
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("max |layer − reference| on the first {probe} tokens: {err:.2e}");

    let t = prefill_times(&mut layer, n, &cfg, 3);
    let k = kernel_times(&w, n, &cfg, 3);
    let total = t.total();
    println!(
        "\nprefill of {n} tokens: {:.2} ms, {:.0} tokens/s",
        ms(total),
        n as f64 / total.as_secs_f64()
    );
    println!(
        "{:<22} {:>9} {:>7} {:>9} {:>7} {:>12}",
        "stage", "ms", "share", "GFLOP/s", "% peak", "alone (ms)"
    );
    let flops = [
        0.0,
        2.0 * (n * d * dims.qkv_width()) as f64,
        0.0,
        2.0 * (n * n * hq * hd) as f64, // causal: half of 4·n²·H·D
        2.0 * (n * hq * hd * d) as f64,
        4.0 * (n * d * f) as f64,
        2.0 * (n * f * d) as f64,
    ];
    for (((name, dt), fl), (_, alone)) in stages(&t).iter().zip(flops).zip(stages(&k)) {
        let g = fl / dt.as_secs_f64() / 1e9;
        let (gs, pct) = if fl > 0.0 {
            (format!("{g:.1}"), format!("{:.0}%", 100.0 * g / peak))
        } else {
            (String::new(), String::new())
        };
        println!(
            "{name:<22} {:>9.3} {:>6.1}% {gs:>9} {pct:>7} {:>12.3}",
            ms(*dt),
            100.0 * dt.as_secs_f64() / total.as_secs_f64(),
            ms(alone)
        );
    }
    println!(
        "layer total {:.3} ms vs the kernels alone {:.3} ms: glue overhead {:+.1}%; RoPE {:.2}% of the layer",
        ms(total),
        ms(k.total()),
        100.0 * (total.as_secs_f64() / k.total().as_secs_f64() - 1.0),
        100.0 * t.rope.as_secs_f64() / total.as_secs_f64()
    );

    let mut cache = layer.new_cache(n + steps);
    let mut x = input(n, d);
    layer.forward(&mut x, Some(&mut cache), &cfg, None).unwrap();
    let mut dt = LlamaStageTimes::default();
    for _ in 0..steps {
        let mut tok = input(1, d);
        layer
            .forward(&mut tok, Some(&mut cache), &cfg, Some(&mut dt))
            .unwrap();
    }
    if steps > 0 {
        let per = dt.total().as_secs_f64() / steps as f64;
        println!(
            "\ndecode: {steps} steps after {n} tokens: {:.3} ms/token, {:.0} tokens/s, attention share {:.1}%, RoPE share {:.2}%",
            per * 1e3,
            1.0 / per,
            100.0 * dt.attention.as_secs_f64() / dt.total().as_secs_f64(),
            100.0 * dt.rope.as_secs_f64() / dt.total().as_secs_f64()
        );
    }

    let formats: String = arg("--weights", "f32,bf16,f16,q8_0,q4_0".to_string());
    let formats: Vec<WeightFormat> = match formats.split(',').map(str::parse).collect() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("--weights: {e}");
            std::process::exit(2);
        }
    };
    if steps > 0 && !formats.is_empty() {
        let ctx = n.min(128);
        println!(
            "\ndecode by weight format ({steps} steps after {ctx} tokens; the layer's weights stay in this CPU's L3 between tokens):"
        );
        println!(
            "{:<6} {:>10} {:>10} {:>12} {:>9} {:>12}",
            "format", "ms/token", "tokens/s", "weight MB", "vs f32", "max |err|"
        );
        let mut f32_per = None;
        for fmt in formats {
            let mut lf =
                match LlamaLayer::new(w.clone(), max_pos).and_then(|l| l.with_weight_format(fmt)) {
                    Ok(l) => l,
                    Err(e) => {
                        println!("{fmt:?}: {e}");
                        continue;
                    }
                };
            // Accuracy against the reference on the weights this format holds.
            let eff = lf.effective_weights();
            let want = reference::llama_layer(&eff, &x0, probe);
            let mut xp = x0.clone();
            lf.forward(&mut xp, None, &cfg, None).unwrap();
            let err = xp
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let mut cache = lf.new_cache(ctx + steps);
            let mut x = input(ctx, d);
            lf.forward(&mut x, Some(&mut cache), &cfg, None).unwrap();
            let s = Instant::now();
            for _ in 0..steps {
                let mut tok = input(1, d);
                lf.forward(&mut tok, Some(&mut cache), &cfg, None).unwrap();
            }
            let per = s.elapsed().as_secs_f64() / steps as f64;
            let wn = d * dims.qkv_width() + hq * hd * d + 3 * d * f;
            let base = *f32_per.get_or_insert(if fmt == WeightFormat::F32 {
                per
            } else {
                f64::NAN
            });
            println!(
                "{:<6} {:>10.3} {:>10.0} {:>12.2} {:>8.2}× {:>12.2e}",
                format!("{fmt:?}"),
                per * 1e3,
                1.0 / per,
                fmt.bytes(wn) as f64 / 1e6,
                base / per,
                err
            );
        }
    }

    if flag("--sweep") {
        let svg: String = arg("--svg", "llama_layer_sweep.svg".to_string());
        println!("\nsweep (prefill, ms per stage):");
        println!(
            "{:>6} {:>7} {:>8} {:>7} {:>9} {:>8} {:>9} {:>8} {:>9} {:>7}",
            "N", "norms", "QKV", "RoPE", "attention", "out", "gate+up", "down", "total", "attn %"
        );
        let mut rows = Vec::new();
        let mut nn = 128;
        while nn <= 4096 {
            let t = prefill_times(&mut layer, nn, &cfg, if nn <= 1024 { 3 } else { 1 });
            println!(
                "{nn:>6} {:>7.2} {:>8.2} {:>7.2} {:>9.2} {:>8.2} {:>9.2} {:>8.2} {:>9.2} {:>6.1}%",
                ms(t.norms),
                ms(t.qkv),
                ms(t.rope),
                ms(t.attention),
                ms(t.out_proj),
                ms(t.gate_up),
                ms(t.down),
                ms(t.total()),
                100.0 * t.attention.as_secs_f64() / t.total().as_secs_f64()
            );
            rows.push((nn, t));
            nn *= 2;
        }
        std::fs::write(&svg, chart(&which, &rows)).expect("write svg");
        println!("wrote {svg}");
    }
}

/// Stacked bars: share of each stage per N.
fn chart(title: &str, rows: &[(usize, LlamaStageTimes)]) -> String {
    let names: Vec<&str> = stages(&rows[0].1).iter().map(|(n, _)| *n).collect();
    let rows: Vec<(usize, Vec<Duration>)> = rows
        .iter()
        .map(|(n, t)| (*n, stages(t).iter().map(|(_, d)| *d).collect()))
        .collect();
    chart::stacked_shares(&format!("{title} layer prefill"), &names, &rows)
}
