#!/usr/bin/python3
"""The Python client (client/python/paramd) against one real server: models,
pushes and pulls over the binary protocol and over HTTP, equality with the
HTTP API, float16 and bfloat16, pipelining proved on the wire by a relay,
errors with the server's codes, reconnecting, and a model created again.
"""

import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import unittest

import numpy as np

from common import ServerTestCase, run_concurrently
from harness import Server, b64_floats, floats_from_b64

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "client", "python"))
import paramd  # noqa: E402
from paramd import dtypes  # noqa: E402

TIMEOUT = 60.0


def body(optimizer=None, sizes=(("w", [3]), ("b", [2, 2])), **extra):
    document = {"optimizer": optimizer or {"name": "SGD", "lr": 0.1, "momentum": 0.9},
                "tensors": [{"name": name, "shape": shape,
                             "init": {"name": "normal", "std": 0.5, "seed": i + 1}}
                            for i, (name, shape) in enumerate(sizes)]}
    document.update(extra)
    return document


def gradients(rng, shapes):
    return {name: rng.standard_normal(int(np.prod(shape))).astype(np.float32).reshape(shape)
            for name, shape in shapes}


class PythonClientTests(ServerTestCase):

    def clients(self):
        """A binary-protocol client and an HTTP-only client of the server."""
        tcp = paramd.Client("127.0.0.1:%d" % self.server.tcp_port,
                            http="127.0.0.1:%d" % self.server.port, timeout=TIMEOUT)
        http = paramd.Client("http://127.0.0.1:%d" % self.server.port, timeout=TIMEOUT)
        self.addCleanup(tcp.close)
        self.addCleanup(http.close)
        return {"tcp": tcp, "http": http}

    # -- control plane ------------------------------------------------------------

    def test_create_describe_list_delete(self):
        for kind, client in self.clients().items():
            name = self.model_name("_" + kind)
            created = client.create(name, body())
            self.assertEqual([t["name"] for t in created["tensors"]], ["w", "b"])
            self.assertEqual(created["optimizer"]["momentum"], 0.9)
            self.assertEqual(client.describe(name), self.describe(name))
            self.assertIn(name, [m["name"] for m in client.list()["models"]])
            with self.assertRaises(paramd.ModelExists) as caught:
                client.create(name, body())
            self.assertEqual((caught.exception.code, caught.exception.name), (-4, "model_exists"))
            client.delete(name)
            self.assert_no_model(name)
            with self.assertRaises(paramd.ModelNotFound):
                client.describe(name)
            with self.assertRaises(paramd.ModelNotFound):
                client.delete(name)

    def test_binary_stats(self):
        client = self.clients()["tcp"]
        stats = client.stats()
        self.assertEqual(list(stats), [0])
        self.assertIn("pushes", stats[0])
        with self.assertRaises(paramd.ParamdError) as caught:
            self.clients()["http"].stats()
        self.assertEqual(caught.exception.name, "invalid_argument")

    # -- data plane -----------------------------------------------------------------

    def test_pushpull_equals_the_http_api(self):
        """Every push through the client (binary and HTTP) gives the weights,
        step and lr of the same push sent by hand to the HTTP API."""
        shapes = [("w", [3]), ("b", [2, 2])]
        rng = np.random.default_rng(1)
        clients = self.clients()
        reference = self.model_name("_ref")
        self.create_model(reference, body(schedule={"name": "StepLR", "step_size": 2}))
        for kind, client in clients.items():
            client.create(self.model_name("_" + kind), body(schedule={"name": "StepLR",
                                                                      "step_size": 2}))
        for step in range(1, 6):
            grads = gradients(rng, shapes)
            expected = self.push(reference, {k: b64_floats(v.reshape(-1)) for k, v in grads.items()})
            for kind, client in clients.items():
                result = client.pushpull(self.model_name("_" + kind), grads, worker="w0")
                self.assertEqual(result.step, step)
                self.assertEqual(result.lr, expected["lr"])
                for tensor, shape in shapes:
                    self.assertEqual(result.weights[tensor].shape, tuple(shape))
                    self.assertEqual(result.weights[tensor].tobytes(),
                                     floats_from_b64(expected["weights"][tensor]).tobytes(),
                                     "%s %s step %d" % (kind, tensor, step))
        for kind, client in clients.items():
            pulled = client.pull(self.model_name("_" + kind))
            self.assertEqual(pulled.step, 5)
            for tensor, _ in shapes:
                self.assertEqual(pulled[tensor].tobytes(),
                                 floats_from_b64(self.weights(reference, "?encoding=b64")
                                                 ["weights"][tensor]).tobytes())

    def test_push_without_weights_and_subsets(self):
        client = self.clients()["tcp"]
        name = self.model_name()
        client.create(name, body())
        result = client.push(name, {"w": [1.0, 2.0, 3.0]}, loss=0.5)
        self.assertEqual((result.step, result.weights), (1, {}))
        self.assertTrue(math.isnan(result.grad_norm))
        described = client.describe(name)
        self.assertEqual([t["step"] for t in described["tensors"]], [1, 0])
        pulled = client.pull(name, ["w"])
        self.assertEqual(list(pulled), ["w"])
        self.assertEqual(pulled["w"].tobytes(),
                         floats_from_b64(self.weights(name, "?encoding=b64")["weights"]["w"]).tobytes())

    def test_float16_and_bfloat16_on_the_wire(self):
        """16-bit gradients are widened exactly (a float16 push equals a
        float32 push of the same values), and 16-bit weights are the
        server's float32 weights rounded to nearest, ties to even."""
        clients = self.clients()
        rng = np.random.default_rng(2)
        for kind, client in clients.items():
            half, full = self.model_name("_h" + kind), self.model_name("_f" + kind)
            client.create(half, body())
            client.create(full, body())
            for dtype in ("float16", "bfloat16"):
                grads = gradients(rng, [("w", [3]), ("b", [2, 2])])
                if dtype == "float16":
                    wire = {k: v.astype(np.float16) for k, v in grads.items()}
                    widened = {k: v.astype(np.float32) for k, v in wire.items()}
                    result = client.pushpull(half, wire)          # dtype inferred
                else:
                    bits = {k: dtypes.float32_to_bfloat16_bits(v) for k, v in grads.items()}
                    widened = {k: dtypes.bfloat16_bits_to_float32(v) for k, v in bits.items()}
                    result = client.pushpull(half, grads, dtype="bfloat16")
                client.pushpull(full, widened)
                exact = client.pull(full)
                for tensor in grads:
                    self.assertEqual(client.pull(half)[tensor].tobytes(), exact[tensor].tobytes())
                    if dtype == "float16":
                        rounded = exact[tensor].astype(np.float16).astype(np.float32)
                    else:
                        rounded = dtypes.bfloat16_bits_to_float32(
                            dtypes.float32_to_bfloat16_bits(exact[tensor])).reshape(
                                exact[tensor].shape)
                    self.assertEqual(result.weights[tensor].tobytes(), rounded.tobytes(),
                                     "%s %s %s" % (kind, dtype, tensor))
                    self.assertNotEqual(result.weights[tensor].tobytes(), exact[tensor].tobytes())
                pulled = client.pull(full, dtype=dtype)
                for tensor in grads:
                    self.assertLessEqual(float(np.max(np.abs(pulled[tensor] - exact[tensor]))),
                                         float(np.max(np.abs(exact[tensor]))) / 100)

    def test_bfloat16_conversion_rounds_to_nearest_even(self):
        values = np.array([1.0, 1.00390625, 1.01171875, 1.0 + 2 ** -9, -2.5, 3.4e38, np.inf,
                           -np.inf, np.nan, 1e-40, 0.0, -0.0], dtype=np.float32)
        bits = dtypes.float32_to_bfloat16_bits(values)
        self.assertEqual([int(b) for b in bits[:8]],
                         [0x3F80, 0x3F80, 0x3F82, 0x3F80, 0xC020, 0x7F80, 0x7F80, 0xFF80])
        self.assertTrue(np.isnan(dtypes.bfloat16_bits_to_float32(bits[8:9]))[0])
        self.assertEqual(int(bits[-2]), 0)
        self.assertEqual(int(bits[-1]), 0x8000)

    def test_pipelining_on_the_wire(self):
        """A relay between client and server holds every reply back until all
        the requests have arrived: only a client that puts them all on the
        wire before reading a reply can finish."""
        count = 200
        relay = HoldingRelay(self.server.tcp_port)
        self.addCleanup(relay.close)
        name = self.model_name()
        self.create_model(name, body())
        client = paramd.Client("127.0.0.1:%d" % relay.port, timeout=20)
        self.addCleanup(client.close)
        client.placement(name)              # HELLO and LOOKUP pass at once
        relay.hold(count)
        pending = [client.pushpull_async(name, {"w": np.full(3, 0.01 * i, np.float32)})
                   for i in range(count)]
        results = [p.result(30) for p in pending]
        self.assertEqual([r.step for r in results], list(range(1, count + 1)))
        self.assertGreaterEqual(relay.max_unanswered, count)
        final = client.pull(name)
        self.assertEqual(final["w"].tobytes(), results[-1].weights["w"].tobytes())

    def test_threads_share_one_client(self):
        """Six threads share one client, each mixing single calls, pipelined
        batches and pulls: every push is applied exactly once."""
        client = self.clients()["tcp"]
        name = self.model_name()
        client.create(name, {"optimizer": {"name": "SGD", "lr": 1.0},
                             "tensors": [{"name": "w", "shape": [4]}]})
        def work():
            for round_ in range(5):
                for _ in range(6):
                    client.push(name, {"w": np.ones(4)})
                batch = [client.pushpull_async(name, {"w": np.ones(4)}) for _ in range(10)]
                steps = [p.result(30).step for p in batch]
                if steps != sorted(steps):
                    return "replies out of order: %r" % steps
                client.pull(name)
        self.assertEqual(run_concurrently([work] * 6), [])
        self.assertEqual(client.pull(name)["w"].tolist(), [-480.0] * 4)

    def test_a_reply_after_the_callers_timeout_still_arrives(self):
        """result(timeout) gives up without losing the request: a sync push
        waiting for a second worker times out on the client, then completes
        when the second worker pushes, and the connection stays in order."""
        clients = self.clients()
        first = clients["tcp"]
        second = paramd.Client("127.0.0.1:%d" % self.server.tcp_port, timeout=TIMEOUT)
        self.addCleanup(second.close)
        name = self.model_name()
        first.create(name, body(consistency={"mode": "sync", "workers": 2, "timeout": 30}))
        waiting = first.pushpull_async(name, {"w": [1, 1, 1]}, worker="w0", version="auto")
        behind = first.pull_async(name, ["b"])           # pipelined behind the waiting push
        with self.assertRaises(paramd.Timeout):
            waiting.result(0.2)
        self.assertFalse(behind.done())
        other = second.pushpull(name, {"w": [3, 3, 3]}, worker="w1", version="auto")
        self.assertEqual(other.step, 1)
        mine = waiting.result(30)
        self.assertEqual(mine.step, 1)
        self.assertEqual(mine.weights["w"].tobytes(), other.weights["w"].tobytes())
        self.assertEqual(behind.result(30).step, 1)
        self.assertEqual(first.pull(name)["w"].tobytes(), other.weights["w"].tobytes())

    # -- errors ---------------------------------------------------------------------

    def test_errors_carry_the_servers_code_and_message(self):
        for kind, client in self.clients().items():
            name = self.model_name("_" + kind)
            with self.assertRaises(paramd.ParamdError) as caught:
                client.create(name, body({"name": "Bogus"}))
            self.assertEqual(caught.exception.name, "unknown_optimizer")
            with self.assertRaises(paramd.ParamdError) as caught:
                client.create(name, body({"name": "Adam", "betas": [0.9, 1.0]}))
            self.assertEqual((caught.exception.code, caught.exception.name),
                             (-7, "bad_hyperparameter"))
            self.assertIn("optimizer.betas[1]", caught.exception.message)
            with self.assertRaises(paramd.ModelNotFound):
                client.pushpull(name, {"w": [1, 2, 3]})
            client.create(name, body())
            before = self.snapshot(name)
            with self.assertRaises(paramd.ParamdError) as caught:
                client.pushpull(name, {"w": [1.0, math.nan, 3.0]})
            self.assertEqual(caught.exception.name, "non_finite")
            self.assertIn("grads.w[1]", caught.exception.message)
            with self.assertRaises(paramd.ParamdError) as caught:
                client.pushpull(name, {"w": [1, 2]})
            self.assertEqual(caught.exception.name, "shape_mismatch")
            with self.assertRaises(paramd.ParamdError) as caught:
                client.pushpull(name, {"nope": [1]})
            self.assertEqual(caught.exception.name, "tensor_not_found")
            with self.assertRaises(paramd.ParamdError) as caught:
                client.pushpull(name, {"w": [1, 2, 3]}, grad_norm=-1.0)
            self.assertEqual(caught.exception.name, "bad_request")
            self.assert_unchanged(name, before)

    def test_sync_timeout_is_the_servers(self):
        client = self.clients()["tcp"]
        name = self.model_name()
        client.create(name, body(consistency={"mode": "sync", "workers": 2, "timeout": 0.3}))
        with self.assertRaises(paramd.Timeout) as caught:
            client.pushpull(name, {"w": [1, 2, 3]}, worker="w0", version="auto")
        self.assertIn("w0", caught.exception.message)
        self.assertEqual(client.describe(name)["step"], 0)

    def test_connect_failure(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        client = paramd.Client("127.0.0.1:%d" % port, timeout=5)
        with self.assertRaises(paramd.ConnectFailed) as caught:
            client.list()
        self.assertEqual(caught.exception.name, "connect_failed")
        client.close()

    def test_model_created_again_is_looked_up_again(self):
        client = self.clients()["tcp"]
        name = self.model_name()
        client.create(name, body())
        client.pushpull(name, {"w": [1, 2, 3]})
        # Deleted and created again behind the client's back: the cached id is
        # gone, the client looks the model up again and the push applies once.
        self.request("DELETE", "/v1/models/" + name)
        self.create_model(name, body())
        result = client.pushpull(name, {"w": [1, 2, 3]})
        self.assertEqual(result.step, 1)
        self.assertEqual(self.describe(name)["step"], 1)


class ReconnectTests(unittest.TestCase):

    def test_client_reconnects_after_a_restart(self):
        server = Server()
        port, http = server.tcp_port, server.port
        try:
            client = paramd.Client("127.0.0.1:%d" % port, timeout=10)
            client.create("m", body())
            client.pushpull("m", {"w": [1, 2, 3]})
            server.stop()
            with self.assertRaises((paramd.ConnectFailed, paramd.ConnectionFailed)):
                client.pushpull("m", {"w": [1, 2, 3]})
            server = Server(http="127.0.0.1:%d" % http, tcp="127.0.0.1:%d" % port)
            # The new server has no model "m" (nothing is persisted yet).
            with self.assertRaises(paramd.ModelNotFound):
                client.pushpull("m", {"w": [1, 2, 3]})
            client.create("m", body())
            self.assertEqual(client.pushpull("m", {"w": [1, 2, 3]}).step, 1)
            client.close()
        finally:
            self.assertEqual(server.stop(), 0)


class PackagingTests(unittest.TestCase):

    def test_pip_installs_the_package_without_downloads(self):
        """pip builds and installs client/python offline (--no-index) with the
        setuptools that is already there, and the installed package imports
        outside the source tree."""
        source = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "client", "python")
        with tempfile.TemporaryDirectory(prefix="paramd-pip-") as directory:
            copy = os.path.join(directory, "src")
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "build",
                                                                        "*.egg-info"))
            target = os.path.join(directory, "site")
            done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                                   "--no-build-isolation", "--no-index", "--no-deps",
                                   "--target", target, copy], capture_output=True, text=True,
                                  timeout=300)
            self.assertEqual(done.returncode, 0, done.stderr)
            check = subprocess.run([sys.executable, "-c", "import paramd, paramd.client; "
                                    "print(paramd.__file__, paramd.__version__)"],
                                   cwd=directory, env=dict(os.environ, PYTHONPATH=target),
                                   capture_output=True, text=True, timeout=60)
            self.assertEqual(check.returncode, 0, check.stderr)
            self.assertTrue(check.stdout.startswith(os.path.join(target, "paramd")), check.stdout)
            self.assertIn("0.1.0", check.stdout)


