#!/usr/bin/env python3
"""llama.cpp (through llama-cpp-python) on a GGUF model: prefill and greedy
decode timings, and the greedy tokens, as JSON — the peer of
`examples/generate` in the same run on the same machine.

    bash scripts/peers/setup.sh          # venv outside the tree, llama.cpp built -march=native
    ~/.cache/transformer-kernels/peers-venv/bin/python scripts/peers/llamacpp_generate.py \
        --model PATH [--prompt TEXT] [--repeat-prompt N] [--max-tokens 64] \
        [--threads 1] [--runs 9]

Prints one JSON object: prompt tokens, the prompt's token ids, prefill and
decode tokens/s (median of the runs, and each run), the greedy tokens.
Greedy decoding is argmax over the logits llama.cpp returns, exactly as
`examples/generate` does.
"""

import argparse
import json
import statistics
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", default="It was the best of times, it was the worst of times,")
    ap.add_argument("--repeat-prompt", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=9)
    a = ap.parse_args()

    import numpy as np
    import llama_cpp
    from llama_cpp import Llama

    text = a.prompt * max(1, a.repeat_prompt)
    llm = Llama(
        model_path=a.model,
        n_ctx=4096,
        n_batch=1024,
        n_ubatch=1024,
        n_threads=a.threads,
        n_threads_batch=a.threads,
        logits_all=False,
        verbose=False,
    )
    prompt = llm.tokenize(text.encode(), add_bos=False, special=True)
    n_vocab = llm.n_vocab()

    def argmax_last() -> int:
        # The logits of the last token evaluated (the only one computed).
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,))))

    prefill, decode, tokens = [], [], []
    for _ in range(a.runs):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        out = [argmax_last()]
        t2 = time.perf_counter()
        while len(out) < a.max_tokens:
            llm.eval([out[-1]])
            out.append(argmax_last())
        t3 = time.perf_counter()
        prefill.append(len(prompt) / (t1 - t0))
        if len(out) > 1:
            decode.append((len(out) - 1) / (t3 - t2))
        tokens = out
    json.dump(
        {
            "peer": "llama.cpp (llama-cpp-python)",
            "version": __import__("llama_cpp").__version__,
            "model": a.model,
            "threads": a.threads,
            "prompt_tokens": len(prompt),
            "prompt_ids": prompt,
            "prefill_tok_s": statistics.median(prefill),
            "decode_tok_s": statistics.median(decode) if decode else None,
            "prefill_runs": prefill,
            "decode_runs": decode,
            "greedy": tokens,
            "text": llm.detokenize(tokens).decode("utf-8", "replace"),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
