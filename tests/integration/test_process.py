#!/usr/bin/python3
"""Process-level tests: command line, signals, data directory, body limit."""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import unittest

from common import ServerTestCase
from harness import Server, b64_raw, binary_path

RUN_TIMEOUT = 60


def run_binary(*args):
    return subprocess.run([binary_path()] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=RUN_TIMEOUT)


class CommandLineTests(unittest.TestCase):

    def test_help(self):
        result = run_binary("--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        out = result.stdout.decode()
        for option in ("--http", "--tcp", "--data-dir"):
            self.assertIn(option, out)
        self.assertRegex(out.lower(), r"usage")

    def test_version(self):
        result = run_binary("--version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("0.1.0", result.stdout.decode())

    def test_unknown_option(self):
        with tempfile.TemporaryDirectory() as data_dir:
            result = run_binary("--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--data-dir", data_dir,
                                "--no-such-option")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("no-such-option", result.stderr.decode())

    def test_bad_http_address(self):
        with tempfile.TemporaryDirectory() as data_dir:
            result = run_binary("--http", "127.0.0.1:notaport", "--tcp", "127.0.0.1:0",
                                "--data-dir", data_dir)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertTrue(result.stderr.strip(), "no message on stderr")
        self.assertIn("http", result.stderr.decode().lower())


class LifecycleTests(unittest.TestCase):

    def check_signal(self, sig):
        server = Server()
        try:
            status, _, body, _ = server.request("GET", "/livez")
            self.assertEqual((status, body), (200, {"status": "ok"}))
            status, _, _, raw = server.request("PUT", "/v1/models/m", {
                "optimizer": {"name": "SGD", "lr": 1}, "tensors": [{"name": "w", "shape": [8]}]})
            self.assertEqual(status, 201, raw)
            # An idle keep-alive connection must not hold up shutdown.
            client = server.client()
            self.assertEqual(client.request("GET", "/readyz")[0], 200)
            returncode = server.stop(sig)
            client.close()
        finally:
            server.kill()
        self.assertEqual(returncode, 0, server.log_text())
        self.assertIn("shutting down", server.log_text())

    def test_sigterm_exits_cleanly(self):
        self.check_signal(signal.SIGTERM)

    def test_sigint_exits_cleanly(self):
        self.check_signal(signal.SIGINT)

    def test_listening_line(self):
        with Server() as server:
            first = server.log_lines[0]
            pid = server.process.pid
            data_dir = server.data_dir
        self.assertRegex(first, r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z INFO ")
        self.assertIn("paramd 0.1.0 listening:", first)
        self.assertRegex(first, r"http=127\.0\.0\.1:\d+ ")
        self.assertRegex(first, r"tcp=127\.0\.0\.1:\d+")
        self.assertIn("data_dir=" + data_dir, first)
        self.assertIn("pid=%d" % pid, first)
        self.assertEqual(server.returncode, 0)

    def test_listening_line_survives_quiet_log_level(self):
        # Scripts find the port on the first line, whatever --log-level says.
        with Server(extra_args=["--log-level", "error"]) as server:
            self.assertIn("listening:", server.log_lines[0])
            status, _, body, _ = server.request("GET", "/livez")
            self.assertEqual(status, 200)

    def test_second_server_refused_on_same_data_dir(self):
        with Server() as first:
            second = subprocess.run(
                [first.binary, "--http", "127.0.0.1:0", "--data-dir", first.data_dir],
                capture_output=True, text=True, timeout=30)
            self.assertNotEqual(second.returncode, 0)
            self.assertIn("in use by another paramd (pid %d)" % first.process.pid, second.stderr)
            # The first server is unaffected.
            self.assertEqual(first.request("GET", "/livez")[0], 200)

    def test_data_dir_created(self):
        with tempfile.TemporaryDirectory() as parent:
            data_dir = os.path.join(parent, "fresh-data-dir")
            self.assertFalse(os.path.exists(data_dir))
            server = Server(data_dir=data_dir)
            try:
                self.assertTrue(os.path.isdir(data_dir))
                self.assertEqual(server.request("GET", "/readyz")[0], 200)
                status, _, listing, _ = server.request("GET", "/v1/models")
                self.assertEqual((status, listing), (200, {"models": []}))
            finally:
                returncode = server.stop()
            self.assertEqual(returncode, 0, server.log_text())


class BodyLimitTests(ServerTestCase):
    LIMIT = 1048576
    SERVER_ARGS = ("--max-body-size", str(LIMIT))

    def raw_exchange(self, request_bytes, timeout=5.0):
        """Sends request_bytes on a raw socket and reads one response within
        `timeout` seconds; returns (status, headers, body bytes)."""
        with socket.create_connection((self.server.host, self.server.port), timeout=timeout) as sock:
            sock.sendall(request_bytes)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
                self.assertIsNotNone(match, "no HTTP status line in %r" % data[:500])
                headers = {}
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    headers[key.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while len(body) < length:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    body += chunk
            except socket.timeout:
                self.fail("no complete response within %.0f s (got %r)" % (timeout, data[:500]))
        return int(match.group(1)), headers, body

    def test_too_large_rejected_before_body_is_sent(self):
        name = "too-large"
        request = ("PUT /v1/models/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   "Content-Length: 2000000\r\n\r\n" % name).encode()
        status, _, body = self.raw_exchange(request)
        self.assertEqual(status, 413, body[:500])
        error = json.loads(body)["error"]
        self.assertEqual(error["code"], "payload_too_large")
        self.assertTrue(error["message"])
        self.assert_no_model(name)
        self.assertEqual(self.request("GET", "/livez")[0], 200)

    def test_too_large_push_rejected(self):
        request = (b"POST /v1/models/anything/push HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Type: application/json\r\nContent-Length: 1048577\r\n\r\n")
        status, _, body = self.raw_exchange(request)
        self.assertEqual(status, 413, body[:500])
        self.assertEqual(json.loads(body)["error"]["code"], "payload_too_large")

    def test_body_exactly_at_limit_accepted(self):
        body = json.dumps({"optimizer": {"name": "SGD", "lr": 1},
                           "tensors": [{"name": "w", "shape": [2], "values": [1, 2]}]}).encode()
        body += b" " * (self.LIMIT - len(body))  # trailing whitespace is valid JSON
        self.assertEqual(len(body), self.LIMIT)
        status, _, _, raw = self.request("PUT", "/v1/models/at-limit", body)
        self.assertEqual(status, 201, raw[:500])
        self.assertEqual(self.weights("at-limit")["weights"], {"w": [1, 2]})
        # One byte more is refused from the headers alone (the server answers
        # without reading the body and may close, so send no body here).
        request = (b"PUT /v1/models/over-limit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (self.LIMIT + 1))
        status, _, reply = self.raw_exchange(request)
        self.assertEqual(status, 413, reply[:500])
        self.assertEqual(json.loads(reply)["error"]["code"], "payload_too_large")
        self.assert_no_model("over-limit")

    def test_chunked_body_over_limit(self):
        head = (b"PUT /v1/models/chunked-too-large HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % 65536 + b" " * 65536 + b"\r\n"
        with socket.create_connection((self.server.host, self.server.port), timeout=30) as sock:
            try:
                sock.sendall(head)
                for _ in range(32):  # 2 MiB in all
                    sock.sendall(chunk)
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server may stop reading once it has refused the body
            data = b""
            while True:
                head_end = data.find(b"\r\n\r\n")
                if head_end >= 0:
                    match = re.search(rb"(?im)^content-length:\s*(\d+)", data[:head_end])
                    if match and len(data) >= head_end + 4 + int(match.group(1)):
                        break
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        self.assertRegex(data[:20], rb"^HTTP/1\.1 413 ")
        body = data.partition(b"\r\n\r\n")[2]
        self.assertEqual(json.loads(body)["error"]["code"], "payload_too_large")
        self.assert_no_model("chunked-too-large")

    def test_body_within_limit_accepted(self):
        # About 900 KB of JSON: under the 1 MiB limit.
        n = 160000
        body = json.dumps({"optimizer": {"name": "SGD", "lr": 1},
                           "tensors": [{"name": "w", "shape": [n], "values": b64_raw(b"\0\0\x80\x3f" * n)}]})
        self.assertGreater(len(body), 800000)
        self.assertLess(len(body), self.LIMIT)
        status, _, created, raw = self.request("PUT", "/v1/models/within-limit", body)
        self.assertEqual(status, 201, raw[:500])
        self.assertEqual(created["parameters"], n)
        weights = self.weights("within-limit", "?encoding=b64")["weights"]["w"]
        self.assertEqual(weights["b64"], b64_raw(b"\0\0\x80\x3f" * n)["b64"])


if __name__ == "__main__":
    unittest.main()
