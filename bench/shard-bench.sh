#!/bin/sh
# shard-bench.sh - PUSHPULL throughput of the C client library against one
# unsharded paramd and against sharded services of 1 to MAX shards
# (deploy/local-cluster.sh), with build/paramd-shard-bench; one JSON line
# per configuration.  Arguments after the options go to paramd-shard-bench
# (e.g. --rounds 40 --clip 1.0).
#
# Usage: bench/shard-bench.sh [--max-shards N] [--base-port P] [-- BENCH OPTIONS...]
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
max=3
base=24470
while [ $# -gt 0 ]; do
    case "$1" in
        --max-shards) max=$2; shift 2 ;;
        --base-port) base=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "shard-bench.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
dir=$(mktemp -d)
trap 'deploy/local-cluster.sh stop --dir "$dir/cluster" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
# The single server: the first cluster's shard 0 ports are not in use yet.
"$BUILD/paramd" --http 127.0.0.1:0 --tcp "127.0.0.1:$((base - 9))" --data-dir "$dir/single" \
    --log-level warn 2>"$dir/single.log" &
single=$!
sleep 1
echo "unsharded:"
"$BUILD/paramd-shard-bench" --tcp "127.0.0.1:$((base - 9))" "$@"
kill $single
wait $single || true
n=1
while [ "$n" -le "$max" ]; do
    # Split everything above 1M elements, so that 4M-element tensors split.
    map=$(PARAMD_BINARY="$BUILD/paramd" deploy/local-cluster.sh start "$n" --dir "$dir/cluster" \
          --base-port "$base" --split-threshold 1048576)
    echo "$n shard(s):"
    "$BUILD/paramd-shard-bench" --shard-map "$map" "$@"
    deploy/local-cluster.sh stop --dir "$dir/cluster"
    rm -f "$dir/cluster/shard-map.json"
    n=$((n + 1))
done
