#!/usr/bin/env bash
# Builds the C ABI (static + shared library), then compiles and runs
# tests/capi_test.c against it: linked statically, linked against the .so,
# under AddressSanitizer, and under valgrind where installed; also compiles
# the header as C++. Run from anywhere; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(cd .. && pwd)
# --no-build: CI has built the workspace already (with the same features,
# so nothing is compiled twice).
if [ "${1:-}" != "--no-build" ]; then
    cargo build --release -p transformer-kernels-capi
fi
lib=${CARGO_TARGET_DIR:-$root/target}/release
inc=include
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc=${CC:-cc}
flags=(-std=c11 -O1 -g -Wall -Wextra -Werror -D_DEFAULT_SOURCE -I "$inc")
sys=(-lpthread -ldl -lm)

echo "-- C++ compile of the header"
echo '#include "transformer_kernels.h"
int main() { tk_config c = {TK_ISA_AUTO, 1}; (void)c; return tk_abi_version() == TK_ABI_VERSION ? 0 : 1; }' \
    | ${CXX:-c++} -x c++ -std=c++11 -Wall -Werror -I "$inc" -fsyntax-only -

echo "-- static library"
"$cc" "${flags[@]}" tests/capi_test.c "$lib/libtransformer_kernels.a" "${sys[@]}" -o "$out/static"
"$out/static"

echo "-- the README's C example"
sed -n '/^```c$/,/^```$/p' ../README.md | sed '1d;$d' > "$out/readme.c"
"$cc" "${flags[@]}" "$out/readme.c" "$lib/libtransformer_kernels.a" "${sys[@]}" -o "$out/readme"
[ "$("$out/readme")" = "4 5 10 11" ]

echo "-- shared library"
"$cc" "${flags[@]}" tests/capi_test.c -L "$lib" -ltransformer_kernels -Wl,-rpath,"$lib" -lm -o "$out/shared"
# ldd's output captured first: `ldd | grep -q` under pipefail fails at
# random when grep exits at the first match and ldd dies of SIGPIPE.
deps=$(ldd "$out/shared")
grep -qF "$lib/libtransformer_kernels.so" <<<"$deps"
"$out/shared" | tail -n 1

echo "-- AddressSanitizer (static library)"
"$cc" "${flags[@]}" -fsanitize=address -fno-omit-frame-pointer tests/capi_test.c \
    "$lib/libtransformer_kernels.a" "${sys[@]}" -o "$out/asan"
ASAN_OPTIONS=detect_leaks=1 "$out/asan" | tail -n 1

if command -v valgrind >/dev/null 2>&1; then
    echo "-- valgrind (memcheck, leaks)"
    # valgrind's CPU has no AVX-512: the test runs the levels it reports.
    # rayon's pool threads live until exit: "possibly lost", not a leak.
    valgrind -q --error-exitcode=3 --leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite,indirect \
        "$out/static" | tail -n 1
else
    echo "-- valgrind not installed: skipped"
fi
echo "-- C tests passed"
