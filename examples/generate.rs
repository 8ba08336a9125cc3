//! Generates text with a Llama-architecture GGUF model on the crate's
//! kernels: loads the file (weights kept in its formats, or converted with
//! `--weights`), runs the prompt as one prefill through the KV cache, then
//! decodes greedily, streaming the text, and prints prefill and decode
//! tokens/s, time to first token and peak memory.
//!
//! ```text
//! bash scripts/fetch-smollm2.sh        # prints the model's path
//! cargo run --release --example generate -- --model PATH \
//!     --prompt "It was the best of times, it was the worst of times," \
//!     [--max-tokens 64] [--threads P] [--weights q4_1|q8_0|q4_0|bf16|f16|f32] \
//!     [--isa avx512|avx2|neon|scalar] [--int8] [--kv-f16] [--prefill-chunk 128] \
//!     [--chat] [--repeat-prompt N]
//! ```
//!
//! `--int8` multiplies the block-format weights with activations quantized
//! per 32 to i8 (`LlamaModel::set_int8`, llama.cpp's scheme; AVX-512 VNNI
//! where the CPU has it);
//! `--kv-f16` keeps the KV cache in f16 (`LlamaModel::new_cache_f16`, as
//! llama.cpp's default cache);
//! `--chat` wraps the prompt in the model's chat turns (ChatML:
//! `<|im_start|>user … <|im_end|>` then the assistant's turn);
//! `--prefill-chunk N` runs the prompt N tokens at a time (bounding the
//! activation buffers; the default 128);
//! `--repeat-prompt N` repeats the prompt N times (long-prompt timing);
//! `--quiet` prints only the figures.

use std::io::Write;
use std::time::Instant;
use transformer_kernels::model::{GgufFile, LlamaModel, Tokenizer, argmax};
use transformer_kernels::{Config, Isa, LlamaStageTimes, Parallelism, WeightFormat};

struct Args {
    model: String,
    prompt: String,
    max_tokens: usize,
    threads: usize,
    weights: Option<WeightFormat>,
    isa: Option<Isa>,
    chat: bool,
    repeat: usize,
    quiet: bool,
    int8: bool,
    kv_f16: bool,
    prefill_chunk: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        model: String::new(),
        prompt: "It was the best of times, it was the worst of times,".into(),
        max_tokens: 64,
        threads: 1,
        weights: None,
        isa: None,
        chat: false,
        repeat: 1,
        quiet: false,
        int8: false,
        kv_f16: false,
        prefill_chunk: 128,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--model" => a.model = val()?,
            "--prompt" => a.prompt = val()?,
            "--max-tokens" => a.max_tokens = val()?.parse().map_err(|e| format!("{e}"))?,
            "--threads" => a.threads = val()?.parse().map_err(|e| format!("{e}"))?,
            "--weights" => a.weights = Some(val()?.parse().map_err(|e| format!("{e}"))?),
            "--isa" => a.isa = Some(val()?.parse().map_err(|e| format!("{e}"))?),
            "--repeat-prompt" => a.repeat = val()?.parse().map_err(|e| format!("{e}"))?,
            "--chat" => a.chat = true,
            "--quiet" => a.quiet = true,
            "--int8" => a.int8 = true,
            "--kv-f16" => a.kv_f16 = true,
            "--prefill-chunk" => a.prefill_chunk = val()?.parse().map_err(|e| format!("{e}"))?,
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    if a.model.is_empty() {
        return Err("--model PATH is required (scripts/fetch-smollm2.sh prints it)".into());
    }
    Ok(a)
}

