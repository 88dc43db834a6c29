#!/usr/bin/python3
"""Measures the Python client (client/python/paramd) against real servers
started on loopback: PUSHPULL round trips of 1024 floats (AdamW) one at a
time over the binary protocol and over HTTP, pipelined batches, and a
large tensor on one server and split over shards.

    /usr/bin/python3 bench/python_client.py [--quick]

Prints one line per measurement (docs/PYTHON.md quotes them).
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import numpy as np  # noqa: E402

import paramd  # noqa: E402
from cluster import Cluster  # noqa: E402
from harness import Server  # noqa: E402


def model(count):
    return {"optimizer": {"name": "AdamW"}, "tensors": [{"name": "w", "shape": [count]}]}


def round_trips(client, name, grad, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        client.pushpull(name, {"w": grad})
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1e6, times[int(0.99 * (len(times) - 1))] * 1e6


def pipelined(client, name, grad, batch, batches):
    start = time.perf_counter()
    for _ in range(batches):
        pending = [client.pushpull_async(name, {"w": grad}) for _ in range(batch)]
        for p in pending:
            p.result()
    return batch * batches / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    n = 300 if args.quick else 2000
    grad = np.random.default_rng(0).standard_normal(1024).astype(np.float32)
    with Server() as server:
        tcp = paramd.Client("127.0.0.1:%d" % server.tcp_port)
        http = paramd.Client("http://127.0.0.1:%d" % server.port)
        for kind, client in (("binary", tcp), ("http", http)):
            client.create("small-" + kind, model(1024))
            round_trips(client, "small-" + kind, grad, 50)
            p50, p99 = round_trips(client, "small-" + kind, grad, n)
            print("pushpull 1024 floats, one at a time, %-6s: p50 %6.0f us  p99 %6.0f us"
                  % (kind, p50, p99))
        for batch in (32, 1000):
            rate = pipelined(tcp, "small-binary", grad, batch, max(1, 10 * n // 1000 // batch * 10)
                             if batch < 1000 else max(2, n // 500))
            print("pushpull 1024 floats, pipelined %4d in flight: %7.0f requests/s" % (batch, rate))
        big = np.random.default_rng(1).standard_normal(4 << 20).astype(np.float32)
        tcp.create("big", model(4 << 20))
        tcp.pushpull("big", {"w": big})
        reps = 5 if args.quick else 20
        start = time.perf_counter()
        for _ in range(reps):
            tcp.pushpull("big", {"w": big})
        single = (time.perf_counter() - start) / reps
        print("pushpull 4M floats (16 MiB each way), one server: %6.1f ms" % (single * 1e3))
        tcp.close()
        http.close()
    for shards in (2, 3):
        with Cluster(shards, split_threshold=1 << 20) as cluster:
            client = paramd.Client(shard_map=cluster.map_path)
            client.create("big", model(4 << 20))
            client.pushpull("big", {"w": big})
            start = time.perf_counter()
            for _ in range(reps):
                client.pushpull("big", {"w": big})
            elapsed = (time.perf_counter() - start) / reps
            print("pushpull 4M floats split over %d shards:       %6.1f ms" % (shards, elapsed * 1e3))
            client.close()


if __name__ == "__main__":
    main()
