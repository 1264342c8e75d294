#!/usr/bin/env bash
# Starts every host of a cluster example on this machine: bash examples/cluster/start.sh chain
# (or fork, ring). Ctrl-C stops them all.
set -euo pipefail
topology=${1:?usage: start.sh chain|fork|ring}
cd "$(dirname "$0")/../.."
cargo xtask modules >/dev/null
cargo build --release -p easyrpc --quiet
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
for config in examples/cluster/"$topology"/*.toml; do
  target/release/easyrpc serve --config "$config" &
  pids+=($!)
done
wait
