#!/usr/bin/python3
"""Integration tests for issue 4's training options through the real server:
non-finite gradients, float16/bfloat16 on the wire, dynamic loss scaling,
gradient accumulation, gradient noise, the order they compose in, and
PATCH /v1/models/{model} (including PATCH concurrent with pushes).

Most models use SGD with lr 1, so a weight moves by exactly minus the
gradient that reaches the optimizer."""

import base64
import glob
import json
import math
import os
import re
import struct
import threading
import unittest

from common import ServerTestCase
from harness import b64_floats, b64_raw, f32, floats_from_b64

CONFORMANCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conformance")


# -- 16-bit encodings (struct's "e" is IEEE binary16, round half to even) ----

def f16_bytes(values):
    out = b""
    for value in values:
        try:
            out += struct.pack("<e", value)
        except OverflowError:  # beyond 65504 after rounding: infinity
            out += struct.pack("<H", 0xFC00 if value < 0 else 0x7C00)
    return out


def f16_object(values):
    return {"dtype": "float16", "b64": base64.b64encode(f16_bytes(values)).decode()}


def f16_values(obj):
    assert obj["dtype"] == "float16", obj
    data = base64.b64decode(obj["b64"], validate=True)
    return [v[0] for v in struct.iter_unpack("<e", data)]


def bf16_bits(value):
    """bfloat16 of a float32, round to nearest even (as torch)."""
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def bf16_object(values):
    data = b"".join(struct.pack("<H", bf16_bits(v)) for v in values)
    return {"dtype": "bfloat16", "b64": base64.b64encode(data).decode()}


def bf16_values(obj):
    assert obj["dtype"] == "bfloat16", obj
    data = base64.b64decode(obj["b64"], validate=True)
    return [struct.unpack("<f", struct.pack("<I", h[0] << 16))[0] for h in struct.iter_unpack("<H", data)]


def sgd_model(**options):
    body = {"optimizer": {"name": "SGD", "lr": 1.0},
            "tensors": [{"name": "w", "shape": [4], "values": [0, 0, 0, 0]},
                        {"name": "b", "shape": [2], "values": [0, 0]}]}
    body.update(options)
    return body


class TrainingTestCase(ServerTestCase):

    def push_body(self, name, body, expect=200):
        status, _, parsed, raw = self.request("POST", "/v1/models/%s/push" % name, body)
        self.assertEqual(status, expect, raw[:2000])
        return parsed

    def patch(self, name, body, expect=200):
        status, _, parsed, raw = self.request("PATCH", "/v1/models/" + name, body)
        self.assertEqual(status, expect, raw[:2000])
        return parsed


class NonFiniteTests(TrainingTestCase):

    def test_error_is_the_default_and_names_tensor_and_index(self):
        name = self.model_name()
        description = self.create_model(name, sgd_model())
        self.assertEqual(description["nonfinite"], "error")
        self.push(name, {"w": [1, 1, 1, 1]})
        before = self.snapshot(name)
        grads = {"w": [1, 1, 1, 1], "b": b64_raw(struct.pack("<2f", 1, float("nan")))}
        error = self.assert_error(self.request("POST", "/v1/models/%s/push" % name, {"grads": grads}),
                                  400, "non_finite", "grads.b[1]")
        self.assertIn("nan", error["message"])
        self.assert_unchanged(name, before)
        self.assertEqual(self.describe(name)["nonfinite_counts"]["refused"], 1)

    def test_skip(self):
        name = self.model_name()
        self.create_model(name, sgd_model(nonfinite="skip"))
        self.push(name, {"w": [1, 2, 3, 4]})
        before = self.snapshot(name)
        reply = self.push(name, {"w": b64_raw(struct.pack("<4f", 1, float("inf"), 1, 1)), "b": [1, 1]})
        self.assertTrue(reply["skipped"])
        self.assertEqual(reply["reason"], "nonfinite")
        self.assertEqual(reply["step"], 1)
        self.assert_floats(floats_from_b64(reply["weights"]["w"]), [-1, -2, -3, -4])
        self.assert_floats(reply["weights"]["b"], [0, 0])
        self.assert_unchanged(name, before)
        counts = self.describe(name)["nonfinite_counts"]
        self.assertEqual(counts, {"refused": 0, "skipped": 1, "zeroed": 0, "zeroed_values": 0,
                                  "loss_scale_skipped": 0})
        self.assertNotIn("skipped", self.push(name, {"b": [1, 1]}))

    def test_zero(self):
        name = self.model_name()
        self.create_model(name, sgd_model(nonfinite="zero"))
        grads = {"w": b64_raw(struct.pack("<4f", 1, float("inf"), float("-inf"), 4)),
                 "b": f16_object([float("nan"), 2])}
        reply = self.push(name, grads)
        self.assertEqual(reply["zeroed"], 3)
        self.assertNotIn("skipped", reply)
        self.assert_floats(floats_from_b64(reply["weights"]["w"]), [-1, 0, 0, -4])
        self.assertEqual(f16_values(reply["weights"]["b"]), [0, -2])
        counts = self.describe(name)["nonfinite_counts"]
        self.assertEqual((counts["zeroed"], counts["zeroed_values"]), (1, 3))

    def test_bad_policy(self):
        name = self.model_name()
        for value in ("ignore", 1, None):
            self.assert_error(self.request("PUT", "/v1/models/" + name, sgd_model(nonfinite=value)),
                              400, "bad_request", "nonfinite")
            self.assert_no_model(name)


