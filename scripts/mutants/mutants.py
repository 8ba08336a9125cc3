#!/usr/bin/env python3
"""The curated mutants every change must still kill.

Each mutant is one small source patch: a plausible bug in a hot spot. The
script copies the checkout (tracked files) to a scratch directory, checks
that the unmutated copy passes the targeted tests, then for each mutant
applies its patch to the scratch copy, runs the test files named for it and
reports KILLED (a test failed) or SURVIVED. The checkout is never touched.

    python3 scripts/mutants/mutants.py            # all mutants
    python3 scripts/mutants/mutants.py NAME ...   # some of them
    python3 scripts/mutants/mutants.py --list

Builds use the `mutants` profile (release at opt-level 1, incremental) in a
target directory of their own, so a run does not disturb `target/`. Not in
CI (each mutant rebuilds the crate): run it before resolving an issue that
touches a kernel, and paste its table into scripts/mutants/README.md.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

# (name, file, old text (must occur exactly once), new text, test files)
MUTANTS = [
    ("gelu_on_every_k_block", "src/matmul/gemm.rs",
     "act: if last { act } else { no_act },",
     "act: if true { act } else { no_act },",
     ["matmul"]),
    ("beta_on_every_k_block", "src/matmul/gemm.rs",
     "let c_scale = if first {", "let c_scale = if true {", ["matmul"]),
    ("store_mask_one_lane_wide", "src/matmul/kernel.rs",
     "s.mask_between_m32s(0, (n_eff - j * lanes).min(lanes) as u32)",
     "s.mask_between_m32s(0, (n_eff - j * lanes + 1).min(lanes) as u32)",
     ["matmul"]),
    ("narrowed_tile_too_narrow", "src/matmul/kernel.rs",
     "let nv = n_eff.div_ceil(S::F32_LANES);", "let nv = n_eff / S::F32_LANES;",
     ["matmul"]),
    ("gemv_beta_ignored", "src/matmul/gemv.rs",
     "v = s.mul_add_e_f32s(old, beta, v);", "v = s.add_f32s(old, v);",
     ["matmul"]),
    ("causal_bound_plus_one", "src/attention/flash.rs",
     "(i + self.p.lk - self.p.lq + 1).min(self.p.lk)", "(i + self.p.lk - self.p.lq + 2).min(self.p.lk)",
     ["attention"]),
    ("causal_top_left", "src/attention/flash.rs",
     "(i + self.p.lk - self.p.lq + 1).min(self.p.lk)", "(i + 1).min(self.p.lk)",
     ["attention"]),
    ("decode_causal_minus_one", "src/attention/mod.rs",
     "(i + p.lk - p.lq + 1).min(p.lk)", "(i + p.lk - p.lq).min(p.lk)",
     ["attention"]),
    ("key_range_one_short", "src/attention/flash.rs",
     "let kv_max = r.kv_end(q1 - 1);", "let kv_max = r.kv_end(q1 - 1) - 1;",
     ["attention"]),
    ("online_rescale_skipped", "src/attention/flash.rs",
     "        if alpha != 1.0 {\n            // SAFETY: output row i has d elements.\n            unsafe { scale_row(s, r.o_row(i), r.d, alpha) };",
     "        if false {\n            // SAFETY: output row i has d elements.\n            unsafe { scale_row(s, r.o_row(i), r.d, alpha) };",
     ["attention"]),
    ("flash_group_tiles_share_s", "src/attention/flash.rs",
     "sbuf.add(gi * MR * BC + j0),",
     "sbuf.add(j0),",
     ["attention"]),
    ("flash_o_scratch_not_cleared", "src/attention/flash.rs",
     "core::ptr::write_bytes(r.o_row(i), 0, r.d);",
     "let _ = r.o_row(i);",
     ["attention", "numerics"]),
    ("split_kv_weights_swapped", "src/attention/decode.rs",
     "let w = if c[0] == mx { 1.0 } else { (c[0] - mx).exp2() };",
     "let w = if c[0] == mx { 1.0 } else { (mx - c[0]).exp2() };",
     ["attention"]),
    ("lse_natural_not_log2", "src/attention/flash.rs",
     "(m[li] + l.log2()) * core::f32::consts::LN_2",
     "(m[li] + l.ln()) * core::f32::consts::LN_2",
     ["attention"]),
    ("decode_lse_log2_units", "src/attention/decode.rs",
     "(mx + l.log2()) * core::f32::consts::LN_2", "(mx + l.log2())",
     ["attention"]),
    ("gqa_head_modulo", "src/attention/flash.rs",
     "hk: h / p.group,", "hk: h % (p.heads / p.group),",
     ["attention"]),
    ("scale_in_natural_units", "src/attention/mod.rs",
     "let scale_log2 = scale * std::f32::consts::LOG2_E;",
     "let scale_log2 = scale;",
     ["attention"]),
    ("chan_merge_sign", "src/norm.rs",
     "                    + nv as f64\n", "                    - nv as f64\n",
     ["norm"]),
    ("f64_fallback_only_for_tiny", "src/norm.rs",
     "if !t2.is_finite() || 1.0 / raw.sqrt() > 1e18 {",
     "if 1.0 / raw.sqrt() > 1e18 {",
     ["norm"]),
    ("layer_norm_beta_dropped", "src/norm.rs",
     "s.mul_add_e_f32s(t, g, ld(p.beta, i))", "s.mul_f32s(t, g)",
     ["norm"]),
    ("exp_ln2_lo_dropped", "src/math/mod.rs",
     "const LN2_LO: f32 = -2.121_944_4e-4;", "const LN2_LO: f32 = 0.0;",
     ["math"]),
    ("tanh_gelu_cubic_coefficient", "src/math/mod.rs",
     "const K1: f32 = 0.044_715;", "const K1: f32 = 0.044_75;",
     ["math", "bias_gelu"]),
    ("gpt2_mlp_erf_for_tanh", "src/block/mod.rs",
     "Epilogue::BiasGelu(&w.b_up, GeluKind::Tanh)",
     "Epilogue::BiasGelu(&w.b_up, GeluKind::Erf)",
     ["block"]),
    # SiLU / SwiGLU and the fused gate epilogue.
    ("silu_neg_inf_unguarded", "src/math/mod.rs",
     "s.less_than_f32s(x, s.splat_f32s(-100.0)),",
     "s.less_than_f32s(x, s.splat_f32s(f32::NEG_INFINITY)),",
     ["silu"]),
    ("swiglu_up_dropped", "src/gelu.rs",
     "s.mul_f32s(f.apply(s, x), u)", "s.add_f32s(f.apply(s, x), s.sub_f32s(u, u))",
     ["silu"]),
    # (U on every k-block is guarded twice, in `loops` and in `no_act`, so
    # no single edit makes it; this one puts U on the first block instead.)
    ("silu_mul_on_first_k_block", "src/matmul/gemm.rs",
     "let (mul, mul_rs) = if !last || p.mul.is_null() {",
     "let (mul, mul_rs) = if !first || p.mul.is_null() {",
     ["silu"]),
    ("silu_mul_strided_u_transposed", "src/matmul/gemm.rs",
     "*p.mul.add((i0 + i) * p.rsu + (j0 + j) * p.csu)",
     "*p.mul.add((i0 + i) * p.csu + (j0 + j) * p.rsu)",
     ["silu"]),
    ("silu_mul_tile_skipped", "src/matmul/kernel.rs",
     "x = s.mul_f32s(x, load(epi.mul.add(i * epi.mul_rs + col), j));",
     "x = s.mul_f32s(x, load(epi.mul.add(col), j));",
     ["silu"]),
    ("gemv_silu_mul_squared", "src/matmul/gemv.rs",
     "v = s.mul_f32s(v, uv);", "v = s.mul_f32s(uv, uv);",
     ["silu"]),
    # RoPE.
    ("rope_half_split_sign", "src/rope.rs",
     "let na = s.mul_add_e_f32s(a, c[j], s.neg_f32s(s.mul_f32s(b, sn[j])));",
     "let na = s.mul_add_e_f32s(a, c[j], s.mul_f32s(b, sn[j]));",
     ["rope"]),
    ("rope_interleaved_conjugate", "src/rope.rs",
     "p.write_unaligned(s.mul_c32s(p.read_unaligned(), wj));",
     "p.write_unaligned(s.conj_mul_c32s(p.read_unaligned(), wj));",
     ["rope"]),
    ("rope_generic_tail_skipped", "src/rope.rs",
     "        if i < h {\n            let mask", "        if false {\n            let mask",
     ["rope"]),
    ("rope_start_position_ignored", "src/rope.rs",
     "Positions::Start(p0) => p0 + t % seq,", "Positions::Start(_) => t % seq,",
     ["rope"]),
    ("rope_ids_for_first_batch_only", "src/rope.rs",
     "Positions::Ids(ids) => ids[t],", "Positions::Ids(ids) => ids[t % seq],",
     ["rope"]),
    ("llama3_band_edges_swapped", "src/rope.rs",
     "if wavelen < orig / hi {", "if wavelen < orig / lo {",
     ["rope"]),
    ("rope_angle_in_f32", "src/rope.rs",
     "let angle = |w: f64| pos as f64 * w;", "let angle = |w: f64| (pos as f32 * w as f32) as f64;",
     ["rope"]),
    # The Llama layer.
    ("llama_v_rotated_not_k", "src/block/llama.rs",
     "HeadsMut::strided(&mut qkv[k_at..], 1, n, hk, hd, st)?,",
     "HeadsMut::strided(&mut qkv[v_at..], 1, n, hk, hd, st)?,",
     ["llama"]),
    ("llama_decode_positions_from_zero", "src/block/llama.rs",
     "let pos = Positions::Start(pos0);", "let pos = Positions::Start(0);",
     ["llama"]),
    # Low-precision weights and the int8 mode.
    ("q4_1_min_dropped_avx512", "src/matmul/lowp.rs",
     "f(0, s.mul_add_e_f32s(s.add_f32s(lo, eight), d, m));",
     "f(0, s.mul_f32s(s.add_f32s(lo, eight), d));",
     ["lowp"]),
    ("q4_1_nibble_halves_swapped", "src/matmul/lowp.rs",
     "let nib = s.add_f32s(unsafe { q4s::<S>(u.add(4 + byte), hi) }, eight);",
     "let nib = s.add_f32s(unsafe { q4s::<S>(u.add(4 + byte), !hi) }, eight);",
     ["lowp"]),
    ("f16_scale_subnormal_exponent", "src/matmul/lowp.rs",
     "f32::from_bits(0x3380_0000); // 2⁻²⁴", "f32::from_bits(0x3400_0000); // 2⁻²⁴",
     ["lowp"]),
    ("q4_0_quantize_unsigned_max", "src/quant/mod.rs",
     "let d = max / -8.0;", "let d = amax / -8.0;",
     ["lowp"]),
    ("int8_q8_offset_127", "src/matmul/int8.rs",
     "WeightFormat::Q8_0 => 128,", "WeightFormat::Q8_0 => 127,",
     ["int8"]),
    ("int8_activation_scale_128", "src/quant/mod.rs",
     "let s = amax / 127.0;", "let s = amax / 128.0;",
     ["int8"]),
    ("avx2_q8_sign_dropped", "src/arch/int8_avx2.rs",
     "let av = if F == 0 { _mm256_sign_epi8(av, wv) } else { av };",
     "let av = if F == 0 { av } else { av };",
     ["int8"]),
    ("avx2_q4_offset_not_taken_back", "src/arch/int8_avx2.rs",
     "s = _mm256_add_epi32(s, _mm256_zextsi128_si256(corr));",
     "s = _mm256_add_epi32(s, _mm256_setzero_si256());",
     ["int8"]),
    # The model: GGUF's permuted Q/K rows, the tokenizer's merge order.
    ("gguf_rope_half_split", "src/model/mod.rs",
     "layout: RopeLayout::Interleaved,", "layout: RopeLayout::HalfSplit,",
     ["model"]),
    ("bpe_merges_highest_rank_first", "src/model/tokenizer.rs",
     ".filter_map(|(i, w)| self.merges.get(&(w[0], w[1])).map(|&(r, t)| (r, i, t)))\n                .min();",
     ".filter_map(|(i, w)| self.merges.get(&(w[0], w[1])).map(|&(r, t)| (r, i, t)))\n                .max();",
     ["model"]),
]


def sh(cmd, cwd, env=None, quiet=True):
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    return r.returncode, r.stdout


# Test files that are modules of the one `kernels` test crate
# (tests/kernels/main.rs), run as `--test kernels -- <module>::`.
KERNELS = {"block", "int8", "llama", "lowp", "matmul", "silu"}


def run_tests(work, env, tests):
    base = ["cargo", "test", "--no-fail-fast", "--profile", "mutants"]
    runs = []
    plain = [t for t in tests if t not in KERNELS]
    merged = [t for t in tests if t in KERNELS]
    if plain:
        runs.append(base + [a for t in plain for a in ("--test", t)])
    if merged:
        runs.append(base + ["--test", "kernels", "--"] + [f"{t}::" for t in merged])
    rc, outs = 0, []
    for args in runs:
        r, out = sh(args, work, env)
        rc = rc or r
        outs.append(out)
    out = "\n".join(outs)
    failed = [l.split()[1] for l in out.splitlines()
              if l.startswith("test ") and l.rstrip().endswith("FAILED")]
    return rc, out, failed


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = sys.argv[1:]
    if argv == ["--list"]:
        for m in MUTANTS:
            print(f"{m[0]:32} {m[1]:28} tests: {', '.join(m[4])}")
        return 0
    chosen = [m for m in MUTANTS if not argv or m[0] in argv]
    base = os.environ.get("TK_MUTANTS_DIR") or os.path.join(tempfile.gettempdir(), "tk-mutants")
    work = os.path.join(base, "src")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    files = subprocess.run(["git", "ls-files"], cwd=root, stdout=subprocess.PIPE,
                           text=True, check=True).stdout.split()
    for f in files:
        os.makedirs(os.path.dirname(os.path.join(work, f)) or work, exist_ok=True)
        # copy, not copy2: fresh mtimes, so cargo never reuses a build of
        # the last mutant applied in a previous run as this baseline.
        shutil.copy(os.path.join(root, f), os.path.join(work, f))
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(base, "target"),
               CARGO_TERM_COLOR="never")
    env.pop("TK_ISA", None)

    tests = sorted({t for m in chosen for t in m[4]})
    print(f"baseline: the tests {', '.join(tests)} (profile mutants)", flush=True)
    t0 = time.time()
    rc, out, failed = run_tests(work, env, tests)
    if rc != 0:
        print(out[-4000:])
        print("the unmutated copy fails its tests: fix that first")
        return 2
    print(f"baseline passes ({time.time() - t0:.0f} s)\n", flush=True)

    rows, survived = [], 0
    for name, path, old, new, mtests in chosen:
        p = os.path.join(work, path)
        orig = open(p).read()
        if orig.count(old) != 1:
            print(f"{name}: patch does not apply ({orig.count(old)} matches in {path})")
            rows.append((name, path, "NOT APPLIED", ""))
            survived += 1
            continue
        open(p, "w").write(orig.replace(old, new))
        t0 = time.time()
        rc, out, failed = run_tests(work, env, mtests)
        open(p, "w").write(orig)
        if rc == 0:
            verdict, by = "SURVIVED", ""
            survived += 1
        elif failed:
            verdict, by = "KILLED", ", ".join(f"{t}" for t in failed)
        else:
            verdict, by = "KILLED", "build or crash: " + (out.strip().splitlines() or ["?"])[-1][:80]
        rows.append((name, path, verdict, by))
        print(f"{name:32} {verdict:9} {time.time() - t0:5.0f} s  {by}", flush=True)

    print("\n| mutant | file | result | killed by |\n|---|---|---|---|")
    for name, path, verdict, by in rows:
        print(f"| `{name}` | `{path}` | {verdict} | {by} |")
    print(f"\n{len(rows) - survived} of {len(rows)} killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