class HoldingRelay:
    """Forwards one client connection to the server; after hold(n), holds
    the server's replies back until n more request frames have come from
    the client."""

    def __init__(self, server_port):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.server_port = server_port
        self.release_at = 0
        self.requests = self.replies = self.max_unanswered = 0
        self.condition = threading.Condition()
        self.sockets = [self.listener]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def hold(self, count):
        with self.condition:
            self.release_at = self.requests + count

    def _run(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.server_port))
        self.sockets += [client, server]
        threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
        self._downstream(server, client)

    @staticmethod
    def _frames(sock):
        buffer = b""
        while True:
            while len(buffer) < 16 or len(buffer) < 16 + struct.unpack_from("<I", buffer, 4)[0]:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return
                buffer += chunk
            length = 16 + struct.unpack_from("<I", buffer, 4)[0]
            yield buffer[:length]
            buffer = buffer[length:]

    def _upstream(self, client, server):
        try:
            for frame in self._frames(client):
                server.sendall(frame)
                with self.condition:
                    self.requests += 1
                    self.max_unanswered = max(self.max_unanswered, self.requests - self.replies)
                    self.condition.notify_all()
        except OSError:
            pass

    def _downstream(self, server, client):
        try:
            for frame in self._frames(server):
                with self.condition:
                    self.condition.wait_for(lambda: self.requests >= self.release_at, 60)
                    self.replies += 1
                client.sendall(frame)
        except OSError:
            pass

    def close(self):
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass


if __name__ == "__main__":
    unittest.main()
