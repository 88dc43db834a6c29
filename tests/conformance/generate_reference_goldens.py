#!/usr/bin/python3
"""Write golden files for the optimizers torch 1.13 does not have.

The trajectories come from the numpy references in reference_optimizers.py
(written from the papers, rounded exactly as paramd's kernels), in the same
format as the PyTorch goldens of generate_goldens.py (see goldens/README.md),
with "generator": "tests/conformance/generate_reference_goldens.py" and
"torch_version": null.  Tensor shapes, gradient magnitudes, zero elements and
the subset pattern are those of generate_goldens.py; the random numbers come
from numpy (seeded per case), since torch is not needed here.

Usage:
    /usr/bin/python3 tests/conformance/generate_reference_goldens.py [--out DIR] [CASE ...]

Needs python3-numpy, and python3-torch for the Muon cases: their tensors that
are not 2-D take torch.optim.AdamW's step (Muon's fallback).
"""

import argparse
import base64
import json
import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_optimizers as ref  # noqa: E402

# --------------------------------------------------------------------------
# Case table: name -> (class name, keyword arguments, subset?).  Arguments not
# given are filled in from the reference class's defaults, so every file
# states all hyperparameters.
# --------------------------------------------------------------------------
CASES = {
    "lion_default":       ("Lion", dict(), False),
    "lion_betas":         ("Lion", dict(lr=3e-3, betas=(0.8, 0.95)), False),
    "lion_weight_decay":  ("Lion", dict(lr=1e-3, weight_decay=0.5), False),
    "lion_maximize":      ("Lion", dict(lr=2e-3, weight_decay=0.1, betas=(0.95, 0.98), maximize=True), False),
    "lion_subset":        ("Lion", dict(lr=1e-3, weight_decay=0.05), True),
    "yogi_default":       ("Yogi", dict(), False),
    "yogi_betas":         ("Yogi", dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, initial_accumulator_value=0.1), False),
    "yogi_weight_decay":  ("Yogi", dict(lr=0.01, weight_decay=0.1), False),
    "yogi_maximize":      ("Yogi", dict(lr=0.005, weight_decay=0.05, initial_accumulator_value=0.0, maximize=True), False),
    "yogi_subset":        ("Yogi", dict(lr=0.02, betas=(0.9, 0.99)), True),
    "adabelief_default":  ("AdaBelief", dict(), False),
    "adabelief_betas":    ("AdaBelief", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-8), False),
    "adabelief_weight_decay": ("AdaBelief", dict(lr=0.005, weight_decay=0.1), False),
    "adabelief_maximize": ("AdaBelief", dict(lr=0.002, weight_decay=0.02, eps=1e-12, maximize=True), False),
    "adabelief_subset":   ("AdaBelief", dict(lr=0.01, betas=(0.9, 0.99)), True),
    "deltabardelta_default": ("DeltaBarDelta", dict(), False),
    "deltabardelta_rates": ("DeltaBarDelta", dict(lr=0.005, kappa=0.1, phi=0.2, theta=0.5), False),
    "deltabardelta_weight_decay": ("DeltaBarDelta", dict(lr=0.01, weight_decay=0.1), False),
    "deltabardelta_maximize": ("DeltaBarDelta", dict(lr=0.002, weight_decay=0.02, theta=0.3, maximize=True), False),
    # Narrow bounds and large steps: gains hit both max_gain and min_gain
    # (checked when the case is generated).
    "deltabardelta_clip": ("DeltaBarDelta", dict(lr=0.01, kappa=0.3, phi=0.5, theta=0.3, min_gain=0.2, max_gain=2.0), False),
    "deltabardelta_subset": ("DeltaBarDelta", dict(lr=0.01, kappa=0.2, phi=0.1), True),
    # Tensor-wise optimizers.
    "lamb_default":       ("LAMB", dict(), False),
    "lamb_weight_decay":  ("LAMB", dict(lr=0.01, weight_decay=0.01, betas=(0.8, 0.95)), False),
    "lamb_trust_clip":    ("LAMB", dict(lr=0.005, weight_decay=0.1, bias_correction=False, trust_clip=True, eps=1e-8), False),
    "lamb_apex":          ("LAMB", dict(lr=0.002, always_adapt=False, maximize=True), False),
    "lamb_subset":        ("LAMB", dict(lr=0.01, weight_decay=0.02), True),
    "lars_default":       ("LARS", dict(lr=0.5), False),
    "lars_momentum":      ("LARS", dict(lr=1.0, momentum=0.9, weight_decay=5e-4, dampening=0.1), False),
    "lars_nesterov":      ("LARS", dict(lr=0.2, momentum=0.9, nesterov=True, trust_coefficient=0.02), False),
    "lars_trust_clip":    ("LARS", dict(lr=0.01, momentum=0.5, trust_coefficient=0.5, trust_clip=True), False),
    "lars_maximize":      ("LARS", dict(lr=0.3, weight_decay=0.01, always_adapt=False, maximize=True), False),
    "lars_subset":        ("LARS", dict(lr=0.5, momentum=0.9), True),
    "adafactor_default":  ("Adafactor", dict(), False),
    "adafactor_weight_decay": ("Adafactor", dict(lr=0.05, weight_decay=0.1), False),
    "adafactor_eps":      ("Adafactor", dict(lr=0.02, beta2_decay=-0.5, eps=(1e-3, 1e-2), d=2.0), False),
    "adafactor_maximize": ("Adafactor", dict(lr=0.01, weight_decay=0.02, maximize=True), False),
    "adafactor_subset":   ("Adafactor", dict(lr=0.03), True),
    "muon_default":       ("Muon", dict(), False),
    "muon_momentum":      ("Muon", dict(lr=0.02, momentum=0.9, nesterov=False, weight_decay=0.01), False),
    "muon_match_rms":     ("Muon", dict(lr=3e-3, adjust_lr_fn="match_rms_adamw", ns_steps=3, adamw_betas=(0.8, 0.99), adamw_eps=1e-8), False),
    "muon_subset":        ("Muon", dict(lr=0.01, weight_decay=0.0), True),
}

