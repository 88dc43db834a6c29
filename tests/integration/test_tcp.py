#!/usr/bin/python3
"""Binary protocol integration tests: the real server on loopback, spoken to
with raw sockets and client/python/paramd/protocol.py (standard library
only).  Covers every opcode, equivalence with the HTTP API (one core),
pipelining, float16/bfloat16, ranges, bad input, limits, and that a large
update does not block other connections.
"""

import array
import json
import math
import os
import select
import socket
import struct
import sys
import threading
import time
import unittest

from common import ServerTestCase
from harness import Server, b64_floats, f32, float32_bytes, floats_from_b64

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "client", "python"))
from paramd import protocol as wire  # noqa: E402

TIMEOUT = 60.0


def floats(data):
    values = array.array("f")
    values.frombytes(bytes(data))
    if sys.byteorder != "little":
        values.byteswap()
    return list(values)


class Connection:
    """One blocking connection that sends frames and reads whole replies."""

    def __init__(self, port, hello=True):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 1
        if hello:
            reply = self.call(wire.encode_hello(self.take_id(), client="test_tcp"))
            assert reply[0].opcode == wire.HELLO | wire.REPLY, reply

    def take_id(self):
        self.next_id += 1
        return self.next_id - 1

    def send(self, data):
        self.socket.sendall(data)

    def read_exactly(self, n):
        chunks = []
        while n > 0:
            chunk = self.socket.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionError("connection closed by the server")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def read_frame(self):
        header = wire.parse_header(self.read_exactly(wire.HEADER_SIZE))
        return header, self.read_exactly(header.length)

    def call(self, data):
        self.send(data)
        return self.read_frame()

    def closed(self, timeout=TIMEOUT):
        """True when the server closes the connection within timeout."""
        self.socket.settimeout(timeout)
        try:
            while True:
                if not self.socket.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.socket.close()


class TcpTestCase(ServerTestCase):

    def connect(self, hello=True):
        connection = Connection(self.server.tcp_port, hello)
        self.addCleanup(connection.close)
        return connection

    def assert_wire_error(self, reply, code_name, *fragments):
        header, payload = reply
        self.assertEqual(header.opcode, wire.ERROR, "expected an ERROR, got opcode 0x%02x" % header.opcode)
        code, _, message = wire.decode_error(payload)
        self.assertEqual(code, ERROR_CODES[code_name], "%s: %s" % (code, message))
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def lookup(self, connection, model, names=()):
        header, payload = connection.call(wire.encode_lookup(connection.take_id(), model, names))
        self.assertEqual(header.opcode, wire.LOOKUP | wire.REPLY, payload)
        return wire.decode_lookup_reply(payload)

    def pushpull(self, connection, model_id, items, **kwargs):
        header, payload = connection.call(wire.encode_push(connection.take_id(), model_id, items,
                                                           **kwargs))
        self.assertEqual(header.opcode, wire.PUSHPULL | wire.REPLY,
                         wire.decode_error(payload) if header.opcode == wire.ERROR else header)
        return wire.decode_push_reply(payload)


# The numeric codes of include/paramd/paramd.h.
ERROR_CODES = {"bad_request": -2, "model_not_found": -3, "model_exists": -4,
               "tensor_not_found": -5, "unknown_optimizer": -6, "bad_hyperparameter": -7,
               "shape_mismatch": -8, "non_finite": -9, "payload_too_large": -10,
               "bad_name": -14, "bad_encoding": -15, "bad_frame": -18, "hello_required": -19,
               "unsupported_version": -20, "bad_range": -21, "bad_json": -1}

ADAMW_MODEL = {
    "optimizer": {"name": "AdamW", "lr": 0.01},
    "tensors": [{"name": "w", "shape": [3], "values": [1, -2, 3]},
                {"name": "m", "shape": [2, 3], "init": {"name": "normal", "std": 0.5, "seed": 4}}],
}


