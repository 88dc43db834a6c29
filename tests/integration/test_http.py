#!/usr/bin/python3
"""HTTP API integration tests: models, pushes, weights, errors, routing,
concurrency.  Run from the repository root:

    /usr/bin/python3 -m unittest discover -s tests/integration -p 'test_*.py' -v
"""

import base64
import glob
import json
import os
import math
import re
import socket
import struct
import threading
import time
import unittest

from common import ServerTestCase, tensor_summary
from harness import b64_floats, b64_raw, f32, float32_bytes, floats_from_b64

SGD_DEFAULTS = {"momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False,
                "maximize": False}
ADAM_DEFAULTS = {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0,
                 "amsgrad": False, "maximize": False}
ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


def utc_seconds(text):
    """Seconds since the epoch of an ISO-8601 UTC time ("...Z")."""
    year, month, day, hour, minute, second = (int(x) for x in re.findall(r"\d+", text)[:6])
    # days_from_civil (Howard Hinnant)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second


def example_model_body():
    return {
        "optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9},
        "tensors": [
            {"name": "w", "shape": [3], "values": [1, 2, 3]},
            {"name": "b", "shape": [2, 2], "init": {"name": "normal", "mean": 0, "std": 0.02, "seed": 7}},
        ],
    }


class HealthTests(ServerTestCase):

    def test_livez(self):
        status, _, body, _ = self.request("GET", "/livez")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"status": "ok"})

    def test_readyz(self):
        status, _, body, _ = self.request("GET", "/readyz")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"status": "ready"})

    def test_json_content_type(self):
        status, headers, _, _ = self.request("GET", "/livez")
        self.assertEqual(status, 200)
        self.assertIn("application/json", headers.get("content-type", ""))
        status, headers, _, _ = self.request("GET", "/v1/models/no-such-model")
        self.assertEqual(status, 404)
        self.assertIn("application/json", headers.get("content-type", ""))

    def test_keep_alive_connection_serves_many_requests(self):
        with self.server.client() as client:
            for _ in range(20):
                status, _, body, _ = client.request("GET", "/livez")
                self.assertEqual(status, 200)
                self.assertEqual(body, {"status": "ok"})
            # An error response must not break the connection either.
            status, _, body, _ = client.request("GET", "/v1/models/absent-model")
            self.assertEqual(status, 404)
            self.assertEqual(body["error"]["code"], "model_not_found")
            status, _, body, _ = client.request("GET", "/readyz")
            self.assertEqual(status, 200)
            self.assertEqual(client.reconnects, 0, "server closed a keep-alive connection")


class ModelLifecycleTests(ServerTestCase):

    def test_create_returns_description(self):
        name = self.model_name()
        created = self.create_model(name, example_model_body())
        self.assertEqual(created["name"], name)
        self.assertEqual(created["step"], 0)
        self.assertEqual(created["parameters"], 7)
        self.assertEqual(tensor_summary(created), [{"name": "w", "shape": [3], "step": 0},
                                              {"name": "b", "shape": [2, 2], "step": 0}])
        self.assertRegex(created["created"], ISO_8601)
        if created["created"].endswith("Z"):
            self.assertLess(abs(utc_seconds(created["created"]) - time.time()), 600, created["created"])
        self.assertGreaterEqual(created["memory_bytes"], 7 * 4)
        optimizer = created["optimizer"]
        self.assertEqual(optimizer["name"], "SGD")
        self.assertEqual(optimizer["lr"], 0.1)
        self.assertEqual(optimizer["momentum"], 0.9)
        for key in ("dampening", "weight_decay", "nesterov", "maximize"):
            self.assertEqual(optimizer[key], SGD_DEFAULTS[key], key)
        self.assertIs(optimizer["nesterov"], False)
        self.assertIs(optimizer["maximize"], False)
        # GET describes the model exactly as PUT did.
        self.assertEqual(self.describe(name), created)

    def test_created_values_and_initial_weights(self):
        name = self.model_name()
        self.create_model(name, example_model_body())
        weights = self.weights(name)
        self.assertEqual(weights["step"], 0)
        self.assertEqual(list(weights["weights"]), ["w", "b"])
        self.assertEqual(weights["weights"]["w"], [1, 2, 3])
        b = weights["weights"]["b"]
        self.assertEqual(len(b), 4)
        self.assertTrue(all(abs(x) < 0.02 * 8 for x in b), b)
        self.assertGreater(len(set(b)), 1, "normal init produced identical values: %r" % b)

    def test_duplicate_create_conflicts_and_keeps_original(self):
        name = self.model_name()
        self.create_model(name, example_model_body())
        self.push(name, {"w": [1, 1, 1]})
        before = self.snapshot(name)
        other = {"optimizer": {"name": "Adam"}, "tensors": [{"name": "x", "shape": [1]}]}
        response = self.request("PUT", "/v1/models/" + name, other)
        self.assert_error(response, 409, "model_exists", name)
        self.assert_unchanged(name, before)
        self.assertEqual(self.describe(name)["optimizer"]["name"], "SGD")

    def test_delete(self):
        name = self.model_name()
        self.create_model(name, example_model_body())
        status, _, body, raw = self.request("DELETE", "/v1/models/" + name)
        self.assertEqual(status, 204)
        self.assertEqual(raw, b"")
        self.assert_no_model(name)
        self.assert_error(self.request("GET", "/v1/models/%s/weights" % name), 404, "model_not_found")
        self.assert_error(self.request("POST", "/v1/models/%s/push" % name, {"grads": {"w": [1, 1, 1]}}),
                          404, "model_not_found")
        self.assert_error(self.request("DELETE", "/v1/models/" + name), 404, "model_not_found", name)
        # The name can be reused, and the new model starts fresh.
        created = self.create_model(name, {"optimizer": {"name": "sgd", "lr": 1},
                                           "tensors": [{"name": "v", "shape": [2], "values": [5, 6]}]})
        self.assertEqual(created["step"], 0)
        self.assertEqual([t["name"] for t in created["tensors"]], ["v"])
        self.assertEqual(self.weights(name)["weights"], {"v": [5, 6]})

    def test_list_models_sorted(self):
        names = [self.model_name(suffix) for suffix in ("_c", "_A", "_b", "-a", ".x")]
        sizes = {}
        for index, name in enumerate(names):
            tensors = [{"name": "t%d" % i, "shape": [i + 1, 2]} for i in range(index + 1)]
            optimizer = {"name": "adamw"} if index % 2 else {"name": "SGD", "lr": 0.5}
            self.create_model(name, {"optimizer": optimizer, "tensors": tensors})
            sizes[name] = (index + 1, sum((i + 1) * 2 for i in range(index + 1)),
                           "AdamW" if index % 2 else "SGD")
        self.push(names[0], {"t0": [1, 1]})
        status, _, listing, raw = self.request("GET", "/v1/models")
        self.assertEqual(status, 200, raw)
        models = listing["models"]
        listed = [m["name"] for m in models]
        self.assertEqual(listed, sorted(listed))
        by_name = {m["name"]: m for m in models}
        for name in names:
            self.assertIn(name, by_name)
            entry = by_name[name]
            count, parameters, optimizer = sizes[name]
            self.assertEqual(entry["optimizer"], optimizer)
            self.assertEqual(entry["tensors"], count)
            self.assertEqual(entry["parameters"], parameters)
            self.assertEqual(entry["step"], 1 if name == names[0] else 0)

    def test_model_name_rules(self):
        body = {"optimizer": {"name": "SGD", "lr": 1}, "tensors": [{"name": "w", "shape": [1]}]}
        for good in ("a", "A.b_c-9", "x" * 128, "-dash", "_under"):
            status, _, _, raw = self.request("PUT", "/v1/models/" + good, body)
            self.assertEqual(status, 201, "%r: %s" % (good, raw))
            self.assertEqual(self.request("DELETE", "/v1/models/" + good)[0], 204)
        for bad in (".hidden", "x" * 129, "a%20b", "a$b", "caf%C3%A9"):
            response = self.request("PUT", "/v1/models/" + bad, body)
            self.assert_error(response, 400, "bad_name")
        status, _, listing, _ = self.request("GET", "/v1/models")
        for entry in listing["models"]:
            self.assertFalse(entry["name"].startswith("."))
            self.assertLessEqual(len(entry["name"]), 128)

    def test_sgd_description_defaults(self):
        name = self.model_name()
        created = self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.25},
                                           "tensors": [{"name": "w", "shape": [2]}]})
        optimizer = created["optimizer"]
        self.assertEqual(optimizer["name"], "SGD")
        self.assertEqual(optimizer["lr"], 0.25)
        for key, value in SGD_DEFAULTS.items():
            self.assertIn(key, optimizer)
            self.assertEqual(optimizer[key], value, key)
            if isinstance(value, bool):
                self.assertIs(optimizer[key], value, key)

    def test_adam_description_defaults(self):
        name = self.model_name()
        created = self.create_model(name, {"optimizer": {"name": "Adam"},
                                           "tensors": [{"name": "w", "shape": [2]}]})
        optimizer = created["optimizer"]
        self.assertEqual(optimizer["name"], "Adam")
        for key, value in ADAM_DEFAULTS.items():
            self.assertIn(key, optimizer)
            self.assertEqual(optimizer[key], value, key)
            if isinstance(value, bool):
                self.assertIs(optimizer[key], value, key)

    def test_adamw_description_defaults_case_insensitive(self):
        for spelling in ("adamw", "ADAMW", "AdamW"):
            name = self.model_name("_" + spelling)
            created = self.create_model(name, {"optimizer": {"name": spelling},
                                               "tensors": [{"name": "w", "shape": [2]}]})
            optimizer = created["optimizer"]
            self.assertEqual(optimizer["name"], "AdamW", spelling)
            expected = dict(ADAM_DEFAULTS, weight_decay=0.01)
            for key, value in expected.items():
                self.assertEqual(optimizer[key], value, key)
            self.assertEqual(self.describe(name)["optimizer"]["name"], "AdamW")

    def test_sgd_case_insensitive_and_adam_spelling(self):
        created = self.create_model(self.model_name("_sgd"), {"optimizer": {"name": "sgd", "lr": 1},
                                                              "tensors": [{"name": "w", "shape": [1]}]})
        self.assertEqual(created["optimizer"]["name"], "SGD")
        created = self.create_model(self.model_name("_adam"), {"optimizer": {"name": "aDaM"},
                                                               "tensors": [{"name": "w", "shape": [1]}]})
        self.assertEqual(created["optimizer"]["name"], "Adam")

    def test_explicit_hyperparameters_are_kept(self):
        name = self.model_name()
        optimizer = {"name": "Adam", "lr": 0.05, "betas": [0.5, 0.75], "eps": 1e-6,
                     "weight_decay": 0.125, "amsgrad": True, "maximize": True}
        created = self.create_model(name, {"optimizer": optimizer,
                                           "tensors": [{"name": "w", "shape": [2]}]})
        for key, value in optimizer.items():
            self.assertEqual(created["optimizer"][key], value, key)

    def test_torch_compatibility_flags_accepted(self):
        cases = [
            ("SGD", {"lr": 0.1, "foreach": True, "differentiable": False}),
            ("Adam", {"foreach": False, "fused": False, "capturable": True, "differentiable": False}),
            ("AdamW", {"foreach": True, "fused": True, "capturable": False}),
        ]
        for optimizer_name, extra in cases:
            name = self.model_name("_" + optimizer_name)
            body = {"optimizer": dict(extra, name=optimizer_name),
                    "tensors": [{"name": "w", "shape": [2], "values": [1, 2]}]}
            created = self.create_model(name, body)
            self.assertEqual(created["optimizer"]["name"], optimizer_name)
            result = self.push(name, {"w": [1, -1]})
            self.assertEqual(result["step"], 1)

    def test_parameters_and_memory(self):
        name = self.model_name()
        created = self.create_model(name, {
            "optimizer": {"name": "Adam"},
            "tensors": [{"name": "a", "shape": [10, 10]}, {"name": "s", "shape": [7]},
                        {"name": "c", "shape": [2, 3, 4]}]})
        self.assertEqual(created["parameters"], 100 + 7 + 24)
        self.assertGreaterEqual(created["memory_bytes"], (100 + 7 + 24) * 4)
        self.assertEqual([t["shape"] for t in created["tensors"]], [[10, 10], [7], [2, 3, 4]])
        self.assertEqual([t["name"] for t in created["tensors"]], ["a", "s", "c"])

    def test_tensor_names_pytorch_style(self):
        name = self.model_name()
        tensors = [{"name": n, "shape": [1]} for n in
                   ("layers.0.attn.q_proj.weight", "enc/conv:1", "x-y_z")]
        created = self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1}, "tensors": tensors})
        self.assertEqual([t["name"] for t in created["tensors"]],
                         ["layers.0.attn.q_proj.weight", "enc/conv:1", "x-y_z"])
        result = self.push(name, {"layers.0.attn.q_proj.weight": [2]})
        self.assertEqual(result["weights"], {"layers.0.attn.q_proj.weight": [-2]})


