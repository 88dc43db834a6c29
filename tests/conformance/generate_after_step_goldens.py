#!/usr/bin/python3
"""Write PyTorch reference runs of the stages after the optimizer step
(server/after_step.h): weight averaging as torch.optim.swa_utils.AveragedModel
keeps it (EMA through its avg_fn, SWA by its default), Lookahead (written
here with torch tensor operations, as torch-optimizer's Lookahead, since
torch has none), and the constraints: torch.renorm for max_norm,
clamp_(min=0) for nonneg, and the QR retraction (torch.linalg.qr, Q's
columns times the signs of R's diagonal) for orthogonal.

Each case trains a small model with a torch optimizer from fixed initial
weights on fixed gradients, recording the weights (and averages) after each
step.  tests/unit/test_after_step.c creates the same model through paramd's
JSON API (the "model" body here), pushes the same gradients, and compares.

Output, one file per case, tests/conformance/after_step/<case>.json:

    {"name", "generator", "torch_version",
     "model": <the PUT body>,
     "tolerance": 0 (bit for bit) or a relative tolerance,
     "steps": [{"grads": {tensor: [...]}, "weights": {tensor: [...]},
                "ema": {...}?, "swa": {...}?}, ...]}
"""
import json
import os

import torch
from torch.optim.swa_utils import AveragedModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "after_step")
GENERATOR = "tests/conformance/generate_after_step_goldens.py"
STEPS = 12


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def make_tensors(shapes, seed):
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def gradients(shapes, step, seed):
    generator = torch.Generator().manual_seed(seed * 1000 + step)
    return {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def model_body(optimizer, shapes, initial, constraints=None, averaging=None):
    tensors = []
    for name, shape in shapes.items():
        entry = {"name": name, "shape": list(shape), "values": flat(initial[name])}
        if constraints and name in constraints:
            entry["constraint"] = constraints[name]
        tensors.append(entry)
    body = {"optimizer": optimizer, "tensors": tensors}
    if averaging:
        body["averaging"] = averaging
    return body


def torch_optimizer(config, params):
    keywords = {k: v for k, v in config.items() if k != "name"}
    return getattr(torch.optim, config["name"])(params, **keywords)


def run(name, optimizer_config, shapes, seed, after=None, lookahead=None, averaging=None,
        constraints=None, tolerance=0.0):
    initial = make_tensors(shapes, seed)
    params = {n: initial[n].clone().requires_grad_(True) for n in shapes}
    optimizer = torch_optimizer(optimizer_config, list(params.values()))
    slow = {n: params[n].detach().clone() for n in shapes} if lookahead else None
    ema_model = swa_model = None
    container = torch.nn.ParameterList([torch.nn.Parameter(params[n].detach().clone())
                                        for n in shapes])
    if averaging and "ema" in averaging:
        decay = averaging["ema"]["decay"]
        ema_model = AveragedModel(container, avg_fn=lambda avg, p, n: decay * avg + (1 - decay) * p)
    if averaging and "swa" in averaging:
        swa_model = AveragedModel(container)
    steps = []
    for step in range(1, STEPS + 1):
        grads = gradients(shapes, step, seed)
        for n in shapes:
            params[n].grad = grads[n].clone()
        optimizer.step()
        with torch.no_grad():
            if lookahead and step % lookahead["k"] == 0:
                for n in shapes:
                    slow[n].add_(params[n] - slow[n], alpha=lookahead["alpha"])
                    params[n].copy_(slow[n])
            if after:
                for n in shapes:
                    after(n, params[n])
            for p, n in zip(container, shapes):
                p.copy_(params[n])
        record = {"grads": {n: flat(grads[n]) for n in shapes},
                  "weights": {n: flat(params[n]) for n in shapes}}
        if ema_model is not None:
            ema_model.update_parameters(container)
            record["ema"] = {n: flat(p) for p, n in zip(ema_model.module, shapes)}
        if swa_model is not None:
            start, frequency = averaging["swa"]["start"], averaging["swa"]["frequency"]
            if step >= start and (step - start) % frequency == 0:
                swa_model.update_parameters(container)
            record["swa"] = {n: flat(p) for p, n in zip(swa_model.module, shapes)}
        steps.append(record)
    optimizer_json = dict(optimizer_config)
    if lookahead:
        optimizer_json = {"name": "Lookahead", "k": lookahead["k"], "alpha": lookahead["alpha"],
                          "base": optimizer_json}
    return {"name": name, "generator": GENERATOR, "torch_version": torch.__version__,
            "model": model_body(optimizer_json, shapes, initial, constraints, averaging),
            "tolerance": tolerance, "steps": steps}


def retract(matrix):
    """Q of the QR factorisation of the tensor as shape[0] rows, with Q's
    columns times the signs of R's diagonal (of the transpose when wide)."""
    rows = matrix.shape[0]
    flat_matrix = matrix.reshape(rows, -1)
    wide = flat_matrix.shape[0] < flat_matrix.shape[1]
    a = flat_matrix.t() if wide else flat_matrix
    q, r = torch.linalg.qr(a.double())
    q = q * torch.sign(torch.diagonal(r))
    q = q.t() if wide else q
    return q.float().reshape(matrix.shape)


CASES = [
    ("ema_swa_sgd", {"name": "SGD", "lr": 0.1, "momentum": 0.9}, {"w": (4, 3), "b": (3,)}, 1,
     {"averaging": {"ema": {"decay": 0.9}, "swa": {"start": 3, "frequency": 2}}}),
    ("ema_adamw", {"name": "AdamW", "lr": 0.01}, {"w": (5, 2)}, 2,
     {"averaging": {"ema": {"decay": 0.99}}}),
    ("lookahead_adam", {"name": "Adam", "lr": 0.05}, {"w": (3, 4), "b": (4,)}, 3,
     {"lookahead": {"k": 3, "alpha": 0.5}}),
    ("lookahead_sgd_swa", {"name": "SGD", "lr": 0.2}, {"w": (6,)}, 4,
     {"lookahead": {"k": 2, "alpha": 0.8}, "averaging": {"swa": {"start": 1, "frequency": 1}}}),
    ("max_norm", {"name": "SGD", "lr": 0.5}, {"w": (5, 4), "c": (3, 2, 2), "free": (7,)}, 5,
     {"constraints": {"w": {"name": "max_norm", "max_norm": 1.0},
                      "c": {"name": "max_norm", "max_norm": 0.5}},
      "after": lambda n, p: p.copy_(torch.renorm(p, 2, 0, {"w": 1.0, "c": 0.5}[n]))
      if n != "free" else None}),
    ("nonneg", {"name": "SGD", "lr": 0.3, "momentum": 0.5}, {"w": (4, 4)}, 6,
     {"constraints": {"w": "nonneg"}, "after": lambda n, p: p.clamp_(min=0)}),
    ("orthogonal", {"name": "SGD", "lr": 0.05}, {"w": (6, 3), "u": (2, 5), "k": (3, 2, 2)}, 7,
     {"constraints": {"w": "orthogonal", "u": "orthogonal", "k": "orthogonal"},
      "after": lambda n, p: p.copy_(retract(p)), "tolerance": 2e-6}),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, optimizer, shapes, seed, options in CASES:
        case = run(name, optimizer, shapes, seed, after=options.get("after"),
                   lookahead=options.get("lookahead"), averaging=options.get("averaging"),
                   constraints=options.get("constraints"),
                   tolerance=options.get("tolerance", 0.0))
        path = os.path.join(OUT, name + ".json")
        with open(path, "w") as handle:
            json.dump(case, handle)
            handle.write("\n")
        print("wrote", path)


if __name__ == "__main__":
    main()
