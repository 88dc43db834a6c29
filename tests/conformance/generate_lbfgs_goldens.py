#!/usr/bin/python3
"""Write PyTorch reference runs of torch.optim.LBFGS ("LBFGS goldens").

Each case minimises a deterministic function of a few parameter tensors
with torch.optim.LBFGS for several step() calls, recording every closure
call: the point (all parameters flattened in order, as torch flattens
them), the loss and the gradient there, and how many calls each step made,
and the parameters after each step.  tests/unit/test_lbfgs.c replays a case
through paramd's reverse-communication L-BFGS (server/lbfgs.c): it pushes
the recorded loss and gradient of each call, and checks that the server
asks for the same points, ends each step after the same number of calls,
and leaves the same parameters.

Functions: Rosenbrock (4 variables in two tensors of 2, from (-1.2, 1, -1.2,
1)) and a least-squares linear regression (weight [3, 4] and bias [3] on
fixed data), each without a line search and with strong_wolfe, with the
default hyperparameters and with a short history (history_size 3, so the
ring of (s, y) pairs wraps) and smaller max_iter.

Output, one file per case, tests/conformance/lbfgs/<case>.json:

    {"name": ..., "generator": ..., "torch_version": ...,
     "optimizer": {"name": "LBFGS", ...keyword arguments...},
     "tensors": [{"name": "a", "shape": [2], "values": [...]}, ...],
     "evaluations": [{"x": [...], "loss": f, "grad": [...]}, ...],
     "step_evaluations": [calls of step 1, ...],
     "results": [[parameters after step 1], ...]}
"""
import json
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lbfgs")
GENERATOR = "tests/conformance/generate_lbfgs_goldens.py"


def rosenbrock_problem():
    params = [torch.tensor([-1.2, 1.0], dtype=torch.float32, requires_grad=True),
              torch.tensor([-1.2, 1.0], dtype=torch.float32, requires_grad=True)]
    names = ["a", "b"]

    def loss():
        x = torch.cat(params)
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    return names, params, loss


def least_squares_problem():
    generator = torch.Generator().manual_seed(20261201)
    inputs = torch.randn(16, 4, generator=generator)
    true_weight = torch.randn(3, 4, generator=generator)
    targets = inputs @ true_weight.t() + 0.1 * torch.randn(16, 3, generator=generator)
    weight = torch.zeros(3, 4, dtype=torch.float32, requires_grad=True)
    bias = torch.zeros(3, dtype=torch.float32, requires_grad=True)

    def loss():
        return ((inputs @ weight.t() + bias - targets) ** 2).mean()

    return ["weight", "bias"], [weight, bias], loss


CASES = [
    # name, problem, keyword arguments, steps
    ("rosenbrock_fixed", rosenbrock_problem, {"lr": 0.1}, 3),
    ("rosenbrock_fixed_short_history", rosenbrock_problem,
     {"lr": 0.2, "history_size": 3, "max_iter": 8}, 3),
    ("rosenbrock_strong_wolfe", rosenbrock_problem, {"line_search_fn": "strong_wolfe"}, 3),
    ("rosenbrock_strong_wolfe_short_history", rosenbrock_problem,
     {"line_search_fn": "strong_wolfe", "history_size": 3, "max_iter": 10}, 3),
    ("least_squares_fixed", least_squares_problem, {"lr": 0.5, "max_iter": 10}, 2),
    ("least_squares_strong_wolfe", least_squares_problem,
     {"line_search_fn": "strong_wolfe", "history_size": 4}, 2),
]


def flat(tensors):
    return [float(v) for t in tensors for v in t.detach().reshape(-1).tolist()]


def run(name, problem, keywords, steps):
    names, params, loss_fn = problem()
    initial = [{"name": n, "shape": list(p.shape), "values": flat([p])}
               for n, p in zip(names, params)]
    optimizer = torch.optim.LBFGS(params, **keywords)
    evaluations = []

    def closure():
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        evaluations.append({"x": flat(params), "loss": float(loss),
                            "grad": flat([p.grad for p in params])})
        return loss

    step_evaluations, results = [], []
    for _ in range(steps):
        before = len(evaluations)
        optimizer.step(closure)
        step_evaluations.append(len(evaluations) - before)
        results.append(flat(params))
    optimizer_json = dict(keywords, name="LBFGS")
    return {"name": name, "generator": GENERATOR, "torch_version": torch.__version__,
            "optimizer": optimizer_json, "tensors": initial, "evaluations": evaluations,
            "step_evaluations": step_evaluations, "results": results}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, problem, keywords, steps in CASES:
        case = run(name, problem, keywords, steps)
        path = os.path.join(OUT, name + ".json")
        with open(path, "w") as handle:
            json.dump(case, handle)
            handle.write("\n")
        print("wrote %s: %d steps, %s evaluations" % (path, steps, case["step_evaluations"]))


if __name__ == "__main__":
    main()
