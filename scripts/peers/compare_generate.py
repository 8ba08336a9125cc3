#!/usr/bin/env python3
"""Ours (`examples/generate`) vs llama.cpp (`llamacpp_generate.py`) on one
GGUF file, in one run on one machine: a ~500-token prompt (the default
prompt repeated) then greedy tokens, medians of `--runs` runs of each, for
each thread count and weight format (interleaved: one llama.cpp run, then
one of each of ours, per round); also how many of llama.cpp's greedy
tokens ours reproduces on the plain prompt. Prints a markdown table (with
the CPU model) and writes the raw figures as JSON.

    cargo build --release --example generate
    python3 scripts/peers/compare_generate.py --model PATH \
        [--python $(bash scripts/peers/setup.sh)] [--threads 1 2] \
        [--weights stored stored+int8 q8_0] [--runs 5] [--json out.json]

A weights entry is `stored` (the file's formats) or a `--weights` format of
the example, with `+int8` for the int8 activation mode (`--int8`) and
`+kv16` for an f16 KV cache (`--kv-f16`, llama.cpp's default), in any
combination (`stored+int8+kv16`).
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "It was the best of times, it was the worst of times,"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def ours(model, threads, weights, repeat, max_tokens):
    cmd = [str(ROOT / "target/release/examples/generate"), "--model", model, "--quiet",
           "--threads", str(threads), "--repeat-prompt", str(repeat),
           "--max-tokens", str(max_tokens)]
    base, *modes = weights.split("+")
    if base != "stored":
        cmd += ["--weights", base]
    for mode in modes:
        if mode == "int8":
            cmd += ["--int8"]
        elif mode == "kv16":
            cmd += ["--kv-f16"]
        else:
            raise SystemExit(f"unknown weights mode {mode!r} (+int8, +kv16)")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return parse_ours(out)


def parse_ours(out: str) -> dict:
    """The figures `examples/generate --quiet` prints."""
    f = lambda pat: float(re.search(pat, out).group(1))
    toks = re.search(r"tokens: \[([0-9, ]*)\]", out).group(1)
    return {
        "prompt_tokens": int(f(r"prompt (\d+) tokens")),
        "prefill_tok_s": f(r"prefill [0-9.]+ ms = ([0-9.]+) tok/s"),
        "decode_tok_s": f(r"decode \d+ tokens: [0-9.]+ ms = ([0-9.]+) tok/s"),
        "ttft_ms": f(r"time to first token ([0-9.]+) ms"),
        "peak_mib": f(r"peak resident ([0-9.]+) MiB"),
        "greedy": [int(t) for t in toks.split(",") if t.strip()],
    }


def peer(python, model, threads, repeat, max_tokens, runs):
    cmd = [python, str(ROOT / "scripts/peers/llamacpp_generate.py"), "--model", model,
           "--threads", str(threads), "--repeat-prompt", str(repeat),
           "--max-tokens", str(max_tokens), "--runs", str(runs)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--python", default=sys.executable, help="the peers venv's python")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--weights", nargs="+", default=["stored"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=36, help="prompt repeats (36 → 504 tokens)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json")
    a = ap.parse_args()

    rows, raw = [], {"cpu": cpu_model(), "runs": a.runs}
    # Greedy agreement on the plain prompt.
    mine = ours(a.model, 1, "stored", 1, a.max_tokens)["greedy"]
    theirs = peer(a.python, a.model, 1, 1, a.max_tokens, 1)["greedy"]
    same = next((i for i, (x, y) in enumerate(zip(mine, theirs)) if x != y), min(len(mine), len(theirs)))
    raw["greedy"] = {"ours": mine, "llama.cpp": theirs, "agree": same}
    for t in a.threads:
        # Interleaved rounds (llama.cpp once, then each of ours once), so a
        # slow phase of a shared host falls on both sides alike.
        peer_runs, ours_runs = [], {w: [] for w in a.weights}
        for _ in range(a.runs):
            peer_runs.append(peer(a.python, a.model, t, a.repeat, a.max_tokens, 1))
            for w in a.weights:
                ours_runs[w].append(ours(a.model, t, w, a.repeat, a.max_tokens))
        p = {k: statistics.median(r[k] for r in peer_runs)
             for k in ("prefill_tok_s", "decode_tok_s")}
        p["version"] = peer_runs[0]["version"]
        raw[f"llama.cpp/{t}t"] = {**p, "runs": peer_runs}
        for w in a.weights:
            rs = ours_runs[w]
            med = {k: statistics.median(r[k] for r in rs)
                   for k in ("prefill_tok_s", "decode_tok_s", "ttft_ms", "peak_mib")}
            raw[f"ours/{w}/{t}t"] = {"median": med, "runs": rs}
            rows.append((t, w, rs[0]["prompt_tokens"], med, p))
    print(f"CPU: {raw['cpu']}; prompt {rows[0][2]} tokens, then {a.max_tokens} greedy tokens; "
          f"medians of {a.runs} runs; llama.cpp {raw[f'llama.cpp/{a.threads[0]}t']['version']}")
    print()
    print("| threads | our weights | ours prefill tok/s | llama.cpp prefill | ratio "
          "| ours decode tok/s | llama.cpp decode | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for t, w, n, med, p in rows:
        print(f"| {t} | {w} | {med['prefill_tok_s']:.0f} | {p['prefill_tok_s']:.0f} | "
              f"{med['prefill_tok_s'] / p['prefill_tok_s']:.2f}× | {med['decode_tok_s']:.1f} | "
              f"{p['decode_tok_s']:.1f} | {med['decode_tok_s'] / p['decode_tok_s']:.2f}× |")
    print()
    print(f"greedy tokens on the plain prompt: ours reproduces llama.cpp's first {same} "
          f"of {min(len(mine), len(theirs))}")
    if a.json:
        Path(a.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