# Tensor-wise optimizers depend on shapes: these cases add a tall matrix
# ("t", more rows than columns) and a larger one ("m") to the usual tensors.
MATRIX_CASES = ("adafactor_", "muon_")
MATRIX_TENSORS = [("t", [9, 4]), ("m", [12, 20])]

# Muon's matrix products (OpenBLAS sgemm in paramd, numpy's matmul here) do
# not round alike; its trajectories are compared within this tolerance
# (|paramd - expected| <= relative * |expected| + absolute), every other
# case bit for bit.
TOLERANCES = {"Muon": {"relative": 1e-5, "absolute": 1e-7}}

# The same tensors, steps, magnitudes and zero pattern as generate_goldens.py
# (copied: that script needs torch to import).
TENSORS = [("w", [5]), ("x", [3, 4]), ("y", [2, 3, 2]), ("z", [257])]
STEPS = 25
SCALES = [1.0, 1e-3, 10.0]
Z_ALWAYS_ZERO_EVERY = 64
SUBSET_SKIPS = {
    "x": lambda step: step in (3, 4, 10),
    "z": lambda step: step % 2 == 0,
}

GENERATOR = "tests/conformance/generate_reference_goldens.py"


def zero_step(step):
    """Steps in which every 5th element (flat index % 5 == 0) is exactly 0."""
    return step < 3 or step % 5 == 2


def encode(array):
    """Standard base64 of the values as little-endian float32, C order."""
    array = np.ascontiguousarray(np.asarray(array, dtype="<f4"))
    return base64.b64encode(array.tobytes()).decode("ascii")


def make_gradient(rng, shape, index, step, name):
    gradient = rng.standard_normal(shape, dtype=np.float32) * np.float32(
        SCALES[(index + step) % 3])
    flat = gradient.reshape(-1)
    if zero_step(step):
        flat[0::5] = 0.0
    if name == "z":
        flat[0::Z_ALWAYS_ZERO_EVERY] = 0.0
    return gradient


