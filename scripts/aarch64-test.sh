#!/usr/bin/env bash
# Builds, lints and tests the crate for aarch64 (the NEON level) on an x86-64
# Debian machine: Debian's Rust with the arm64 standard library, the
# aarch64 cross linker, and the test binaries run under qemu user-mode
# emulation. Emulation proves correctness only; its timings mean nothing.
#
#   bash scripts/aarch64-test.sh          # installs what is missing (root)
#
# Environment: PROPTEST_CASES (default 16 here) lowers the property tests'
# case counts and TK_TEST_LIGHT (set here) keeps the cheaper shapes of the
# loop-over-shapes tests: fewer cases, the same assertions. AARCH64_TARGET_DIR (default target/aarch64) keeps this build
# apart from the host's.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
need=(/usr/bin/rustc /usr/bin/cargo /usr/bin/clippy-driver /usr/bin/aarch64-linux-gnu-gcc
      /usr/bin/qemu-aarch64-static /usr/lib/rustlib/$target)
missing=0
for f in "${need[@]}"; do [ -e "$f" ] || missing=1; done
if [ "$missing" = 1 ]; then
    echo "-- installing Debian's Rust, the arm64 std, the cross linker and qemu"
    if [ "$(id -u)" != 0 ]; then
        echo "error: missing packages and not root; install as root:" >&2
        echo "  dpkg --add-architecture arm64 && apt-get update && apt-get install rustc-web cargo-web rust-web-clippy libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static" >&2
        exit 1
    fi
    dpkg --add-architecture arm64
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        rustc-web cargo-web rust-web-clippy libstd-rust-web-dev:arm64 \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static >/dev/null
fi

# Debian's toolchain by full path, bypassing rustup's proxies (rustup's
# toolchain has no aarch64 standard library).
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
# cargo finds `cargo-clippy` on PATH: Debian's, not rustup's.
export PATH=/usr/bin:$PATH
CARGO=/usr/bin/cargo
have=$($RUSTC --version | awk '{print $2}')
want=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
    echo "error: Debian's rustc is $have, the crate needs >= $want" >&2
    exit 1
fi
echo "-- $($RUSTC --version), target $target"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# No `-L /usr/aarch64-linux-gnu`: with it the cross loader and the multiarch
# arm64 libc mix, and a test binary spins forever inside libc.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
export CARGO_TARGET_DIR=${AARCH64_TARGET_DIR:-target/aarch64}
export PROPTEST_CASES=${PROPTEST_CASES:-16}
# The loop-over-shapes tests keep their cheaper shapes (tests/common).
export TK_TEST_LIGHT=1
export CARGO_TERM_COLOR=never

echo "-- clippy (aarch64, all targets)"
$CARGO clippy --all-targets --target $target -- -D warnings
echo "-- tests (aarch64, release, under qemu-aarch64; PROPTEST_CASES=$PROPTEST_CASES)"
$CARGO test --release --target $target
# qemu's default core has the dot-product extension, so the int8 mode ran
# its `sdot` kernel above; a Cortex-A53 has none: the portable fallback.
echo "-- int8 tests again on an emulated Cortex-A53 (no dotprod)"
QEMU_CPU=cortex-a53 $CARGO test --release --target $target --test kernels -- int8::