class MixedPrecisionTests(TrainingTestCase):

    def test_float16_and_bfloat16_round_trip(self):
        name = self.model_name()
        self.create_model(name, {
            "optimizer": {"name": "SGD", "lr": 1.0},
            "tensors": [{"name": "h", "shape": [4], "values": f16_object([1.5, -2, 65504, 6e-8])},
                        {"name": "g", "shape": [3], "values": bf16_object([1, 3.140625, -1e30])},
                        {"name": "f", "shape": [1], "values": [0.1]}]})
        # Exactly the 16-bit values, kept as float32 master weights.
        weights = self.weights(name)["weights"]
        self.assert_floats(weights["h"], [1.5, -2, 65504, 2 ** -24])
        self.assert_floats(weights["g"], [1, 3.140625, bf16_values(bf16_object([-1e30]))[0]])
        # Gradients in float16: the reply comes back in float16, the float32
        # tensor's as JSON; the master weights keep float32 precision.
        reply = self.push(name, {"h": f16_object([0.25, 0.0009765625, -32, 0]),
                                 "g": bf16_object([0.5, 0, 0]), "f": [0.2]})
        self.assertEqual(reply["weights"]["h"]["dtype"], "float16")
        self.assertEqual(reply["weights"]["g"]["dtype"], "bfloat16")
        master = self.weights(name)["weights"]
        self.assert_floats(master["h"][:3], [1.25, -2 - 0.0009765625, 65536])
        # The reply rounds each master weight to nearest even in float16: -2.0009765625
        # is a tie between -2 and -2.001953125 and goes to -2 (even); 65536 is
        # beyond float16's 65504 + 16 and becomes infinity (never clamped).
        self.assertEqual(f16_values(reply["weights"]["h"])[:3], [1.25, -2, float("inf")])
        self.assertEqual(bf16_values(reply["weights"]["g"])[:2], [0.5, 3.140625])
        self.assert_floats(reply["weights"]["f"], [f32(0.1) - f32(0.2)])
        # Pulls in any dtype.
        pulled = self.weights(name, "?tensors=h&dtype=float16")["weights"]["h"]
        self.assertEqual(f16_values(pulled)[:2], [1.25, -2])
        pulled = self.weights(name, "?tensors=h&encoding=b64&dtype=bfloat16")["weights"]["h"]
        self.assertEqual(bf16_values(pulled)[0], 1.25)
        for query, field in (("?dtype=float64", "dtype"), ("?encoding=json&dtype=float16", "dtype")):
            self.assert_error(self.request("GET", "/v1/models/%s/weights%s" % (name, query)),
                              400, "bad_request", field)

    def test_large_float16_push(self):
        # Several base64 chunks (4096 characters each) in both directions.
        name = self.model_name()
        n = 5000
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1.0},
                                 "tensors": [{"name": "w", "shape": [n]}]})
        grads = [((i * 37) % 200 - 100) / 8 for i in range(n)]
        reply = self.push(name, {"w": f16_object(grads)})
        self.assertEqual(f16_values(reply["weights"]["w"]), [-g for g in grads])
        state = self.request("GET", "/v1/models/%s/weights?dtype=float16" % name)[2]
        self.assertEqual(f16_values(state["weights"]["w"]), [-g for g in grads])

    def test_encoding_errors(self):
        name = self.model_name()
        self.create_model(name, sgd_model())
        before = self.snapshot(name)
        for grads, code, field in [
                ({"w": {"dtype": "float8", "b64": "AAAA"}}, "bad_encoding", "grads.w.dtype"),
                ({"w": {"dtype": "float16", "b64": base64.b64encode(b"\0" * 7).decode()}},
                 "bad_encoding", "grads.w.b64"),
                ({"w": {"dtype": "bfloat16", "b64": base64.b64encode(b"\0" * 6).decode()}},
                 "shape_mismatch", "grads.w"),
                ({"w": {"dtype": "float16", "b64": "!!!!AAAA"}}, "bad_encoding", "grads.w.b64")]:
            self.assert_error(self.request("POST", "/v1/models/%s/push" % name, {"grads": grads}),
                              400, code, field)
        self.assert_unchanged(name, before)
        # An infinite float16 initial value is refused like any other.
        self.assert_error(self.request("PUT", "/v1/models/%s-x" % name, {
            "optimizer": {"name": "SGD", "lr": 1},
            "tensors": [{"name": "w", "shape": [1], "values": f16_object([float("inf")])}]}),
            400, "non_finite", "tensors[0].values[0]")


