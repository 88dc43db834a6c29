#!/bin/sh
# local-cluster.sh - run N paramd shards on this machine as one parameter
# service: the default way to try sharding (docs/SHARDING.md).
#
# Usage: deploy/local-cluster.sh start N [--dir DIR] [--base-port P] [--split-threshold E]
#                                        [-- PARAMD OPTIONS...]
#        deploy/local-cluster.sh stop [--dir DIR]
#        deploy/local-cluster.sh status [--dir DIR]
#
# start writes DIR/shard-map.json (default DIR: ./var/cluster) for shards
# 0..N-1 on 127.0.0.1 with HTTP port P + 10 i and TCP port P + 10 i + 1
# (default P: 8470, so shard 0 answers where a single paramd would), starts
# build/paramd once per shard with its own data directory DIR/shard-I and
# log DIR/shard-I.log, waits until every shard listens, and prints the map's
# path.  Clients take the map: paramctl --shard-map DIR/shard-map.json ...,
# or paramd.Client(shard_map=...) in Python.  stop sends SIGTERM to every
# shard and waits for them.  Options after -- go to every paramd.
set -eu
cd "$(dirname "$0")/.."

command=${1:-}
[ -n "$command" ] || { sed -n '2,17p' "$0"; exit 2; }
shift
count=0
if [ "$command" = start ]; then
    count=${1:-}
    case "$count" in ''|*[!0-9]*) echo "local-cluster.sh: start needs a shard count" >&2; exit 2 ;; esac
    shift
fi
dir=var/cluster
base=8470
threshold=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir=$2; shift 2 ;;
        --base-port) base=$2; shift 2 ;;
        --split-threshold) threshold=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "local-cluster.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
binary=${PARAMD_BINARY:-build/paramd}

case "$command" in
start)
    [ "$count" -ge 1 ] && [ "$count" -le 64 ] || { echo "local-cluster.sh: 1 to 64 shards" >&2; exit 2; }
    [ -x "$binary" ] || { echo "local-cluster.sh: $binary not found (run make)" >&2; exit 1; }
    mkdir -p "$dir"
    if ls "$dir"/shard-*.pid >/dev/null 2>&1; then
        echo "local-cluster.sh: $dir already has a running cluster (stop it first)" >&2
        exit 1
    fi
    version=1
    [ -f "$dir/shard-map.json" ] && version=$(($(sed -n 's/.*"version": *\([0-9]*\).*/\1/p' "$dir/shard-map.json" | head -1) + 1))
    map="$dir/shard-map.json"
    {
        printf '{"version": %d,' "$version"
        [ -n "$threshold" ] && printf ' "split_threshold": %s,' "$threshold"
        printf ' "shards": ['
        i=0
        while [ "$i" -lt "$count" ]; do
            [ "$i" -gt 0 ] && printf ', '
            printf '{"id": %d, "http": "127.0.0.1:%d", "tcp": "127.0.0.1:%d"}' \
                "$i" $((base + 10 * i)) $((base + 10 * i + 1))
            i=$((i + 1))
        done
        printf ']}\n'
    } > "$map.tmp"
    mv "$map.tmp" "$map"
    i=0
    while [ "$i" -lt "$count" ]; do
        mkdir -p "$dir/shard-$i"
        "$binary" --http "127.0.0.1:$((base + 10 * i))" --tcp "127.0.0.1:$((base + 10 * i + 1))" \
            --data-dir "$dir/shard-$i" --shard-map "$map" --shard-id "$i" "$@" \
            > /dev/null 2> "$dir/shard-$i.log" &
        echo $! > "$dir/shard-$i.pid"
        i=$((i + 1))
    done
    # Wait until every shard reports that it listens (or one dies).
    i=0
    while [ "$i" -lt "$count" ]; do
        tries=0
        until grep -q "listening:" "$dir/shard-$i.log" 2>/dev/null; do
            if ! kill -0 "$(cat "$dir/shard-$i.pid")" 2>/dev/null || [ $tries -ge 300 ]; then
                echo "local-cluster.sh: shard $i did not start:" >&2
                cat "$dir/shard-$i.log" >&2
                "$0" stop --dir "$dir" >/dev/null 2>&1 || true
                exit 1
            fi
            tries=$((tries + 1))
            sleep 0.1
        done
        i=$((i + 1))
    done
    echo "$map"
    ;;
stop)
    status=0
    for pidfile in "$dir"/shard-*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        tries=0
        while kill -0 "$pid" 2>/dev/null && [ $tries -lt 600 ]; do
            tries=$((tries + 1))
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; status=1; }
        rm -f "$pidfile"
    done
    exit $status
    ;;
status)
    found=0
    for pidfile in "$dir"/shard-*.pid; do
        [ -f "$pidfile" ] || continue
        found=1
        shard=$(basename "$pidfile" .pid)
        if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "$shard: running (pid $(cat "$pidfile"))"
        else
            echo "$shard: not running"
        fi
    done
    [ $found = 1 ] || echo "no cluster in $dir"
    ;;
*)
    echo "local-cluster.sh: unknown command '$command' (start, stop, status)" >&2
    exit 2
    ;;
esac
