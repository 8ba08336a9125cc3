//! The quadratic cost of attention at a glance: causal prefill, B = 1,
//! H = 12, D = 64 (GPT-2 small) by default, for N = 128 … 8192, single
//! thread by default. Prints N, time, time/N², useful GFLOP/s (2·N²·D·H
//! causal, 4·N²·D·H with `--full`), % of the
//! FMA peak measured here, and the peak extra heap memory of one call
//! (counted by this program's allocator), then writes the same as a
//! log–log SVG plot.
//!
//! `cargo run --release --example attention_scaling -- [--min-n 128] [--max-n 8192] [--heads 12] [--dim 64] [--full] [--threads 1] [--svg attention_scaling.svg]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use transformer_kernels::isa::fma_peak_gflops;
use transformer_kernels::{
    AttentionOptions, Config, HeadsMut, HeadsRef, Isa, Parallelism, attention,
};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(p, l) };
        CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

struct Row {
    n: usize,
    ms: f64,
    gflops: f64,
    peak_bytes: usize,
}

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let max_n: usize = arg("--max-n", 8192);
    let threads: usize = arg("--threads", 1);
    let svg: String = arg("--svg", "attention_scaling.svg".to_string());
    let (h, d): (usize, usize) = (arg("--heads", 12), arg("--dim", 64));
    let causal = !std::env::args().any(|a| a == "--full");
    let min_n: usize = arg("--min-n", 128);
    let cfg = Config {
        isa: Isa::detect(),
        parallelism: if threads > 1 {
            Parallelism::Threads(threads)
        } else {
            Parallelism::Serial
        },
    };
    let peak = fma_peak_gflops(cfg.isa, 2_000_000).unwrap() * threads as f64;
    println!(
        "{} attention, B=1 H={h} D={d}, {} thread(s), isa {}; FMA peak here ≈ {peak:.0} GFLOP/s",
        if causal { "causal" } else { "non-causal" },
        threads,
        cfg.isa
    );
    println!(
        "{:>6} {:>11} {:>14} {:>9} {:>8} {:>14}",
        "N", "time ms", "ns / N²", "GFLOP/s", "% peak", "peak extra B"
    );
    let opts = AttentionOptions {
        causal,
        scale: None,
    };
    let mut rows = Vec::new();
    let mut n = min_n.max(1);
    while n <= max_n {
        let x: Vec<f32> = (0..n * h * d)
            .map(|i| ((i * 2654435761) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let mut out = vec![0.0f32; n * h * d];
        let r = HeadsRef::bshd(&x, 1, n, h, d).unwrap();
        let reps = if n <= 1024 { 5 } else { 2 };
        let mut best = f64::MAX;
        let mut peak_bytes = 0;
        for _ in 0..reps {
            let base = CURRENT.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            let t = Instant::now();
            attention(
                HeadsMut::bshd(&mut out, 1, n, h, d).unwrap(),
                r,
                r,
                r,
                &opts,
                &cfg,
            )
            .unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            peak_bytes = PEAK.load(Ordering::Relaxed) - base;
        }
        let flops = if causal { 2.0 } else { 4.0 } * (n * n * d * h) as f64;
        let row = Row {
            n,
            ms: best * 1e3,
            gflops: flops / best / 1e9,
            peak_bytes,
        };
        println!(
            "{:>6} {:>11.3} {:>14.3} {:>9.1} {:>7.1}% {:>14}",
            row.n,
            row.ms,
            best * 1e9 / (n * n) as f64,
            row.gflops,
            100.0 * row.gflops / peak,
            row.peak_bytes
        );
        if best > 1.0 {
            eprintln!("  (N = {n} took {best:.1} s)");
        }
        rows.push(row);
        n *= 2;
    }
    std::fs::write(&svg, plot(&rows)).expect("write svg");
    println!("wrote {svg}");
}

/// A log–log plot of time against N, with an N² guide through the last point.
fn plot(rows: &[Row]) -> String {
    let (w, hgt, m) = (640.0, 420.0, 60.0);
    let lx = |n: f64| n.log2();
    let ly = |t: f64| t.log10();
    let (x0, x1) = (lx(rows[0].n as f64), lx(rows.last().unwrap().n as f64));
    let ys: Vec<f64> = rows.iter().map(|r| ly(r.ms)).collect();
    let (y0, y1) = (
        ys.iter().cloned().fold(f64::MAX, f64::min).floor(),
        ys.iter().cloned().fold(f64::MIN, f64::max).ceil(),
    );
    let px = |x: f64| m + (x - x0) / (x1 - x0).max(1e-9) * (w - 2.0 * m);
    let py = |y: f64| hgt - m - (y - y0) / (y1 - y0).max(1e-9) * (hgt - 2.0 * m);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{hgt}' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n<text x='{}' y='20' text-anchor='middle' font-size='14'>causal attention, B=1 H=12 D=64: time vs N (log–log)</text>\n",
        w / 2.0
    );
    s += &format!(
        "<line x1='{m}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n<line x1='{m}' y1='{m}' x2='{m}' y2='{}' stroke='black'/>\n",
        hgt - m,
        w - m,
        hgt - m,
        hgt - m
    );
    for r in rows {
        let x = px(lx(r.n as f64));
        s += &format!(
            "<text x='{x}' y='{}' text-anchor='middle'>{}</text>\n",
            hgt - m + 18.0,
            r.n
        );
    }
    let mut y = y0;
    while y <= y1 + 1e-9 {
        s += &format!(
            "<text x='{}' y='{}' text-anchor='end'>{} ms</text>\n",
            m - 6.0,
            py(y) + 4.0,
            10f64.powf(y)
        );
        s += &format!(
            "<line x1='{m}' y1='{0}' x2='{1}' y2='{0}' stroke='#ddd'/>\n",
            py(y),
            w - m
        );
        y += 1.0;
    }
    // N² guide through the last point.
    let last = rows.last().unwrap();
    let guide: Vec<String> = rows
        .iter()
        .map(|r| {
            let t = last.ms * (r.n as f64 / last.n as f64).powi(2);
            format!("{:.1},{:.1}", px(lx(r.n as f64)), py(ly(t).max(y0)))
        })
        .collect();
    s += &format!(
        "<polyline points='{}' fill='none' stroke='#999' stroke-dasharray='5,4'/>\n",
        guide.join(" ")
    );
    let pts: Vec<String> = rows
        .iter()
        .map(|r| format!("{:.1},{:.1}", px(lx(r.n as f64)), py(ly(r.ms))))
        .collect();
    s += &format!(
        "<polyline points='{}' fill='none' stroke='#1f77b4' stroke-width='2'/>\n",
        pts.join(" ")
    );
    for p in &pts {
        let (x, y) = p.split_once(',').unwrap();
        s += &format!("<circle cx='{x}' cy='{y}' r='3' fill='#1f77b4'/>\n");
    }
    s += &format!(
        "<text x='{}' y='{}'>— flash (measured)   - - N² guide</text>\n",
        m + 10.0,
        m + 10.0
    );
    s += &format!(
        "<text x='{}' y='{}' text-anchor='middle'>sequence length N</text>\n</svg>\n",
        w / 2.0,
        hgt - 15.0
    );
    s
}