class LossScaleTests(TrainingTestCase):

    def test_dynamic_defaults_and_reply(self):
        name = self.model_name()
        description = self.create_model(name, sgd_model(loss_scale="dynamic"))
        self.assertEqual(description["loss_scale"], {
            "init_scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
            "growth_interval": 2000, "scale": 65536.0, "growth_tracker": 0})
        reply = self.push(name, {"w": [65536, -131072, 0, 32768]})
        self.assertEqual(reply["loss_scale"], 65536)
        self.assert_floats(reply["weights"]["w"], [-1, 2, 0, -0.5])
        # An overflow (the nonfinite policy is "error", but a loss-scaled
        # model skips and backs off instead of refusing).
        reply = self.push(name, {"b": f16_object([float("inf"), 1])})
        self.assertTrue(reply["skipped"])
        self.assertEqual(reply["reason"], "loss_scale")
        self.assertEqual(reply["loss_scale"], 32768)
        description = self.describe(name)
        self.assertEqual(description["loss_scale"]["scale"], 32768)
        self.assertEqual(description["step"], 1)
        self.assertEqual(description["nonfinite_counts"]["loss_scale_skipped"], 1)
        self.assertEqual(description["nonfinite_counts"]["refused"], 0)
        # A worker may say which scale its gradients carry.
        reply = self.push_body(name, {"grads": {"b": [8, 8]}, "loss_scale": 8})
        self.assert_floats(reply["weights"]["b"], [-1, -1])
        self.assert_error(self.request("POST", "/v1/models/%s/push" % name,
                                       {"grads": {"b": [8, 8]}, "loss_scale": 0}),
                          400, "bad_request", "loss_scale")

    def test_grad_scaler_golden_through_http(self):
        paths = sorted(glob.glob(os.path.join(CONFORMANCE, "loss_scale", "*.json")))
        self.assertGreaterEqual(len(paths), 6)
        client = self.server.client()
        try:
            for path in paths:
                with open(path) as handle:
                    golden = json.load(handle)
                size = len(golden["steps"][0]["grad"])
                name = "ls_" + golden["name"]
                status, _, _, raw = client.request("PUT", "/v1/models/" + name, {
                    "optimizer": {"name": "SGD", "lr": 1.0}, "loss_scale": golden["loss_scale"],
                    "tensors": [{"name": "w", "shape": [size]}]})
                self.assertEqual(status, 201, raw)
                expected = [0.0] * size
                for number, step in enumerate(golden["steps"]):
                    grad = list(step["grad"])
                    for index in step["nonfinite"]:
                        grad[index] = float("inf") if index % 2 == 0 else float("nan")
                    status, _, reply, raw = client.request("POST", "/v1/models/%s/push" % name,
                                                           {"grads": {"w": b64_floats(grad)}})
                    self.assertEqual(status, 200, raw)
                    self.assertEqual(reply.get("skipped", False), step["skipped"], (name, number))
                    # 9 significant digits: exactly the float32 scale.
                    self.assertEqual(f32(reply["loss_scale"]), step["scale"], (name, number))
                    if not step["skipped"]:
                        expected = [f32(e - u) for e, u in zip(expected, step["unscaled"])]
                    self.assertEqual(list(floats_from_b64(reply["weights"]["w"])), expected)
                client.request("DELETE", "/v1/models/" + name)
        finally:
            client.close()

    def test_loss_scale_errors(self):
        name = self.model_name()
        for value, field in [({"growth_factor": 1}, "loss_scale.growth_factor"),
                             ({"backoff_factor": 1.5}, "loss_scale.backoff_factor"),
                             ({"growth_interval": 0}, "loss_scale.growth_interval"),
                             ({"growth_interval": 2.5}, "loss_scale.growth_interval"),
                             ({"init_scale": -1}, "loss_scale.init_scale"),
                             ({"bogus": 1}, "loss_scale.bogus"),
                             ("static", "loss_scale")]:
            self.assert_error(self.request("PUT", "/v1/models/" + name, sgd_model(loss_scale=value)),
                              400, "bad_request", field)
            self.assert_no_model(name)
        self.assert_error(self.request("PUT", "/v1/models/" + name,
                                       sgd_model(loss_scale="dynamic", nonfinite="zero")),
                          400, "bad_request", "nonfinite")
        # A push may only name a loss scale on a model that has one.
        self.create_model(name, sgd_model())
        self.assert_error(self.request("POST", "/v1/models/%s/push" % name,
                                       {"grads": {"b": [1, 1]}, "loss_scale": 4}),
                          400, "bad_request", "loss_scale")


