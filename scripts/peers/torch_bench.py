#!/usr/bin/env python3
"""PyTorch (and ONNX Runtime where it has the op) at the shapes and thread
counts of the crate's criterion benches, on this machine, written as JSON
that `scripts/bench_table.py --peers FILE` joins with criterion's output.

    python=$(bash scripts/peers/setup.sh)
    $python scripts/peers/torch_bench.py --out target/peers.json \
        [--only attention] [--threads 1 2] [--max-n 8192] [--runs 7]
    cargo bench --bench attention
    python3 scripts/bench_table.py --peers target/peers.json

Every record names the criterion benchmark it stands beside (`ours`, a
glob over criterion's full ids, `*` for the ISA in the name), so the join
needs no knowledge of either side. Timing: each case runs once to warm up,
then `--runs` timed calls (at least 0.3 s of calls in all); the median is
kept. The process is pinned to the first `t` CPUs with `t` intra-op
threads, so one and two threads mean the same cores as the crate's
`Parallelism::Serial` / `Threads(2)` on an otherwise idle machine.

Output: {"format": 1, "cpu": ..., "peers": {"torch": version, ...},
"records": [{"ours": glob, "peer": name, "threads": t, "median_ns": x,
"runs": r}, ...]}.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_table import cpu_model  # noqa: E402  (scripts/bench_table.py)

FORMAT = 1

# The crate's bench shapes (benches/*.rs); keep in step with them.
ATTENTION_N = [128, 256, 512, 1024, 2048, 4096, 8192]
ATTENTION_FULL_N = [256, 1024, 4096]
MATMUL = [
    (32, 32, 32, "square"), (48, 48, 48, "square"), (64, 64, 64, "square"),
    (96, 96, 96, "square"), (128, 128, 128, "square"), (256, 256, 256, "square"),
    (512, 512, 512, "square"), (1024, 1024, 1024, "square"),
    (2048, 2048, 2048, "square"), (512, 2304, 768, "gpt2_qkv"),
    (512, 3072, 768, "gpt2_mlp_up"), (512, 768, 3072, "gpt2_mlp_down"),
]
GELU = [(1, 3072), (64, 3072), (512, 3072), (4096, 3072), (16384, 4096)]
NORM = [(512, 768), (4096, 768), (2048, 4096)]


def time_ns(fn, runs: int) -> tuple[float, int]:
    """Median wall time of `fn()` in ns over at least `runs` calls and 0.3 s."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < 0.3:
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
        if len(times) >= 1000:
            break
    return statistics.median(times), len(times)


def record(ours: str, peer: str, threads: int, ns: float, runs: int) -> dict:
    return {"ours": ours, "peer": peer, "threads": threads, "median_ns": ns, "runs": runs}


def torch_cases(torch, threads: int, only: str, max_n: int, runs: int):
    """Yields records for every case of the selected kernels."""
    F = torch.nn.functional
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return torch.rand(*shape, generator=g) * 2 - 1

    if only in ("all", "attention"):
        for causal, heads, dim, ns in [
            (True, 12, 64, ATTENTION_N), (True, 8, 128, ATTENTION_N),
            (False, 12, 64, ATTENTION_FULL_N),
        ]:
            if not causal and threads != 1:
                continue  # the crate's non-causal bench runs one thread
            kind = "causal" if causal else "full"
            for n in (n for n in ns if n <= max_n):
                # [B, H, N, D], as SDPA takes it (contiguous per head).
                q, k, v = (rnd(1, heads, n, dim) for _ in range(3))
                fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                ns_, r = time_ns(fn, runs)
                yield record(f"attention/prefill_{kind}/h{heads}_d{dim}/flash_{threads}t/{n}",
                             "pytorch_sdpa", threads, ns_, r)
    if only in ("all", "attention", "decode"):
        # Decode: one query row per head against kv_len keys.
        for lk in [512, 2048, 8192, 32768]:
            q, k, v = rnd(1, 12, 1, 64), rnd(1, 12, lk, 64), rnd(1, 12, lk, 64)
            fn = lambda: F.scaled_dot_product_attention(q, k, v)
            ns_, r = time_ns(fn, runs)
            yield record(f"attention/decode/h12_d64/flash_{threads}t/{lk}",
                         "pytorch_sdpa", threads, ns_, r)
    if only in ("all", "matmul"):
        for m, n, k, label in MATMUL:
            a, b, c = rnd(m, k), rnd(k, n), torch.empty(m, n)
            ns_, r = time_ns(lambda: torch.matmul(a, b, out=c), runs)
            yield record(f"matmul/{label}/{m}x{n}x{k}/ours_*/{threads}t",
                         "pytorch_matmul_out", threads, ns_, r)
        # The MLP's x·W_up + b → GELU (benches/matmul.rs, epilogue group, 1 thread).
        if threads == 1:
            m, n, k = 512, 3072, 768
            a, b, bias, c = rnd(m, k), rnd(k, n), rnd(n), torch.empty(m, n)
            grp = f"matmul/epilogue/{m}x{n}x{k}"
            ns_, r = time_ns(lambda: torch.addmm(bias, a, b, out=c), runs)
            yield record(f"{grp}/residual_beta1_bias", "pytorch_addmm_out", threads, ns_, r)
            ns_, r = time_ns(lambda: torch._C._nn.gelu(torch.addmm(bias, a, b, out=c), out=c), runs)
            yield record(f"{grp}/fused_bias_gelu", "pytorch_addmm_gelu_out", threads, ns_, r)
    if only in ("all", "gelu"):
        for rows, cols in GELU:
            x, bias, out = rnd(rows, cols), rnd(cols), torch.empty(rows, cols)
            tmp = torch.empty(rows, cols)
            ours = f"bias_gelu/{rows}x{cols}/fused_erf/*"
            ns_, r = time_ns(lambda: F.gelu(x + bias), runs)
            yield record(ours, "pytorch_gelu(x+b)", threads, ns_, r)
            ns_, r = time_ns(lambda: torch._C._nn.gelu(torch.add(x, bias, out=tmp), out=out), runs)
            yield record(ours, "pytorch_gelu_out", threads, ns_, r)
    if only in ("all", "norm"):
        for rows, d in NORM:
            x, w, b = rnd(rows, d), rnd(d), rnd(d)
            ns_, r = time_ns(lambda: F.layer_norm(x, (d,), w, b, 1e-5), runs)
            yield record(f"norm/{rows}x{d}/layer_norm_*", "pytorch_layer_norm", threads, ns_, r)
            if hasattr(F, "rms_norm"):
                ns_, r = time_ns(lambda: F.rms_norm(x, (d,), w, 1e-5), runs)
                yield record(f"norm/{rows}x{d}/rms_norm_*", "pytorch_rms_norm", threads, ns_, r)


