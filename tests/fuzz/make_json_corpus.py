#!/usr/bin/python3
"""Writes the seed inputs of the JSON fuzz targets (tests/fuzz/fuzz_*.c):

    tests/fuzz/corpus/model_config/   PUT /v1/models/{name} bodies
    tests/fuzz/corpus/push/           a model selector byte + a push body
    tests/fuzz/corpus/patch/          a model selector byte + a PATCH body
    tests/fuzz/corpus/shard_map/      shard-map files

Every seed is a valid request (a few deliberately carry one mistake, so
the error paths start covered too), written as the server receives it.
Run by `make fuzz-corpus`; the files are committed.  The selector byte
picks the model of fuzz_push.c / fuzz_patch.c (index modulo their count).

It also writes tests/fuzz/json.dict, the libFuzzer dictionary `make fuzz`
gives the JSON targets: every identifier-like string literal of the
server's JSON parsers, optimizers, schedules and initializers, quoted as
JSON keys and values, and a few JSON tokens.
"""

import base64
import glob
import json
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
T = [{"name": "w", "shape": [3], "values": [1, 2, 3]},
     {"name": "b", "shape": [2, 2], "init": {"name": "normal", "std": 0.02, "seed": 7}}]
M = [{"name": "m", "shape": [4, 3], "init": {"name": "kaiming_uniform", "a": 2.2, "seed": 1}}]


def b64(fmt, values):
    return base64.b64encode(struct.pack("<%d%s" % (len(values), fmt), *values)).decode()


def f16(values):
    return b64("e", values)


def bf16(values):
    out = b""
    for v in values:
        out += struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:]
    return base64.b64encode(out).decode()


