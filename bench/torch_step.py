#!/usr/bin/python3
"""Time torch.optim on one large float32 tensor, for paramd-bench.

Usage: torch_step.py OPTIMIZER ELEMENTS THREADS STEPS [ROWS]
Prints one JSON line: {"optimizer": ..., "elements": N, "threads": T,
"seconds_per_step": median, "mparams_per_second": ...}.  With ROWS > 0 the
tensor is a ROWS x (ELEMENTS / ROWS) matrix (paramd-bench gives one to the
tensor-wise optimizers).  Exits 3 if torch is not installed (Debian:
python3-torch, or deploy/install-deps.sh --goldens) and 4 if this torch has
no such optimizer (torch 1.13 has no LAMB, LARS, Adafactor or Muon).
"""
import json
import statistics
import sys
import time

try:
    import torch
except ImportError:
    print(json.dumps({"error": "torch is not installed"}))
    sys.exit(3)

# The same configurations paramd-bench times (see bench/paramd-bench.c).
CONFIGS = {
    "SGD": dict(lr=0.01, momentum=0.9, nesterov=True),
    "Adam": dict(lr=1e-3),
    "AdamW": dict(lr=1e-3, weight_decay=1e-2),
}


def main():
    name, elements, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rows = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    if not hasattr(torch.optim, name):
        print(json.dumps({"error": "torch %s has no torch.optim.%s" % (torch.__version__, name)}))
        sys.exit(4)
    torch.set_num_threads(threads)
    shape = (rows, elements // rows) if rows > 0 else (elements,)
    param = torch.nn.Parameter(torch.zeros(shape))
    param.grad = torch.randn(shape) * 1e-3
    optimizer = getattr(torch.optim, name)([param], foreach=True, **CONFIGS.get(name, {"lr": 1e-3}))
    for _ in range(2):  # first steps allocate the state
        optimizer.step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(json.dumps({"optimizer": name, "elements": elements, "threads": threads,
                      "seconds_per_step": seconds, "mparams_per_second": elements / seconds / 1e6,
                      "torch_version": torch.__version__}))


if __name__ == "__main__":
    main()