class HandshakeTests(TcpTestCase):

    def test_hello(self):
        connection = self.connect(hello=False)
        header, payload = connection.call(wire.encode_hello(77, token="", client="me"))
        self.assertEqual(header.opcode, wire.HELLO | wire.REPLY)
        self.assertEqual(header.request_id, 77)
        reply = wire.decode_hello_reply(payload)
        self.assertEqual(reply["version"], 1)
        self.assertEqual(reply["max_frame_size"], 1 << 30)
        self.assertTrue(reply["server"].startswith("paramd "))

    def test_hello_required_first(self):
        connection = self.connect(hello=False)
        self.assert_wire_error(connection.call(wire.encode_model_request(wire.LIST, 5)),
                               "hello_required", "HELLO")
        # The connection stays usable.
        header, _ = connection.call(wire.encode_hello(6))
        self.assertEqual(header.opcode, wire.HELLO | wire.REPLY)

    def test_unsupported_version_range(self):
        connection = self.connect(hello=False)
        self.assert_wire_error(connection.call(wire.encode_hello(1, min_version=2, max_version=3)),
                               "unsupported_version", "2 to 3")


class DataTests(TcpTestCase):

    def test_lookup(self):
        name = self.model_name()
        self.create_model(name, ADAMW_MODEL)
        connection = self.connect()
        everything = self.lookup(connection, name)
        self.assertEqual([t.name for t in everything["tensors"]], ["w", "m"])
        self.assertEqual(everything["tensors"][1].shape, [2, 3])
        self.assertEqual(everything["tensors"][1].count, 6)
        some = self.lookup(connection, name, ["m"])
        self.assertEqual(some["model_id"], everything["model_id"])
        self.assertEqual([(t.tensor_id, t.name) for t in some["tensors"]], [(1, "m")])
        self.assert_wire_error(connection.call(wire.encode_lookup(9, name, ["nope"])),
                               "tensor_not_found", "nope")
        self.assert_wire_error(connection.call(wire.encode_lookup(10, "no-such-model")),
                               "model_not_found", "no-such-model")

    def test_pushpull_equals_http_push(self):
        """The same pushes through HTTP and TCP give bit-identical weights:
        both front ends call the same core."""
        http_name, tcp_name = self.model_name("_http"), self.model_name("_tcp")
        self.create_model(http_name, ADAMW_MODEL)
        self.create_model(tcp_name, ADAMW_MODEL)
        connection = self.connect()
        model_id = self.lookup(connection, tcp_name)["model_id"]
        for step in range(1, 6):
            grad_w = [0.1 * step, -0.2, 0.3 / step]
            grad_m = [0.01 * i * step for i in range(6)]
            status, _, http_reply, raw = self.request("POST", "/v1/models/%s/push" % http_name, {
                "grads": {"w": b64_floats(grad_w), "m": b64_floats(grad_m)}, "loss": 1.0})
            self.assertEqual(status, 200, raw)
            reply = self.pushpull(connection, model_id,
                                  [wire.item(0, float32_bytes(grad_w)),
                                   wire.item(1, float32_bytes(grad_m))], loss=1.0, worker="w0")
            self.assertEqual(reply["step"], step)
            self.assertEqual(reply["lr"], http_reply["lr"])
            self.assertTrue(math.isnan(reply["loss_scale"]))
            self.assertEqual(reply["items"][0].data, bytes(float32_bytes(
                floats_from_b64(http_reply["weights"]["w"]))))
            self.assertEqual(reply["items"][1].data, bytes(float32_bytes(
                floats_from_b64(http_reply["weights"]["m"]))))

    def test_push_then_pull_ranges(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1.0},
                                 "tensors": [{"name": "v", "shape": [10],
                                              "values": list(range(10))}]})
        connection = self.connect()
        model_id = self.lookup(connection, name)["model_id"]
        header, payload = connection.call(wire.encode_push(
            connection.take_id(), model_id, [wire.item(0, float32_bytes([1] * 10))],
            with_weights=False))
        self.assertEqual(header.opcode, wire.PUSH | wire.REPLY)
        reply = wire.decode_push_reply(payload)
        self.assertEqual(reply["items"], [])
        self.assertEqual(reply["step"], 1)
        header, payload = connection.call(wire.encode_pull(connection.take_id(), model_id, [
            wire.Item(0, wire.FLOAT32, 2, 3, b""), wire.Item(0, wire.FLOAT32, 9, 1, b""),
            wire.Item(0, wire.BFLOAT16, 0, 10, b"")]))
        self.assertEqual(header.opcode, wire.PULL | wire.REPLY, payload)
        pulled = wire.decode_pull_reply(payload)
        self.assertEqual(pulled["step"], 1)
        self.assertEqual(floats(pulled["items"][0].data), [1, 2, 3])
        self.assertEqual(floats(pulled["items"][1].data), [8])
        bf16 = struct.unpack("<10H", pulled["items"][2].data)
        self.assertEqual([f32(struct.unpack("<f", struct.pack("<I", b << 16))[0]) for b in bf16],
                         [i - 1.0 for i in range(10)])
        # A range past the end, and a push that does not cover its tensor.
        self.assert_wire_error(connection.call(wire.encode_pull(
            7, model_id, [wire.Item(0, wire.FLOAT32, 8, 3, b"")])), "bad_range", "[8, 11)")
        self.assert_wire_error(connection.call(wire.encode_push(
            8, model_id, [wire.item(0, float32_bytes([1] * 4))])), "bad_range", "whole tensor")
        self.assert_wire_error(connection.call(wire.encode_push(
            9, model_id, [wire.item(3, float32_bytes([1] * 10))])), "tensor_not_found",
            "tensor_id 3")

    def test_float16_and_bfloat16_gradients(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.5},
                                 "tensors": [{"name": "a", "shape": [3], "values": [1, 1, 1]},
                                             {"name": "b", "shape": [3], "values": [1, 1, 1]}]})
        connection = self.connect()
        model_id = self.lookup(connection, name)["model_id"]
        half = struct.pack("<3H", 0x3c00, 0xc000, 0x3800)    # 1, -2, 0.5
        bfloat = struct.pack("<3H", 0x3f80, 0xc000, 0x3f00)  # 1, -2, 0.5
        reply = self.pushpull(connection, model_id, [wire.item(0, half, wire.FLOAT16),
                                                     wire.item(1, bfloat, wire.BFLOAT16)])
        # w = 1 - 0.5 g = (0.5, 2, 0.75), returned in the request's dtype.
        self.assertEqual(struct.unpack("<3H", reply["items"][0].data), (0x3800, 0x4000, 0x3a00))
        self.assertEqual(struct.unpack("<3H", reply["items"][1].data), (0x3f00, 0x4000, 0x3f40))
        self.assertEqual(self.weights(name)["weights"]["a"], [0.5, 2, 0.75])

    def test_non_finite_gradient_refused_and_nothing_changes(self):
        name = self.model_name()
        self.create_model(name, ADAMW_MODEL)
        connection = self.connect()
        model_id = self.lookup(connection, name)["model_id"]
        before = self.weights(name)
        message = self.assert_wire_error(connection.call(wire.encode_push(
            1, model_id, [wire.item(0, float32_bytes([0, math.inf, 0])),
                          wire.item(1, float32_bytes([0] * 6))])), "non_finite")
        self.assertIn("w", message)
        self.assertEqual(self.weights(name), before)

    def test_pipelining_keeps_order(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1.0},
                                 "tensors": [{"name": "x", "shape": [1], "values": [0]}]})
        connection = self.connect()
        model_id = self.lookup(connection, name)["model_id"]
        count = 200
        frames = b"".join(wire.encode_push(1000 + i, model_id, [wire.item(0, float32_bytes([-1]))])
                          for i in range(count))
        # Interleave a bad request: it gets its ERROR in its place.
        frames += wire.encode_model_request(wire.STATS, 5000, "no-such-model")
        connection.send(frames)
        for i in range(count):
            header, payload = connection.read_frame()
            self.assertEqual(header.request_id, 1000 + i)
            reply = wire.decode_push_reply(payload)
            self.assertEqual(reply["step"], i + 1)
            self.assertEqual(floats(reply["items"][0].data), [i + 1.0])
        self.assert_wire_error(connection.read_frame(), "model_not_found")

    def test_concurrent_connections_lose_no_update(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1.0},
                                 "tensors": [{"name": "x", "shape": [4], "values": [0, 0, 0, 0]}]})
        model_id = self.lookup(self.connect(), name)["model_id"]
        failures = []

        def worker():
            try:
                connection = Connection(self.server.tcp_port)
                frames = b"".join(wire.encode_push(i, model_id,
                                                   [wire.item(0, float32_bytes([-1] * 4))],
                                                   with_weights=False) for i in range(250))
                connection.send(frames)
                for _ in range(250):
                    header, _ = connection.read_frame()
                    if header.opcode != wire.PUSH | wire.REPLY:
                        failures.append(header)
                connection.close()
            except Exception as error:  # reported below
                failures.append(error)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(failures, [])
        self.assertEqual(self.weights(name)["weights"]["x"], [2000.0] * 4)