class ValuesAndInitializerTests(ServerTestCase):

    def init_model(self, name, init, shape=(1000,)):
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1},
                                 "tensors": [{"name": "t", "shape": list(shape), "init": init}]})
        return floats_from_b64(self.weights(name, "?encoding=b64")["weights"]["t"])

    def test_no_values_no_init_is_zeros(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1},
                                 "tensors": [{"name": "z", "shape": [4, 5]}]})
        data = floats_from_b64(self.weights(name, "?encoding=b64")["weights"]["z"])
        self.assertEqual(list(data), [0.0] * 20)
        self.assertEqual(self.weights(name)["weights"]["z"], [0] * 20)

    def test_zeros_init(self):
        self.assertEqual(list(self.init_model(self.model_name(), {"name": "zeros", "seed": 3})),
                         [0.0] * 1000)

    def test_constant_init(self):
        data = self.init_model(self.model_name(), {"name": "constant", "val": -2.5})
        self.assertEqual(list(data), [-2.5] * 1000)

    def test_constant_requires_val(self):
        name = self.model_name()
        response = self.request("PUT", "/v1/models/" + name, {
            "optimizer": {"name": "SGD", "lr": 1},
            "tensors": [{"name": "t", "shape": [3], "init": {"name": "constant"}}]})
        self.assertEqual(response[0], 400, response[3])
        self.assertIn(response[2]["error"]["code"], ("bad_request", "bad_hyperparameter"))
        self.assertIn("val", response[2]["error"]["message"])
        self.assert_no_model(name)

    def test_unknown_initializer(self):
        name = self.model_name()
        response = self.request("PUT", "/v1/models/" + name, {
            "optimizer": {"name": "SGD", "lr": 1},
            "tensors": [{"name": "t", "shape": [3], "init": {"name": "xavier_magic"}}]})
        self.assertEqual(response[0], 400, response[3])
        self.assertIn("init", response[2]["error"]["message"])
        self.assert_no_model(name)

    def test_uniform_defaults_and_range(self):
        data = self.init_model(self.model_name("_default"), {"name": "uniform"}, (4000,))
        self.assertTrue(all(0.0 <= x <= 1.0 for x in data))
        mean = sum(data) / len(data)
        self.assertAlmostEqual(mean, 0.5, delta=0.05)
        self.assertGreater(len(set(data)), 3900)
        data = self.init_model(self.model_name("_ab"), {"name": "uniform", "a": 2, "b": 3, "seed": 5},
                               (4000,))
        self.assertTrue(all(2.0 <= x <= 3.0 for x in data), (min(data), max(data)))
        self.assertAlmostEqual(sum(data) / len(data), 2.5, delta=0.05)
        self.assertLess(min(data), 2.05)
        self.assertGreater(max(data), 2.95)

    def test_normal_statistics(self):
        n = 20000
        data = self.init_model(self.model_name(), {"name": "normal", "mean": 3, "std": 0.5, "seed": 11},
                               (n,))
        mean = sum(data) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in data) / (n - 1))
        self.assertAlmostEqual(mean, 3.0, delta=5 * 0.5 / math.sqrt(n))
        self.assertAlmostEqual(std, 0.5, delta=0.02)
        # Defaults: mean 0, std 1.
        data = self.init_model(self.model_name("_default"), {"name": "normal"}, (n,))
        mean = sum(data) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in data) / (n - 1))
        self.assertAlmostEqual(mean, 0.0, delta=5 / math.sqrt(n))
        self.assertAlmostEqual(std, 1.0, delta=0.04)

    def test_initializers_reproducible_across_models(self):
        for init in ({"name": "normal", "mean": 0, "std": 0.02, "seed": 7},
                     {"name": "uniform", "a": -1, "b": 1, "seed": 42},
                     {"name": "normal"}):
            first = self.init_model(self.model_name("_1_%s_%s" % (init["name"], init.get("seed"))),
                                    init, (64, 33))
            second = self.init_model(self.model_name("_2_%s_%s" % (init["name"], init.get("seed"))),
                                     init, (64, 33))
            self.assertEqual(first.tobytes(), second.tobytes(), init)
            self.assertGreater(len(set(first)), 2000, init)

    def test_default_seed_is_zero(self):
        implicit = self.init_model(self.model_name("_implicit"), {"name": "uniform"})
        explicit = self.init_model(self.model_name("_explicit"), {"name": "uniform", "seed": 0})
        self.assertEqual(implicit.tobytes(), explicit.tobytes())

    def test_different_seeds_differ(self):
        seven = self.init_model(self.model_name("_7"), {"name": "normal", "seed": 7})
        eight = self.init_model(self.model_name("_8"), {"name": "normal", "seed": 8})
        self.assertNotEqual(seven.tobytes(), eight.tobytes())
        differing = sum(1 for a, b in zip(seven, eight) if a != b)
        self.assertGreater(differing, 990)
        u1 = self.init_model(self.model_name("_u1"), {"name": "uniform", "seed": 1})
        u2 = self.init_model(self.model_name("_u2"), {"name": "uniform", "seed": 2})
        self.assertNotEqual(u1.tobytes(), u2.tobytes())

    def test_bad_initializer_parameters(self):
        cases = [({"name": "uniform", "a": 2, "b": 1}, "init"),
                 ({"name": "normal", "std": -1}, "std"),
                 ({"name": "normal", "mean": "zero"}, "mean"),
                 ({"name": "constant", "val": 1, "vall": 2}, "vall")]
        for index, (init, field) in enumerate(cases):
            with self.subTest(init=init):
                name = self.model_name("_%d" % index)
                response = self.request("PUT", "/v1/models/" + name, {
                    "optimizer": {"name": "SGD", "lr": 1},
                    "tensors": [{"name": "t", "shape": [3], "init": init}]})
                self.assertEqual(response[0], 400, response[3])
                self.assertIn(response[2]["error"]["code"], ("bad_request", "bad_hyperparameter"))
                self.assertIn(field, response[2]["error"]["message"])
                self.assert_no_model(name)

    def test_bad_seed(self):
        for index, seed in enumerate((-1, 1.5, "7")):
            name = self.model_name("_%d" % index)
            response = self.request("PUT", "/v1/models/" + name, {
                "optimizer": {"name": "SGD", "lr": 1},
                "tensors": [{"name": "t", "shape": [3], "init": {"name": "normal", "seed": seed}}]})
            self.assertEqual(response[0], 400, (seed, response[3]))
            self.assertIn("seed", response[2]["error"]["message"])
            self.assert_no_model(name)

    def test_values_b64(self):
        name = self.model_name()
        values = [0.1, -1 / 3, 1e-30, 3.4e38, -0.0, 7]
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1},
                                 "tensors": [{"name": "t", "shape": [2, 3], "values": b64_floats(values)}]})
        data = self.weights(name, "?encoding=b64")["weights"]["t"]
        self.assertEqual(data["dtype"], "float32")
        self.assertEqual(base64.b64decode(data["b64"]), float32_bytes(values))

    def test_json_and_b64_views_agree_bitwise(self):
        name = self.model_name()
        values = [0.1, -1 / 3, 1e-30, 3.4e38, 1.17549435e-38, 16777217, 2.0 ** -140, math.pi]
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1},
                                 "tensors": [{"name": "t", "shape": [len(values)], "values": values}]})
        as_json = self.weights(name)["weights"]["t"]
        as_b64 = self.weights(name, "?encoding=b64")["weights"]["t"]
        self.assertEqual(base64.b64decode(as_b64["b64"]), float32_bytes(values))
        # JSON numbers must round-trip to the same float32 bits.
        self.assertEqual(float32_bytes(as_json), float32_bytes(values))

    def test_eight_dimensional_shape(self):
        name = self.model_name()
        created = self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1}, "tensors": [
            {"name": "eight", "shape": [1, 2, 1, 2, 1, 2, 1, 2], "init": {"name": "constant", "val": 1}},
            {"name": "vec", "shape": [5], "values": [1, 2, 3, 4, 5]}]})
        self.assertEqual(created["tensors"][0]["shape"], [1, 2, 1, 2, 1, 2, 1, 2])
        self.assertEqual(created["parameters"], 21)
        self.assertEqual(self.weights(name, "?tensors=eight")["weights"]["eight"], [1] * 16)


