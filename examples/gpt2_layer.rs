//! One GPT-2-small layer (d = 768, 12 heads of 64, MLP 3072) run from this
//! crate's kernels with deterministic random weights: prefill N tokens, then
//! T decode steps against the KV cache.
//!
//! Prints the time per stage, tokens/s for prefill and decode, the share of
//! time spent in attention, each matmul's GFLOP/s against this core's FMA
//! peak, the layer's total against the sum of the same kernels timed alone
//! (the glue's overhead), and the largest difference from the f64 reference
//! composition on the first tokens. `--sweep` repeats the prefill for
//! N = 128 … 4096 and writes the per-stage breakdown as an SVG stacked bar
//! chart, so the point where attention overtakes the matmuls is visible.
//!
//! `--weights f32,bf16,f16,q8_0,q4_0` (the default: all five) then runs the
//! decode again with the layer's matrices in each format and prints
//! tokens/s, the weight bytes per token and the speed-up over f32.
//!
//! `cargo run --release --example gpt2_layer -- [--tokens 512] [--decode 32] [--threads 1] [--weights f32,q4_0] [--sweep] [--svg gpt2_layer_sweep.svg]`

#[path = "common/chart.rs"]
mod chart;

use std::io::Write;
use std::time::{Duration, Instant};
use transformer_kernels::isa::fma_peak_gflops;
use transformer_kernels::{
    AttentionOptions, Config, Epilogue, GeluKind, Gpt2Layer, Gpt2Weights, HeadsMut, HeadsRef, Isa,
    KvCache, MatMut, MatRef, Parallelism, StageTimes, WeightFormat, attention, layer_norm, matmul,
    reference,
};

const D: usize = 768;
const H: usize = 12;
const MLP: usize = 3072;

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

