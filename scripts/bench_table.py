#!/usr/bin/env python3
"""Criterion's results (target/criterion) as tables, joined with the peers
timed in the same run on the same machine (scripts/peers/torch_bench.py).

    python3 scripts/bench_table.py [filter]                 # plain text
    python3 scripts/bench_table.py --peers target/peers.json [filter]
    python3 scripts/bench_table.py --markdown --peers target/peers.json > BENCHMARKS.md

Columns: median time and throughput (criterion's "elements" are FLOPs in
the matmul and attention benches, so G/s reads GFLOP/s), % of the one-core
FMA peak where the run has a `*/peak/fma_*_1t` bench (times the thread
count in the id), and for each peer record whose `ours` glob matches the
benchmark: the peer's median and ours/peer speed (> 1: ours is faster).
"""

import argparse
import datetime
import fnmatch
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_FORMAT = 1


def load_criterion(root: Path) -> dict:
    """{full_id: (group, bench, median_ns, throughput_per_ns or None, unit)}."""
    rows = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            meta = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        ns = est["median"]["point_estimate"]
        thr = meta.get("throughput") or {}
        per, unit = None, ""
        if "Bytes" in thr:
            per, unit = thr["Bytes"] / ns, "GB/s"
        elif "Elements" in thr:
            per, unit = thr["Elements"] / ns, "G/s"
        full = meta["full_id"]
        rows[full] = (meta["group_id"], full[len(meta["group_id"]) + 1:], ns, per, unit)
    return rows


def load_peers(path: Path) -> dict:
    """A torch_bench.py output file, checked field by field."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != PEERS_FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r}, expected {PEERS_FORMAT}")
    for key in ("cpu", "peers", "records"):
        if key not in data:
            raise ValueError(f"{path}: no {key!r}")
    for i, r in enumerate(data["records"]):
        for key, ty in (("ours", str), ("peer", str), ("threads", int), ("median_ns", (int, float))):
            if not isinstance(r.get(key), ty):
                raise ValueError(f"{path}: record {i}: {key!r} missing or not {ty}")
    return data


def peak_gflops(rows: dict):
    """The best one-core FMA peak any `*/peak/fma_*_1t` bench measured."""
    best = None
    for full, (_g, _b, _ns, per, unit) in rows.items():
        if re.search(r"/peak/fma_[^/]*_1t$", full) and unit == "G/s":
            best = per if best is None else max(best, per)
    return best


def threads_of(full_id: str) -> int:
    m = re.search(r"(?:^|[_/])(\d+)t(?:/|$)", full_id)
    if m:
        return int(m.group(1))
    return 2 if "2threads" in full_id else 1


def join(rows: dict, peers: list) -> list:
    """One dict per criterion benchmark: its figures and the matching peers."""
    peak = peak_gflops(rows)
    out = []
    for full, (group, bench, ns, per, unit) in sorted(rows.items(), key=lambda kv: natural(kv[0])):
        pct = None
        # % peak for compute-bound groups only (decode is bound by memory).
        if peak and unit == "G/s" and (group.startswith("attention/") or group.startswith("matmul/")) \
                and "/peak/" not in full and "decode" not in group:
            pct = 100.0 * per / (peak * threads_of(full))
        matches = []
        for data in peers:
            for r in data["records"]:
                if fnmatch.fnmatchcase(full, r["ours"]) and r["threads"] == threads_of(full):
                    matches.append((r["peer"], r["median_ns"], r["median_ns"] / ns))
        out.append({"id": full, "group": group, "bench": bench, "ns": ns, "per": per,
                    "unit": unit, "pct_peak": pct, "peers": matches})
    return out


def fmt_t(ns: float) -> str:
    for u, s in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= s:
            return f"{ns / s:.3f} {u}"
    return f"{ns:.1f} ns"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def cpu_details() -> str:
    """ISA extensions and cache sizes of CPU 0 (the model string alone does
    not tell Xeons apart)."""
    parts = []
    try:
        flags = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
        ext = [name for flag, name in [("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"),
                                        ("avx512_vnni", "VNNI"), ("avx512_bf16", "BF16"),
                                        ("avx512_fp16", "FP16"), ("amx_tile", "AMX")] if flag in flags]
        if ext:
            parts.append(", ".join(ext))
    except OSError:
        pass
    for idx in (2, 3):
        try:
            size = Path(f"/sys/devices/system/cpu/cpu0/cache/index{idx}/size").read_text().strip()
            parts.append(f"L{idx} {size}")
        except OSError:
            pass
    try:
        parts.append(f"{len(os.sched_getaffinity(0))} CPUs")
    except OSError:
        pass
    return "; ".join(parts)


def natural(key: str) -> list:
    """Sort key with numbers compared as numbers (N = 512 before 2048)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def render_text(table: list) -> str:
    w = max((len(r["group"]) for r in table), default=10)
    lines = []
    for r in table:
        t = f"{r['per']:.2f} {r['unit']}" if r["per"] is not None else ""
        pk = f"{r['pct_peak']:5.1f}%" if r["pct_peak"] is not None else ""
        peer = "  ".join(f"{p} {fmt_t(pns)} ({x:.2f}×)" for p, pns, x in r["peers"])
        lines.append(f"{r['group']:<{w}}  {r['bench']:<34} {fmt_t(r['ns']):>12}  {t:>12} {pk:>6}  {peer}")
    return "\n".join(lines) + "\n"