class PushTests(ServerTestCase):

    def test_sgd_exact(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.5},
                                 "tensors": [{"name": "w", "shape": [3], "values": [1, 2, 3]}]})
        result = self.push(name, {"w": [1, 1, 1]}, worker="w0")
        self.assertEqual(result, {"step": 1, "lr": 0.5, "weights": {"w": [0.5, 1.5, 2.5]}})
        self.assertEqual(self.weights(name), {"step": 1, "weights": {"w": [0.5, 1.5, 2.5]}})
        result = self.push(name, {"w": [-2, 0, 4]})
        self.assertEqual(result, {"step": 2, "lr": 0.5, "weights": {"w": [1.5, 1.5, 0.5]}})

    def test_push_returns_only_pushed_tensors_and_counts_steps(self):
        name = self.model_name()
        self.create_model(name, example_model_body())
        b_before = self.weights(name, "?tensors=b")["weights"]["b"]
        result = self.push(name, {"w": [0.1, 0.2, 0.3]}, worker="w0")
        self.assertEqual(result["step"], 1)
        self.assertEqual(list(result["weights"]), ["w"])
        self.assert_floats(result["weights"]["w"], [f32(1 - f32(0.1 * f32(0.1))),
                                                    f32(2 - f32(0.1 * f32(0.2))),
                                                    f32(3 - f32(0.1 * f32(0.3)))], 1e-6)
        description = self.describe(name)
        self.assertEqual(description["step"], 1)
        self.assertEqual([(t["name"], t["step"]) for t in description["tensors"]], [("w", 1), ("b", 0)])
        self.assertEqual(self.weights(name, "?tensors=b")["weights"]["b"], b_before)
        # Push both, then b only.
        result = self.push(name, {"w": [0, 0, 0], "b": [1, 1, 1, 1]})
        self.assertEqual(result["step"], 2)
        self.assertEqual(sorted(result["weights"]), ["b", "w"])
        result = self.push(name, {"b": [1, 1, 1, 1]})
        self.assertEqual(result["step"], 3)
        self.assertEqual(list(result["weights"]), ["b"])
        description = self.describe(name)
        self.assertEqual(description["step"], 3)
        self.assertEqual([(t["name"], t["step"]) for t in description["tensors"]], [("w", 2), ("b", 2)])
        # The response carries the same weights as a following GET.
        self.assertEqual(result["weights"]["b"], self.weights(name, "?tensors=b")["weights"]["b"])

    def test_push_encodings_follow_gradients(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.25}, "tensors": [
            {"name": "j", "shape": [2], "values": [1, 2]},
            {"name": "k", "shape": [2], "values": [3, 4]}]})
        result = self.push(name, {"j": [1, 2], "k": b64_floats([4, -4])})
        self.assertEqual(result["weights"]["j"], [0.75, 1.5])
        k = result["weights"]["k"]
        self.assertIsInstance(k, dict)
        self.assertEqual(k["dtype"], "float32")
        self.assertEqual(base64.b64decode(k["b64"]), float32_bytes([2, 5]))
        result = self.push(name, {"j": b64_floats([1, 1]), "k": [0, 4]})
        self.assertEqual(floats_from_b64(result["weights"]["j"]).tolist(), [0.5, 1.25])
        self.assertEqual(result["weights"]["k"], [2, 4])

    def test_weights_query(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1}, "tensors": [
            {"name": "a", "shape": [1], "values": [1]},
            {"name": "b", "shape": [2], "values": [2, 3]},
            {"name": "c", "shape": [1], "values": [4]}]})
        self.assertEqual(self.weights(name), {"step": 0, "weights": {"a": [1], "b": [2, 3], "c": [4]}})
        self.assertEqual(self.weights(name, "?tensors=c,a"), {"step": 0, "weights": {"c": [4], "a": [1]}})
        self.assertEqual(self.weights(name, "?tensors=b")["weights"], {"b": [2, 3]})
        self.assertEqual(self.weights(name, "?encoding=json")["weights"], {"a": [1], "b": [2, 3], "c": [4]})
        b64 = self.weights(name, "?tensors=b&encoding=b64")
        self.assertEqual(list(b64["weights"]), ["b"])
        self.assertEqual(base64.b64decode(b64["weights"]["b"]["b64"]), float32_bytes([2, 3]))
        self.push(name, {"b": [1, 1]})
        self.assertEqual(self.weights(name, "?encoding=b64&tensors=a,b")["step"], 1)
        response = self.request("GET", "/v1/models/%s/weights?tensors=a,nope" % name)
        self.assert_error(response, 404, "tensor_not_found", "nope")
        response = self.request("GET", "/v1/models/%s/weights?encoding=xml" % name)
        self.assert_error(response, 400, "bad_request", "encoding")
        response = self.request("GET", "/v1/models/missing-%s/weights" % name)
        self.assert_error(response, 404, "model_not_found")

    def test_sgd_momentum_two_steps(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.5, "momentum": 0.9},
                                 "tensors": [{"name": "w", "shape": [1], "values": [1]}]})
        self.assert_floats(self.push(name, {"w": [1]})["weights"]["w"], [0.5])
        # buf = 0.9 * 1 + 1 = 1.9; w = 0.5 - 0.5 * 1.9 = -0.45
        self.assert_floats(self.push(name, {"w": [1]})["weights"]["w"], [-0.45], 1e-6)

    def test_sgd_weight_decay_and_maximize(self):
        name = self.model_name("_wd")
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.5, "weight_decay": 0.5},
                                 "tensors": [{"name": "w", "shape": [2], "values": [2, -4]}]})
        # g' = g + 0.5 * w = [1 + 1, 0 - 2]; w = [2 - 1, -4 + 1]
        self.assertEqual(self.push(name, {"w": [1, 0]})["weights"]["w"], [1, -3])
        name = self.model_name("_max")
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.5, "maximize": True},
                                 "tensors": [{"name": "w", "shape": [2], "values": [2, -4]}]})
        self.assertEqual(self.push(name, {"w": [1, -2]})["weights"]["w"], [2.5, -5])

    def test_sgd_nesterov_and_dampening(self):
        name = self.model_name("_nesterov")
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.5, "momentum": 0.9, "nesterov": True},
                                 "tensors": [{"name": "w", "shape": [1], "values": [1]}]})
        # buf = g = 1; g' = g + 0.9 * buf = 1.9; w = 1 - 0.5 * 1.9
        self.assert_floats(self.push(name, {"w": [1]})["weights"]["w"], [0.05], 1e-6)
        name = self.model_name("_dampening")
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1, "momentum": 0.9, "dampening": 0.5},
                                 "tensors": [{"name": "w", "shape": [1], "values": [0]}]})
        # First step: buf = g (no dampening); second: buf = 0.9 * 1 + 0.5 * 1 = 1.4
        self.assert_floats(self.push(name, {"w": [1]})["weights"]["w"], [-1])
        self.assert_floats(self.push(name, {"w": [1]})["weights"]["w"], [-2.4], 1e-6)

    def test_adam_bias_correction_uses_tensor_step(self):
        name = self.model_name()
        lr = 0.01
        self.create_model(name, {"optimizer": {"name": "Adam", "lr": lr}, "tensors": [
            {"name": "a", "shape": [2]}, {"name": "b", "shape": [2]}]})
        self.push(name, {"a": [1, -1]})
        self.push(name, {"a": [1, -1]})
        result = self.push(name, {"b": [1, -1]})
        self.assertEqual(result["step"], 3)
        # b's first step (tensor step 1, not model step 3) moves it by lr.
        self.assert_floats(result["weights"]["b"], [-lr, lr], 1e-7)
        description = self.describe(name)
        self.assertEqual([(t["name"], t["step"]) for t in description["tensors"]], [("a", 2), ("b", 1)])

    def test_adam_first_step_is_lr_sign(self):
        name = self.model_name()
        lr = 0.01
        self.create_model(name, {"optimizer": {"name": "Adam", "lr": lr},
                                 "tensors": [{"name": "w", "shape": [5], "values": [1, 2, 3, 4, 5]}]})
        grads = [0.5, -2, 3e-3, -1e3, 7]
        result = self.push(name, {"w": grads})
        expected = [v - lr * math.copysign(1, g) for v, g in zip([1, 2, 3, 4, 5], grads)]
        self.assert_floats(result["weights"]["w"], expected, 2e-6)
        # A second identical step moves by about lr again (m_hat = g, v_hat = g^2).
        result = self.push(name, {"w": grads})
        expected = [v - 2 * lr * math.copysign(1, g) for v, g in zip([1, 2, 3, 4, 5], grads)]
        self.assert_floats(result["weights"]["w"], expected, 5e-6)

    def test_adamw_decoupled_weight_decay(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "AdamW", "lr": 0.1, "weight_decay": 0.5},
                                 "tensors": [{"name": "w", "shape": [2], "values": [2, -2]}]})
        # w *= 1 - 0.1 * 0.5, then w -= 0.1 * sign(g)
        result = self.push(name, {"w": [1, 1]})
        self.assert_floats(result["weights"]["w"], [1.9 - 0.1, -1.9 - 0.1], 2e-6)

    def test_adam_maximize(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "Adam", "lr": 0.1, "maximize": True},
                                 "tensors": [{"name": "w", "shape": [2], "values": [0, 0]}]})
        self.assert_floats(self.push(name, {"w": [3, -3]})["weights"]["w"], [0.1, -0.1], 2e-6)

    def test_worker_field_optional_and_accepted(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1},
                                 "tensors": [{"name": "w", "shape": [1], "values": [0]}]})
        self.assertEqual(self.push(name, {"w": [1]})["step"], 1)
        self.assertEqual(self.push(name, {"w": [1]}, worker="worker-7.a_b")["step"], 2)
        self.assertEqual(self.weights(name)["weights"]["w"], [-2])


