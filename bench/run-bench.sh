#!/bin/sh
# run-bench.sh - `make bench`: the update kernels against a bandwidth probe and
# torch.optim, then push round trips through a real paramd on a free port.
set -eu
BUILD=${BUILD:-build}
"$BUILD/paramd-bench" "$@"
data=$(mktemp -d)
log="$data/paramd.log"
"$BUILD/paramd" --http 127.0.0.1:0 --data-dir "$data/var" --log-level warn 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
port=""
for _ in $(seq 50); do
    port=$(sed -n 's/.*http=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "run-bench: paramd did not start:"; cat "$log"; exit 1; }
"$BUILD/paramd-bench" --http "127.0.0.1:$port"
