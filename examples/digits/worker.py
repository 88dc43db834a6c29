#!/usr/bin/python3
"""One training worker of the digits example: for each consistency mode,
trains the shared MLP on its quarter of the training set with
paramd.torch.RemoteOptimizer, and writes its losses over time to a JSON file.

    worker.py --shard-map MAP --data DATA.npz --modes async,sync,ssp --index I --workers K --out DIR

Before each mode it prints "ready MODE" and waits for a line on its standard
input, so that train.py starts the K workers of a mode together.  See
examples/README.md.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "client", "python"))

import torch  # noqa: E402

import common  # noqa: E402
from paramd.torch import RemoteOptimizer  # noqa: E402


def train(args, mode, x, y, batches):
    # Every worker builds the same initial model (seed 0): whichever creates
    # the model on a shard first, the others attach to an identical one.
    torch.manual_seed(0)
    model = common.mlp(torch)
    optimizer = RemoteOptimizer(model.named_parameters(), shard_map=args.shard_map,
                                model="digits-" + mode, optimizer=common.OPTIMIZER[mode],
                                schedule=common.schedule(mode, args.epochs * batches,
                                                         args.workers),
                                consistency=common.CONSISTENCY[mode],
                                worker="worker-%d" % args.index)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(1000 + args.index)
    times, losses, steps = [], [], []
    start = time.monotonic()
    for _ in range(args.epochs):
        order = torch.randperm(len(x), generator=generator)
        for b in range(batches):
            batch = order[b * common.BATCH:(b + 1) * common.BATCH]
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            times.append(time.monotonic() - start)
            losses.append(loss.item())
            steps.append(optimizer.last_result.step)
    optimizer.close()
    log = os.path.join(args.out, "%s-worker-%d.json" % (mode, args.index))
    with open(log + ".tmp", "w") as handle:
        json.dump({"worker": args.index, "mode": mode, "times": times, "losses": losses,
                   "steps": steps, "seconds": time.monotonic() - start}, handle)
    os.replace(log + ".tmp", log)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard-map", required=True)
    parser.add_argument("--data", required=True, help="the .npz train.py wrote")
    parser.add_argument("--modes", default="async,sync,ssp")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=common.EPOCHS)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = np.load(args.data)
    # Worker i takes every K-th training example; every worker makes the
    # same number of steps (sync mode needs all K in every step).
    x = torch.from_numpy(data["x_train"][args.index::args.workers])
    y = torch.from_numpy(data["y_train"][args.index::args.workers])
    batches = (len(data["x_train"]) // args.workers) // common.BATCH
    for mode in args.modes.split(","):
        if args.workers != common.WORKERS and common.CONSISTENCY[mode]:
            common.CONSISTENCY[mode]["workers"] = args.workers
        print("ready " + mode, flush=True)
        if not sys.stdin.readline():
            return
        train(args, mode, x, y, batches)


if __name__ == "__main__":
    main()