class ControlTests(TcpTestCase):

    def test_create_stats_list_delete(self):
        name = self.model_name()
        connection = self.connect()
        header, payload = connection.call(wire.encode_create(1, name, json.dumps(ADAMW_MODEL)))
        self.assertEqual(header.opcode, wire.CREATE | wire.REPLY, payload)
        created = json.loads(wire.decode_json_reply(payload))
        self.assertEqual(created["name"], name)
        self.assertEqual(created["optimizer"]["name"], "AdamW")
        self.assertEqual(self.describe(name)["tensors"], created["tensors"])  # visible over HTTP
        model_id = self.lookup(connection, name)["model_id"]
        header, payload = connection.call(wire.encode_model_request(wire.STATS, 2, name))
        self.assertEqual(json.loads(wire.decode_json_reply(payload))["name"], name)
        header, payload = connection.call(wire.encode_model_request(wire.STATS, 3, ""))
        stats = json.loads(wire.decode_json_reply(payload))
        self.assertGreaterEqual(stats["models"], 1)
        self.assertGreaterEqual(stats["tcp"]["requests"], 3)
        header, payload = connection.call(wire.encode_model_request(wire.LIST, 4))
        self.assertIn(name, [m["name"] for m in json.loads(wire.decode_json_reply(payload))["models"]])
        self.assert_wire_error(connection.call(wire.encode_create(5, name, json.dumps(ADAMW_MODEL))),
                               "model_exists")
        header, payload = connection.call(wire.encode_model_request(wire.DELETE, 6, name))
        self.assertEqual(header.opcode, wire.DELETE | wire.REPLY)
        self.assertEqual(payload, b"")
        # The old id is dead, even once the name is taken again.
        self.create_model(name, ADAMW_MODEL)
        self.assert_wire_error(connection.call(wire.encode_push(
            7, model_id, [wire.item(0, float32_bytes([0, 0, 0]))])), "model_not_found",
            "model_id %d" % model_id)

    def test_create_errors_name_the_field(self):
        connection = self.connect()
        self.assert_wire_error(connection.call(wire.encode_create(1, "m", "{not json")), "bad_json")
        self.assert_wire_error(connection.call(wire.encode_create(
            2, "m", json.dumps({"optimizer": {"name": "Adam", "lr": -1}, "tensors": []}))),
            "bad_hyperparameter", "optimizer.lr")
        self.assert_wire_error(connection.call(wire.encode_create(3, "bad name!", "{}")), "bad_name")

    def test_echo(self):
        connection = self.connect()
        payload = bytes(range(64))
        header, echoed = connection.call(wire.encode_echo(9, payload))
        self.assertEqual(header.opcode, wire.ECHO | wire.REPLY)
        self.assertEqual(echoed, payload)


