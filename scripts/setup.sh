#!/usr/bin/env bash
# Sourced by scripts/test.sh and .ci/run: installs what the build needs (scripts/setup-build.sh,
# which also chooses the cargo target directory) and then what the tests add, Node.js and the
# pinned npm packages, when it is missing or stale. Safe to run again: it only acts on what is
# missing. Every check tests for the thing the tests use (scripts/detect.sh).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/setup-build.sh"

# The interop test runs @ethereumjs/devp2p under `node`; npm installs the pinned packages.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup: installing nodejs and npm (for the ethereumjs interop test and the pinned anvil)"
  apt_install nodejs npm
fi
# Some pinned packages declare node >= 20 (tests/anvil's wrapper; lru-cache under the interop
# packages), though the tests run anvil's native binary directly and the interop packages need
# 18. npm only warns about engines, and that warning is silenced below, so say it here once
# (Debian 12's apt nodejs, for one, is 18): not a stop, since nothing here shows 18 failing.
node_want=20
node_have="$(node --version)" # "v20.19.2"
node_have="${node_have#v}"
if ! version_at_least "$node_have" "$node_want"; then
  echo "setup: warning: node $node_have ($(command -v node)) is older than some test packages" \
    "declare (node >= $node_want); if an interop test fails, install Node.js $node_want or later" \
    "(nodejs.org, NodeSource or nvm) first on PATH" >&2
fi
# --prefer-offline: a package already in ~/.npm is taken from there without asking the registry,
# so a warm cache installs with no network.
if ! interop_modules_current "$LEAFSYNC_ROOT"; then
  echo "setup: installing the interop test's Node packages (npm ci)"
  npm ci --prefix "$LEAFSYNC_ROOT/tests/interop" --prefer-offline --no-audit --no-fund \
    --loglevel=error >/dev/null
fi

# The ingest and daemon tests follow a real execution client: anvil, pinned in tests/anvil.
# Installed again, like the interop packages, when its lock file is newer than the install.
if ! anvil_current "$LEAFSYNC_ROOT"; then
  echo "setup: installing the pinned anvil for the ingest tests (npm ci)"
  npm ci --prefix "$LEAFSYNC_ROOT/tests/anvil" --prefer-offline --no-audit --no-fund \
    --loglevel=error >/dev/null
fi
