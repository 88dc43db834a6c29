#!/usr/bin/python3
"""Consistency modes through the real server (issue 6, item 3): sync rounds
of several workers over HTTP and the binary protocol (and both mixed),
backup workers, timeouts, a worker whose connection closes mid-round,
ordering of pipelined requests behind a waiting push, ssp's bound, async
staleness and the staleness-aware lr, and what the description shows.

Models use SGD with lr 1 from zeros, so the weights are minus the sum of
the gradients the optimizer saw: a sync round's weights are exactly minus
the float32 average of its workers' gradients (summed in worker-name order).
"""

import array
import json
import os
import socket
import sys
import threading
import time
import unittest

from common import ServerTestCase
from harness import b64_floats, f32, float32_bytes, floats_from_b64
from test_tcp import Connection, ERROR_CODES

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "client", "python"))
from paramd import protocol as wire  # noqa: E402


def floats(data):
    values = array.array("f")
    values.frombytes(bytes(data))
    return list(values)


def float32_average(gradients_by_worker):
    """The server's sync average: per element, summed in float32 in
    worker-name order, then divided by the count (float32)."""
    names = sorted(gradients_by_worker)
    length = len(gradients_by_worker[names[0]])
    result = []
    for e in range(length):
        total = f32(gradients_by_worker[names[0]][e])
        for name in names[1:]:
            total = f32(total + f32(gradients_by_worker[name][e]))
        result.append(f32(total / f32(len(names))) if len(names) > 1 else total)
    return result


def reply_weights(reply):
    """The float32 weights of tensor w in an HTTP push reply (base64, as
    the gradients were sent)."""
    return [f32(v) for v in floats_from_b64(reply["weights"]["w"])]


def sgd_model(consistency, size=4):
    return {"optimizer": {"name": "SGD", "lr": 1.0},
            "tensors": [{"name": "w", "shape": [size], "init": {"name": "zeros"}}],
            "consistency": consistency}