class BadInputTests(TcpTestCase):
    SERVER_ARGS = ("--max-frame-size", "64K")

    def test_unknown_opcode_keeps_the_connection(self):
        connection = self.connect()
        self.assert_wire_error(connection.call(wire.frame(0x42, 3)), "bad_frame", "0x42")
        self.assert_wire_error(connection.call(wire.frame(wire.PUSH | wire.REPLY, 4)), "bad_frame")
        header, _ = connection.call(wire.encode_echo(5, b"12345678"))
        self.assertEqual(header.opcode, wire.ECHO | wire.REPLY)

    def test_malformed_payload_keeps_the_connection(self):
        connection = self.connect()
        # A PUSH whose item claims more data than there is.
        bad = wire.frame(wire.PUSH, 6, struct.pack("<IIIIddQ", 1, 1, 0, 0, 0, 0, 0) +
                         struct.pack("<H6x", 0) + struct.pack("<IBBHQQ", 0, 1, 0, 0, 0, 1000))
        self.assert_wire_error(connection.call(bad), "bad_frame", "item 0")
        bad_dtype = wire.frame(wire.PULL, 7, struct.pack("<II", 1, 1) +
                               struct.pack("<IBBHQQ", 0, 9, 0, 0, 0, 1))
        self.assert_wire_error(connection.call(bad_dtype), "bad_encoding", "dtype 9")
        header, _ = connection.call(wire.encode_echo(8, b"abcdefgh"))
        self.assertEqual(header.request_id, 8)

    def test_not_a_frame_closes_after_an_error(self):
        connection = self.connect(hello=False)
        connection.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_wire_error(connection.read_frame(), "bad_frame", "magic")
        self.assertTrue(connection.closed())

    def test_oversized_frame_refused_before_its_payload(self):
        connection = self.connect()
        # Only the header is sent: the server answers without waiting.
        connection.send(struct.pack("<2sBBIQ", b"PD", 1, wire.ECHO, 1 << 20, 11))
        message = self.assert_wire_error(connection.read_frame(), "payload_too_large", "65536")
        self.assertIn(str(1 << 20), message)
        self.assertTrue(connection.closed())

    def test_truncated_frame_then_close_harms_nobody(self):
        bystander = self.connect()
        for cut in (1, 7, 15, 17, 30):
            connection = Connection(self.server.tcp_port)
            frame = wire.encode_lookup(1, "x", ["a", "b"])
            connection.send(frame[:cut])
            connection.close()
        header, _ = bystander.call(wire.encode_echo(1, b"still ok"))
        self.assertEqual(header.opcode, wire.ECHO | wire.REPLY)

    def test_garbage_streams(self):
        """Random bytes after a valid header and HELLO never crash the
        server; every connection ends with an error or a close."""
        state = 7
        for round_ in range(40):
            connection = Connection(self.server.tcp_port)
            data = bytearray()
            for _ in range(200 + round_ * 13):
                state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
                data.append(state >> 56)
            if round_ % 2 == 0:
                data[0:16] = struct.pack("<2sBBIQ", b"PD", 1, round_ % 12, (len(data) - 16) & ~7, round_)
            connection.send(bytes(data))
            connection.socket.shutdown(socket.SHUT_WR)
            connection.closed(5)
            connection.close()
        header, _ = self.connect().call(wire.encode_echo(1, b"alive!!!"))
        self.assertEqual(header.opcode, wire.ECHO | wire.REPLY)


