#!/usr/bin/env bash
# Detection helpers sourced by scripts/setup-build.sh, so by scripts/setup.sh too (and exercised
# by scripts/test-setup.sh). Each tests for the exact thing the build or the tests use, not for
# something with a similar name.

# Directories searched for libclang, in the order clang-sys (bindgen's loader) searches them:
# $LIBCLANG_PATH, `llvm-config --libdir`, $LD_LIBRARY_PATH, then the system library directories.
# LEAFSYNC_LIBCLANG_ROOTS (colon-separated) replaces the whole list; the detection test uses it.
libclang_search_roots() {
  if [ -n "${LEAFSYNC_LIBCLANG_ROOTS:-}" ]; then
    tr ':' '\n' <<<"$LEAFSYNC_LIBCLANG_ROOTS"
    return
  fi
  [ -n "${LIBCLANG_PATH:-}" ] && tr ':' '\n' <<<"$LIBCLANG_PATH"
  if command -v llvm-config >/dev/null 2>&1; then llvm-config --libdir 2>/dev/null || true; fi
  [ -n "${LD_LIBRARY_PATH:-}" ] && tr ':' '\n' <<<"$LD_LIBRARY_PATH"
  local d
  for d in /usr/local/llvm*/lib* /usr/local/lib* /usr/lib* /usr/lib/llvm-*/lib; do
    [ -d "$d" ] && echo "$d"
  done
}

# The first libclang that bindgen can load: `libclang.so`, `libclang-<N>.so`, `libclang.so.<N>`
# or `libclang-<N>.so.<M>`, in a search root or up to two directories below it. The C++ API
# library `libclang-cpp.so*` has a similar name but is not what bindgen loads, so it never counts.
find_libclang() {
  local root hit
  while IFS= read -r root; do
    [ -n "$root" ] && [ -d "$root" ] || continue
    hit="$(find -L "$root" -maxdepth 3 \( -type f -o -type l \) -regextype posix-extended \
      -regex '.*/libclang(-[0-9][0-9.]*)?\.so(\.[0-9][0-9.]*)?' -print -quit 2>/dev/null || true)"
    if [ -n "$hit" ]; then
      echo "$hit"
      return 0
    fi
  done < <(libclang_search_roots)
  return 1
}

# The anvil binary the ingest and daemon tests run (not just its package directory).
anvil_binary_path() {
  echo "$1/tests/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
}

# The module the interop test imports (tests/interop/peer.mjs).
devp2p_module_path() {
  echo "$1/tests/interop/node_modules/@ethereumjs/devp2p/package.json"
}

# Whether the npm install in the package directory $1 is not older than its lock file: npm
# writes node_modules/.package-lock.json at the end of each install, so a lock file that a
# checkout changed afterwards (a package added or bumped) is newer and calls for `npm ci` again.
npm_install_current() {
  [ -f "$1/node_modules/.package-lock.json" ] &&
    ! [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]
}

# Whether tests/interop/node_modules holds every package the interop tests import
# (@ethereumjs/devp2p for peer.mjs and snap_peer.mjs, @ethereumjs/mpt for range_proof.mjs) and
# is not older than the lock file (a checkout that added a package installs again).
interop_modules_current() {
  [ -f "$(devp2p_module_path "$1")" ] &&
    [ -f "$1/tests/interop/node_modules/@ethereumjs/mpt/package.json" ] &&
    npm_install_current "$1/tests/interop"
}

# Whether the pinned anvil is installed (its binary, not just its package directory) and not
# older than tests/anvil/package-lock.json (a checkout that bumped anvil installs again).
anvil_current() {
  [ -x "$(anvil_binary_path "$1")" ] && npm_install_current "$1/tests/anvil"
}

# The oldest Rust the workspace builds with: rust-version in the root Cargo.toml (empty if none).
workspace_rust_version() {
  awk -F'"' '/^rust-version[[:space:]]*=/ { print $2; exit }' "$1/Cargo.toml"
}

# Whether the dotted version $1 is at least $2: numeric parts compared in order, a missing part
# counting as 0 and a suffix such as "-nightly" ignored (`version_at_least 1.95.0 1.89` holds).
# A part that is not a number counts as too old, so a version nobody can read never passes.
version_at_least() {
  local -a have want
  local i h w
  IFS=. read -r -a have <<<"${1%%-*}"
  IFS=. read -r -a want <<<"${2%%-*}"
  for ((i = 0; i < ${#have[@]} || i < ${#want[@]}; i++)); do
    h="${have[i]:-0}"
    w="${want[i]:-0}"
    [[ "$h" =~ ^[0-9]+$ && "$w" =~ ^[0-9]+$ ]] || return 1
    if ((10#$h > 10#$w)); then return 0; fi
    if ((10#$h < 10#$w)); then return 1; fi
  done
  return 0
}

# The CPU flags (as /proc/cpuinfo names them) that the x86-64 build of .cargo/config.toml needs
# (x86-64-v2 with PCLMULQDQ) and that the cpuinfo file $1 does not list, one per line: a binary
# built for them stops with "Illegal instruction" on such a CPU.
missing_cpu_flags() {
  local flags want
  flags=" $(grep -m1 '^flags' "$1" 2>/dev/null | cut -d: -f2 || true) "
  for want in sse4_2 popcnt ssse3 cx16 pclmulqdq; do
    [[ "$flags" == *" $want "* ]] || echo "$want"
  done
}