class CreateValidationTests(ServerTestCase):
    """Rejected PUTs: exact status and code, the message names the field,
    and no model is left behind."""

    def put_rejected(self, body, status, code, *fields):
        name = self.model_name()
        response = self.request("PUT", "/v1/models/" + name, body)
        error = self.assert_error(response, status, code, *fields)
        self.assert_no_model(name)
        return error

    @staticmethod
    def body(optimizer=None, tensors=None):
        return {"optimizer": optimizer if optimizer is not None else {"name": "SGD", "lr": 0.1},
                "tensors": tensors if tensors is not None else [{"name": "w", "shape": [3]}]}

    def test_malformed_json(self):
        self.put_rejected(b'{"optimizer": {"name": "SGD", "lr": 0.1}, "tensors": [', 400, "bad_json")
        self.put_rejected(b'{"optimizer": }', 400, "bad_json")
        self.put_rejected(b'', 400, "bad_json")

    def test_nan_literal_is_bad_json(self):
        body = self.body(tensors=[{"name": "w", "shape": [2], "values": [1.0, float("nan")]}])
        self.put_rejected(body, 400, "bad_json")  # json.dumps writes the NaN token
        body = self.body(tensors=[{"name": "w", "shape": [2], "values": [1.0, float("inf")]}])
        self.put_rejected(body, 400, "bad_json")  # ... and Infinity

    def test_body_not_an_object(self):
        self.put_rejected([self.body()], 400, "bad_request")
        # A bare scalar is valid JSON (RFC 8259): the body parses, but it is
        # not the object the API wants.
        for raw in (b'"SGD"', b'42', b'null'):
            name = self.model_name()
            status, _, parsed, body = self.request("PUT", "/v1/models/" + name, raw)
            self.assertEqual(status, 400, body)
            self.assertEqual(parsed["error"]["code"], "bad_request", body)
            self.assertIn("JSON object", parsed["error"]["message"], body)
            self.assert_no_model(name)

    def test_unknown_optimizer(self):
        self.put_rejected(self.body({"name": "Adamax2", "lr": 0.1}), 400, "unknown_optimizer", "Adamax2")

    def test_missing_optimizer(self):
        self.put_rejected({"tensors": [{"name": "w", "shape": [3]}]}, 400, "bad_request", "optimizer")

    def test_missing_optimizer_name(self):
        self.put_rejected(self.body({"lr": 0.1}), 400, "bad_request", "optimizer")

    def test_missing_or_empty_tensors(self):
        self.put_rejected({"optimizer": {"name": "SGD", "lr": 0.1}}, 400, "bad_request", "tensors")
        self.put_rejected(self.body(tensors=[]), 400, "bad_request", "tensors")

    def test_unknown_hyperparameter(self):
        self.put_rejected(self.body({"name": "SGD", "lr": 0.1, "lrr": 0.1}), 400, "bad_hyperparameter", "lrr")
        self.put_rejected(self.body({"name": "Adam", "momentum": 0.9}), 400, "bad_hyperparameter", "momentum")

    def test_negative_lr(self):
        self.put_rejected(self.body({"name": "SGD", "lr": -0.1}), 400, "bad_hyperparameter", "lr")
        self.put_rejected(self.body({"name": "Adam", "lr": -1e-3}), 400, "bad_hyperparameter", "lr")

    def test_betas_out_of_range(self):
        self.put_rejected(self.body({"name": "Adam", "betas": [0.9, 1.0]}), 400, "bad_hyperparameter", "betas")
        self.put_rejected(self.body({"name": "AdamW", "betas": [1.5, 0.9]}), 400, "bad_hyperparameter", "betas")
        self.put_rejected(self.body({"name": "Adam", "betas": [-0.1, 0.9]}), 400, "bad_hyperparameter", "betas")

    def test_betas_not_a_pair(self):
        for betas in ([0.9], [0.9, 0.99, 0.999], 0.9, "0.9,0.999", [0.9, "x"], {"a": 1}):
            with self.subTest(betas=betas):
                self.put_rejected(self.body({"name": "Adam", "betas": betas}), 400, "bad_hyperparameter",
                                  "betas")

    def test_eps_negative(self):
        self.put_rejected(self.body({"name": "Adam", "eps": -1e-8}), 400, "bad_hyperparameter", "eps")

    def test_other_ranges(self):
        self.put_rejected(self.body({"name": "SGD", "lr": 0.1, "momentum": -0.5}), 400,
                          "bad_hyperparameter", "momentum")
        self.put_rejected(self.body({"name": "SGD", "lr": 0.1, "dampening": 1.5}), 400,
                          "bad_hyperparameter", "dampening")
        self.put_rejected(self.body({"name": "AdamW", "weight_decay": -0.01}), 400,
                          "bad_hyperparameter", "weight_decay")

    def test_hyperparameter_wrong_type(self):
        self.put_rejected(self.body({"name": "SGD", "lr": "fast"}), 400, "bad_hyperparameter", "lr")
        self.put_rejected(self.body({"name": "Adam", "amsgrad": 1}), 400, "bad_hyperparameter", "amsgrad")
        self.put_rejected(self.body({"name": "SGD", "lr": 0.1, "nesterov": "yes"}), 400,
                          "bad_hyperparameter", "nesterov")
        self.put_rejected(self.body({"name": "Adam", "lr": None}), 400, "bad_hyperparameter", "lr")
        self.put_rejected(self.body({"name": "Adam", "lr": True}), 400, "bad_hyperparameter", "lr")

    def test_sgd_requires_lr(self):
        self.put_rejected(self.body({"name": "SGD"}), 400, "bad_hyperparameter", "lr")
        self.put_rejected(self.body({"name": "SGD", "momentum": 0.9}), 400, "bad_hyperparameter", "lr")

    def test_sgd_nesterov_needs_momentum(self):
        self.put_rejected(self.body({"name": "SGD", "lr": 0.1, "nesterov": True}), 400,
                          "bad_hyperparameter", "nesterov")
        self.put_rejected(self.body({"name": "SGD", "lr": 0.1, "nesterov": True, "momentum": 0}), 400,
                          "bad_hyperparameter", "nesterov")
        self.put_rejected(self.body({"name": "SGD", "lr": 0.1, "nesterov": True, "momentum": 0.9,
                                     "dampening": 0.1}), 400, "bad_hyperparameter", "nesterov")

    def test_optimizer_not_an_object(self):
        self.put_rejected(self.body("SGD"), 400, "bad_request", "optimizer")

    def test_shape_too_many_dimensions(self):
        tensors = [{"name": "w", "shape": [1] * 9}]
        self.put_rejected(self.body(tensors=tensors), 400, "bad_request", "shape")

    def test_shape_zero_or_negative_dimension(self):
        for shape in ([0], [3, 0], [-1], [2, -3]):
            with self.subTest(shape=shape):
                self.put_rejected(self.body(tensors=[{"name": "w", "shape": shape}]), 400, "bad_request",
                                  "shape")

    def test_shape_malformed(self):
        for shape in ("3", [1.5], ["3"], None):
            with self.subTest(shape=shape):
                self.put_rejected(self.body(tensors=[{"name": "w", "shape": shape}]), 400, "bad_request",
                                  "shape")
        self.put_rejected(self.body(tensors=[{"name": "w"}]), 400, "bad_request", "shape")

    def test_shape_too_many_elements(self):
        tensors = [{"name": "w", "shape": [1 << 30, 1 << 30, 1 << 30]}]
        self.put_rejected(self.body(tensors=tensors), 400, "bad_request", "shape")

    def test_values_length_mismatch(self):
        tensors = [{"name": "w", "shape": [3], "values": [1, 2]}]
        self.put_rejected(self.body(tensors=tensors), 400, "shape_mismatch", "values")
        tensors = [{"name": "w", "shape": [2, 2], "values": [1, 2, 3, 4, 5]}]
        self.put_rejected(self.body(tensors=tensors), 400, "shape_mismatch", "values")
        tensors = [{"name": "w", "shape": [3], "values": b64_floats([1, 2, 3, 4])}]
        self.put_rejected(self.body(tensors=tensors), 400, "shape_mismatch", "values")

    def test_second_tensor_bad_leaves_no_model(self):
        tensors = [{"name": "a", "shape": [2], "values": [1, 2]},
                   {"name": "b", "shape": [3], "values": [1, 2]}]
        self.put_rejected(self.body(tensors=tensors), 400, "shape_mismatch", "values")

    def test_duplicate_tensor_names(self):
        tensors = [{"name": "w", "shape": [3]}, {"name": "w", "shape": [2]}]
        self.put_rejected(self.body(tensors=tensors), 400, "bad_request", "name")

    def test_invalid_tensor_name(self):
        for tensor_name in ("", "has space", "semi;colon", "x" * 256):
            with self.subTest(tensor_name=tensor_name):
                self.put_rejected(self.body(tensors=[{"name": tensor_name, "shape": [1]}]), 400,
                                  "bad_name", "name")
        self.put_rejected(self.body(tensors=[{"shape": [1]}]), 400, "bad_request", "name")

    def test_non_finite_values_b64(self):
        for bad in (float("nan"), float("inf"), float("-inf")):
            with self.subTest(value=bad):
                values = b64_raw(struct.pack("<3f", 1, bad, 3))
                tensors = [{"name": "w", "shape": [3], "values": values}]
                self.put_rejected(self.body(tensors=tensors), 400, "non_finite", "values")

    def test_values_overflowing_float32(self):
        tensors = [{"name": "w", "shape": [3], "values": [1, 1e39, 3]}]
        self.put_rejected(self.body(tensors=tensors), 400, "non_finite", "values")
        tensors = [{"name": "w", "shape": [2], "values": [-1e300, 0]}]
        self.put_rejected(self.body(tensors=tensors), 400, "non_finite", "values")

    def test_values_wrong_type(self):
        tensors = [{"name": "w", "shape": [2], "values": [1, "2"]}]
        self.put_rejected(self.body(tensors=tensors), 400, "bad_request", "values")

    def test_values_bad_encoding(self):
        for values in ({"dtype": "float32", "b64": "!!!!"},
                       {"dtype": "float32", "b64": base64.b64encode(b"\0" * 6).decode()},
                       {"dtype": "float64", "b64": base64.b64encode(b"\0" * 24).decode()}):
            with self.subTest(values=values):
                tensors = [{"name": "w", "shape": [3], "values": values}]
                self.put_rejected(self.body(tensors=tensors), 400, "bad_encoding", "values")