def ort_cases(threads: int, only: str, runs: int):
    """ONNX Runtime's MatMul and its fused BiasGelu (com.microsoft)."""
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL

    def session(nodes, inputs, outputs):
        graph = helper.make_graph(nodes, "g", inputs, outputs)
        model = helper.make_model(graph, opset_imports=[
            helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        model.ir_version = 8
        return ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])

    rng = np.random.default_rng(0)
    f32 = lambda *s: (rng.random(s, dtype=np.float32) * 2 - 1)
    vi = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    if only in ("all", "matmul"):
        for m, n, k, label in MATMUL:
            s = session([helper.make_node("MatMul", ["a", "b"], ["c"])],
                        [vi("a", [m, k]), vi("b", [k, n])], [vi("c", [m, n])])
            feeds = {"a": f32(m, k), "b": f32(k, n)}
            ns_, r = time_ns(lambda: s.run(None, feeds), runs)
            yield record(f"matmul/{label}/{m}x{n}x{k}/ours_*/{threads}t",
                         "onnxruntime_matmul", threads, ns_, r)
    if only in ("all", "gelu"):
        for rows, cols in GELU:
            s = session([helper.make_node("BiasGelu", ["x", "b"], ["y"], domain="com.microsoft")],
                        [vi("x", [rows, cols]), vi("b", [cols])], [vi("y", [rows, cols])])
            feeds = {"x": f32(rows, cols), "b": f32(cols)}
            ns_, r = time_ns(lambda: s.run(None, feeds), runs)
            yield record(f"bias_gelu/{rows}x{cols}/fused_erf/*", "onnxruntime_biasgelu",
                         threads, ns_, r)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", default="all",
                    choices=["all", "attention", "decode", "matmul", "gelu", "norm"])
    ap.add_argument("--max-n", type=int, default=8192, help="longest attention sequence")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-ort", action="store_true", help="PyTorch only")
    args = ap.parse_args(argv)

    import torch

    peers = {"torch": torch.__version__}
    try:
        import onnxruntime
        peers["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    records = []
    cpus = sorted(os.sched_getaffinity(0))
    for t in args.threads:
        if t > len(cpus):
            print(f"skipping {t} threads: only {len(cpus)} CPUs", file=sys.stderr)
            continue
        os.sched_setaffinity(0, cpus[:t])
        torch.set_num_threads(t)
        cases = list(torch_cases(torch, t, args.only, args.max_n, args.runs))
        if not args.no_ort:
            cases += list(ort_cases(t, args.only, args.runs))
        for rec in cases:
            print(f"{rec['peer']:<22} {t}t {rec['ours']:<56} {rec['median_ns'] / 1e6:10.3f} ms",
                  file=sys.stderr)
        records += cases
    os.sched_setaffinity(0, cpus)
    Path(args.out).write_text(document(cpu_model(), peers, records))
    return 0


def document(cpu: str, peers: dict, records: list) -> str:
    """The output file's text (what `bench_table.py --peers` reads)."""
    return json.dumps({"format": FORMAT, "cpu": cpu, "peers": peers, "records": records},
                      indent=1) + "\n"


if __name__ == "__main__":
    sys.exit(main())
