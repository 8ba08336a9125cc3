#!/usr/bin/env bash
# Creates the peers' venv outside the source tree, installs PyTorch, ONNX
# Runtime and onnx from PyPI (scripts/peers/torch_bench.py) and builds llama.cpp
# (llama-cpp-python 0.3.36, from its sdist) for this CPU: every x86 level
# it has (AVX2, FMA, F16C, AVX-512 with VNNI/BF16/VBMI where present) but
# not AMX, whose kernels crash inside VMs that do not grant the AMX tile
# state (seen here with GGML_NATIVE=ON: a segfault in
# ggml_backend_amx_mul_mat on an AMX-capable Xeon guest; -march=native
# turns AMX on whatever the GGML_AMX_* options say). Needs a C++ compiler;
# cmake comes from PyPI with the build.
#
#   bash scripts/peers/setup.sh     # prints the venv's python
set -euo pipefail
venv=${TK_PEERS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/transformer-kernels/peers-venv}
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import llama_cpp, torch, onnxruntime, onnx" 2>/dev/null; then
    flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
    has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma) \
-DGGML_F16C=$(has f16c) -DGGML_BMI2=$(has bmi2) -DGGML_AVX512=$(has avx512f) \
-DGGML_AVX512_VNNI=$(has avx512_vnni) -DGGML_AVX512_BF16=$(has avx512_bf16) \
-DGGML_AVX512_VBMI=$(has avx512vbmi) -DGGML_AVX_VNNI=$(has avx_vnni)" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "$venv/bin/pip" install --quiet --no-cache-dir --no-binary llama-cpp-python -r "$here/requirements.txt" >&2
fi
echo "$venv/bin/python"
