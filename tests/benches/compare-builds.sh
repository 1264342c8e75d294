#!/bin/bash
# Compares the sequential latency of two or more builds of the wire bench, taking turns, so that
# the machine's drift (these machines are shared) falls on every build alike.
#
#   cargo bench -p easyrpc-tests --bench wire --no-run   # once per build; copy the binary it
#   cp target/release/deps/wire-<hash> /tmp/wire-before   # names, before and after a change
#   bash tests/benches/compare-builds.sh 5 /tmp/wire-before /tmp/wire-after
#
# Each round runs every binary's `--profile latency 6` (its paths already take turns within a
# run) and prints, per build and path, the median and mean over all tables of p50 minus the
# echo's p50 in the same table.
set -euo pipefail
rounds=$1
shift
cd "$(dirname "$0")/.."
out=$(mktemp)
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    "$bin" --profile latency 6 2>/dev/null | awk -v b="$(basename "$bin")" '
      /raw websocket echo/   {e=$5}
      /RPC add, raw client/  {print b, "host-fresh", $6-e}
      /RPC add \(json\)/     {print b, "rpc-fresh", $5-e}
      /RPC add, reused inst/ {print b, "rpc-reused", $6-e}
      /reused, raw client/   {print b, "host-reused", $5-e}'
  done
done > "$out"
python3 - "$out" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    build, path, delta = line.split()
    rows[(path, build)].append(float(delta))
for (path, build), deltas in sorted(rows.items()):
    print(f"{path:12} {build:16} n={len(deltas):3}  p50 - echo: median {statistics.median(deltas):+6.1f} us, mean {statistics.mean(deltas):+6.1f} us")
PY
rm -f "$out"