fn input(n: usize) -> Vec<f32> {
    (0..n * D)
        .map(|i| ((i * 2654435761) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// Progress on stderr, overwritten in place, once a run passes a second.
struct Progress {
    start: Instant,
    shown: bool,
}
impl Progress {
    fn new() -> Self {
        Progress {
            start: Instant::now(),
            shown: false,
        }
    }
    fn say(&mut self, what: &str) {
        if self.start.elapsed() > Duration::from_secs(1) {
            eprint!(
                "\r  {what} ({:.1} s)        ",
                self.start.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
            self.shown = true;
        }
    }
    fn done(&self) {
        if self.shown {
            eprint!("\r{:60}\r", "");
        }
    }
}

fn best_of<F: FnMut() -> StageTimes>(reps: usize, mut f: F) -> StageTimes {
    let mut best: Option<StageTimes> = None;
    for _ in 0..reps {
        let t = f();
        if best.is_none_or(|b| t.total() < b.total()) {
            best = Some(t);
        }
    }
    best.unwrap()
}

fn prefill_times(
    layer: &mut Gpt2Layer,
    n: usize,
    cfg: &Config,
    reps: usize,
    p: &mut Progress,
) -> StageTimes {
    let x0 = input(n);
    best_of(reps, || {
        p.say(&format!("prefill N = {n}"));
        let mut x = x0.clone();
        let mut t = StageTimes::default();
        layer.forward(&mut x, None, cfg, Some(&mut t)).unwrap();
        t
    })
}

/// The same kernels on the same shapes, each timed alone (best of `reps`).
fn kernel_times(w: &Gpt2Weights, n: usize, cfg: &Config, reps: usize) -> StageTimes {
    let x = input(n);
    let (mut h, mut qkv, mut att, mut up) = (
        vec![0.0; n * D],
        vec![0.0; n * 3 * D],
        vec![0.0; n * D],
        vec![0.0; n * MLP],
    );
    let mut res = x.clone();
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
    let ln = best(&mut || layer_norm(&x, &w.ln1_g, &w.ln1_b, &mut h, w.eps, cfg).unwrap());
    let mm = |c: &mut [f32],
              a: &[f32],
              b: &[f32],
              (m, k, nn): (usize, usize, usize),
              beta: f32,
              ep: Epilogue| {
        matmul(
            MatMut::row_major(c, m, nn).unwrap(),
            MatRef::row_major(a, m, k).unwrap(),
            MatRef::row_major(b, k, nn).unwrap(),
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
            &w.w_qkv,
            (n, D, 3 * D),
            0.0,
            Epilogue::Bias(&w.b_qkv),
        )
    });
    let st = [n * 3 * D, 3 * D, D / H];
    let attn_t = best(&mut || {
        let q = HeadsRef::strided(&qkv, 1, n, H, D / H, st).unwrap();
        let k = HeadsRef::strided(&qkv[D..], 1, n, H, D / H, st).unwrap();
        let v = HeadsRef::strided(&qkv[2 * D..], 1, n, H, D / H, st).unwrap();
        attention(
            HeadsMut::bshd(&mut att, 1, n, H, D / H).unwrap(),
            q,
            k,
            v,
            &AttentionOptions {
                causal: true,
                scale: None,
            },
            cfg,
        )
        .unwrap()
    });
    let out_t = best(&mut || {
        mm(
            &mut res,
            &att,
            &w.w_o,
            (n, D, D),
            1.0,
            Epilogue::Bias(&w.b_o),
        )
    });
    let up_t = best(&mut || {
        mm(
            &mut up,
            &h,
            &w.w_up,
            (n, D, MLP),
            0.0,
            Epilogue::BiasGelu(&w.b_up, GeluKind::Tanh),
        )
    });
    let down_t = best(&mut || {
        mm(
            &mut res,
            &up,
            &w.w_down,
            (n, MLP, D),
            1.0,
            Epilogue::Bias(&w.b_down),
        )
    });
    StageTimes {
        ln: ln * 2,
        qkv: qkv_t,
        attention: attn_t,
        out_proj: out_t,
        mlp_up: up_t,
        mlp_down: down_t,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn stages(t: &StageTimes) -> [(&'static str, Duration); 6] {
    [
        ("layer norms (2)", t.ln),
        ("QKV projection", t.qkv),
        ("attention", t.attention),
        ("out proj + residual", t.out_proj),
        ("MLP up + GELU", t.mlp_up),
        ("MLP down + residual", t.mlp_down),
    ]
}

fn main() {
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
    let w = Gpt2Weights::random(D, H, MLP, 2024);
    let mut layer = Gpt2Layer::new(w.clone()).unwrap();
    let peak = fma_peak_gflops(cfg.isa, 2_000_000).unwrap() * threads as f64;
    println!(
        "GPT-2-small layer (d={D}, {H} heads of {}, MLP {MLP}), isa {}, {threads} thread(s); FMA peak here ≈ {peak:.0} GFLOP/s",
        D / H,
        cfg.isa
    );

    // Accuracy: the first tokens against the f64 reference composition
    // (causal, so they do not depend on later tokens).
    let probe = n.clamp(1, 4);
    let x0 = input(probe);
    let want = reference::gpt2_layer(&w, &x0, probe);
    let mut x = x0.clone();
    layer.forward(&mut x, None, &cfg, None).unwrap();
    let err = x
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("max |layer − reference| on the first {probe} tokens: {err:.2e}");

    let mut p = Progress::new();
    let t = prefill_times(&mut layer, n, &cfg, 3, &mut p);
    let k = kernel_times(&w, n, &cfg, 3);
    p.done();
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
        2.0 * (n * D * 3 * D) as f64,
        2.0 * (n * n * D) as f64,
        2.0 * (n * D * D) as f64,
        2.0 * (n * D * MLP) as f64,
        2.0 * (n * MLP * D) as f64,
    ];
    for (((name, dt), f), (_, alone)) in stages(&t).iter().zip(flops).zip(stages(&k)) {
        let g = if f > 0.0 {
            f / dt.as_secs_f64() / 1e9
        } else {
            0.0
        };
        let pct = if f > 0.0 {
            format!("{:.0}%", 100.0 * g / peak)
        } else {
            "".into()
        };
        let gs = if f > 0.0 {
            format!("{g:.1}")
        } else {
            "".into()
        };
        println!(
            "{name:<22} {:>9.3} {:>6.1}% {gs:>9} {pct:>7} {:>12.3}",
            ms(*dt),
            100.0 * dt.as_secs_f64() / total.as_secs_f64(),
            ms(alone)
        );
    }
    println!(
        "layer total {:.3} ms vs the kernels alone {:.3} ms: glue overhead {:+.1}%",
        ms(total),
        ms(k.total()),
        100.0 * (total.as_secs_f64() / k.total().as_secs_f64() - 1.0)
    );
    println!(
        "attention share: {:.1}%",
        100.0 * t.attention.as_secs_f64() / total.as_secs_f64()
    );

    // Decode: prefill into a cache, then one token at a time.
    let mut cache = KvCache::new(n + steps, H, D / H);
    let mut x = input(n);
    layer.forward(&mut x, Some(&mut cache), &cfg, None).unwrap();
    let mut dt = StageTimes::default();
    let mut p = Progress::new();
    for s in 0..steps {
        p.say(&format!("decode step {s}/{steps}"));
        let mut tok = input(1);
        layer
            .forward(&mut tok, Some(&mut cache), &cfg, Some(&mut dt))
            .unwrap();
    }
    p.done();
    if steps > 0 {
        let per = dt.total().as_secs_f64() / steps as f64;
        println!(
            "\ndecode: {steps} steps after {n} tokens: {:.3} ms/token, {:.0} tokens/s, attention share {:.1}%",
            per * 1e3,
            1.0 / per,
            100.0 * dt.attention.as_secs_f64() / dt.total().as_secs_f64()
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
            let mut lf = match Gpt2Layer::new(w.clone()).and_then(|l| l.with_weight_format(fmt)) {
                Ok(l) => l,
                Err(e) => {
                    println!("{fmt:?}: {e}");
                    continue;
                }
            };
            // Accuracy against the reference on the weights this format holds.
            let want = reference::gpt2_layer(&lf.effective_weights(), &x0, probe);
            let mut xp = x0.clone();
            lf.forward(&mut xp, None, &cfg, None).unwrap();
            let err = xp
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let mut cache = KvCache::new(ctx + steps, H, D / H);
            let mut x = input(ctx);
            lf.forward(&mut x, Some(&mut cache), &cfg, None).unwrap();
            let s = Instant::now();
            for _ in 0..steps {
                let mut tok = input(1);
                lf.forward(&mut tok, Some(&mut cache), &cfg, None).unwrap();
            }
            let per = s.elapsed().as_secs_f64() / steps as f64;
            let wn = D * 3 * D + D * D + 2 * D * MLP;
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
        let svg: String = arg("--svg", "gpt2_layer_sweep.svg".to_string());
        println!("\nsweep (prefill, ms per stage):");
        println!(
            "{:>6} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>7}",
            "N", "LN", "QKV", "attention", "out", "MLP up", "MLP down", "total", "attn %"
        );
        let mut rows = Vec::new();
        let mut nn = 128;
        let mut p = Progress::new();
        while nn <= 4096 {
            let t = prefill_times(&mut layer, nn, &cfg, if nn <= 1024 { 3 } else { 1 }, &mut p);
            p.done();
            println!(
                "{nn:>6} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>6.1}%",
                ms(t.ln),
                ms(t.qkv),
                ms(t.attention),
                ms(t.out_proj),
                ms(t.mlp_up),
                ms(t.mlp_down),
                ms(t.total()),
                100.0 * t.attention.as_secs_f64() / t.total().as_secs_f64()
            );
            rows.push((nn, t));
            nn *= 2;
        }
        std::fs::write(&svg, chart(&rows)).expect("write svg");
        println!("wrote {svg}");
    }
}

/// Stacked bars: share of each stage per N.
fn chart(rows: &[(usize, StageTimes)]) -> String {
    let names: Vec<&str> = stages(&rows[0].1).iter().map(|(n, _)| *n).collect();
    let rows: Vec<(usize, Vec<Duration>)> = rows
        .iter()
        .map(|(n, t)| (*n, stages(t).iter().map(|(_, d)| *d).collect()))
        .collect();
    chart::stacked_shares("GPT-2-small layer prefill", &names, &rows)
}
