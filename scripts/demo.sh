#!/usr/bin/env bash
# The main job, runnable on a fresh machine: `leafsync demo` starts 3 servers and 1 client on
# loopback over a generated state of 100,000 accounts, syncs the client from all servers at once,
# checks that its root and flat state equal the servers', and prints a summary. Extra arguments
# go to `leafsync demo` (e.g. `--accounts 1000000`, `--servers 5`).
set -euo pipefail
# The demo only builds and runs the binary: the build's set-up, without the tests' Node packages.
source "$(dirname "${BASH_SOURCE[0]}")/setup-build.sh"
cd "$LEAFSYNC_ROOT"
cargo build --locked --bin leafsync
bin="${CARGO_TARGET_DIR:-$LEAFSYNC_ROOT/target}/debug/leafsync"
"$bin" demo --workdir "${TMPDIR:-/tmp}" "$@"
