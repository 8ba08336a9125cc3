#!/usr/bin/env python3
"""Prints criterion results (target/criterion) as one table: group,
benchmark, median time and median throughput. Usage:
    python3 scripts/bench_table.py [filter]
"""
import json, os, sys

root = os.path.join(os.path.dirname(__file__), "..", "target", "criterion")
flt = sys.argv[1] if len(sys.argv) > 1 else ""
rows = []
for dirpath, dirs, files in os.walk(root):
    if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        meta = json.load(f)
    with open(os.path.join(dirpath, "estimates.json")) as f:
        est = json.load(f)
    ns = est["median"]["point_estimate"]
    thr = meta.get("throughput") or {}
    unit, per = "", None
    if "Bytes" in thr:
        per, unit = thr["Bytes"] / ns, "GB/s"
    elif "Elements" in thr:
        per, unit = thr["Elements"] / ns, "G/s"
    full = meta["full_id"]
    if flt in full:
        rows.append((meta["group_id"], full[len(meta["group_id"]) + 1:], ns, per, unit))

def fmt_t(ns):
    for u, s in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= s:
            return f"{ns / s:.3f} {u}"
    return f"{ns:.1f} ns"

rows.sort()
w = max((len(r[0]) for r in rows), default=10)
for g, b, ns, per, unit in rows:
    t = f"{per:.2f} {unit}" if per is not None else ""
    print(f"{g:<{w}}  {b:<34} {fmt_t(ns):>12}  {t:>12}")