class PushValidationTests(ServerTestCase):
    """Rejected pushes: exact status and code, the message names the field,
    and neither weights nor steps change."""

    def setUp(self):
        self.name = self.model_name()
        self.create_model(self.name, {
            "optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9},
            "tensors": [{"name": "w", "shape": [3], "values": [1, 2, 3]},
                        {"name": "b", "shape": [2, 2], "init": {"name": "uniform", "seed": 3}}]})
        # One good push first so momentum buffers and steps are non-trivial.
        self.push(self.name, {"w": [1, 1, 1], "b": [1, 2, 3, 4]})
        self.before = self.snapshot(self.name)

    def push_rejected(self, body, status, code, *fields):
        """POSTs a whole push body (dict, or raw bytes) and expects an error."""
        response = self.request("POST", "/v1/models/%s/push" % self.name, body)
        error = self.assert_error(response, status, code, *fields)
        self.assert_unchanged(self.name, self.before)
        return error

    def grads_rejected(self, grads, status, code, *fields):
        return self.push_rejected({"grads": grads, "worker": "w0"}, status, code, *fields)

    def test_unknown_tensor(self):
        self.grads_rejected({"nope": [1, 2, 3]}, 404, "tensor_not_found", "nope")

    def test_wrong_length(self):
        self.grads_rejected({"w": [1, 2]}, 400, "shape_mismatch", "grads.w")
        self.grads_rejected({"w": [1, 2, 3, 4]}, 400, "shape_mismatch", "grads.w")
        self.grads_rejected({"b": b64_floats([1, 2, 3])}, 400, "shape_mismatch", "grads.b")

    def test_empty_grads(self):
        self.grads_rejected({}, 400, "bad_request", "grads")

    def test_missing_or_malformed_grads(self):
        self.push_rejected({"worker": "w0"}, 400, "bad_request", "grads")
        self.push_rejected({"grads": [1, 2, 3]}, 400, "bad_request", "grads")
        self.push_rejected({"grads": {"w": "1,2,3"}}, 400, "bad_request", "grads.w")
        self.push_rejected({"grads": {"w": [1, "2", 3]}}, 400, "bad_request", "grads.w")
        self.assert_unchanged(self.name, self.before)

    def test_malformed_json(self):
        self.push_rejected(b'{"grads": {"w": [1, 2, 3]', 400, "bad_json")
        self.push_rejected(b'[1, 2, 3]', 400, "bad_request")
        self.push_rejected(b'', 400, "bad_json")

    def test_nan_literal_is_bad_json(self):
        self.push_rejected({"grads": {"w": [1.0, float("nan"), 3.0]}}, 400, "bad_json")

    def test_non_finite_b64(self):
        for bad in (float("nan"), float("inf"), float("-inf")):
            with self.subTest(value=bad):
                grads = b64_raw(struct.pack("<3f", 1, bad, 3))
                self.grads_rejected({"w": grads}, 400, "non_finite", "grads.w")

    def test_overflowing_json_number(self):
        self.grads_rejected({"w": [1, 1e39, 3]}, 400, "non_finite", "grads.w")
        self.grads_rejected({"w": [1, 2, -1e39]}, 400, "non_finite", "grads.w")

    def test_bad_encoding(self):
        self.grads_rejected({"w": {"dtype": "float32", "b64": "!!!!!!!!!!!!!!!!"}}, 400, "bad_encoding",
                            "grads.w")
        # 12 bytes of base64 without its padding is not canonical base64.
        self.grads_rejected({"w": {"dtype": "float32", "b64": base64.b64encode(b"\0" * 12).decode()[:-1]}},
                            400, "bad_encoding", "grads.w")
        self.grads_rejected({"w": {"dtype": "float32", "b64": base64.b64encode(b"\0" * 10).decode()}},
                            400, "bad_encoding", "grads.w")
        self.grads_rejected({"w": {"dtype": "float64", "b64": base64.b64encode(b"\0" * 24).decode()}},
                            400, "bad_encoding", "grads.w")
        self.grads_rejected({"w": {"dtype": "float16", "b64": base64.b64encode(b"\0" * 5).decode()}},
                            400, "bad_encoding", "grads.w")
        self.grads_rejected({"w": {"dtype": "bfloat16", "b64": base64.b64encode(b"\0" * 8).decode()}},
                            400, "shape_mismatch", "grads.w")

    def test_missing_model(self):
        response = self.request("POST", "/v1/models/no-such-model-x/push", {"grads": {"w": [1, 2, 3]}})
        self.assert_error(response, 404, "model_not_found", "no-such-model-x")

    def test_bad_worker_name(self):
        self.push_rejected({"grads": {"w": [1, 1, 1]}, "worker": "no spaces allowed!"}, 400, "bad_name",
                           "worker")
        self.push_rejected({"grads": {"w": [1, 1, 1]}, "worker": ""}, 400, "bad_name", "worker")

    def test_worker_name_too_long_or_not_a_string(self):
        self.push_rejected({"grads": {"w": [1, 1, 1]}, "worker": "w" * 129}, 400, "bad_name", "worker")
        response = self.request("POST", "/v1/models/%s/push" % self.name,
                                {"grads": {"w": [1, 1, 1]}, "worker": 7})
        self.assertEqual(response[0], 400, response[3])
        self.assertIn(response[2]["error"]["code"], ("bad_name", "bad_request"))
        self.assertIn("worker", response[2]["error"]["message"])
        self.assert_unchanged(self.name, self.before)

    def test_second_tensor_wrong_length(self):
        self.grads_rejected({"w": [1, 1, 1], "b": [1, 2, 3]}, 400, "shape_mismatch", "grads.b")

    def test_second_tensor_non_finite(self):
        grads = {"w": [1, 1, 1], "b": b64_raw(struct.pack("<4f", 1, 2, float("inf"), 4))}
        self.grads_rejected(grads, 400, "non_finite", "grads.b")
        self.grads_rejected({"w": [1, 1, 1], "b": [1, 2, 1e39, 4]}, 400, "non_finite", "grads.b")

    def test_second_tensor_unknown(self):
        self.grads_rejected({"w": [1, 1, 1], "zzz": [1]}, 404, "tensor_not_found", "zzz")

    def test_second_tensor_bad_encoding(self):
        self.grads_rejected({"w": b64_floats([1, 1, 1]), "b": {"dtype": "float32", "b64": "@@@@"}}, 400,
                            "bad_encoding", "grads.b")

    def test_valid_push_still_works_afterwards(self):
        self.grads_rejected({"w": [1, 1e39, 1]}, 400, "non_finite", "grads.w")
        result = self.push(self.name, {"w": [0, 0, 0]})
        self.assertEqual(result["step"], self.before["step"] + 1)


class RoutingTests(ServerTestCase):

    def test_unknown_routes(self):
        for path in ("/nope", "/v1", "/v1/model", "/v1/models/x/frobnicate", "/v2/models",
                     "/v1/models/x/weights/extra"):
            with self.subTest(path=path):
                self.assert_error(self.request("GET", path), 404, "not_found")

    def test_post_models_collection_not_allowed(self):
        status, headers, body, raw = self.request("POST", "/v1/models", {"name": "x"})
        self.assert_error((status, headers, body, raw), 405, "method_not_allowed")
        self.assertIn("allow", headers)
        self.assertIn("GET", re.split(r"[,\s]+", headers["allow"]))
        self.assertNotIn("POST", re.split(r"[,\s]+", headers["allow"]))

    def test_method_not_allowed_on_resources(self):
        cases = [("POST", "/v1/models/some-model", {"GET", "PUT", "PATCH", "DELETE"}),
                 ("GET", "/v1/models/some-model/push", {"POST"}),
                 ("DELETE", "/v1/models/some-model/weights", {"GET"}),
                 ("POST", "/livez", {"GET"}),
                 ("PUT", "/readyz", {"GET"})]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                status, headers, body, raw = self.request(method, path, {} if method in ("POST", "PUT") else None)
                self.assert_error((status, headers, body, raw), 405, "method_not_allowed")
                self.assertIn("allow", headers)
                methods = set(re.split(r"[,\s]+", headers["allow"].strip()))
                self.assertTrue(allowed <= methods, "Allow %r lacks %r" % (headers["allow"], allowed))
                self.assertNotIn(method, methods)


