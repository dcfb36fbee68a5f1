#!/usr/bin/env bash
# The main job, runnable on a fresh machine: generates a synthetic state of 100,000 accounts in
# a temporary datadir, prints its state root, and verifies the stored trie against the flat
# tables. Pass `--accounts N` to change the size.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$LEAFSYNC_ROOT"
accounts=100000
if [ "${1:-}" = "--accounts" ] && [ -n "${2:-}" ]; then accounts="$2"; fi
cargo build --locked --bin leafsync
bin="${CARGO_TARGET_DIR:-$LEAFSYNC_ROOT/target}/debug/leafsync"
datadir="$(mktemp -d "${TMPDIR:-/tmp}/leafsync-demo.XXXXXX")"
trap 'rm -rf "$datadir"' EXIT
echo "== generating $accounts accounts into $datadir"
root="$("$bin" tool gen-state --datadir "$datadir" --accounts "$accounts")"
echo "state root: $root"
echo "== verifying the stored trie against the flat tables"
"$bin" tool verify --datadir "$datadir"
