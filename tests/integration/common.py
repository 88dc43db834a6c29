#!/usr/bin/python3
"""Shared base class and assertions for the HTTP integration tests."""

import re
import threading
import unittest

from harness import Server, f32


class ServerTestCase(unittest.TestCase):
    """Starts one paramd per test class (SERVER_ARGS) and checks at the end
    that it shuts down cleanly (exit status 0, e.g. no sanitizer report)."""

    SERVER_ARGS = ()
    server = None

    @classmethod
    def server_arguments(cls):
        """The server's extra arguments; a subclass may compute them."""
        return list(cls.SERVER_ARGS)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = Server(cls.server_arguments())

    @classmethod
    def tearDownClass(cls):
        server, cls.server = cls.server, None
        if server is not None:
            status = server.stop()
            if status != 0:
                raise AssertionError("paramd exited with status %r; log:\n%s"
                                     % (status, server.log_text()))
        super().tearDownClass()

    # -- helpers ------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, **kwargs):
        return self.server.request(method, path, body, headers, **kwargs)

    def model_name(self, suffix=""):
        """A model name unique to the running test."""
        name = re.sub(r"[^A-Za-z0-9_]", "_", self.id().split(".")[-1])
        return (name + suffix)[:128]

    def create_model(self, name, body):
        status, _, parsed, raw = self.request("PUT", "/v1/models/" + name, body)
        self.assertEqual(status, 201, "PUT /v1/models/%s: %s" % (name, raw[:2000]))
        return parsed

    def describe(self, name):
        status, _, parsed, raw = self.request("GET", "/v1/models/" + name)
        self.assertEqual(status, 200, raw[:2000])
        return parsed

    def weights(self, name, query=""):
        status, _, parsed, raw = self.request("GET", "/v1/models/%s/weights%s" % (name, query))
        self.assertEqual(status, 200, raw[:2000])
        return parsed

    def push(self, name, grads, worker=None, expect=200):
        body = {"grads": grads}
        if worker is not None:
            body["worker"] = worker
        status, _, parsed, raw = self.request("POST", "/v1/models/%s/push" % name, body)
        self.assertEqual(status, expect, raw[:2000])
        return parsed

    def snapshot(self, name):
        """Everything observable about a model's state: step, tensor steps,
        exact weight bits."""
        description = self.describe(name)
        weights = self.weights(name, "?encoding=b64")
        return {
            "step": description["step"],
            "tensors": [(t["name"], t["shape"], t["step"]) for t in description["tensors"]],
            "weight_step": weights["step"],
            "weights": {k: v["b64"] for k, v in weights["weights"].items()},
        }

    def assert_unchanged(self, name, before):
        after = self.snapshot(name)
        self.assertEqual(after, before, "model %s changed after a rejected request" % name)

    def assert_error(self, response, status, code, *fields):
        """response is (status, headers, parsed, raw): checks the status, the
        error code, and that the message names each of `fields`."""
        got_status, headers, parsed, raw = response
        self.assertEqual(got_status, status, raw[:2000])
        self.assertIsInstance(parsed, dict, "error body is not a JSON object: %r" % raw[:2000])
        self.assertIn("error", parsed, raw[:2000])
        error = parsed["error"]
        self.assertEqual(error.get("code"), code, raw[:2000])
        message = error.get("message")
        self.assertIsInstance(message, str)
        self.assertTrue(message, "empty error message")
        for field in fields:
            self.assertIn(field, message, "message does not name %r: %r" % (field, message))
        return error

    def assert_no_model(self, name):
        response = self.request("GET", "/v1/models/" + name)
        self.assert_error(response, 404, "model_not_found")
        status, _, listing, _ = self.request("GET", "/v1/models")
        self.assertEqual(status, 200)
        self.assertNotIn(name, [m["name"] for m in listing["models"]])

    def assert_floats(self, got, expected, tolerance=0.0):
        """got: list of numbers (JSON) or array('f'); expected: numbers,
        compared after rounding to float32."""
        got = list(got)
        self.assertEqual(len(got), len(expected))
        for index, (g, e) in enumerate(zip(got, expected)):
            if tolerance == 0.0:
                self.assertEqual(f32(g), f32(e), "element %d: got %r, expected %r" % (index, g, e))
            else:
                self.assertLessEqual(abs(g - e), tolerance,
                                     "element %d: got %r, expected %r" % (index, g, e))


def tensor_summary(description):
    """[{"name", "shape", "step"}] of a model description's tensors (the
    fields the contract fixes; the server may add more, e.g. "numel")."""
    return [{"name": t["name"], "shape": t["shape"], "step": t["step"]} for t in description["tensors"]]



def run_concurrently(calls, timeout=120):
    """Runs each callable in its own thread and waits for all of them;
    returns what went wrong: the exceptions raised, and any value a call
    returned other than None (a call reports a problem by returning it)."""
    failures = []

    def run(call):
        try:
            outcome = call()
            if outcome is not None:
                failures.append(outcome)
        except Exception as failure:   # the caller asserts on failures
            failures.append(failure)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    failures += ["a thread still ran after %g s" % timeout for t in threads if t.is_alive()]
    return failures