class RobustnessTests(ServerTestCase):

    def test_aborted_and_garbage_requests_do_not_hurt(self):
        name = self.model_name()
        payloads = [
            # Body cut off half-way, then the client goes away.
            ("PUT /v1/models/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: 100000\r\n\r\n" % name).encode() + b'{"optimizer": ' + b" " * 50000,
            b"GARBAGE\r\n\r\n",
            b"GET /livez HTTP/1.1\r\nHost: x\r\n",  # headers never finished
            b"\x00\xff" * 100 + b"\r\n\r\n",
        ]
        for payload in payloads:
            with socket.create_connection((self.server.host, self.server.port), timeout=5) as sock:
                sock.sendall(payload)
        # Also a push cut off in the middle, on an existing model.
        self.create_model(name + "-x", {"optimizer": {"name": "SGD", "lr": 1},
                                        "tensors": [{"name": "w", "shape": [1000]}]})
        before = self.snapshot(name + "-x")
        body = b'{"grads": {"w": ' + str([1.0] * 1000).encode() + b"}}"
        with socket.create_connection((self.server.host, self.server.port), timeout=5) as sock:
            sock.sendall(("POST /v1/models/%s-x/push HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                          % (name, len(body))).encode() + body[:len(body) // 2])
        for _ in range(3):
            status, _, parsed, _ = self.request("GET", "/livez")
            self.assertEqual((status, parsed), (200, {"status": "ok"}))
        self.assert_no_model(name)
        self.assert_unchanged(name + "-x", before)


class ConcurrencyTests(ServerTestCase):
    THREADS = 8
    PUSHES = 200
    SIZE = 64

    @staticmethod
    def gradient(k, i, size):
        # Small integers (-2 .. 4), so float32 sums are exact in any order;
        # the (k + j) % 3 bias keeps the expected total away from zero.
        return [((k * 7 + i + j) % 5) - 2 + ((k + j) % 3) for j in range(size)]

    def test_concurrent_pushes_are_all_applied(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1},
                                 "tensors": [{"name": "w", "shape": [self.SIZE], "init": {"name": "zeros"}},
                                             {"name": "idle", "shape": [2], "values": [1, 2]}]})
        failures = []
        steps = []
        reconnects = []
        lock = threading.Lock()
        barrier = threading.Barrier(self.THREADS)

        def worker(k):
            try:
                with self.server.client() as client:
                    barrier.wait(30)
                    local_steps = []
                    for i in range(self.PUSHES):
                        body = {"grads": {"w": self.gradient(k, i, self.SIZE)}, "worker": "w%d" % k}
                        status, _, parsed, raw = client.request("POST", "/v1/models/%s/push" % name, body)
                        if status != 200:
                            raise AssertionError("push %d/%d: %d %r" % (k, i, status, raw[:500]))
                        if list(parsed["weights"]) != ["w"] or len(parsed["weights"]["w"]) != self.SIZE:
                            raise AssertionError("push %d/%d: bad response %r" % (k, i, raw[:500]))
                        local_steps.append(parsed["step"])
                    with lock:
                        steps.extend(local_steps)
                        reconnects.append(client.reconnects)
            except BaseException as exc:  # reported below
                with lock:
                    failures.append("worker %d: %r" % (k, exc))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(self.THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        self.assertFalse(any(thread.is_alive() for thread in threads), "workers hung")
        self.assertEqual(failures, [])

        total = self.THREADS * self.PUSHES
        expected = [0.0] * self.SIZE
        for k in range(self.THREADS):
            for i in range(self.PUSHES):
                for j, g in enumerate(self.gradient(k, i, self.SIZE)):
                    expected[j] -= g
        self.assertTrue(all(value != 0 for value in expected))
        weights = self.weights(name)
        self.assertEqual(weights["step"], total)
        self.assertEqual(weights["weights"]["w"], expected)
        self.assertEqual(weights["weights"]["idle"], [1, 2])
        description = self.describe(name)
        self.assertEqual(description["step"], total)
        self.assertEqual([(t["name"], t["step"]) for t in description["tensors"]], [("w", total), ("idle", 0)])
        # Every push got its own step number.
        self.assertEqual(sorted(steps), list(range(1, total + 1)))
        self.assertEqual(reconnects, [0] * self.THREADS, "keep-alive connections were closed")

    def test_concurrent_creates_of_one_name(self):
        name = self.model_name()
        results = []
        lock = threading.Lock()
        barrier = threading.Barrier(6)

        def create(k):
            barrier.wait(30)
            status, _, parsed, _ = self.server.request("PUT", "/v1/models/" + name, {
                "optimizer": {"name": "SGD", "lr": 1},
                "tensors": [{"name": "w", "shape": [1], "values": [k]}]})
            with lock:
                results.append((status, k, parsed))

        threads = [threading.Thread(target=create, args=(k,)) for k in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        statuses = sorted(status for status, _, _ in results)
        self.assertEqual(statuses, [201] + [409] * 5)
        winner = [k for status, k, _ in results if status == 201][0]
        self.assertEqual(self.weights(name)["weights"]["w"], [winner])
        for status, _, parsed in results:
            if status == 409:
                self.assertEqual(parsed["error"]["code"], "model_exists")

    def test_reads_never_see_a_half_applied_push(self):
        # Larger than the parallel-update threshold (2^18), so each step is
        # split across threads; every push subtracts 1 from every element, so
        # any consistent view has all elements equal.
        name = self.model_name()
        n = 300000
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1},
                                 "tensors": [{"name": "w", "shape": [n]}]})
        ones = b64_raw(struct.pack("<f", 1.0) * n)
        problems = []
        done = threading.Event()

        def uniform(data, what):
            values = floats_from_b64(data)
            if len(values) != n or values.count(values[0]) != n:
                problems.append("%s: torn tensor (first %r, min %r, max %r)"
                                % (what, values[0], min(values), max(values)))

        def pusher():
            with self.server.client() as client:
                for _ in range(15):
                    status, _, parsed, raw = client.request("POST", "/v1/models/%s/push" % name,
                                                            {"grads": {"w": ones}})
                    if status != 200:
                        problems.append("push: %d %r" % (status, raw[:200]))
                        return
                    uniform(parsed["weights"]["w"], "push response")

        def reader():
            with self.server.client() as client:
                while not done.is_set():
                    status, _, parsed, raw = client.request("GET", "/v1/models/%s/weights?encoding=b64" % name)
                    if status != 200:
                        problems.append("get: %d %r" % (status, raw[:200]))
                        return
                    uniform(parsed["weights"]["w"], "GET")

        pushers = [threading.Thread(target=pusher) for _ in range(3)]
        readers = [threading.Thread(target=reader) for _ in range(2)]
        for thread in pushers + readers:
            thread.start()
        for thread in pushers:
            thread.join(300)
        done.set()
        for thread in readers:
            thread.join(300)
        self.assertEqual(problems[:5], [])
        final = floats_from_b64(self.weights(name, "?encoding=b64")["weights"]["w"])
        self.assertEqual(final.count(-45.0), n)
        self.assertEqual(self.describe(name)["step"], 45)

    def test_delete_while_pushing(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "Adam"},
                                 "tensors": [{"name": "w", "shape": [4096]}]})
        statuses = []
        stop = threading.Event()

        def pusher():
            grads = {"w": b64_floats([1.0] * 4096)}
            with self.server.client() as client:
                while not stop.is_set():
                    status, _, parsed, raw = client.request("POST", "/v1/models/%s/push" % name,
                                                            {"grads": grads})
                    statuses.append((status, parsed["error"]["code"] if status != 200 else None))
                    if status != 200:
                        return

        threads = [threading.Thread(target=pusher) for _ in range(3)]
        for thread in threads:
            thread.start()
        while len(statuses) < 20 and all(thread.is_alive() for thread in threads):
            threading.Event().wait(0.01)
        status, _, _, _ = self.request("DELETE", "/v1/models/" + name)
        self.assertEqual(status, 204)
        for thread in threads:
            thread.join(60)
        stop.set()
        for thread in threads:
            thread.join(60)
        self.assertFalse(any(thread.is_alive() for thread in threads))
        for status, code in statuses:
            self.assertIn((status, code), ((200, None), (404, "model_not_found")))
        self.assertIn((404, "model_not_found"), statuses)
        self.assert_no_model(name)
        status, _, body, _ = self.request("GET", "/livez")
        self.assertEqual(status, 200)



