#!/usr/bin/env bash
# Runs the whole test suite (unit, integration, interop, crash and network tests on loopback).
# Installs what the build and the tests need first; see scripts/setup.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$LEAFSYNC_ROOT"
cargo test --workspace --all-targets --locked "$@"
