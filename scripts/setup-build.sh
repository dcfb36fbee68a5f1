#!/usr/bin/env bash
# Sourced by scripts/demo.sh and by scripts/setup.sh (the tests): installs what the build needs
# when it is missing, and chooses the cargo target directory. The build needs no Node; the tests'
# Node packages are scripts/setup.sh's part. Safe to run again: it only acts on what is missing.
# Every check tests for the thing the build uses (scripts/detect.sh).
set -euo pipefail

LEAFSYNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LEAFSYNC_ROOT
source "$LEAFSYNC_ROOT/scripts/detect.sh"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
  echo "setup: cargo/rustc are missing; install Rust (rustup) first" >&2
  exit 1
fi
# The workspace uses edition 2024 and declares the oldest Rust it builds with (rust-version in
# Cargo.toml); an older rustc fails deep in the build, so say so before it starts (when the
# line cannot be read, cargo's own check remains). rustc runs from the repository root so that a
# rustup override for it counts.
rust_want="$(workspace_rust_version "$LEAFSYNC_ROOT")"
if ! rust_line="$(cd "$LEAFSYNC_ROOT" && rustc --version 2>/dev/null)"; then
  echo "setup: rustc does not run; with rustup, choose a toolchain (\`rustup default stable\`)" >&2
  exit 1
fi
read -r _ rust_have _ <<<"$rust_line" # "rustc 1.89.0 (29483883e 2025-08-04)"
if [ -n "$rust_want" ] && ! version_at_least "$rust_have" "$rust_want"; then
  echo "setup: rustc $rust_have is older than the workspace's rust-version $rust_want" \
    "(Cargo.toml, edition 2024); update it with \`rustup update stable\`" >&2
  exit 1
fi
# The rocksdb crate generates its bindings with bindgen, which loads libclang at build time.
if ! find_libclang >/dev/null; then
  echo "setup: installing libclang-dev (bindgen needs libclang to build the RocksDB bindings)"
  apt_install libclang-dev
  if ! find_libclang >/dev/null; then
    echo "setup: libclang-dev is installed but no libclang.so was found; set LIBCLANG_PATH" >&2
    exit 1
  fi
fi
# RocksDB's C++ is compiled by the cc crate, which runs `c++`.
if ! command -v c++ >/dev/null; then
  echo "setup: installing g++ (RocksDB is C++)"
  apt_install g++
fi
# tikv-jemalloc-sys (the binary's allocator) builds jemalloc with `sh configure` then `make`;
# g++ does not bring make along (build-essential does).
if ! command -v make >/dev/null; then
  echo "setup: installing make (jemalloc's build runs it)"
  apt_install make
fi

# .cargo/config.toml builds x86-64 code for x86-64-v2 with PCLMULQDQ; a CPU without them could
# build it but not run it. RUSTFLAGS (or its encoded form) replaces that choice.
if [ "$(uname -m)" = x86_64 ] && [ -z "${RUSTFLAGS:-}${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
  missing="$(missing_cpu_flags /proc/cpuinfo | tr '\n' ' ')"
  if [ -n "$missing" ]; then
    echo "setup: this CPU lacks ${missing}which the build targets (.cargo/config.toml);" \
      "build for it with RUSTFLAGS=\"-C target-cpu=native\"" >&2
    exit 1
  fi
fi

# In CI the clone is fresh each run: keep the (large) target directory outside it so the RocksDB
# build is reused between runs. Developers keep cargo's default unless they set it themselves.
if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="${LEAFSYNC_CACHE_DIR:-$HOME/.cache/leafsync}/target"
fi
mkdir -p "${CARGO_TARGET_DIR:-$LEAFSYNC_ROOT/target}"

# A first build compiles RocksDB's C++: say so, so nobody takes the silence for a hang.
if [ ! -d "${CARGO_TARGET_DIR:-$LEAFSYNC_ROOT/target}/debug/build" ] || \
   ! compgen -G "${CARGO_TARGET_DIR:-$LEAFSYNC_ROOT/target}/debug/build/librocksdb-sys-*/out" >/dev/null; then
  echo "setup: first build: compiling RocksDB's C++ takes about 16-17 minutes on 2 cores; later builds take seconds"
fi
