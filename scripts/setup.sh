#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/demo.sh: installs what the build and the tests need when
# it is missing, and chooses the cargo target directory. Safe to run again: it only acts on what
# is missing. Every check tests for the thing the build uses (scripts/detect.sh).
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

# The interop test runs @ethereumjs/devp2p under `node`; npm installs the pinned packages.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup: installing nodejs and npm (for the ethereumjs interop test and the pinned anvil)"
  apt_install nodejs npm
fi
if ! interop_modules_current "$LEAFSYNC_ROOT"; then
  echo "setup: installing the interop test's Node packages (npm ci)"
  npm ci --prefix "$LEAFSYNC_ROOT/tests/interop" --no-audit --no-fund --loglevel=error >/dev/null
fi

# The ingest and daemon tests follow a real execution client: anvil, pinned in tests/anvil.
if [ ! -x "$(anvil_binary_path "$LEAFSYNC_ROOT")" ]; then
  echo "setup: installing the pinned anvil for the ingest tests (npm ci)"
  npm ci --prefix "$LEAFSYNC_ROOT/tests/anvil" --no-audit --no-fund --loglevel=error >/dev/null
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