class AccumulateTests(TrainingTestCase):

    def test_accumulate_replies_and_steps(self):
        name = self.model_name()
        description = self.create_model(name, sgd_model(accumulate=3))
        self.assertEqual(description["accumulate"], {"steps": 3, "mode": "mean"})
        for k, grad in enumerate(([3, 0, 0, 0], [6, 0, 0, 0], [0, 0, 0, 3])):
            reply = self.push(name, {"w": grad})
            self.assertEqual(reply["accumulated"], {"w": k + 1})
            self.assertEqual(reply["of"], 3)
            self.assertEqual(reply["step"], 1 if k == 2 else 0)
        self.assert_floats(reply["weights"]["w"], [-3, 0, 0, -1])
        description = self.describe(name)
        self.assertEqual([t["step"] for t in description["tensors"]], [1, 0])
        # Each tensor counts its own window.
        reply = self.push(name, {"w": [1, 1, 1, 1], "b": [2, 2]})
        self.assertEqual(reply["accumulated"], {"w": 1, "b": 1})

    def test_sum_mode(self):
        name = self.model_name()
        self.create_model(name, sgd_model(accumulate={"steps": 2, "mode": "sum"}))
        self.push(name, {"b": [1, 2]})
        reply = self.push(name, {"b": [3, 4]})
        self.assert_floats(reply["weights"]["b"], [-4, -6])

    def test_accumulate_errors(self):
        name = self.model_name()
        for value, message in [(0, "accumulate.steps: must be an integer >= 1, got 0"),
                               ({"steps": -1}, "accumulate.steps: must be an integer >= 1, got -1"),
                               ({"steps": 2.5}, "accumulate.steps: must be an integer >= 1, got 2.5"),
                               ({"mode": "mean"}, "accumulate.steps: required"),
                               ({"steps": 2, "mode": "max"}, "accumulate.mode"),
                               ({"steps": 2, "every": 1}, "accumulate.every"),
                               ("4", "accumulate: must be an integer >= 1")]:
            error = self.assert_error(self.request("PUT", "/v1/models/" + name,
                                                   sgd_model(accumulate=value)), 400, "bad_request")
            self.assertIn(message, error["message"])
            self.assert_no_model(name)


