#!/usr/bin/env python3
"""Checks that scripts/peers/torch_bench.py and scripts/bench_table.py agree
on their file format and on the benchmark ids: torch_bench's cases run on a
stand-in for torch (no timing, nothing installed), their records go
through its own writer, and bench_table joins them with a criterion tree
laid out as criterion writes it, with ids as the crate's benches name
them. Run by .ci/run: `python3 scripts/test_bench_table.py`.
"""

import json
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "peers"))
import bench_table  # noqa: E402
import torch_bench  # noqa: E402


class Anything:
    """Every attribute, call and arithmetic gives another Anything."""

    def __getattr__(self, _name):
        return Anything()

    def __call__(self, *_a, **_k):
        return Anything()

    __mul__ = __rmul__ = __add__ = __radd__ = __sub__ = __rsub__ = __call__

    def __getitem__(self, _k):
        return Anything()


def criterion_tree(root: Path, benches: dict) -> None:
    """benches: {full_id: (group, median_ns, elements or None)}."""
    for i, (full, (group, ns, elems)) in enumerate(benches.items()):
        d = root / f"b{i}" / "new"
        d.mkdir(parents=True)
        meta = {"group_id": group, "full_id": full, "function_id": None, "value_str": None,
                "throughput": {"Elements": elems} if elems else None, "directory_name": f"b{i}"}
        (d / "benchmark.json").write_text(json.dumps(meta))
        (d / "estimates.json").write_text(json.dumps({"median": {"point_estimate": ns}}))


# Ids as the crate's benches build them (group / function / parameter).
OURS = {
    "attention/prefill_causal/h12_d64/flash_1t/1024": ("attention/prefill_causal/h12_d64", 1e7, 2 * 1024 * 1024 * 64 * 12),
    "attention/prefill_causal/h8_d128/flash_2t/8192": ("attention/prefill_causal/h8_d128", 5e8, 2 * 8192 * 8192 * 128 * 8),
    "attention/prefill_full/h12_d64/flash_1t/256": ("attention/prefill_full/h12_d64", 1e6, 4 * 256 * 256 * 64 * 12),
    "attention/decode/h12_d64/flash_2t/32768": ("attention/decode/h12_d64", 1e6, 4 * 32768 * 64 * 12),
    "attention/peak/fma_avx512_1t": ("attention/peak", 1e6, 100_000 * 1000),
    "matmul/square/32x32x32/ours_avx512/1t": ("matmul/square/32x32x32", 1e3, 2 * 32 ** 3),
    "matmul/gpt2_mlp_down/512x768x3072/ours_avx2/2t": ("matmul/gpt2_mlp_down/512x768x3072", 1e7, 2 * 512 * 768 * 3072),
    "matmul/epilogue/512x3072x768/fused_bias_gelu": ("matmul/epilogue/512x3072x768", 1e7, 2 * 512 * 3072 * 768),
    "bias_gelu/512x3072/fused_erf/avx512": ("bias_gelu/512x3072", 1e5, None),
    "bias_gelu/512x3072/fused_erf_2threads/avx512": ("bias_gelu/512x3072", 6e4, None),
    "norm/4096x768/layer_norm_avx512": ("norm/4096x768", 1e6, None),
    "norm/4096x768/rms_norm_avx512": ("norm/4096x768", 9e5, None),
}


