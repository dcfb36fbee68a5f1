#!/usr/bin/env bash
# CI smoke run of every fuzz target: builds them all in one `cargo fuzz build`, seeds the corpora
# (seeds.sh) and runs each target for SMOKE_SECONDS (default 5) on a copy of its corpus, so the
# run leaves fuzz/corpus/ as it was. Skips (exit 0) with a message when cargo-fuzz is not
# installed: this script never installs anything. Stable rustc is used through RUSTC_BOOTSTRAP=1
# (cargo-fuzz needs nightly flags) unless FUZZ_TOOLCHAIN names a toolchain ("+nightly").
#
# Cost: the targets of leafdb, ingest and sync link RocksDB. Compiling its C++ again for the fuzz
# build would take ~16 minutes on 2 cores, so when the workspace's build has left a librocksdb.a
# (in $CARGO_TARGET_DIR or ../target), the fuzz build links that one instead (ROCKSDB_LIB_DIR;
# set ROCKSDB_COMPILE=1 to compile anyway). Then a cold build takes a few minutes, a warm one
# seconds, and the runs about SMOKE_SECONDS per target plus a few seconds of start-up each: with
# the default 5 s, about 2 minutes for the 16 targets on a 2-core machine (warm build).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${SMOKE_SECONDS:-5}"
toolchain="${FUZZ_TOOLCHAIN:-}"
if ! cargo $toolchain fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: skipped (cargo-fuzz is not installed; cargo install cargo-fuzz --locked)"
    exit 0
fi
[ -n "$toolchain" ] || export RUSTC_BOOTSTRAP=1

source rocksdb-lib.sh

bash seeds.sh
start=$(date +%s)
cargo $toolchain fuzz build
echo "fuzz smoke: build took $(($(date +%s) - start)) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=0
for target in $(cargo $toolchain fuzz list); do
    mkdir -p "$scratch/$target"
    [ -d "corpus/$target" ] && cp -r "corpus/$target/." "$scratch/$target/"
    args=(-max_total_time="$seconds" -print_final_stats=1)
    [ -f "dicts/$target.dict" ] && args+=(-dict="dicts/$target.dict")
    if cargo $toolchain fuzz run "$target" "$scratch/$target" -- "${args[@]}" \
        >"$scratch/$target.log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$target.log")
        echo "fuzz smoke: $target ok (${runs:-?} runs in ${seconds} s)"
    else
        echo "fuzz smoke: $target FAILED; its log:"
        tail -n 60 "$scratch/$target.log"
        failed=1
    fi
done
echo "fuzz smoke: done in $(($(date +%s) - start)) s"
exit "$failed"
