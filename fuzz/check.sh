#!/usr/bin/env bash
# CI check that every fuzz target still compiles against the crates' API. The fuzz crate is a
# workspace of its own, so `cargo test --workspace` never builds it; without this a refactor could
# break a target unseen until the next fuzzing run. Plain `cargo check` (no cargo-fuzz, no
# sanitizer, stable toolchain), linking the workspace's RocksDB (rocksdb-lib.sh): about 50 s the
# first time on 2 cores, seconds after.
set -euo pipefail
cd "$(dirname "$0")"
source rocksdb-lib.sh
cargo check --bins --locked
