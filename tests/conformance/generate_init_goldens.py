#!/usr/bin/python3
"""Write PyTorch reference cases for the initializers (torch.nn.init).

paramd's random numbers are its own (counter-based, reproducible from a
seed on any machine), so the values cannot match torch's; what must match
is everything else torch.nn.init computes.  This script runs torch's own
init functions with their random draws intercepted:

- xavier_*, kaiming_*, trunc_normal_: torch.Tensor.uniform_ and normal_ are
  replaced by functions that record their arguments, so each case stores
  the exact bounds or standard deviation torch draws from (fans from the
  shape, calculate_gain, mode, the inverse-CDF interval of trunc_normal_),
  plus, for trunc_normal_, the mean and standard deviation of the truncated
  distribution (closed form).
- orthogonal_: normal_ is replaced by a copy of a fixed Gaussian matrix,
  so torch's QR, sign correction, transposition and gain act on a matrix
  the C test also has; the case stores both.

tests/unit/test_initializer.c replays tests/conformance/init/init.json.
"""
import json
import math
import os

import numpy
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init")

FAN_CASES = [
    # init name, shape, parameters
    ("xavier_uniform", [30, 20], {}),
    ("xavier_uniform", [8, 4, 3, 3], {"gain": 2.5}),
    ("xavier_normal", [20, 30], {}),
    ("xavier_normal", [16, 3, 5], {"gain": 0.5}),
    ("kaiming_uniform", [64, 32], {}),
    ("kaiming_uniform", [64, 32], {"a": 0.2, "mode": "fan_out"}),
    ("kaiming_uniform", [6, 4, 5, 5], {"nonlinearity": "relu"}),
    ("kaiming_uniform", [10, 7], {"nonlinearity": "tanh", "mode": "fan_out"}),
    ("kaiming_uniform", [10, 7], {"nonlinearity": "selu"}),
    ("kaiming_uniform", [10, 7], {"nonlinearity": "sigmoid"}),
    ("kaiming_uniform", [10, 7], {"nonlinearity": "conv2d"}),
    ("kaiming_normal", [64, 32], {}),
    ("kaiming_normal", [12, 8, 3], {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal", [9, 5], {"a": math.sqrt(5)}),
    ("kaiming_normal", [9, 5], {"nonlinearity": "linear"}),
]

TRUNC_CASES = [
    {},
    {"mean": 0.5, "std": 0.02, "a": 0.46, "b": 0.54},
    {"mean": 0.0, "std": 1.0, "a": -1.0, "b": 3.0},
    {"mean": 1.0, "std": 2.0, "a": 0.0, "b": 10.0},
]

ORTHOGONAL_SHAPES = [([5, 3], 1.0), ([3, 5], 1.0), ([4, 4], 2.0), ([4, 3, 2], 1.0),
                     ([2, 7], 0.5), ([6, 1], 1.0)]


class Recorder:
    """Replaces uniform_ and normal_ for the duration of one init call."""

    def __init__(self, gaussian=None):
        self.calls = []
        self.gaussian = gaussian

    def __enter__(self):
        self.saved = (torch.Tensor.uniform_, torch.Tensor.normal_)
        recorder = self

        def uniform_(tensor, a=0.0, b=1.0, **_):
            recorder.calls.append(("uniform", float(a), float(b)))
            return tensor

        def normal_(tensor, mean=0.0, std=1.0, **_):
            recorder.calls.append(("normal", float(mean), float(std)))
            if recorder.gaussian is not None:
                tensor.copy_(torch.tensor(recorder.gaussian, dtype=torch.float32))
            return tensor

        torch.Tensor.uniform_, torch.Tensor.normal_ = uniform_, normal_
        return self

    def __exit__(self, *exc):
        torch.Tensor.uniform_, torch.Tensor.normal_ = self.saved


def truncated_moments(mean, std, a, b):
    """Mean and standard deviation of N(mean, std) truncated to [a, b]."""
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda x: (1 + math.erf(x / math.sqrt(2))) / 2  # noqa: E731
    z = cdf(beta) - cdf(alpha)
    mu = mean + std * (pdf(alpha) - pdf(beta)) / z
    variance = std * std * (1 + (alpha * pdf(alpha) - beta * pdf(beta)) / z
                            - ((pdf(alpha) - pdf(beta)) / z) ** 2)
    return mu, math.sqrt(variance)


def main():
    os.makedirs(OUT, exist_ok=True)
    document = {"generator": "tests/conformance/generate_init_goldens.py",
                "torch_version": torch.__version__, "fans": [], "trunc_normal": [],
                "orthogonal": []}
    for name, shape, parameters in FAN_CASES:
        tensor = torch.empty(shape)
        arguments = dict(parameters)
        with Recorder() as recorder:
            getattr(torch.nn.init, name + "_")(tensor, **arguments)
        (kind, first, second), = recorder.calls
        case = {"init": name, "shape": shape, "parameters": parameters, "draw": kind}
        if kind == "uniform":
            assert first == -second
            case["bound"] = second
        else:
            assert first == 0.0
            case["std"] = second
        document["fans"].append(case)
    for parameters in TRUNC_CASES:
        full = {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0}
        full.update(parameters)
        with Recorder() as recorder:
            torch.nn.init.trunc_normal_(torch.empty(10), **parameters)
        (kind, low, high), = recorder.calls
        mu, sigma = truncated_moments(full["mean"], full["std"], full["a"], full["b"])
        document["trunc_normal"].append({"parameters": parameters, "uniform_low": low,
                                         "uniform_high": high, "mean": mu, "std": sigma})
    generator = numpy.random.RandomState(20261201)
    for shape, gain in ORTHOGONAL_SHAPES:
        rows = shape[0]
        cols = int(numpy.prod(shape)) // rows
        gaussian = generator.standard_normal((rows, cols)).astype(numpy.float32)
        tensor = torch.empty(shape)
        with Recorder(gaussian) as recorder:
            torch.nn.init.orthogonal_(tensor, gain=gain)
        assert recorder.calls[0][0] == "normal"
        document["orthogonal"].append({
            "shape": shape, "gain": gain,
            "gaussian": [float(v) for v in gaussian.reshape(-1)],
            "expected": [float(v) for v in tensor.reshape(-1).tolist()]})
    path = os.path.join(OUT, "init.json")
    with open(path, "w") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")
    print("wrote %s: %d fan cases, %d trunc_normal cases, %d orthogonal cases"
          % (path, len(document["fans"]), len(document["trunc_normal"]),
             len(document["orthogonal"])))


if __name__ == "__main__":
    main()