class GradNoiseTests(TrainingTestCase):

    def test_noise_statistics_and_reproducibility(self):
        n = 65536
        eta, gamma = 0.5, 0.55
        replies = []
        for suffix, seed in (("a", 11), ("b", 11), ("c", 12)):
            name = self.model_name(suffix)
            description = self.create_model(name, {
                "optimizer": {"name": "SGD", "lr": 1.0},
                "grad_noise": {"eta": eta, "seed": seed},
                "tensors": [{"name": "w", "shape": [n]}]})
            self.assertEqual(description["grad_noise"], {"eta": eta, "gamma": gamma, "seed": seed})
            zeros = b64_raw(b"\0" * (4 * n))
            first = floats_from_b64(self.push(name, {"w": zeros})["weights"]["w"])
            second = floats_from_b64(self.push(name, {"w": zeros})["weights"]["w"])
            replies.append((first, second))
        self.assertEqual(replies[0], replies[1])
        self.assertNotEqual(replies[0][0], replies[2][0])
        first, second = replies[0]
        for t, noise in ((0, [-v for v in first]), (1, [a - b for a, b in zip(first, second)])):
            variance = eta / (1 + t) ** gamma
            mean = sum(noise) / n
            sample_variance = sum(x * x for x in noise) / n - mean * mean
            self.assertLess(abs(mean), 6 * math.sqrt(variance / n), (t, mean))
            self.assertLess(abs(sample_variance - variance), 6 * variance * math.sqrt(2 / n),
                            (t, sample_variance, variance))

    def test_noise_errors(self):
        name = self.model_name()
        for value, field in [({"gamma": 0.55}, "grad_noise.eta"), ({"eta": 0}, "grad_noise.eta"),
                             ({"eta": 1, "gamma": -1}, "grad_noise.gamma"),
                             ({"eta": 1, "seed": -1}, "grad_noise.seed"),
                             ({"eta": 1, "seed": 1.5}, "grad_noise.seed"),
                             ({"eta": 1, "sigma": 1}, "grad_noise.sigma"), (0.1, "grad_noise")]:
            self.assert_error(self.request("PUT", "/v1/models/" + name, sgd_model(grad_noise=value)),
                              400, "bad_request", field)
            self.assert_no_model(name)


class OrderTests(TrainingTestCase):

    def test_unscale_zero_clip_accumulate_step(self):
        # Scale 4; b: [8, -40] -> unscaled [2, -10] -> clipped [1, -1];
        # [2, 2] -> [0.5, 0.5]; the sum [1.5, -0.5] steps.
        name = self.model_name()
        self.create_model(name, sgd_model(loss_scale={"init_scale": 4, "growth_interval": 1000},
                                          clip={"value": 1.0},
                                          accumulate={"steps": 2, "mode": "sum"}))
        reply = self.push(name, {"b": [8, -40]})
        self.assertEqual(reply["accumulated"], {"b": 1})
        reply = self.push(name, {"b": [2, 2]})
        self.assertEqual(reply["accumulated"], {"b": 2})
        self.assert_floats(reply["weights"]["b"], [-1.5, 0.5])