class ConsistencyTests(ServerTestCase):

    def connect(self):
        connection = Connection(self.server.tcp_port)
        self.addCleanup(connection.close)
        return connection

    def model_id(self, connection, name):
        header, payload = connection.call(wire.encode_lookup(connection.take_id(), name))
        self.assertEqual(header.opcode, wire.LOOKUP | wire.REPLY, payload)
        return wire.decode_lookup_reply(payload)["model_id"]

    def http_push(self, name, worker, grad, version=None, expect=200):
        body = {"grads": {"w": b64_floats(grad)}, "worker": worker}
        if version is not None:
            body["version"] = version
        status, _, parsed, raw = self.request("POST", "/v1/models/%s/push" % name, body)
        self.assertEqual(status, expect, raw[:2000])
        return parsed

    def in_threads(self, calls):
        """Runs each call in a thread of its own; returns their results in
        order (re-raising the first failure)."""
        results = [None] * len(calls)
        failures = []

        def run(index, call):
            try:
                results[index] = call()
            except BaseException as failure:  # noqa: B902 - reported below
                failures.append(failure)

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        if failures:
            raise failures[0]
        return results

    # -- sync -------------------------------------------------------------------

    def test_sync_http_workers_get_the_average(self):
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "sync", "workers": 3}))
        # 1e8 + 1 - 1e8 is 0 or 1 in float32 depending on the order: the
        # result must not depend on which worker arrives first.
        grads = {"w2": [3.0, -1e8, 0.7, 2.0], "w0": [1.0, 1e8, 0.1, 4.0],
                 "w1": [2.0, 1.0, 0.3, 8.0]}
        average = float32_average(grads)
        expected = [0.0] * 4
        for round_number in range(3):
            order = sorted(grads) if round_number % 2 == 0 else sorted(grads, reverse=True)
            replies = self.in_threads([
                (lambda worker=worker: self.http_push(name, worker, grads[worker],
                                                      version=round_number))
                for worker in order])
            expected = [f32(w - a) for w, a in zip(expected, average)]
            for reply in replies:
                self.assertEqual(reply["step"], round_number + 1)
                self.assertFalse(reply.get("dropped", False))
                self.assertEqual(reply_weights(reply), expected)
        self.assertEqual([f32(v) for v in self.weights(name)["weights"]["w"]], expected)
        description = self.describe(name)
        self.assertEqual(description["step"], 3)
        consistency = description["consistency"]
        self.assertEqual(consistency["mode"], "sync")
        self.assertEqual(sorted(consistency["seen_workers"]), ["w0", "w1", "w2"])
        self.assertEqual(consistency["seen_workers"]["w1"]["pushes"], 3)
        self.assertEqual(consistency["staleness_observed"]["max"], 0)

    def test_sync_tcp_and_http_workers_share_a_round(self):
        """One round of four workers, two on the binary protocol and two on
        HTTP: the weights are the float32 average, the same bits for all."""
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "sync", "workers": 4}))
        grads = {"a": [0.5, 1.5, -2.0, 1e-3], "b": [0.25, -0.5, 4.0, 3e-3],
                 "c": [1.0, 2.0, 3.0, 4.0], "d": [-1.0, 0.1, 0.2, 0.3]}
        connections = {w: self.connect() for w in ("a", "b")}
        ids = {w: self.model_id(connections[w], name) for w in connections}

        def tcp_push(worker):
            c = connections[worker]
            header, payload = c.call(wire.encode_push(
                c.take_id(), ids[worker], [wire.item(0, float32_bytes(grads[worker]))],
                worker=worker, version=0))
            self.assertEqual(header.opcode, wire.PUSHPULL | wire.REPLY,
                             wire.decode_error(payload) if header.opcode == wire.ERROR else "")
            reply = wire.decode_push_reply(payload)
            return reply["step"], floats(reply["items"][0].data)

        def http(worker):
            reply = self.http_push(name, worker, grads[worker], version=0)
            return reply["step"], reply_weights(reply)

        results = self.in_threads([lambda: tcp_push("a"), lambda: tcp_push("b"),
                                   lambda: http("c"), lambda: http("d")])
        expected = [f32(-v) for v in float32_average(grads)]
        for step, weights in results:
            self.assertEqual(step, 1)
            self.assertEqual(weights, expected)

    def test_sync_backup_workers_drop_the_late_push(self):
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "sync", "workers": 3, "backup_workers": 1}))
        replies = self.in_threads([lambda: self.http_push(name, "w0", [2, 2, 2, 2], version=0),
                                   lambda: self.http_push(name, "w1", [4, 4, 4, 4], version=0)])
        self.assertEqual([r["step"] for r in replies], [1, 1])
        late = self.http_push(name, "w2", [100, 100, 100, 100], version=0)
        self.assertTrue(late["dropped"])
        self.assertEqual(late["step"], 1)
        self.assertEqual(self.weights(name)["weights"]["w"], [-3, -3, -3, -3])
        self.assertEqual(self.describe(name)["consistency"]["seen_workers"]["w2"]["dropped"], 1)
        # Over the binary protocol the reply's flags say so.
        connection = self.connect()
        model_id = self.model_id(connection, name)
        header, payload = connection.call(wire.encode_push(
            connection.take_id(), model_id, [wire.item(0, float32_bytes([9, 9, 9, 9]))],
            worker="w2", version=0))
        reply = wire.decode_push_reply(payload)
        self.assertTrue(reply["dropped"])
        self.assertEqual(floats(reply["items"][0].data), [-3, -3, -3, -3])

    def test_sync_timeout_is_an_error_and_changes_nothing(self):
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "sync", "workers": 2, "timeout": 0.5}))
        started = time.monotonic()
        status, _, parsed, raw = self.request("POST", "/v1/models/%s/push" % name,
                                              {"grads": {"w": [1, 1, 1, 1]}, "worker": "w0"})
        elapsed = time.monotonic() - started
        self.assertEqual(status, 504, raw)
        self.assertEqual(parsed["error"]["code"], "timeout")
        self.assertIn("1 of the 2 workers", parsed["error"]["message"])
        self.assertIn("w0", parsed["error"]["message"])
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 30)
        # The binary protocol: an ERROR frame, and the connection goes on.
        connection = self.connect()
        model_id = self.model_id(connection, name)
        header, payload = connection.call(wire.encode_push(
            connection.take_id(), model_id, [wire.item(0, float32_bytes([1, 1, 1, 1]))],
            worker="w1"))
        self.assertEqual(header.opcode, wire.ERROR)
        code, _, message = wire.decode_error(payload)
        self.assertEqual(code, -23, message)
        self.assertIn("abandoned", message)
        header, _ = connection.call(wire.encode_model_request(wire.LIST, connection.take_id()))
        self.assertEqual(header.opcode, wire.LIST | wire.REPLY)
        self.assertEqual(self.weights(name)["weights"]["w"], [0, 0, 0, 0])
        description = self.describe(name)
        self.assertEqual(description["step"], 0)
        self.assertEqual(description["consistency"]["timeouts"], 2)

    def test_sync_pipelined_requests_wait_behind_the_push(self):
        """A LIST pipelined behind a waiting push is answered after it:
        replies stay in request order."""
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "sync", "workers": 2}))
        connection = self.connect()
        model_id = self.model_id(connection, name)
        push_id, list_id = connection.take_id(), connection.take_id()
        connection.send(wire.encode_push(push_id, model_id,
                                         [wire.item(0, float32_bytes([2, 2, 2, 2]))],
                                         worker="first") +
                        wire.encode_model_request(wire.LIST, list_id))
        connection.socket.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            connection.socket.recv(1)  # nothing yet: the push waits, LIST behind it
        connection.socket.settimeout(60)
        self.http_push(name, "second", [4, 4, 4, 4])
        header, payload = connection.read_frame()
        self.assertEqual((header.opcode, header.request_id), (wire.PUSHPULL | wire.REPLY, push_id))
        self.assertEqual(floats(wire.decode_push_reply(payload)["items"][0].data), [-3] * 4)
        header, _ = connection.read_frame()
        self.assertEqual((header.opcode, header.request_id), (wire.LIST | wire.REPLY, list_id))

    def test_sync_closed_connection_withdraws_its_push(self):
        """A worker whose connection closes mid-round leaves the round: the
        others go on waiting, and its gradient is not in the average."""
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "sync", "workers": 2, "timeout": 30}))
        quitter = Connection(self.server.tcp_port)
        model_id = self.model_id(quitter, name)
        quitter.send(wire.encode_push(quitter.take_id(), model_id,
                                      [wire.item(0, float32_bytes([1000] * 4))], worker="w0"))
        time.sleep(0.3)
        self.assertEqual(self.describe(name)["consistency"]["waiting"], 1)
        quitter.close()
        self.assertIsNotNone(self.server.wait_for_log(
            r'worker "w0" of model "%s" went away' % name, timeout=10), "no withdrawal logged")
        self.assertEqual(self.describe(name)["consistency"]["waiting"], 0)
        replies = self.in_threads([lambda: self.http_push(name, "w0", [2, 2, 2, 2]),
                                   lambda: self.http_push(name, "w1", [4, 4, 4, 4])])
        self.assertEqual([r["step"] for r in replies], [1, 1])
        self.assertEqual(self.weights(name)["weights"]["w"], [-3, -3, -3, -3])

    def test_sync_worker_back_after_a_crash_replaces_its_push(self):
        """A worker that pushed, died without its connection's end being
        seen (HTTP), and pushes again under its name takes its old push's
        place, so the step completes without the old gradient."""
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "sync", "workers": 2, "timeout": 30}))
        result = {}

        def first():
            status, _, parsed, _ = self.request("POST", "/v1/models/%s/push" % name,
                                                {"grads": {"w": [1000] * 4}, "worker": "w0"})
            result["first"] = (status, parsed)

        thread = threading.Thread(target=first)
        thread.start()
        deadline = time.monotonic() + 10
        while self.describe(name)["consistency"]["waiting"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        def once_the_old_push_is_answered():
            # The old push is answered (503) when the new one has taken its
            # place; a w1 push before that would complete the step with the
            # old gradient, and leave the new push waiting for the next step.
            thread.join(30)
            return self.http_push(name, "w1", [4, 4, 4, 4])
        replies = self.in_threads([lambda: self.http_push(name, "w0", [2, 2, 2, 2]),
                                   once_the_old_push_is_answered])
        self.assertEqual([r["step"] for r in replies], [1, 1])
        status, parsed = result["first"]
        self.assertEqual(status, 503)
        self.assertIn("took its place", parsed["error"]["message"])
        self.assertEqual(self.weights(name)["weights"]["w"], [-3, -3, -3, -3])

    def test_sync_errors_name_the_problem(self):
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "sync", "workers": 2, "timeout": 5}))
        status, _, parsed, raw = self.request("POST", "/v1/models/%s/push" % name,
                                              {"grads": {"w": [1, 1, 1, 1]}})
        self.assertEqual(status, 400, raw)
        self.assertIn("worker: required", parsed["error"]["message"])
        status, _, parsed, raw = self.request("POST", "/v1/models/%s/push" % name,
                                              {"grads": {"w": [1, 1, 1, 1]}, "worker": "w0",
                                               "version": 7})
        self.assertEqual(status, 400, raw)
        self.assertIn("ahead", parsed["error"]["message"])
        status, _, parsed, raw = self.request("POST", "/v1/models/%s/push" % name,
                                              {"grads": {"w": [1, 1, 1, 1]}, "worker": "bad name"})
        self.assertEqual(status, 400, raw)
        self.assertEqual(parsed["error"]["code"], "bad_name")
        connection = self.connect()
        header, payload = connection.call(wire.encode_push(
            connection.take_id(), self.model_id(connection, name),
            [wire.item(0, float32_bytes([1, 1, 1, 1]))], worker="bad name"))
        self.assertEqual(header.opcode, wire.ERROR)
        self.assertEqual(wire.decode_error(payload)[0], ERROR_CODES["bad_name"])
        for bad, field in (({"mode": "sync"}, "consistency.workers"),
                           ({"mode": "sync", "workers": 2, "backup_workers": 2},
                            "consistency.backup_workers"),
                           ({"mode": "ssp", "workers": 2, "staleness": -1},
                            "consistency.staleness"),
                           ({"mode": "lockstep"}, "consistency.mode"),
                           ({"mode": "sync", "workers": 2, "timeout": 0}, "consistency.timeout")):
            response = self.request("PUT", "/v1/models/" + self.model_name("_bad"),
                                    sgd_model(bad))
            self.assert_error(response, 400, "bad_request", field)
        self.assertEqual(self.weights(name)["weights"]["w"], [0, 0, 0, 0])

    # -- ssp --------------------------------------------------------------------

    def test_ssp_fast_worker_waits_for_the_slow_one(self):
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "ssp", "workers": 2, "staleness": 0,
                                           "timeout": 30}))
        self.assertEqual(self.http_push(name, "fast", [1, 0, 0, 0])["step"], 1)
        result = {}

        def second_push():
            result["reply"] = self.http_push(name, "fast", [1, 0, 0, 0])
            result["at"] = time.monotonic()

        thread = threading.Thread(target=second_push)
        thread.start()
        time.sleep(0.5)
        self.assertNotIn("reply", result, "the fast worker ran ahead of the bound")
        released = time.monotonic()
        self.http_push(name, "slow", [0, 1, 0, 0])
        thread.join(30)
        self.assertIn("reply", result)
        self.assertGreaterEqual(result["at"], released)
        self.assertEqual(self.weights(name)["weights"]["w"], [-2, -1, 0, 0])
        self.assertEqual(self.describe(name)["step"], 3)

    def test_ssp_over_tcp_times_out(self):
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "ssp", "workers": 2, "staleness": 0,
                                           "timeout": 0.5}))
        connection = self.connect()
        model_id = self.model_id(connection, name)

        def push():
            return connection.call(wire.encode_push(
                connection.take_id(), model_id, [wire.item(0, float32_bytes([1, 0, 0, 0]))],
                worker="fast"))

        self.assertEqual(push()[0].opcode, wire.PUSHPULL | wire.REPLY)
        header, payload = push()
        self.assertEqual(header.opcode, wire.ERROR)
        code, _, message = wire.decode_error(payload)
        self.assertEqual(code, -23)
        self.assertIn("slowest worker", message)
        self.assertEqual(self.weights(name)["weights"]["w"], [-1, 0, 0, 0])

    # -- async ------------------------------------------------------------------

    def test_async_staleness_lr_over_tcp(self):
        name = self.model_name()
        self.create_model(name, sgd_model({"mode": "async", "staleness_lr": True}))
        connection = self.connect()
        model_id = self.model_id(connection, name)
        for version in range(4):
            connection.call(wire.encode_push(connection.take_id(), model_id,
                                             [wire.item(0, float32_bytes([1, 0, 0, 0]))],
                                             worker="fast", version=version))
        header, payload = connection.call(wire.encode_push(
            connection.take_id(), model_id, [wire.item(0, float32_bytes([0, 8, 0, 0]))],
            worker="slow", version=0))
        self.assertEqual(floats(wire.decode_push_reply(payload)["items"][0].data), [-4, -2, 0, 0])
        description = self.describe(name)["consistency"]
        self.assertEqual(description["seen_workers"]["slow"]["staleness"], 4)
        self.assertEqual(description["staleness_observed"]["max"], 4)
        self.assertEqual(description["staleness_observed"]["observed"], 5)
        # HTTP reports the staleness in the reply.
        reply = self.http_push(name, "slow", [0, 0, 0, 0], version=2)
        self.assertEqual(reply["staleness"], 3)


if __name__ == "__main__":
    unittest.main()
