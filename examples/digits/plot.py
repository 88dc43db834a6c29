#!/usr/bin/python3
"""Plots the digits example's results: training loss against time for each
consistency mode (all workers' losses, smoothed), and each mode's test
accuracy.

    /usr/bin/python3 examples/digits/plot.py build/demo/results.json build/demo/modes.png
"""

import json
import sys

import numpy as np

COLORS = {"async": "tab:blue", "sync": "tab:orange", "ssp": "tab:green"}


def smoothed_losses(logs, bins=30):
    """(bin centres in seconds, mean loss in each time bin) over all workers."""
    times, losses = [], []
    for path in logs:
        with open(path) as handle:
            log = json.load(handle)
        times += log["times"]
        losses += log["losses"]
    times, losses = np.array(times), np.array(losses)
    edges = np.linspace(0, times.max(), bins + 1)
    index = np.clip(np.digitize(times, edges) - 1, 0, bins - 1)
    centres, means = [], []
    for b in range(bins):
        chosen = losses[index == b]
        if chosen.size:
            centres.append((edges[b] + edges[b + 1]) / 2)
            means.append(chosen.mean())
    return centres, means


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2),
                                         gridspec_kw={"width_ratios": [2.2, 1]})
    for mode, result in results.items():
        centres, means = smoothed_losses(result["logs"])
        left.plot(centres, means, label="%s (%.1f s)" % (mode, result["seconds"]),
                  color=COLORS.get(mode))
    left.set_xlabel("seconds since the mode started")
    left.set_ylabel("training loss (mean over workers)")
    left.set_yscale("log")
    left.set_title("MLP on digits: 4 workers, 2 paramd shards")
    left.legend()
    left.grid(alpha=0.3)
    modes = list(results)
    accuracies = [100 * results[m]["accuracy"] for m in modes]
    bars = right.bar(modes, accuracies, color=[COLORS.get(m) for m in modes])
    for bar, value in zip(bars, accuracies):
        right.text(bar.get_x() + bar.get_width() / 2, value + 0.2, "%.1f%%" % value,
                   ha="center", va="bottom")
    right.set_ylim(min(90, min(accuracies) - 2), 100.5)
    right.set_ylabel("test accuracy (%)")
    right.set_title("held-out test set (360 images)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: plot.py RESULTS.json OUT.png")
    with open(sys.argv[1]) as handle:
        results = json.load(handle)
    plot(results, sys.argv[2])
    for mode, result in results.items():
        print("%s: test accuracy %.1f%%" % (mode, 100 * result["accuracy"]))


if __name__ == "__main__":
    main()