class PatchTests(TrainingTestCase):

    def test_patch_changes_hyperparameters_and_logs(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.5, "momentum": 0.9},
                                 "tensors": [{"name": "w", "shape": [1], "values": [0]}]})
        self.push(name, {"w": [1]})
        description = self.patch(name, {"optimizer": {"lr": 0.25, "weight_decay": 0.5},
                                        "clip": {"value": 10}, "nonfinite": "skip",
                                        "grad_noise": None})
        self.assertEqual(description["optimizer"]["lr"], 0.25)
        self.assertEqual(description["optimizer"]["weight_decay"], 0.5)
        self.assertEqual(description["clip"], {"value": 10})
        self.assertEqual(description["nonfinite"], "skip")
        self.assertEqual(description["step"], 1)
        self.assertEqual(description["tensors"][0]["state"], ["momentum_buffer"])
        self.assertIsNotNone(self.server.wait_for_log(
            r'INFO .*model "%s": optimizer\.lr changed from 0\.5 to 0\.25' % name))
        self.assertIsNotNone(self.server.wait_for_log(
            r'model "%s": optimizer\.weight_decay changed from 0 to 0\.5' % name))
        self.assertIsNotNone(self.server.wait_for_log(
            r'model "%s": clip changed from none to \{"value":10' % name))
        self.assertIsNotNone(self.server.wait_for_log(
            r'model "%s": nonfinite changed from "error" to "skip"' % name))
        # The momentum buffer was kept: buf = 0.9 * 1 + (1 + 0.5 * w).
        w1 = f32(-0.5)
        reply = self.push(name, {"w": [1]})
        d = f32(1 + f32(0.5 * w1))
        buf = f32(f32(0.9) * 1 + d)
        self.assertEqual(reply["lr"], 0.25)
        self.assert_floats(reply["weights"]["w"], [f32(w1 - f32(0.25 * buf))], tolerance=1e-7)

    def test_patch_errors_change_nothing(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "Adam", "lr": 1e-3},
                                 "schedule": {"name": "StepLR", "step_size": 2},
                                 "tensors": [{"name": "w", "shape": [2]}]})
        self.push(name, {"w": [1, 1]})
        before = self.describe(name)
        snapshot = self.snapshot(name)
        for body, status, code, field in [
                ({"optimizer": {"betas": [0.9, 1.0]}}, 400, "bad_hyperparameter", "optimizer.betas[1]"),
                ({"optimizer": {"lr": 0.1}}, 400, "bad_hyperparameter", "optimizer.lr"),
                ({"optimizer": {"amsgrad": True}}, 400, "bad_hyperparameter", "max_exp_avg_sq"),
                ({"optimizer": {"name": "SGD"}}, 400, "bad_request", "optimizer.name"),
                ({"clip": {"value": 0.5}, "schedule": {"name": "StepLR"}}, 400,
                 "bad_hyperparameter", "step_size"),
                ({"param_groups": [{"lr": 1}]}, 400, "bad_request", "param_groups"),
                ({"accumulate": 4}, 400, "bad_request", "accumulate"),
                ({"nonfinite": "drop"}, 400, "bad_request", "nonfinite"),
                ({}, 400, "bad_request", "request body")]:
            self.assert_error(self.request("PATCH", "/v1/models/" + name, body), status, code, field)
        after = self.describe(name)
        self.assertEqual(after, before)
        self.assert_unchanged(name, snapshot)
        self.assert_error(self.request("PATCH", "/v1/models/nope", {"nonfinite": "skip"}),
                          404, "model_not_found")
        self.assert_error(self.request("PATCH", "/v1/models/" + name, b"{"), 400, "bad_json")
        # Replacing the schedule restarts it at the current step.
        description = self.patch(name, {"schedule": {"name": "StepLR", "step_size": 1, "gamma": 0.5},
                                        "optimizer": {"lr": 0.5}})
        self.assertEqual(description["schedule"]["step_size"], 1)
        self.assertEqual([self.push(name, {"w": [1, 1]})["lr"] for _ in range(3)], [0.5, 0.25, 0.125])
        self.assertIsNotNone(self.server.wait_for_log(
            r'model "%s": schedule changed from \{.*"step_size":2.*\} to \{.*"step_size":1' % name))

    def test_patch_concurrent_with_pushes(self):
        # Pushes of gradient 1 to SGD while a patcher alternates lr between
        # 0.5 and 0.25: the weight is exactly minus the sum of the lrs the
        # replies report (no push lost, none half under a new configuration).
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.5},
                                 "tensors": [{"name": "w", "shape": [1], "values": [0]}]})
        pushers, pushes, patches = 4, 100, 60
        lrs, failures = [], []
        lock = threading.Lock()
        barrier = threading.Barrier(pushers + 1)

        def pusher():
            local = []
            try:
                with self.server.client() as client:
                    barrier.wait(30)
                    for _ in range(pushes):
                        status, _, reply, raw = client.request(
                            "POST", "/v1/models/%s/push" % name, {"grads": {"w": [1]}})
                        if status != 200 or reply["lr"] not in (0.5, 0.25):
                            raise AssertionError("push: %d %r" % (status, raw[:300]))
                        local.append(reply["lr"])
            except BaseException as exc:
                failures.append(repr(exc))
            with lock:
                lrs.extend(local)

        def patcher():
            try:
                with self.server.client() as client:
                    barrier.wait(30)
                    for k in range(patches):
                        lr = 0.25 if k % 2 == 0 else 0.5
                        status, _, reply, raw = client.request(
                            "PATCH", "/v1/models/" + name, {"optimizer": {"lr": lr}})
                        if status != 200 or reply["optimizer"]["lr"] != lr:
                            raise AssertionError("patch: %d %r" % (status, raw[:300]))
            except BaseException as exc:
                failures.append(repr(exc))

        threads = [threading.Thread(target=pusher) for _ in range(pushers)]
        threads.append(threading.Thread(target=patcher))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        self.assertFalse(any(thread.is_alive() for thread in threads))
        self.assertEqual(failures, [])
        self.assertEqual(len(lrs), pushers * pushes)
        description = self.describe(name)
        self.assertEqual(description["step"], pushers * pushes)
        self.assertEqual(description["optimizer"]["lr"], 0.5)  # the last patch (k = 59)
        self.assertEqual(self.weights(name)["weights"]["w"], [-sum(lrs)])
        changes = [line for line in self.server.log_lines
                   if re.search(r'model "%s": optimizer\.lr changed' % name, line)]
        self.assertEqual(len(changes), patches)


if __name__ == "__main__":
    unittest.main()
