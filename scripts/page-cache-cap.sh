#!/usr/bin/env bash
# Runs a command in a cgroup (v1 memory controller; needs root) whose memory limit drops to
# LIMIT_MIB after AFTER_S seconds: anonymous memory plus page cache above the limit is reclaimed,
# so a leafdb larger than what is left is read from disk, as on a node whose state is far larger
# than its RAM. Used for `bench leafdb` in docs/benchmarks.md ("apply_block with the page cache
# capped"): the cap comes after the bulk build, whose in-memory floor needs ~1.4 GB at 1M
# accounts. Prints the cgroup's usage before the cap and its counters at the end on stderr.
#
#   scripts/page-cache-cap.sh 26 1500 -- leafsync bench leafdb --accounts 1000000 --workdir DIR
set -euo pipefail
if [[ $# -lt 4 || $3 != "--" ]]; then
    echo "usage: $0 AFTER_S LIMIT_MIB -- COMMAND [ARGS...]" >&2
    exit 2
fi
after=$1 limit=$2
shift 3
root=/sys/fs/cgroup/memory
if [[ ! -w $root ]]; then
    echo "$0: no writable cgroup v1 memory controller at $root" >&2
    exit 1
fi
cg=$root/leafsync-cap-$$
mkdir "$cg"
trap 'rmdir "$cg" 2>/dev/null || true' EXIT
sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$cg" "$@" &
pid=$!
sleep "$after"
usage() { echo "$(( $(cat "$cg/$1") / 1048576 )) MiB"; }
echo "page-cache-cap: before the cap: $(usage memory.usage_in_bytes) used," \
    "$(awk '$1 == "cache" {print int($2 / 1048576)}' "$cg/memory.stat") MiB of it page cache" >&2
echo $(( limit * 1048576 )) > "$cg/memory.limit_in_bytes"
status=0
wait "$pid" || status=$?
echo "page-cache-cap: capped at $limit MiB after $after s; peak $(usage memory.max_usage_in_bytes)," \
    "limit hit $(cat "$cg/memory.failcnt") times, exit $status" >&2
exit "$status"