class ClipTests(ServerTestCase):
    """Gradient clipping ("clip" beside "optimizer") through real pushes, with
    SGD lr=1 so that each weight moves by exactly minus its clipped gradient."""

    def create_clipped(self, name, clip, values=(1, 1, 1, 1)):
        return self.create_model(name, {
            "optimizer": {"name": "SGD", "lr": 1.0}, "clip": clip,
            "tensors": [{"name": "w", "shape": [2, 2], "values": list(values)},
                        {"name": "b", "shape": [1], "values": [0]}]})

    def push_body(self, name, body, expect=200):
        status, _, parsed, raw = self.request("POST", "/v1/models/%s/push" % name, body)
        self.assertEqual(status, expect, raw[:2000])
        return parsed

    def test_clip_by_value(self):
        name = self.model_name()
        description = self.create_clipped(name, {"value": 0.5})
        self.assertEqual(description["clip"], {"value": 0.5})
        reply = self.push(name, {"w": [2, -0.25, -3, 0.5], "b": [0.1]})
        self.assertNotIn("grad_norm", reply)
        self.assert_floats(reply["weights"]["w"], [0.5, 1.25, 1.5, 0.5])
        self.assert_floats(reply["weights"]["b"], [-0.1])

    def test_clip_by_norm(self):
        name = self.model_name()
        description = self.create_clipped(name, {"max_norm": 1.0})
        self.assertEqual(description["clip"],
                         {"max_norm": 1.0, "norm_type": 2.0, "per_tensor": False})
        # total norm sqrt(9 + 16) = 5: every gradient scaled by 1 / (5 + 1e-6).
        reply = self.push(name, {"w": [3, 0, 0, 0], "b": [4]})
        self.assertAlmostEqual(reply["grad_norm"], 5.0, places=6)
        coefficient = f32(1.0 / (5.0 + 1e-6))
        self.assert_floats(reply["weights"]["w"], [1 - f32(3 * coefficient), 1, 1, 1])
        self.assert_floats(reply["weights"]["b"], [-f32(4 * coefficient)])
        # A small gradient is not clipped; the norm is still reported.
        reply = self.push(name, {"b": [0.5]})
        self.assertAlmostEqual(reply["grad_norm"], 0.5, places=6)
        self.assert_floats(reply["weights"]["b"], [f32(-f32(4 * coefficient)) - 0.5])

    def test_clip_by_inf_norm_per_tensor(self):
        name = self.model_name()
        self.create_clipped(name, {"max_norm": 1.0, "norm_type": "inf", "per_tensor": True})
        self.assertEqual(self.describe(name)["clip"]["norm_type"], "inf")
        reply = self.push(name, {"w": [2, -4, 0, 0], "b": [0.5]})
        self.assertEqual(reply["grad_norm"], 4.0)
        c = f32(1.0 / (4.0 + 1e-6))
        self.assert_floats(reply["weights"]["w"], [1 - f32(2 * c), 1 + f32(4 * c), 1, 1])
        self.assert_floats(reply["weights"]["b"], [-0.5])

    def test_client_grad_norm_is_honoured(self):
        name = self.model_name()
        self.create_clipped(name, {"max_norm": 1.0})
        # The client says the whole model's norm is 10 (other shards hold the
        # rest): the coefficient is 1 / (10 + 1e-6), not 1.
        reply = self.push_body(name, {"grads": {"b": [0.5]}, "grad_norm": 10})
        self.assertEqual(reply["grad_norm"], 10)
        self.assert_floats(reply["weights"]["b"], [-f32(0.5 * f32(1.0 / (10 + 1e-6)))])
        before = self.snapshot(name)
        for bad in (-1, "1"):
            self.assert_error(self.request("POST", "/v1/models/%s/push" % name,
                                           {"grads": {"b": [1]}, "grad_norm": bad}),
                              400, "bad_request", "grad_norm")
        self.assert_unchanged(name, before)

    def test_agc(self):
        name = self.model_name()
        self.create_clipped(name, {"agc": 0.1}, values=(3, 4, 0, 0))
        self.assertEqual(self.describe(name)["clip"], {"agc": 0.1, "eps": 0.001})
        # Row 0: limit 0.1 * 5 = 0.5 < ||g|| = 5: g *= 0.1.  Row 1: ||w|| = 0,
        # limit 0.1 * 1e-3 < ||g|| = 2: g *= 5e-5.
        reply = self.push(name, {"w": [3, -4, 0, 2], "b": [0]})
        self.assertNotIn("grad_norm", reply)
        self.assert_floats(reply["weights"]["w"], [2.7, 4.4, 0, -1e-4], tolerance=1e-6)

    def test_clip_errors_name_the_field(self):
        name = self.model_name()
        for clip, field in [({"max_norm": 0}, "clip.max_norm"),
                            ({"value": -1}, "clip.value"),
                            ({"max_norm": 1, "norm_type": -2}, "clip.norm_type"),
                            ({"agc": 0}, "clip.agc"),
                            ({"agc": 0.01, "eps": 0}, "clip.eps"),
                            ({"value": 1, "agc": 1}, "clip"),
                            ({}, "clip"),
                            ({"max_norm": 1, "bogus": 1}, "clip.bogus"),
                            ("1", "clip")]:
            body = {"optimizer": {"name": "SGD", "lr": 1.0}, "clip": clip,
                    "tensors": [{"name": "w", "shape": [1]}]}
            self.assert_error(self.request("PUT", "/v1/models/" + name, body),
                              400, "bad_request", field)
            self.assert_no_model(name)


if __name__ == "__main__":
    unittest.main()


class ParamGroupTests(ServerTestCase):
    """Per-tensor hyperparameter overrides, as torch's param_groups."""

    BODY = {
        "optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
        "tensors": [{"name": "fc1.weight", "shape": [2], "values": [1, 1]},
                    {"name": "fc1.bias", "shape": [2], "values": [1, 1]},
                    {"name": "fc2.bias", "shape": [1], "values": [2]}],
        "param_groups": [{"tensors": ["fc1.bias", "fc2.bias"], "weight_decay": 0, "momentum": 0,
                          "lr": 0.5}],
    }

    def test_groups_override_hyperparameters(self):
        name = self.model_name()
        description = self.create_model(name, self.BODY)
        groups = description["param_groups"]
        self.assertEqual(len(groups), 1)
        self.assertEqual(groups[0]["tensors"], ["fc1.bias", "fc2.bias"])
        # Every hyperparameter of the group, resolved, as torch's state_dict shows it.
        self.assertEqual(groups[0]["lr"], 0.5)
        self.assertEqual(groups[0]["weight_decay"], 0)
        self.assertEqual(groups[0]["momentum"], 0)
        self.assertEqual(groups[0]["dampening"], 0)
        tensors = {t["name"]: t for t in description["tensors"]}
        self.assertNotIn("param_group", tensors["fc1.weight"])
        self.assertEqual(tensors["fc1.bias"]["param_group"], 0)
        # State follows the group's configuration: no momentum, no buffer.
        self.assertEqual(tensors["fc1.weight"]["state"], ["momentum_buffer"])
        self.assertEqual(tensors["fc1.bias"]["state"], [])
        reply = self.push(name, {"fc1.weight": [1, 1], "fc1.bias": [1, 1], "fc2.bias": [1]})
        # fc1.weight: model defaults, d = 1 + 0.01 * 1; w = 1 - 0.1 d.
        self.assert_floats(reply["weights"]["fc1.weight"],
                           [f32(1 - f32(0.1) * f32(1.01))] * 2, tolerance=1e-7)
        # The biases: lr 0.5, no weight decay, no momentum.
        self.assert_floats(reply["weights"]["fc1.bias"], [0.5, 0.5])
        self.assert_floats(reply["weights"]["fc2.bias"], [1.5])

    def test_group_errors_name_the_field(self):
        name = self.model_name()
        def rejected(groups, status, code, *fields):
            body = dict(self.BODY, param_groups=groups)
            self.assert_error(self.request("PUT", "/v1/models/" + name, body), status, code, *fields)
            self.assert_no_model(name)
        rejected([{"tensors": ["fc1.bias"], "lr": -1}], 400, "bad_hyperparameter",
                 "param_groups[0].lr")
        rejected([{"tensors": ["fc1.bias"], "betas": [0.9, 0.99]}], 400, "bad_hyperparameter",
                 "param_groups[0].betas")
        rejected([{"tensors": ["fc1.bias", "nope"]}], 404, "tensor_not_found",
                 "param_groups[0].tensors[1]", "nope")
        rejected([{"tensors": ["fc1.bias"]}, {"tensors": ["fc1.bias"]}], 400, "bad_request",
                 "param_groups[1].tensors[0]")
        rejected([{"tensors": []}], 400, "bad_request", "param_groups[0].tensors")
        rejected([{"weight_decay": 0}], 400, "bad_request", "param_groups[0].tensors")
        rejected([{"tensors": [3]}], 400, "bad_request", "param_groups[0].tensors[0]")
        rejected({"tensors": ["fc1.bias"]}, 400, "bad_request", "param_groups")
        rejected(["fc1.bias"], 400, "bad_request", "param_groups[0]")

    def test_group_cross_field_error_names_the_group(self):
        name = self.model_name()
        body = dict(self.BODY, param_groups=[{"tensors": ["fc1.bias"], "nesterov": True,
                                              "momentum": 0}])
        error = self.assert_error(self.request("PUT", "/v1/models/" + name, body), 400,
                                  "bad_hyperparameter", "param_groups[0].nesterov")
        self.assertNotIn("optimizer.nesterov", error["message"])
        self.assert_no_model(name)


