#!/usr/bin/python3
"""Write PyTorch reference optimizer trajectories ("golden files").

Each case builds a few float32 CPU parameters, constructs a torch.optim
optimizer, and runs STEPS optimizer steps with deterministic gradients,
recording every gradient fed in and every weight after each step.  The C
conformance tests replay the gradients through paramd's optimizers and
compare the weights; they need no torch.  See goldens/README.md for the file
format.

Usage:
    /usr/bin/python3 tests/conformance/generate_goldens.py [--out DIR] [CASE ...]

Needs Debian's python3-torch and python3-numpy
(deploy/install-deps.sh --goldens).
"""

import argparse
import base64
import inspect
import json
import os
import sys
import zlib

import numpy as np
import torch

# --------------------------------------------------------------------------
# Case table: name -> (torch.optim class name, keyword arguments, subset?).
# Adding a case is one line.  Constructor arguments not given here are filled
# in from the class's own defaults, so every file states all hyperparameters.
# "subset" cases leave some tensors without a gradient in some steps (see
# SUBSET_SKIPS below).
# --------------------------------------------------------------------------
CASES = {
    "sgd_plain":          ("SGD",   dict(lr=0.1), False),
    "sgd_momentum":       ("SGD",   dict(lr=0.05, momentum=0.9), False),
    "sgd_dampening":      ("SGD",   dict(lr=0.05, momentum=0.9, dampening=0.3), False),
    "sgd_nesterov":       ("SGD",   dict(lr=0.05, momentum=0.9, nesterov=True), False),
    "sgd_weight_decay":   ("SGD",   dict(lr=0.1, weight_decay=0.01, momentum=0.5), False),
    "sgd_maximize":       ("SGD",   dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True), False),
    "sgd_subset":         ("SGD",   dict(lr=0.05, momentum=0.9), True),
    "adam_default":       ("Adam",  dict(), False),
    "adam_lr":            ("Adam",  dict(lr=0.1, betas=(0.8, 0.95), eps=1e-6), False),
    "adam_weight_decay":  ("Adam",  dict(lr=0.01, weight_decay=0.1), False),
    "adam_amsgrad":       ("Adam",  dict(lr=0.01, amsgrad=True), False),
    "adam_maximize":      ("Adam",  dict(lr=0.01, maximize=True, amsgrad=True, weight_decay=0.05), False),
    "adam_subset":        ("Adam",  dict(lr=0.01), True),
    "adamw_default":      ("AdamW", dict(), False),
    "adamw_weight_decay": ("AdamW", dict(lr=0.01, weight_decay=0.5, betas=(0.85, 0.98)), False),
    "adamw_amsgrad":      ("AdamW", dict(lr=0.01, amsgrad=True, eps=1e-4), False),
    "adamw_maximize":     ("AdamW", dict(lr=0.003, maximize=True), False),
    "adamw_subset":       ("AdamW", dict(lr=0.01, weight_decay=0.1), True),
    "adagrad_default":    ("Adagrad", dict(), False),
    "adagrad_lr_decay":   ("Adagrad", dict(lr=0.1, lr_decay=0.05, eps=1e-6), False),
    "adagrad_weight_decay": ("Adagrad", dict(lr=0.05, weight_decay=0.1, initial_accumulator_value=0.5), False),
    "adagrad_initial_accumulator": ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.1), False),
    "adagrad_maximize":   ("Adagrad", dict(lr=0.02, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.2, maximize=True), False),
    "adagrad_subset":     ("Adagrad", dict(lr=0.05, lr_decay=0.02), True),
    "rmsprop_default":    ("RMSprop", dict(), False),
    "rmsprop_centered":   ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, centered=True), False),
    "rmsprop_momentum":   ("RMSprop", dict(lr=0.005, momentum=0.9), False),
    "rmsprop_centered_momentum": ("RMSprop", dict(lr=0.003, momentum=0.5, centered=True, weight_decay=0.1), False),
    "rmsprop_weight_decay": ("RMSprop", dict(lr=0.01, alpha=0.95, weight_decay=0.05), False),
    "rmsprop_maximize":   ("RMSprop", dict(lr=0.001, weight_decay=0.01, momentum=0.8, centered=True, maximize=True), False),
    "rmsprop_subset":     ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True), True),
    "adamax_default":     ("Adamax", dict(), False),
    "adamax_betas":       ("Adamax", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-4), False),
    "adamax_weight_decay": ("Adamax", dict(lr=0.005, weight_decay=0.1), False),
    "adamax_maximize":    ("Adamax", dict(lr=0.002, weight_decay=0.02, maximize=True), False),
    "adamax_subset":      ("Adamax", dict(lr=0.01), True),
    "adadelta_default":   ("Adadelta", dict(), False),
    "adadelta_rho":       ("Adadelta", dict(lr=0.5, rho=0.95, eps=1e-4), False),
    "adadelta_weight_decay": ("Adadelta", dict(weight_decay=0.1), False),
    "adadelta_maximize":  ("Adadelta", dict(lr=0.1, weight_decay=0.05, maximize=True), False),
    "adadelta_subset":    ("Adadelta", dict(rho=0.8), True),
    # NAdam: torch 1.13's single-tensor path multiplies mu_product by mu twice
    # when it forms mu_product_next; its foreach path follows the published
    # algorithm (as PyTorch 2.x does), so these cases record that path.
    "nadam_default":      ("NAdam", dict(foreach=True), False),
    "nadam_betas":        ("NAdam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, foreach=True), False),
    "nadam_weight_decay": ("NAdam", dict(lr=0.005, weight_decay=0.1, foreach=True), False),
    "nadam_momentum_decay": ("NAdam", dict(lr=0.003, momentum_decay=0.05, foreach=True), False),
    "nadam_subset":       ("NAdam", dict(lr=0.01, foreach=True), True),
    # RAdam: torch 1.13's foreach path leaves eps out; the single-tensor path
    # (the default here) follows the published algorithm.
    "radam_default":      ("RAdam", dict(), False),
    "radam_betas":        ("RAdam", dict(lr=0.01, betas=(0.8, 0.9), eps=1e-6), False),
    "radam_weight_decay": ("RAdam", dict(lr=0.005, weight_decay=0.1), False),
    "radam_subset":       ("RAdam", dict(lr=0.01, betas=(0.9, 0.99)), True),
    "rprop_default":      ("Rprop", dict(), False),
    "rprop_etas":         ("Rprop", dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-4, 0.5)), False),
    "rprop_maximize":     ("Rprop", dict(lr=0.001, maximize=True), False),
    # Both etas round to float32 1.0: torch then zeroes the gradient wherever
    # the step-size factor is 1, including where grad * prev == 0 (prev starts
    # at 0), so the weights never move.
    "rprop_etas_near_one": ("Rprop", dict(etas=(0.99999999, 1.00000001)), False),
    "rprop_subset":       ("Rprop", dict(lr=0.02, step_sizes=(1e-3, 1.0)), True),
    "asgd_default":       ("ASGD", dict(), False),
    "asgd_averaging":     ("ASGD", dict(lr=0.05, lambd=1e-3, alpha=0.6, t0=5), False),
    "asgd_weight_decay":  ("ASGD", dict(lr=0.02, weight_decay=0.1, lambd=0.01, t0=10), False),
    "asgd_maximize":      ("ASGD", dict(lr=0.01, t0=0, maximize=True), False),
    "asgd_subset":        ("ASGD", dict(lr=0.01, lambd=0.01, t0=3), True),
}

