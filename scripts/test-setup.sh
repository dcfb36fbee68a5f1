#!/usr/bin/env bash
# Tests scripts/detect.sh against temporary trees: a tree holding only the C++ API library
# (libclang-cpp.so.14) must count as missing, and one holding libclang.so.1 as present; the
# interop tests' Node packages count as installed only when complete and newer than the lock; the
# CPU flags the x86-64 build needs are found missing only when /proc/cpuinfo does not list them;
# versions compare part by part (the Rust and Node checks).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/detect.sh"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
record() { # name, expected, detected: counts the check and names a failure
  if [ "$2" = "$3" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $1: expected $2, detected $3" >&2
  fi
}
check() { # name, expected (present|missing), roots
  local name="$1" want="$2" got
  if LEAFSYNC_LIBCLANG_ROOTS="$3" find_libclang >/dev/null; then got=present; else got=missing; fi
  record "$name" "$want" "$got"
}
mk() { mkdir -p "$(dirname "$1")" && : >"$1"; }

mk "$tmp/cpp-only/llvm-14/lib/libclang-cpp.so.14"
mk "$tmp/cpp-only/x86_64-linux-gnu/libclang-cpp.so.14"
check "only libclang-cpp.so.14" missing "$tmp/cpp-only"

mk "$tmp/soname/llvm-14/lib/libclang.so.1"
check "libclang.so.1" present "$tmp/soname"

mk "$tmp/plain/libclang.so"
check "libclang.so" present "$tmp/plain"

mk "$tmp/versioned/x86_64-linux-gnu/libclang-14.so.1"
check "libclang-14.so.1" present "$tmp/versioned"

mk "$tmp/lookalikes/libclang_rt.asan.so"
mk "$tmp/lookalikes/libclangBasic.a"
mk "$tmp/lookalikes/libclang.so.txt"
check "lookalikes only" missing "$tmp/lookalikes"

check "no such root" missing "$tmp/nothing-here"
check "second root has it" present "$tmp/cpp-only:$tmp/soname"

# The interop tests' Node packages: every imported package present and not older than the lock.
check_modules() { # name, expected (current|stale), tree
  local name="$1" want="$2" got
  if interop_modules_current "$3"; then got=current; else got=stale; fi
  record "$name" "$want" "$got"
}
mods="$tmp/repo/tests/interop"
mk "$mods/package-lock.json"
mk "$mods/node_modules/@ethereumjs/devp2p/package.json"
touch -d '2 hours ago' "$mods/package-lock.json"
mk "$mods/node_modules/.package-lock.json"
check_modules "devp2p only (mpt missing)" stale "$tmp/repo"
mk "$mods/node_modules/@ethereumjs/mpt/package.json"
check_modules "every package, installed after the lock" current "$tmp/repo"
touch "$mods/package-lock.json"
touch -d '1 hour ago' "$mods/node_modules/.package-lock.json"
check_modules "lock changed after the install" stale "$tmp/repo"

# The CPU flags the x86-64 build needs: all listed, two missing, no flags line at all.
check_cpu() { # name, expected missing flags (space-separated), cpuinfo file
  local name="$1" want="$2" got
  got="$(missing_cpu_flags "$3" | tr '\n' ' ' | sed 's/ $//')"
  record "$name" "missing '$want'" "missing '$got'"
}
printf 'processor\t: 0\nflags\t\t: fpu sse2 ssse3 cx16 sse4_1 sse4_2 popcnt pclmulqdq avx2\n' >"$tmp/v2"
check_cpu "x86-64-v2 with pclmulqdq" "" "$tmp/v2"
printf 'processor\t: 0\nflags\t\t: fpu sse2 ssse3 cx16 sse4_1 popcnt sse4_2_like\n' >"$tmp/old"
check_cpu "no sse4_2, no pclmulqdq" "sse4_2 pclmulqdq" "$tmp/old"
printf 'processor\t: 0\n' >"$tmp/none"
check_cpu "no flags line" "sse4_2 popcnt ssse3 cx16 pclmulqdq" "$tmp/none"

# The Rust and Node version checks: numeric parts in order, suffixes ignored, unreadable = old.
at_least() { # have, want, expected (yes|no)
  local got=no
  if version_at_least "$1" "$2"; then got=yes; fi
  record "version $1 >= $2" "$3" "$got"
}
at_least 1.89.0 1.89 yes
at_least 1.95.0-nightly 1.89 yes
at_least 1.88.1 1.89 no
at_least 1.100.0 1.89 yes
at_least 2.0 1.89 yes
at_least 20.19.2 20 yes
at_least 18.20.4 20 no
at_least garbage 1.89 no
printf '[package]\nname = "x"\nrust-version = "1.89"\n' >"$tmp/Cargo.toml"
record "rust-version read from Cargo.toml" 1.89 "$(workspace_rust_version "$tmp")"

echo "setup detection: $passed passed, $failed failed"
[ "$failed" = 0 ]