def json_value(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, tuple):
        return [json_value(v) for v in value]
    if isinstance(value, str):
        return value
    raise TypeError("cannot record %r" % (value,))


def generate(case_name):
    class_name, kwargs, subset = CASES[case_name]
    optimizer = getattr(ref, class_name)(**kwargs)
    rng = np.random.default_rng(zlib.crc32(case_name.encode("utf-8")))
    tensors = TENSORS + (MATRIX_TENSORS if case_name.startswith(MATRIX_CASES) else [])

    initial = [rng.standard_normal(shape, dtype=np.float32) for _, shape in tensors]
    params = [value.copy() for value in initial]
    states = [optimizer.init_state(shape) for _, shape in tensors]
    tensor_steps = [0] * len(tensors)
    clipped = [False, False]  # DeltaBarDelta: some gain reached max_gain, min_gain

    steps = []
    for step in range(STEPS):
        grads = {}
        for index, (name, shape) in enumerate(tensors):
            # Always draw, so the random stream does not depend on skips.
            gradient = make_gradient(rng, shape, index, step, name)
            if subset and name in SUBSET_SKIPS and SUBSET_SKIPS[name](step):
                continue
            grads[name] = encode(gradient)
            tensor_steps[index] += 1
            optimizer.step(params[index], gradient, states[index], tensor_steps[index])
            if class_name == "DeltaBarDelta":
                gain = states[index]["gain"]
                clipped[0] |= bool(np.any(gain == optimizer.max_gain))
                clipped[1] |= bool(np.any(gain == optimizer.min_gain))
        weights = {name: encode(param) for (name, _), param in zip(tensors, params)}
        steps.append({"grads": grads, "weights": weights})

    if class_name == "DeltaBarDelta" and case_name.endswith("_clip") and not all(clipped):
        raise AssertionError("%s: gains reached max_gain %s, min_gain %s"
                             % (case_name, clipped[0], clipped[1]))

    optimizer_record = {"name": class_name}
    optimizer_record.update((k, json_value(v)) for k, v in optimizer.hyperparameters.items())
    golden = {
        "name": case_name,
        "generator": GENERATOR,
        "torch_version": None,
        "optimizer": optimizer_record,
        "tensors": [{"name": name, "shape": list(shape), "initial": encode(value)}
                    for (name, shape), value in zip(tensors, initial)],
        "steps": steps,
        # Every state array after the last step, for tensor-wise optimizers
        # whose state has its own shapes (Adafactor's factors).
        "final_state": final_state(tensors, states) if class_name in FINAL_STATE else None,
    }
    if getattr(optimizer, "needs_torch", False):
        import torch
        golden["torch_version"] = torch.__version__  # for the AdamW fallback tensors
    if class_name in TOLERANCES:
        golden["tolerance"] = TOLERANCES[class_name]
    if golden["final_state"] is None:
        del golden["final_state"]
    return golden


# Optimizers whose final state is recorded (and checked bit for bit).
FINAL_STATE = ("LAMB", "LARS", "Adafactor")


def final_state(tensors, states):
    """{slot: {tensor: base64}} of every state array each tensor keeps."""
    record = {}
    for (name, _), state in zip(tensors, states):
        for slot, array in state.items():
            record.setdefault(slot, {})[name] = encode(array)
    return record


def main(argv=None):
    default_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens")
    parser = argparse.ArgumentParser(
        description="Write numpy reference trajectories for optimizers torch lacks.")
    parser.add_argument("--out", default=default_out,
                        help="output directory (default: %(default)s)")
    parser.add_argument("cases", nargs="*", metavar="CASE",
                        help="cases to regenerate (default: all): " + ", ".join(CASES))
    args = parser.parse_args(argv)

    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error("unknown case(s): %s" % ", ".join(unknown))

    os.makedirs(args.out, exist_ok=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
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