class StateTests(ServerTestCase):
    """GET /v1/models/{model}/state?slot=NAME: one optimizer state array."""

    def test_momentum_buffer_and_errors(self):
        name = self.model_name()
        self.create_model(name, {
            "optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9},
            "tensors": [{"name": "w", "shape": [3], "values": [1, 2, 3]},
                        {"name": "b", "shape": [1]}],
            "param_groups": [{"tensors": ["b"], "momentum": 0}]})
        self.push(name, {"w": [0.5, -1, 2]})
        self.push(name, {"w": [1, 1, 1]})
        status, _, body, raw = self.request("GET", "/v1/models/%s/state?slot=momentum_buffer&tensors=w" % name)
        self.assertEqual(status, 200, raw)
        self.assertEqual(body["slot"], "momentum_buffer")
        self.assertEqual(body["step"], 2)
        # buf = g1, then 0.9 * g1 + g2 (dampening 0), in float32 with torch's fma.
        expected = [f32(f32(0.9) * f32(g1) + 1) for g1 in (0.5, -1, 2)]
        self.assert_floats(body["state"]["w"], expected)
        status, _, b64, _ = self.request("GET", "/v1/models/%s/state?slot=momentum_buffer&tensors=w&encoding=b64" % name)
        self.assertEqual(status, 200)
        self.assert_floats(floats_from_b64(b64["state"]["w"]), expected)
        # b (momentum 0 in its group) keeps no buffer: the error names it.
        self.assert_error(self.request("GET", "/v1/models/%s/state?slot=momentum_buffer" % name),
                          400, "bad_request", '"b"', "momentum_buffer")
        self.assert_error(self.request("GET", "/v1/models/%s/state?slot=exp_avg" % name),
                          400, "bad_request", "exp_avg")
        self.assert_error(self.request("GET", "/v1/models/%s/state" % name), 400, "bad_request", "slot")
        self.assert_error(self.request("GET", "/v1/models/nope/state?slot=ax"), 404, "model_not_found")

    def test_asgd_averaged_weights(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "ASGD", "lr": 0.1, "t0": 0},
                                 "tensors": [{"name": "w", "shape": [2], "values": [1, -1]}]})
        weights = []
        for _ in range(4):
            weights.append(self.push(name, {"w": [1, 1]})["weights"]["w"])
        status, _, body, raw = self.request("GET", "/v1/models/%s/state?slot=ax" % name)
        self.assertEqual(status, 200, raw)
        ax = body["state"]["w"]
        # ax lies within the range of the weights it averages, and differs
        # from the current weights once they move.
        for i in range(2):
            lowest = min(w[i] for w in weights)
            highest = max(w[i] for w in weights)
            self.assertTrue(lowest <= ax[i] <= highest, (ax, weights))
            self.assertNotEqual(ax[i], weights[-1][i])

    def test_adafactor_factored_state(self):
        """A matrix keeps a row and a column factor (m + n floats); the
        state reply carries exactly that many values."""
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "Adafactor", "lr": 0.1},
                                 "tensors": [{"name": "m", "shape": [2, 3],
                                              "values": [1, 2, 3, 4, 5, 6]},
                                             {"name": "v", "shape": [2], "values": [1, -1]}]})
        self.push(name, {"m": [1, 1, 1, 2, 2, 2], "v": [1, 2]})
        status, _, body, raw = self.request("GET", "/v1/models/%s/state?slot=row_var&tensors=m" % name)
        self.assertEqual(status, 200, raw)
        # The first step's factors are the means of g^2 (1 - beta2 = 1).
        self.assert_floats(body["state"]["m"], [1, 4])
        status, _, body, raw = self.request("GET", "/v1/models/%s/state?slot=col_var&tensors=m&encoding=b64" % name)
        self.assertEqual(status, 200, raw)
        self.assert_floats(floats_from_b64(body["state"]["m"]), [2.5, 2.5, 2.5])
        status, _, body, raw = self.request("GET", "/v1/models/%s/state?slot=variance&tensors=v" % name)
        self.assert_floats(body["state"]["v"], [1, 4])
        self.assert_error(self.request("GET", "/v1/models/%s/state?slot=variance&tensors=m" % name),
                          400, "bad_request", "row_var, col_var")
        status, _, description, _ = self.request("GET", "/v1/models/%s" % name)
        self.assertEqual(description["optimizer"]["eps"][1], 1e-3)
        # 6 weights + 2 + 3 factor floats, and 2 weights + 2 variance floats.
        self.assertEqual(description["memory_bytes"], 4 * (6 + 5 + 2 + 2))

    def test_muon_matrices_and_fallback(self):
        """Muon orthogonalises 2-D tensors and runs AdamW on the rest, each
        keeping only its own state."""
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "Muon", "lr": 0.02, "adjust_lr_fn": None},
                                 "tensors": [{"name": "w", "shape": [4, 3],
                                              "init": {"name": "normal", "std": 0.5, "seed": 3}},
                                             {"name": "b", "shape": [3]}]})
        reply = self.push(name, {"w": [0.1 * i for i in range(12)], "b": [1, -1, 0]})
        self.assertEqual(len(reply["weights"]["w"]), 12)
        # AdamW's first step moves b by lr where the gradient is not 0.
        self.assert_floats(reply["weights"]["b"], [-0.02, 0.02, 0], tolerance=1e-8)
        status, _, body, raw = self.request("GET", "/v1/models/%s/state?slot=momentum_buffer&tensors=w" % name)
        self.assertEqual(status, 200, raw)
        self.assertEqual(len(body["state"]["w"]), 12)
        self.assert_error(self.request("GET", "/v1/models/%s/state?slot=momentum_buffer&tensors=b" % name),
                          400, "bad_request", "exp_avg, exp_avg_sq")
        status, _, description, _ = self.request("GET", "/v1/models/%s" % name)
        self.assertEqual(description["optimizer"]["adjust_lr_fn"], "original")
        self.assertEqual(description["optimizer"]["ns_coefficients"], [3.4445, -4.775, 2.0315])
        self.assertEqual(description["optimizer"]["ns_steps"], 5)
        self.assert_error(self.request("PUT", "/v1/models/%s-bad" % name, {
            "optimizer": {"name": "Muon", "adjust_lr_fn": "fast"},
            "tensors": [{"name": "w", "shape": [2, 2]}]}), 400, "bad_hyperparameter",
            "optimizer.adjust_lr_fn", "match_rms_adamw")


class ScheduleTests(ServerTestCase):
    """Learning-rate schedules through real pushes: the "lr" of every push
    must be exactly torch's lr for that optimizer step, for every schedule
    golden file recorded from torch.optim.lr_scheduler."""

    GOLDENS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conformance",
                           "schedules")

    def test_every_schedule_golden_through_http(self):
        paths = sorted(glob.glob(os.path.join(self.GOLDENS, "*.json")))
        self.assertGreaterEqual(len(paths), 13)
        client = self.server.client()
        try:
            for path in paths:
                with open(path) as handle:
                    golden = json.load(handle)
                name = "schedule_" + golden["name"]
                status, _, body, raw = client.request("PUT", "/v1/models/" + name, {
                    "optimizer": golden["optimizer"], "schedule": golden["schedule"],
                    "tensors": [{"name": "w", "shape": [4], "values": [1, -1, 0.5, 2]}]})
                self.assertEqual(status, 201, (golden["name"], raw[:500]))
                # The description prints reals with 9 significant digits (for
                # display); the push reply below carries the exact double.
                self.assertAlmostEqual(body["lr"], golden["lr"][0], delta=1e-8 * abs(golden["lr"][0]) + 1e-300,
                                       msg=golden["name"])
                losses = golden.get("losses")
                for step, expected in enumerate(golden["lr"]):
                    push = {"grads": {"w": [0.1, -0.2, 0.3, 0.0]}}
                    if losses:
                        push["loss"] = losses[step]
                    status, _, reply, raw = client.request(
                        "POST", "/v1/models/%s/push" % name, push)
                    self.assertEqual(status, 200, (golden["name"], step, raw[:500]))
                    # Exactly torch's double: the reply prints round-trip digits.
                    self.assertEqual(reply["lr"], expected, (golden["name"], step))
                client.request("DELETE", "/v1/models/" + name)
        finally:
            client.close()

    def test_schedule_errors_name_the_field(self):
        name = self.model_name()
        def rejected(schedule, *fields):
            body = {"optimizer": {"name": "SGD", "lr": 0.1}, "schedule": schedule,
                    "tensors": [{"name": "w", "shape": [1]}]}
            response = self.request("PUT", "/v1/models/" + name, body)
            self.assertIn(response[2]["error"]["code"], ("bad_request", "bad_hyperparameter"),
                          response[3])
            self.assert_error(response, 400, response[2]["error"]["code"], *fields)
            self.assert_no_model(name)
        rejected({"name": "CosineAnnealingLR"}, "T_max")
        rejected({"name": "StepLR", "step_size": 0}, "step_size")
        rejected({"name": "NoSuchLR"}, "schedule")
        # CyclicLR cycles "momentum": torch 1.13 cannot cycle Adam's beta1 there.
        body = {"optimizer": {"name": "Adam"}, "tensors": [{"name": "w", "shape": [1]}],
                "schedule": {"name": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1}}
        status, _, parsed, raw = self.request("PUT", "/v1/models/" + name, body)
        self.assertEqual(status, 400, raw)
        self.assertIn("cycle_momentum", parsed["error"]["message"])
        self.assert_no_model(name)

    def test_cycled_momentum_with_zero_momentum_sgd(self):
        # OneCycleLR turns momentum on for SGD configured without it: the
        # tensor must hold a momentum buffer and the push must work.
        name = self.model_name()
        description = self.create_model(name, {
            "optimizer": {"name": "SGD", "lr": 0.1},
            "schedule": {"name": "OneCycleLR", "max_lr": 0.5, "total_steps": 10},
            "tensors": [{"name": "w", "shape": [2], "values": [1, 1]}]})
        self.assertEqual(description["tensors"][0]["state"], ["momentum_buffer"])
        for _ in range(3):
            reply = self.push(name, {"w": [1, 1]})
        self.assertLess(reply["weights"]["w"][0], 1)

    def test_one_cycle_runs_out(self):
        # torch: total_steps + 1 optimizer steps work; the scheduler.step()
        # after the last raises.  paramd applies that last push and refuses
        # the next, changing nothing.
        name = self.model_name()
        self.create_model(name, {
            "optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9},
            "schedule": {"name": "OneCycleLR", "max_lr": 0.5, "total_steps": 4},
            "tensors": [{"name": "w", "shape": [1], "values": [1]}]})
        for _ in range(5):
            self.push(name, {"w": [1]})
        before = self.snapshot(name)
        self.assert_error(self.request("POST", "/v1/models/%s/push" % name, {"grads": {"w": [1]}}),
                          400, "bad_request", "total_steps")
        self.assert_unchanged(name, before)
