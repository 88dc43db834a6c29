#!/usr/bin/python3
"""Distributed training of an MLP on scikit-learn's digits with paramd: 4
worker processes against 2 shards, asynchronously, bulk-synchronously and
with bounded staleness (SSP), then each mode's test accuracy.

    /usr/bin/python3 examples/digits/train.py [--out build/demo] [--plot build/demo/modes.png]

Starts the shards with deploy/local-cluster.sh (on free ports), trains one
model per mode (digits-async, digits-sync, digits-ssp), evaluates each on
the held-out test set from the weights on the shards, writes
OUT/results.json (and, with --plot, the loss-against-time figure), stops the
shards, and prints one line per mode.  `make demo` runs it.
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))

import common  # noqa: E402
import paramd  # noqa: E402


def free_base_port(shards):
    """A base port P with P + 10 i and P + 10 i + 1 free for every shard."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 10)
        sockets = []
        try:
            for i in range(shards):
                for port in (base + 10 * i, base + 10 * i + 1):
                    s = socket.socket()
                    sockets.append(s)
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free ports for the cluster")


def cluster(command, directory, *extra):
    return subprocess.run([os.path.join(ROOT, "deploy", "local-cluster.sh"), command] + list(extra)
                          + ["--dir", directory], cwd=ROOT, check=True, stdout=subprocess.PIPE,
                          text=True).stdout.strip()


def start_workers(shard_map, data, modes, out, workers, epochs):
    return [subprocess.Popen([sys.executable, os.path.join(HERE, "worker.py"),
                              "--shard-map", shard_map, "--data", data, "--modes", ",".join(modes),
                              "--index", str(i), "--workers", str(workers),
                              "--epochs", str(epochs), "--out", out],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for i in range(workers)]


def train_mode(mode, shard_map, out, processes, x_test, y_test):
    """Starts the workers' `mode` together, waits for them, evaluates."""
    name = "digits-" + mode
    with paramd.Client(shard_map=shard_map) as client:
        try:
            client.delete(name)            # a previous run's
        except paramd.ModelNotFound:
            pass
    for p in processes:                    # every worker is ready: go
        line = p.stdout.readline().strip()
        if line != "ready " + mode:
            raise SystemExit("%s: a worker failed (it said %r, exit status %r)"
                             % (mode, line, p.wait()))
    start = time.monotonic()
    for p in processes:
        p.stdin.write("go\n")
        p.stdin.flush()
    logs = [os.path.join(out, "%s-worker-%d.json" % (mode, i)) for i in range(len(processes))]
    while not all(os.path.exists(log) for log in logs):
        if any(p.poll() not in (None, 0) for p in processes):
            raise SystemExit("%s: a worker failed (exit statuses %s)"
                             % (mode, [p.poll() for p in processes]))
        time.sleep(0.05)
    seconds = time.monotonic() - start
    with paramd.Client(shard_map=shard_map) as client:
        weights = client.pull(name)
        description = client.describe(name)
    seen = [d["consistency"] for d in description.get("shards", {0: description}).values()]
    return {"mode": mode, "accuracy": common.accuracy(weights, x_test, y_test),
            "seconds": seconds, "steps": weights.steps, "logs": logs,
            "staleness_max": max(c["staleness_observed"]["max"] for c in seen),
            "staleness_mean": max(c["staleness_observed"]["mean"] for c in seen),
            "placement": {t["name"]: t.get("shards") for t in description["tensors"]}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "demo"))
    parser.add_argument("--modes", default="async,sync,ssp")
    parser.add_argument("--workers", type=int, default=common.WORKERS)
    parser.add_argument("--shards", type=int, default=common.SHARDS)
    parser.add_argument("--epochs", type=int, default=common.EPOCHS)
    parser.add_argument("--plot", help="write the figure here (PNG)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    os.makedirs(args.out, exist_ok=True)
    args.out = os.path.abspath(args.out)
    directory = os.path.join(args.out, "cluster")
    cluster("stop", directory)             # a previous run's, if it was interrupted
    base = free_base_port(args.shards)
    shard_map = cluster("start", directory, str(args.shards), "--base-port", str(base),
                        "--split-threshold", str(common.SPLIT_THRESHOLD))
    print("paramd: %d shards on 127.0.0.1:%d.. (map %s)" % (args.shards, base, shard_map),
          flush=True)
    x_train, y_train, x_test, y_test = common.load()
    data = os.path.join(args.out, "digits.npz")
    np.savez(data, x_train=x_train, y_train=y_train)
    for stale in os.listdir(args.out):
        if stale.endswith(".json") and "-worker-" in stale:
            os.remove(os.path.join(args.out, stale))
    results = {}
    processes = []
    try:
        processes = start_workers(shard_map, data, modes, args.out, args.workers, args.epochs)
        for mode in modes:
            results[mode] = train_mode(mode, shard_map, args.out, processes, x_test, y_test)
            r = results[mode]
            print("%-5s  %d workers  %4.1f s  steps by shard %s  max staleness %d  "
                  "test accuracy %.1f%%" % (mode, args.workers, r["seconds"], r["steps"],
                                           r["staleness_max"], 100 * r["accuracy"]), flush=True)
        for p in processes:
            p.stdin.close()
            if p.wait(60) != 0:
                raise SystemExit("a worker exited with status %d" % p.returncode)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
        cluster("stop", directory)
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as handle:
        json.dump(results, handle, indent=1)
    if args.plot:
        import plot
        plot.plot(results, args.plot)
        print("figure: %s" % args.plot)
    print("test accuracy: " + ", ".join("%s %.1f%%" % (m, 100 * results[m]["accuracy"])
                                        for m in modes))
    low = [m for m in modes if results[m]["accuracy"] < 0.95]
    if low:
        raise SystemExit("below 95%% test accuracy: %s" % ", ".join(low))


if __name__ == "__main__":
    main()