MODEL_CONFIGS = {
    "sgd": {"optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9}, "tensors": T},
    "sgd-nesterov": {"optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                                   "weight_decay": 1e-4, "maximize": False}, "tensors": T},
    "adam": {"optimizer": {"name": "Adam", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8,
                           "amsgrad": True}, "tensors": T},
    "adamw-groups": {"optimizer": {"name": "AdamW", "lr": 1e-3, "weight_decay": 0.01},
                     "param_groups": [{"tensors": ["b"], "weight_decay": 0}], "tensors": T},
    "adagrad": {"optimizer": {"name": "Adagrad", "lr": 0.01, "lr_decay": 0.1,
                              "initial_accumulator_value": 0.1}, "tensors": T},
    "rmsprop": {"optimizer": {"name": "RMSprop", "lr": 0.01, "centered": True, "momentum": 0.5},
                "tensors": T},
    "adamax": {"optimizer": {"name": "Adamax"}, "tensors": T},
    "adadelta": {"optimizer": {"name": "Adadelta", "rho": 0.8}, "tensors": T},
    "nadam": {"optimizer": {"name": "NAdam", "momentum_decay": 0.004}, "tensors": T},
    "radam": {"optimizer": {"name": "RAdam"}, "tensors": T},
    "rprop": {"optimizer": {"name": "Rprop", "etas": [0.5, 1.2], "step_sizes": [1e-6, 50]},
              "tensors": T},
    "asgd": {"optimizer": {"name": "ASGD", "t0": 2}, "tensors": T},
    "lion": {"optimizer": {"name": "Lion", "lr": 1e-4}, "tensors": T},
    "yogi": {"optimizer": {"name": "Yogi"}, "tensors": T},
    "adabelief": {"optimizer": {"name": "AdaBelief"}, "tensors": T},
    "deltabardelta": {"optimizer": {"name": "DeltaBarDelta"}, "tensors": T},
    "lamb": {"optimizer": {"name": "LAMB"}, "tensors": T},
    "lars": {"optimizer": {"name": "LARS", "lr": 0.1}, "tensors": T},
    "adafactor": {"optimizer": {"name": "Adafactor"}, "tensors": M},
    "muon": {"optimizer": {"name": "Muon", "lr": 0.02}, "tensors": M},
    "lbfgs": {"optimizer": {"name": "LBFGS", "lr": 1, "history_size": 3,
                            "line_search_fn": "strong_wolfe"}, "tensors": T},
    "sam": {"optimizer": {"name": "SAM", "rho": 0.05, "adaptive": True,
                          "base": {"name": "SGD", "lr": 0.1, "momentum": 0.9}}, "tensors": T},
    "sam-momentum": {"optimizer": {"name": "SAM", "variant": "momentum",
                                   "base": {"name": "Adam"}}, "tensors": T},
    "lookahead": {"optimizer": {"name": "Lookahead", "k": 5, "alpha": 0.5,
                                "base": {"name": "AdamW", "lr": 1e-3}}, "tensors": T},
    "constraints": {"optimizer": {"name": "SGD", "lr": 0.1}, "tensors": [
        {"name": "emb", "shape": [4, 3], "constraint": {"name": "max_norm", "max_norm": 2.0}},
        {"name": "q", "shape": [3, 3], "init": {"name": "orthogonal", "seed": 2},
         "constraint": "orthogonal"},
        {"name": "s", "shape": [3, 1], "init": {"name": "uniform", "a": -0.5, "b": 0.5},
         "constraint": "nonneg"}]},
    "averaging": {"optimizer": {"name": "SGD", "lr": 0.1},
                  "averaging": {"ema": {"decay": 0.999}, "swa": {"start": 1, "frequency": 2}},
                  "tensors": T},
    "schedule-sequential": {"optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9},
                            "schedule": {"name": "SequentialLR", "milestones": [2], "schedulers": [
                                {"name": "LinearLR", "start_factor": 0.5, "total_iters": 2},
                                {"name": "CosineAnnealingLR", "T_max": 4}]},
                            "tensors": T},
    "schedule-onecycle": {"optimizer": {"name": "Adam"},
                          "schedule": {"name": "OneCycleLR", "max_lr": 0.5, "total_steps": 10,
                                       "three_phase": True}, "tensors": T},
    "schedule-cyclic": {"optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9},
                        "schedule": {"name": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1,
                                     "step_size_up": 2, "mode": "exp_range", "gamma": 0.9},
                        "tensors": T},
    "schedule-plateau": {"optimizer": {"name": "SGD", "lr": 0.1},
                         "schedule": {"name": "ReduceLROnPlateau", "patience": 0, "factor": 0.5},
                         "tensors": T},
    "schedule-multistep": {"optimizer": {"name": "SGD", "lr": 0.1},
                           "schedule": {"name": "MultiStepLR", "milestones": [1, 3], "gamma": 0.1},
                           "tensors": T},
    "schedule-warm-restarts": {"optimizer": {"name": "SGD", "lr": 0.1},
                               "schedule": {"name": "CosineAnnealingWarmRestarts", "T_0": 2,
                                            "T_mult": 2}, "tensors": T},
    "schedule-polynomial": {"optimizer": {"name": "SGD", "lr": 0.1},
                            "schedule": {"name": "PolynomialLR", "total_iters": 4, "power": 2},
                            "tensors": T},
    "pipeline": {"optimizer": {"name": "AdamW", "lr": 1e-3}, "loss_scale": "dynamic",
                 "clip": {"max_norm": 1.0, "norm_type": "inf"},
                 "accumulate": {"steps": 2, "mode": "mean"},
                 "grad_noise": {"eta": 0.01, "gamma": 0.55, "seed": 1}, "tensors": T},
    "clip-agc": {"optimizer": {"name": "SGD", "lr": 0.1}, "clip": {"agc": 0.01, "eps": 1e-3},
                 "nonfinite": "skip", "tensors": T},
    "clip-value": {"optimizer": {"name": "SGD", "lr": 0.1}, "clip": {"value": 0.5},
                   "nonfinite": "zero", "tensors": T},
    "loss-scale-object": {"optimizer": {"name": "SGD", "lr": 0.1},
                          "loss_scale": {"init_scale": 1024, "growth_factor": 2,
                                         "backoff_factor": 0.5, "growth_interval": 2},
                          "tensors": T},
    "sync": {"optimizer": {"name": "SGD", "lr": 0.1},
             "consistency": {"mode": "sync", "workers": 1, "timeout": 1}, "tensors": T},
    "ssp": {"optimizer": {"name": "SGD", "lr": 0.1},
            "consistency": {"mode": "ssp", "workers": 2, "staleness": 1}, "tensors": T},
    "async-staleness": {"optimizer": {"name": "SGD", "lr": 0.1},
                        "consistency": {"mode": "async", "staleness_lr": True}, "tensors": T},
    "values-b64": {"optimizer": {"name": "SGD", "lr": 0.1}, "tensors": [
        {"name": "x", "shape": [2], "values": {"dtype": "float32", "b64": b64("f", [1.5, -2])}},
        {"name": "y", "shape": [3], "values": {"dtype": "float16", "b64": f16([1, 2, 0.5])}},
        {"name": "z", "shape": [2], "values": {"dtype": "bfloat16", "b64": bf16([1, -1])}}]},
    "init-many": {"optimizer": {"name": "SGD", "lr": 0.1}, "tensors": [
        {"name": "a", "shape": [4, 2], "init": {"name": "xavier_normal", "gain": 1.0, "seed": 3}},
        {"name": "c", "shape": [2, 2, 2], "init": {"name": "kaiming_normal", "mode": "fan_out",
                                                   "nonlinearity": "relu", "seed": 4}},
        {"name": "d", "shape": [5], "init": {"name": "constant", "val": 0.5}},
        {"name": "e", "shape": [3, 3], "init": {"name": "ones"}},
        {"name": "f", "shape": [4], "init": {"name": "trunc_normal", "std": 0.1, "seed": 5}},
        {"name": "g", "shape": [2, 3], "init": {"name": "xavier_uniform", "seed": 6}}]},
    "bad-shape": {"optimizer": {"name": "SGD", "lr": 0.1},
                  "tensors": [{"name": "w", "shape": [2], "values": [1, 2, 3]}]},
    "bad-lr": {"optimizer": {"name": "Adam", "lr": -1}, "tensors": T},
}

PUSH_BODIES = [
    (0, {"grads": {"w": [0.1, 0.2, 0.3]}, "worker": "w0"}),
    (0, {"grads": {"w": [0.1, 0.2, 0.3], "b": [1, 2, 3, 4]}, "loss": 0.5, "version": 0}),
    (1, {"grads": {"w": {"dtype": "float32", "b64": b64("f", [0.5, 1, -1])}}, "grad_norm": 2.0}),
    (1, {"grads": {"b": {"dtype": "float16", "b64": f16([1, 2, 3, 4])}}, "worker": "x"}),
    (2, {"grads": {"w": {"dtype": "bfloat16", "b64": bf16([1, 2, 3])}}, "loss_scale": 65536}),
    (2, {"grads": {"w": {"dtype": "float32", "b64": b64("f", [float("nan"), 1, 2])}}}),
    (3, {"grads": {"w": [1, 1, 1], "b": [1, 1, 1, 1]}, "worker": "s"}),
    (4, {"grads": {"w": [1, 1, 1], "b": [1, 1, 1, 1]}, "loss": 3.0}),
    (5, {"grads": {"w": [1, 2, 3], "b": [0, 0, 0, 0]}, "loss": 1.0}),
    (6, {"grads": {"b": [1, 2, 3, 4]}}),
    (7, {"grads": {"w": [1, 2, 3]}, "worker": "a", "version": 0}),
    (0, {"grads": {"nope": [1]}}),
    (0, {"grads": {"w": [1, 2]}}),
    (0, {"grads": {"w": [1, 2, 3]}, "loss": "x"}),
]

PATCH_BODIES = [
    (0, {"optimizer": {"lr": 0.05, "weight_decay": 1e-4}}),
    (0, {"param_groups": [{"lr": 0.01, "dampening": 0.1}]}),
    (0, {"optimizer": {"name": "SGD", "nesterov": True}, "clip": {"max_norm": 5}}),
    (1, {"schedule": {"name": "StepLR", "step_size": 2, "gamma": 0.5}, "optimizer": {"lr": 0.1}}),
    (1, {"schedule": None, "clip": None}),
    (1, {"clip": {"max_norm": 1.0, "per_tensor": True}, "nonfinite": "zero"}),
    (2, {"loss_scale": {"init_scale": 8, "growth_interval": 1}}),
    (2, {"loss_scale": None, "grad_noise": None}),
    (2, {"grad_noise": {"eta": 0.1, "gamma": 0.6, "seed": 2}, "optimizer": {"betas": [0.8, 0.9]}}),
    (3, {"optimizer": {"alpha": 0.9, "eps": 1e-6}, "nonfinite": "error"}),
    (4, {"optimizer": {"lr": 1e-3, "betas": [0.9, 0.99]}}),
    (0, {"optimizer": {"momentum": 0}}),
    (3, {"optimizer": {"centered": False}}),
]

SHARD_MAPS = {
    "one": {"version": 1, "shards": [{"id": 0, "http": "127.0.0.1:8470", "tcp": "127.0.0.1:8471"}]},
    "two": {"version": 3, "split_threshold": 4194304, "shards": [
        {"id": 1, "http": "127.0.0.1:8480", "tcp": "127.0.0.1:8481"},
        {"id": 0, "http": "127.0.0.1:8470", "tcp": "127.0.0.1:8471"}]},
    "ipv6": {"version": 2, "split_threshold": 4, "shards": [
        {"id": 0, "http": "[::1]:8470"}, {"id": 1, "tcp": "[::1]:8481"},
        {"id": 2, "http": "localhost:1", "tcp": "10.0.0.3:65535"}]},
    "bad-duplicate": {"version": 1, "shards": [{"id": 0, "http": "a:1"}, {"id": 0, "http": "b:2"}]},
    "bad-port": {"version": 1, "shards": [{"id": 0, "http": "127.0.0.1:99999"}]},
    "bad-field": {"version": 1, "shards": [{"id": 0, "http": "a:1", "grpc": "a:2"}]},
}


def write(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as handle:
        handle.write(data)


def write_dictionary(path):
    server = os.path.join(os.path.dirname(os.path.dirname(ROOT)), "server")
    words = set()
    for source in sorted(glob.glob(os.path.join(server, "*.c"))):
        if not re.search(r"/(json_|optimizer|schedule|initializer|clip|loss_scale|"
                         r"consistency|after_step|sam|lbfgs|grad_noise|accumulate|"
                         r"nonfinite|http_routes)", source):
            continue
        with open(source) as handle:
            words.update(re.findall(r'"([A-Za-z_][A-Za-z0-9_]{1,40})"', handle.read()))
    tokens = ['"\\"\\":"', '"{"', '"}"', '"["', '"]"', '","', '"null"', '"true"',
              '"false"', '"1e308"', '"-0"', '"1e-45"', '"4294967296"', '"9223372036854775807"',
              '"\\"b64\\":"', '"\\"dtype\\":\\"float16\\""']
    with open(path, "w") as handle:
        handle.write("# Written by tests/fuzz/make_json_corpus.py: names the JSON parsers know.\n")
        for token in tokens:
            handle.write(token + "\n")
        for word in sorted(words):
            handle.write('"\\"%s\\""\n' % word)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "corpus")
    write_dictionary(os.path.join(os.path.dirname(root), "json.dict"))
    for name, body in MODEL_CONFIGS.items():
        write(os.path.join(root, "model_config"), name, json.dumps(body).encode())
    for i, (model, body) in enumerate(PUSH_BODIES):
        write(os.path.join(root, "push"), "push-%02d" % i,
              bytes([model]) + json.dumps(body, allow_nan=True).encode())
    for i, (model, body) in enumerate(PATCH_BODIES):
        write(os.path.join(root, "patch"), "patch-%02d" % i, bytes([model]) + json.dumps(body).encode())
    for name, body in SHARD_MAPS.items():
        write(os.path.join(root, "shard_map"), name, json.dumps(body, indent=1).encode())


if __name__ == "__main__":
    main()