def render_markdown(table: list, peers: list, cpu: str, command: str = "") -> str:
    command = command or "python3 scripts/bench_table.py --markdown --peers target/peers.json"
    lines = ["# Benchmarks", "",
             f"Generated by `{command}` "
             "from criterion's results in `target/criterion` (`cargo bench`) and the peers timed "
             "by `scripts/peers/torch_bench.py` on the same machine; do not edit by hand.", "",
             f"- CPU: **{cpu}** ({cpu_details()})"]
    for data in peers:
        names = ", ".join(f"{k} {v}" for k, v in sorted(data["peers"].items()))
        lines.append(f"- peers: {names} (timed on: {data['cpu']})")
    lines += [f"- generated: {datetime.date.today().isoformat()}", "",
              "Speed = peer time / our time (> 1: ours is faster). % peak = GFLOP/s over the "
              "one-core FMA peak measured in the same run, times the threads.", ""]
    group = None
    for r in table:
        if r["group"] != group:
            group = r["group"]
            lines += ["", f"## {group}", "",
                      "| benchmark | median | throughput | % peak | peers (median, speed) |",
                      "|---|---|---|---|---|"]
        t = f"{r['per']:.2f} {r['unit']}" if r["per"] is not None else ""
        pk = f"{r['pct_peak']:.1f}%" if r["pct_peak"] is not None else ""
        peer = "; ".join(f"{p} {fmt_t(pns)}, **{x:.2f}×**" for p, pns, x in r["peers"])
        lines.append(f"| {r['bench']} | {fmt_t(r['ns'])} | {t} | {pk} | {peer} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("filter", nargs="?", default="", help="substring of the benchmark ids")
    ap.add_argument("--criterion", default=str(ROOT / "target" / "criterion"))
    ap.add_argument("--peers", action="append", default=[], help="torch_bench.py JSON")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--only-peered", action="store_true", help="rows with a peer only")
    args = ap.parse_args(argv)
    rows = {k: v for k, v in load_criterion(Path(args.criterion)).items() if args.filter in k}
    peers = [load_peers(Path(p)) for p in args.peers]
    cpu = cpu_model()
    for data in peers:
        if data["cpu"] != cpu:
            print(f"warning: peers timed on {data['cpu']!r}, this is {cpu!r}", file=sys.stderr)
    table = join(rows, peers)
    if args.only_peered:
        table = [r for r in table if r["peers"]]
    command = " ".join(["python3", "scripts/bench_table.py"] + (argv if argv is not None else sys.argv[1:]))
    sys.stdout.write(render_markdown(table, peers, cpu, command) if args.markdown
                     else render_text(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
