#!/usr/bin/python3
"""A 64M-element tensor pushed and read back through HTTP with b64 bodies."""

import base64
import json
import struct
import unittest

from common import ServerTestCase, tensor_summary

# Generous: must also pass against an AddressSanitizer build.
BIG_TIMEOUT = 300


class LargeTensorTests(ServerTestCase):
    ELEMENTS = 64 * 1024 * 1024  # 67108864

    def test_64m_element_tensor(self):
        n = self.ELEMENTS
        name = self.model_name()
        status, _, created, raw = self.request("PUT", "/v1/models/" + name, {
            "optimizer": {"name": "SGD", "lr": 0.5},
            "tensors": [{"name": "w", "shape": [n], "init": {"name": "constant", "val": 1.0}}]},
            timeout=BIG_TIMEOUT)
        self.assertEqual(status, 201, raw[:2000])
        self.assertEqual(created["parameters"], n)
        self.assertEqual(tensor_summary(created), [{"name": "w", "shape": [n], "step": 0}])
        self.assertGreaterEqual(created["memory_bytes"], 4 * n)

        # Gradient: all 1.0, as raw little-endian float32 bytes (no Python lists).
        grad_b64 = base64.b64encode(struct.pack("<f", 1.0) * n)
        body = b'{"worker": "big", "grads": {"w": {"dtype": "float32", "b64": "' + grad_b64 + b'"}}}'
        del grad_b64
        status, _, _, raw = self.request("POST", "/v1/models/%s/push" % name, body, timeout=BIG_TIMEOUT)
        del body
        self.assertEqual(status, 200, raw[:2000])
        expected = struct.pack("<f", 0.5) * n
        result = json.loads(raw)
        del raw
        self.assertEqual(result["step"], 1)
        self.assertEqual(list(result["weights"]), ["w"])
        weights = result["weights"]["w"]
        self.assertIsInstance(weights, dict, "b64 gradient must give a b64 weight")
        self.assertEqual(weights["dtype"], "float32")
        data = base64.b64decode(weights["b64"], validate=True)
        del result, weights
        self.assertEqual(len(data), 4 * n)
        self.assertTrue(data == expected, "push response weights are not all 0.5")
        del data

        status, _, _, raw = self.request("GET", "/v1/models/%s/weights?encoding=b64" % name,
                                         timeout=BIG_TIMEOUT)
        self.assertEqual(status, 200, raw[:2000])
        result = json.loads(raw)
        del raw
        self.assertEqual(result["step"], 1)
        self.assertEqual(list(result["weights"]), ["w"])
        data = base64.b64decode(result["weights"]["w"]["b64"], validate=True)
        del result
        self.assertEqual(len(data), 4 * n)
        self.assertTrue(data == expected, "GET weights are not all 0.5")
        del data, expected

        description = self.describe(name)
        self.assertEqual(description["step"], 1)
        self.assertEqual(tensor_summary(description), [{"name": "w", "shape": [n], "step": 1}])

        status, _, _, raw = self.request("DELETE", "/v1/models/" + name, timeout=BIG_TIMEOUT)
        self.assertEqual(status, 204)
        self.assertEqual(raw, b"")
        self.assert_no_model(name)


if __name__ == "__main__":
    unittest.main()
