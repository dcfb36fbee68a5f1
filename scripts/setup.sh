#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/demo.sh: installs what the build and the tests need when
# it is missing, and chooses the cargo target directory. Safe to run again: it only acts on what
# is missing.
set -euo pipefail

LEAFSYNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LEAFSYNC_ROOT

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

# The rocksdb crate generates its bindings with bindgen, which needs libclang.
if ! compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null && \
   ! compgen -G "/usr/lib/x86_64-linux-gnu/libclang*.so*" >/dev/null; then
  echo "setup: installing libclang-dev (needed to build the RocksDB bindings)"
  apt_install libclang-dev
fi
# RocksDB's C++ needs a C++ compiler.
if ! command -v c++ >/dev/null; then
  echo "setup: installing g++"
  apt_install g++
fi
if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; install Rust (rustup) first" >&2
  exit 1
fi

# The interop test drives @ethereumjs/devp2p under Node.
if ! command -v npm >/dev/null; then
  echo "setup: installing nodejs and npm (for the ethereumjs interop test)"
  apt_install nodejs npm
fi
if [ ! -d "$LEAFSYNC_ROOT/tests/interop/node_modules/@ethereumjs/devp2p" ]; then
  echo "setup: installing the interop test's Node packages (npm ci)"
  npm ci --prefix "$LEAFSYNC_ROOT/tests/interop" --no-audit --no-fund --loglevel=error >/dev/null
fi

# The ingest tests follow a real execution client: anvil, pinned in tests/anvil.
if [ ! -d "$LEAFSYNC_ROOT/tests/anvil/node_modules/@foundry-rs" ]; then
  echo "setup: installing the pinned anvil for the ingest tests (npm ci)"
  npm ci --prefix "$LEAFSYNC_ROOT/tests/anvil" --no-audit --no-fund --loglevel=error >/dev/null
fi

# In CI the clone is fresh each run: keep the (large) target directory outside it so the RocksDB
# build is reused between runs. Developers keep cargo's default unless they set it themselves.
if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="${LEAFSYNC_CACHE_DIR:-$HOME/.cache/leafsync}/target"
fi
mkdir -p "${CARGO_TARGET_DIR:-$LEAFSYNC_ROOT/target}"