/// Peak resident memory of this process (Linux `VmHWM`), in bytes.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = Config::with_parallelism(Parallelism::Threads(args.threads));
    if let Some(isa) = args.isa {
        cfg.isa = isa;
        cfg.validate()?;
    }
    let prompt = args.prompt.repeat(args.repeat.max(1));
    let text = if args.chat {
        format!("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
    } else {
        prompt
    };

    let t0 = Instant::now();
    let file = GgufFile::open(&args.model)?;
    let t_parse = t0.elapsed();
    let tok = Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(&text, true);
    let t_tok = t0.elapsed();
    let max_len = ids.len() + args.max_tokens;
    let mut model = LlamaModel::from_gguf(&file, args.weights, max_len)?;
    model.set_int8(args.int8);
    drop(file);
    let mut cache = if args.kv_f16 {
        model.new_cache_f16(max_len)
    } else {
        model.new_cache(max_len)
    };
    let load = t0.elapsed();

    let t1 = Instant::now();
    // The prompt in chunks: the activation buffers then hold `chunk` rows,
    // not the whole prompt's (~24 KB a token for SmolLM2).
    let chunk = args.prefill_chunk.max(1);
    let mut logits: &[f32] = &[];
    for part in ids.chunks(chunk) {
        logits = model.forward(part, &mut cache, &cfg)?;
    }
    let first = argmax(logits) as u32;
    let prefill = t1.elapsed();
    let ttft = t0.elapsed();

    let stop = |t: u32| Some(t) == tok.eos || tok.is_control(t);
    let mut out = vec![first];
    let mut pending: Vec<u8> = Vec::new();
    let mut stdout = std::io::stdout();
    let mut emit = |t: u32, pending: &mut Vec<u8>| {
        if args.quiet || tok.is_control(t) {
            return;
        }
        pending.extend_from_slice(tok.token_bytes(t).unwrap_or(&[]));
        // Print the longest valid UTF-8 prefix; keep a cut character.
        let valid = match std::str::from_utf8(pending) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let _ = stdout.write_all(&pending[..valid]);
        let _ = stdout.flush();
        pending.drain(..valid);
    };
    if !args.quiet {
        print!("{text}");
    }
    emit(first, &mut pending);
    let mut stages = LlamaStageTimes::default();
    let t2 = Instant::now();
    while out.len() < args.max_tokens && !stop(*out.last().unwrap_or(&0)) {
        let last = *out.last().unwrap_or(&0);
        let logits = model.forward_timed(&[last], &mut cache, false, &cfg, Some(&mut stages))?;
        let next = argmax(logits) as u32;
        out.push(next);
        emit(next, &mut pending);
    }
    let decode = t2.elapsed();
    if !args.quiet {
        println!();
    }
    let decoded = out.len().saturating_sub(1);
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let file_bytes = std::fs::metadata(&args.model)?.len();
    println!(
        "model {} ({:.1} MiB), weights {}{}, isa {:?}, threads {}",
        args.model,
        mib(file_bytes),
        args.weights
            .map_or("as stored".to_string(), |w| format!("{w:?}")),
        if args.int8 { ", int8 activations" } else { "" },
        cfg.isa,
        args.threads
    );
    println!(
        "prompt {} tokens: prefill {:.1} ms = {:.1} tok/s; load {:.1} ms (header {:.1}, \
         tokenizer {:.1}, weights {:.1}); time to first token {:.1} ms",
        ids.len(),
        prefill.as_secs_f64() * 1e3,
        ids.len() as f64 / prefill.as_secs_f64(),
        load.as_secs_f64() * 1e3,
        t_parse.as_secs_f64() * 1e3,
        (t_tok - t_parse).as_secs_f64() * 1e3,
        (load - t_tok).as_secs_f64() * 1e3,
        ttft.as_secs_f64() * 1e3
    );
    if decoded > 0 {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3 / decoded as f64;
        println!(
            "decode {decoded} tokens: {:.1} ms = {:.1} tok/s; per token: layers {:.2} ms \
             (norms {:.2}, qkv {:.2}, rope {:.2}, attention {:.2}, out {:.2}, gate/up {:.2}, \
             down {:.2}), embedding + output {:.2} ms",
            decode.as_secs_f64() * 1e3,
            decoded as f64 / decode.as_secs_f64(),
            ms(stages.total()),
            ms(stages.norms),
            ms(stages.qkv),
            ms(stages.rope),
            ms(stages.attention),
            ms(stages.out_proj),
            ms(stages.gate_up),
            ms(stages.down),
            ms(decode.saturating_sub(stages.total())),
        );
    }
    println!(
        "memory: peak resident {:.1} MiB (file {:.1} MiB, weights held {:.1} MiB, KV cache {:.1} MiB)",
        peak_rss().map_or(f64::NAN, mib),
        mib(file_bytes),
        mib(model.weight_bytes() as u64),
        mib(cache.bytes() as u64)
    );
    println!("tokens: {:?}", &out);
    Ok(())
}