class LimitTests(unittest.TestCase):

    def test_connection_limit(self):
        with Server(["--max-connections", "2"]) as server:
            first, second = Connection(server.tcp_port), Connection(server.tcp_port)
            third = Connection(server.tcp_port, hello=False)
            self.assertTrue(third.closed(10))
            first.close()
            time.sleep(0.2)
            fourth = Connection(server.tcp_port)  # room again
            header, _ = fourth.call(wire.encode_echo(1, b"12345678"))
            self.assertEqual(header.opcode, wire.ECHO | wire.REPLY)
            for connection in (second, third, fourth):
                connection.close()
            self.assertTrue(any("limit of 2 connections" in line for line in server.log_lines))

    def test_idle_timeout(self):
        with Server(["--idle-timeout", "1"]) as server:
            connection = Connection(server.tcp_port)
            start = time.monotonic()
            self.assertTrue(connection.closed(10))
            self.assertGreaterEqual(time.monotonic() - start, 0.5)
            connection.close()


class HeadOfLineTests(TcpTestCase):

    def test_large_update_does_not_block_other_connections(self):
        """While one connection's 32M-element AdamW push is being applied,
        another connection's small requests are answered."""
        name = self.model_name()
        elements = 32 << 20
        self.create_model(name, {"optimizer": {"name": "AdamW", "lr": 1e-3},
                                 "tensors": [{"name": "big", "shape": [elements]},
                                             {"name": "small", "shape": [4]}]})
        big, small = self.connect(), self.connect()
        model_id = self.lookup(big, name)["model_id"]
        frame = wire.encode_push(1, model_id, [wire.item(0, b"\0\0\x80\x3f" * elements)])
        sender = threading.Thread(target=big.send, args=(frame,))
        sender.start()
        sender.join()
        answered = 0
        while True:
            header, _ = small.call(wire.encode_push(small.take_id(), model_id,
                                                    [wire.item(1, float32_bytes([1, 1, 1, 1]))]))
            self.assertEqual(header.opcode, wire.PUSHPULL | wire.REPLY)
            answered += 1
            readable, _, _ = select.select([big.socket], [], [], 0)
            if readable:
                break
        header, payload = big.read_frame()
        self.assertEqual(header.opcode, wire.PUSHPULL | wire.REPLY)
        self.assertEqual(len(wire.decode_push_reply(payload)["items"][0].data), 4 * elements)
        self.assertGreater(answered, 1, "no small request was answered during the large update")


if __name__ == "__main__":
    unittest.main()