# Parameter tensors of every case, in order.  "z" has a length that is not a
# multiple of any vector width.
TENSORS = [("w", [5]), ("x", [3, 4]), ("y", [2, 3, 2]), ("z", [257])]

STEPS = 25

# Gradient magnitudes; tensor i in step s is scaled by SCALES[(i + s) % 3], so
# every tensor sees every magnitude and the magnitudes differ between tensors.
SCALES = [1.0, 1e-3, 10.0]


def zero_step(step):
    """Steps in which every 5th element (flat index % 5 == 0) is exactly 0.

    Includes the first steps so that, without weight decay, those elements
    still have exp_avg_sq == 0 and hit the sqrt(0) + eps path."""
    return step < 3 or step % 5 == 2


# Elements of "z" whose gradient is exactly 0 in every step (flat index % 64
# == 0): their second moment stays 0 for the whole run.
Z_ALWAYS_ZERO_EVERY = 64

# Subset pattern: tensor name -> predicate on the 0-based step that says the
# tensor gets NO gradient (p.grad = None) in that step.
SUBSET_SKIPS = {
    "x": lambda step: step in (3, 4, 10),
    "z": lambda step: step % 2 == 0,
}

# Constructor arguments that select an implementation, not the math; they
# are never recorded.  foreach=False is passed explicitly (single-tensor
# path) unless a case's keyword arguments say foreach=True (for an optimizer
# whose torch 1.13 single-tensor path departs from the published algorithm
# and from later PyTorch releases); the others are left at their defaults.
IMPLEMENTATION_ARGS = {"foreach", "capturable", "differentiable", "fused"}