class Format(unittest.TestCase):
    def setUp(self):
        self._time_ns = torch_bench.time_ns
        torch_bench.time_ns = lambda fn, runs: (fn(), 2e6)[1:] + (runs,)

    def tearDown(self):
        torch_bench.time_ns = self._time_ns

    def records(self, threads):
        return list(torch_bench.torch_cases(Anything(), threads, "all", 8192, 3))

    def test_every_record_names_one_of_our_benchmarks(self):
        recs = self.records(1) + self.records(2)
        self.assertTrue(recs)
        for r in recs:
            self.assertIn(r["threads"], (1, 2))
            self.assertIsInstance(r["median_ns"], float)
        # Each of our listed benchmarks is matched by exactly the peers the
        # script times for it, at its own thread count.
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            criterion_tree(tmp / "criterion", OURS)
            peers_file = tmp / "peers.json"
            peers_file.write_text(torch_bench.document("Test CPU", {"torch": "0"}, recs))
            table = bench_table.join(bench_table.load_criterion(tmp / "criterion"),
                                     [bench_table.load_peers(peers_file)])
        by_id = {r["id"]: r for r in table}
        self.assertEqual(set(by_id), set(OURS))
        expect = {
            "attention/prefill_causal/h12_d64/flash_1t/1024": ["pytorch_sdpa"],
            "attention/prefill_causal/h8_d128/flash_2t/8192": ["pytorch_sdpa"],
            "attention/prefill_full/h12_d64/flash_1t/256": ["pytorch_sdpa"],
            "attention/decode/h12_d64/flash_2t/32768": ["pytorch_sdpa"],
            "attention/peak/fma_avx512_1t": [],
            "matmul/square/32x32x32/ours_avx512/1t": ["pytorch_matmul_out"],
            "matmul/gpt2_mlp_down/512x768x3072/ours_avx2/2t": ["pytorch_matmul_out"],
            "matmul/epilogue/512x3072x768/fused_bias_gelu": ["pytorch_addmm_gelu_out"],
            "bias_gelu/512x3072/fused_erf/avx512": ["pytorch_gelu(x+b)", "pytorch_gelu_out"],
            "bias_gelu/512x3072/fused_erf_2threads/avx512": [],
            "norm/4096x768/layer_norm_avx512": ["pytorch_layer_norm"],
            "norm/4096x768/rms_norm_avx512": ["pytorch_rms_norm"],
        }
        for full, names in expect.items():
            self.assertEqual(sorted(p for p, _, _ in by_id[full]["peers"]), sorted(names), full)
        # Speed = peer / ours; % peak = GFLOP/s over peak × threads.
        r = by_id["attention/prefill_causal/h12_d64/flash_1t/1024"]
        self.assertAlmostEqual(r["peers"][0][2], 2e6 / 1e7)
        peak = 100_000 * 1000 / 1e6
        self.assertAlmostEqual(r["pct_peak"], 100 * (2 * 1024 * 1024 * 64 * 12 / 1e7) / peak)
        r = by_id["attention/prefill_causal/h8_d128/flash_2t/8192"]
        self.assertAlmostEqual(r["pct_peak"], 100 * (2 * 8192 * 8192 * 128 * 8 / 5e8) / (2 * peak))
        self.assertIsNone(by_id["norm/4096x768/rms_norm_avx512"]["pct_peak"])
        self.assertIsNone(by_id["attention/decode/h12_d64/flash_2t/32768"]["pct_peak"])
        md = bench_table.render_markdown(table, [json.loads(torch_bench.document("Test CPU", {"torch": "0"}, []))], "Test CPU")
        self.assertIn("## attention/prefill_causal/h12_d64", md)
        self.assertIn("pytorch_sdpa", md)

    def test_in_run_peers_and_the_readme_summary(self):
        benches = {
            "matmul/square/64x64x64/ours_avx512/1t": ("matmul/square/64x64x64", 4e3, 2 * 64 ** 3),
            "matmul/square/64x64x64/gemm_crate/1t": ("matmul/square/64x64x64", 5e3, 2 * 64 ** 3),
            "matmul/square/64x64x64/ours_avx512/2t": ("matmul/square/64x64x64", 3e3, 2 * 64 ** 3),
            "matmul/square/64x64x64/gemm_crate/2t": ("matmul/square/64x64x64", 2e3, 2 * 64 ** 3),
            "matmul/peak/fma_avx512_1t": ("matmul/peak", 1e6, 100_000 * 1000),
        }
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            criterion_tree(tmp / "criterion", benches)
            rows = bench_table.load_criterion(tmp / "criterion")
            table = bench_table.join(rows, [])
            by_id = {r["id"]: r for r in table}
            # The gemm crate's rows are peers, not rows of their own, and
            # each of ours meets the one at its thread count.
            self.assertNotIn("matmul/square/64x64x64/gemm_crate/1t", by_id)
            self.assertEqual(by_id["matmul/square/64x64x64/ours_avx512/1t"]["peers"],
                             [("gemm crate", 5e3, 5e3 / 4e3)])
            self.assertEqual(by_id["matmul/square/64x64x64/ours_avx512/2t"]["peers"],
                             [("gemm crate", 2e3, 2e3 / 3e3)])
            summary = bench_table.render_summary(table, rows, "Test CPU", "cmd")
            self.assertIn("`matmul/square/64x64x64/ours_avx512/1t`", summary)
            self.assertNotIn("/2t`", summary)  # one thread only
            self.assertIn("**1.25×**", summary)
            readme = tmp / "README.md"
            readme.write_text(f"intro\n{bench_table.README_BEGIN}\nold table\n{bench_table.README_END}\nlimits\n")
            bench_table.main(["--criterion", str(tmp / "criterion"), "--readme", str(readme)])
            text = readme.read_text()
            self.assertNotIn("old table", text)
            self.assertTrue(text.startswith("intro\n") and text.endswith(f"{bench_table.README_END}\nlimits\n"))
            self.assertIn("**1.25×**", text)
            with self.assertRaises(ValueError):
                bench_table.replace_between_markers("no markers", "x")

    def test_bad_peer_files_are_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "p.json"
            for doc in [{"format": 2, "cpu": "x", "peers": {}, "records": []},
                        {"format": 1, "peers": {}, "records": []},
                        {"format": 1, "cpu": "x", "peers": {}, "records": [{"ours": "a", "peer": "b", "threads": "1", "median_ns": 1.0}]}]:
                p.write_text(json.dumps(doc))
                with self.assertRaises(ValueError):
                    bench_table.load_peers(p)

    def test_threads_are_read_from_the_id(self):
        self.assertEqual(bench_table.threads_of("attention/decode/h12_d64/flash_2t/512"), 2)
        self.assertEqual(bench_table.threads_of("matmul/square/32x32x32/ours_avx512/1t"), 1)
        self.assertEqual(bench_table.threads_of("bias_gelu/512x3072/fused_erf_2threads/avx512"), 2)
        self.assertEqual(bench_table.threads_of("norm/4096x768/copy"), 1)


if __name__ == "__main__":
    unittest.main()
