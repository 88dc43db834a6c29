#!/usr/bin/python3
"""Write reference runs of SAM and ASAM (server/sam.h), written with torch
operations exactly as the reference implementation (github.com/davda54/sam,
Foret et al. 2021; ASAM, Kwon et al. 2021) runs them, around torch.optim
base optimizers (torch has no SAM).

Each step of a case: the gradient at the weights (the ascent push), the
perturbed weights the first step makes, the gradient there (the descent
push), and the weights after the base optimizer's step from the restored
weights.  tests/unit/test_sam.c pushes the same two gradients per step to a
paramd SAM model and compares both replies with these.

Output, one file per case, tests/conformance/sam/<case>.json:

    {"name", "generator", "torch_version", "model": <the PUT body>,
     "steps": [{"ascent_grads": {...}, "perturbed": {...},
                "descent_grads": {...}, "weights": {...}}, ...]}
"""
import json
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sam")
GENERATOR = "tests/conformance/generate_sam_goldens.py"
STEPS = 8


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


class ReferenceSAM:
    """davda54/sam's SAM.first_step and second_step."""

    def __init__(self, params, base, rho, adaptive):
        self.params, self.base, self.rho, self.adaptive = params, base, rho, adaptive
        self.old = None

    def _grad_norm(self):
        return torch.norm(torch.stack([((torch.abs(p) if self.adaptive else 1.0) * p.grad)
                                       .norm(p=2) for p in self.params]), p=2)

    @torch.no_grad()
    def first_step(self):
        grad_norm = self._grad_norm()
        scale = self.rho / (grad_norm + 1e-12)
        self.old = [p.data.clone() for p in self.params]
        for p in self.params:
            e_w = (torch.pow(p, 2) if self.adaptive else 1.0) * p.grad * scale.to(p)
            p.add_(e_w)

    @torch.no_grad()
    def second_step(self):
        for p, old in zip(self.params, self.old):
            p.data = old
        self.base.step()


def gradient(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


CASES = [
    # name, base optimizer, shapes, rho, adaptive, seed
    ("sam_sgd_momentum", {"name": "SGD", "lr": 0.1, "momentum": 0.9}, {"w": (4, 3), "b": (3,)},
     0.05, False, 1),
    ("asam_adam", {"name": "Adam", "lr": 0.01}, {"w": (3, 5)}, 0.5, True, 2),
    ("sam_adamw", {"name": "AdamW", "lr": 0.02, "weight_decay": 0.1}, {"a": (6,), "b": (2, 2)},
     0.1, False, 3),
]


def run(name, base_config, shapes, rho, adaptive, seed):
    generator = torch.Generator().manual_seed(seed)
    initial = {n: torch.randn(shape, generator=generator) for n, shape in shapes.items()}
    params = [initial[n].clone().requires_grad_(True) for n in shapes]
    keywords = {k: v for k, v in base_config.items() if k != "name"}
    base = getattr(torch.optim, base_config["name"])(params, **keywords)
    sam = ReferenceSAM(params, base, rho, adaptive)
    steps = []
    for step in range(1, STEPS + 1):
        ascent = {n: gradient(shape, seed * 1000 + 2 * step) for n, shape in shapes.items()}
        descent = {n: gradient(shape, seed * 1000 + 2 * step + 1) for n, shape in shapes.items()}
        for p, n in zip(params, shapes):
            p.grad = ascent[n].clone()
        sam.first_step()
        perturbed = {n: flat(p) for p, n in zip(params, shapes)}
        for p, n in zip(params, shapes):
            p.grad = descent[n].clone()
        sam.second_step()
        steps.append({"ascent_grads": {n: flat(g) for n, g in ascent.items()},
                      "perturbed": perturbed,
                      "descent_grads": {n: flat(g) for n, g in descent.items()},
                      "weights": {n: flat(p) for p, n in zip(params, shapes)}})
    model = {"optimizer": {"name": "SAM", "rho": rho, "adaptive": adaptive, "base": base_config},
             "tensors": [{"name": n, "shape": list(shape), "values": flat(initial[n])}
                         for n, shape in shapes.items()]}
    return {"name": name, "generator": GENERATOR, "torch_version": torch.__version__,
            "model": model, "steps": steps}


def main():
    os.makedirs(OUT, exist_ok=True)
    for case in CASES:
        document = run(*case)
        path = os.path.join(OUT, case[0] + ".json")
        with open(path, "w") as handle:
            json.dump(document, handle)
            handle.write("\n")
        print("wrote", path)


if __name__ == "__main__":
    main()