GENERATOR = "tests/conformance/generate_goldens.py"


def encode(tensor):
    """Standard base64 of the values as little-endian float32, C order."""
    array = np.ascontiguousarray(tensor.detach().cpu().numpy().astype("<f4"))
    return base64.b64encode(array.tobytes()).decode("ascii")


def full_kwargs(optimizer_class, kwargs):
    """The case's keyword arguments plus the class defaults for the rest."""
    full = {}
    signature = inspect.signature(optimizer_class.__init__)
    for name, parameter in signature.parameters.items():
        if name in ("self", "params") or name in IMPLEMENTATION_ARGS:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in kwargs:
            full[name] = kwargs[name]
        elif parameter.default is not inspect.Parameter.empty and \
                isinstance(parameter.default, (bool, int, float, tuple)):
            full[name] = parameter.default
        else:
            raise ValueError("%s: no value for argument %r"
                             % (optimizer_class.__name__, name))
    unknown = set(kwargs) - set(full)
    if unknown:
        raise ValueError("%s: unknown arguments %s"
                         % (optimizer_class.__name__, sorted(unknown)))
    return full


def json_value(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, tuple):
        return [json_value(v) for v in value]
    raise TypeError("cannot record %r" % (value,))


def make_gradient(shape, index, step, name):
    gradient = torch.randn(shape, dtype=torch.float32) * SCALES[(index + step) % 3]
    flat = gradient.view(-1)
    if zero_step(step):
        flat[0::5] = 0.0
    if name == "z":
        flat[0::Z_ALWAYS_ZERO_EVERY] = 0.0
    return gradient


def generate(case_name):
    class_name, kwargs, subset = CASES[case_name]
    optimizer_class = getattr(torch.optim, class_name)
    kwargs = dict(kwargs)
    foreach = kwargs.pop("foreach", False)
    kwargs = full_kwargs(optimizer_class, kwargs)

    # Stable per-case seed, independent of the order of the case table.
    torch.manual_seed(zlib.crc32(case_name.encode("utf-8")))

    initial = [torch.randn(shape, dtype=torch.float32) for _, shape in TENSORS]
    params = [torch.nn.Parameter(value.clone()) for value in initial]
    optimizer = optimizer_class(params, foreach=foreach, **kwargs)

    steps = []
    for step in range(STEPS):
        grads = {}
        for index, ((name, shape), param) in enumerate(zip(TENSORS, params)):
            # Always draw, so the random stream does not depend on skips.
            gradient = make_gradient(shape, index, step, name)
            if subset and name in SUBSET_SKIPS and SUBSET_SKIPS[name](step):
                param.grad = None
            else:
                param.grad = gradient.clone()
                grads[name] = encode(gradient)
        optimizer.step()
        weights = {name: encode(param) for (name, _), param in zip(TENSORS, params)}
        steps.append({"grads": grads, "weights": weights})

    # torch's optimizer state after the last step: every state tensor shaped
    # like its parameter (moments, buffers, ASGD's averaged weights "ax"),
    # by torch's state key.  Scalars (step counters, NAdam's mu_product) are
    # left out.
    final_state = {}
    for (name, _), param in zip(TENSORS, params):
        for key, value in optimizer.state[param].items():
            if torch.is_tensor(value) and value.shape == param.shape:
                final_state.setdefault(key, {})[name] = encode(value)

    optimizer_record = {"name": class_name}
    optimizer_record.update((k, json_value(v)) for k, v in kwargs.items())
    return {
        "name": case_name,
        "generator": GENERATOR,
        "torch_version": torch.__version__,
        "optimizer": optimizer_record,
        "tensors": [{"name": name, "shape": list(shape), "initial": encode(value)}
                    for (name, shape), value in zip(TENSORS, initial)],
        "steps": steps,
        "final_state": final_state,
    }


def main(argv=None):
    default_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens")
    parser = argparse.ArgumentParser(
        description="Write PyTorch reference optimizer trajectories.")
    parser.add_argument("--out", default=default_out,
                        help="output directory (default: %(default)s)")
    parser.add_argument("cases", nargs="*", metavar="CASE",
                        help="cases to regenerate (default: all): "
                             + ", ".join(CASES))
    args = parser.parse_args(argv)

    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error("unknown case(s): %s" % ", ".join(unknown))

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    for case_name in args.cases or list(CASES):
        golden = generate(case_name)
        path = os.path.join(args.out, case_name + ".json")
        temporary = path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump(golden, handle, indent=1)
            handle.write("\n")
        os.replace(temporary, path)
        print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
