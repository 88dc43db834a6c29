#!/usr/bin/python3
"""Issue 9 against the real server: safe defaults, bearer tokens and roles
over HTTP and the binary protocol, SIGHUP reloads, TLS with curl, and the
limits (connections per address, slow clients, waiting pushes).

Every refusal is checked to change nothing: the weights after it are the
weights before it, bit for bit.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from common import ServerTestCase
from harness import REPOSITORY_ROOT, Server, b64_floats, binary_path
from test_tcp import Connection

sys.path.insert(0, os.path.join(REPOSITORY_ROOT, "client", "python"))
from paramd import protocol as wire  # noqa: E402

READ = "read-0123456789abcdef"
WRITE = "write-0123456789abcdef"
ADMIN = "admin-0123456789abcdef"
TOKENS = "# roles: read < write < admin\nread %s\nwrite %s\nadmin %s\n" % (READ, WRITE, ADMIN)


def error_codes():
    """name -> number, parsed from PARAMD_ERROR_MAP in include/paramd/paramd.h."""
    text = open(os.path.join(REPOSITORY_ROOT, "include", "paramd", "paramd.h")).read()
    return {name: int(number) for number, name in
            re.findall(r'XX\(\s*\w+,\s*(-?\d+),\s*"(\w+)"', text)}


CODES = error_codes()

SGD_MODEL = {"optimizer": {"name": "SGD", "lr": 1.0},
             "tensors": [{"name": "w", "shape": [3], "values": [1, 2, 3]}]}


def bearer(token):
    return {"Authorization": "Bearer " + token} if token else {}


def token_file(directory, text=TOKENS):
    path = os.path.join(directory, "tokens")
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path


class TokenServerTestCase(ServerTestCase):
    """One paramd with READ, WRITE and ADMIN tokens per test class."""

    EXTRA_ARGS = ()

    @classmethod
    def server_arguments(cls):
        cls.directory = tempfile.mkdtemp(prefix="paramd-security-")
        cls.tokens = token_file(cls.directory)
        return ["--token-file", cls.tokens] + list(cls.EXTRA_ARGS)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.directory, ignore_errors=True)

    def request(self, method, path, body=None, token=None, headers=None):
        all_headers = dict(bearer(token))
        all_headers.update(headers or {})
        return self.server.request(method, path, body, all_headers)

    def weights(self, name):
        status, _, parsed, raw = self.request("GET", "/v1/models/%s/weights" % name, token=READ)
        self.assertEqual(status, 200, raw)
        return parsed["weights"]

    def tcp(self, token, expect_ok=True):
        connection = Connection(self.server.tcp_port, hello=False)
        self.addCleanup(connection.close)
        header, payload = connection.call(wire.encode_hello(connection.take_id(), token=token,
                                                            client="test_security"))
        if expect_ok:
            self.assertEqual(header.opcode, wire.HELLO | wire.REPLY, wire.decode_error(payload)
                             if header.opcode == wire.ERROR else header)
        return connection, header, payload

    def assert_wire_error(self, reply, name, fragment=""):
        header, payload = reply
        self.assertEqual(header.opcode, wire.ERROR)
        code, _, message = wire.decode_error(payload)
        self.assertEqual(code, CODES[name], message)
        self.assertIn(fragment, message)


class HttpRoleTests(TokenServerTestCase):

    def setUp(self):
        self.name = re.sub(r"\W", "_", self.id().split(".")[-1])[:100]
        status, _, _, raw = self.request("PUT", "/v1/models/" + self.name, SGD_MODEL, WRITE)
        self.assertEqual(status, 201, raw)

    def test_open_routes_need_no_token(self):
        for path in ("/livez", "/readyz", "/"):
            status, _, _, raw = self.request("GET", path)
            self.assertEqual(status, 200, "%s: %r" % (path, raw[:200]))

    def test_missing_and_unknown_tokens_get_401_with_www_authenticate(self):
        for path in ("/v1/models", "/v1/models/%s/weights" % self.name, "/metrics",
                     "/v1/nowhere"):
            status, headers, parsed, _ = self.request("GET", path)
            self.assertEqual(status, 401, path)
            self.assertEqual(headers["www-authenticate"], 'Bearer realm="paramd"')
            self.assertEqual(parsed["error"]["code"], "unauthorized")
            status, headers, parsed, _ = self.request("GET", path, token=READ + "x")
            self.assertEqual(status, 401, path)
            self.assertEqual(headers["www-authenticate"],
                             'Bearer realm="paramd", error="invalid_token"')
        # Not the Bearer scheme, and a token one character off.
        status, _, _, _ = self.request("GET", "/v1/models",
                                       headers={"Authorization": "Basic " + READ})
        self.assertEqual(status, 401)
        status, _, _, _ = self.request("GET", "/v1/models", token=READ[:-1] + "0")
        self.assertEqual(status, 401)
        # Refusals are counted for the operator, by status.
        status, _, _, raw = self.request("GET", "/metrics", token=READ)
        self.assertEqual(status, 200)
        self.assertRegex(raw.decode(), r'paramd_requests_total\{transport="http",'
                                       r'operation="other",status="unauthorized"\} [1-9]')

    def test_each_role_may_do_what_it_allows_and_nothing_more(self):
        before = self.weights(self.name)
        push = {"grads": {"w": b64_floats([1, 1, 1])}}
        path = "/v1/models/%s" % self.name
        # read: observe only.
        for method, route, body in (("GET", "/v1/models", None), ("GET", path, None),
                                    ("GET", path + "/weights", None),
                                    ("GET", path + "/history", None),
                                    ("GET", path + "/stats", None),
                                    ("GET", "/metrics", None)):
            status, _, _, raw = self.request(method, route, body, READ)
            self.assertEqual(status, 200, "%s %s: %r" % (method, route, raw[:300]))
        for method, route, body, needed in (("POST", path + "/push", push, "write"),
                                            ("PATCH", path, {"optimizer": {"lr": 0.5}}, "write"),
                                            ("PUT", "/v1/models/other", SGD_MODEL, "write"),
                                            ("DELETE", path, None, "admin"),
                                            ("POST", "/v1/checkpoint", None, "admin")):
            status, headers, parsed, _ = self.request(method, route, body, READ)
            self.assertEqual(status, 403, "%s %s" % (method, route))
            self.assertEqual(parsed["error"]["code"], "forbidden")
            self.assertEqual(headers["www-authenticate"],
                             'Bearer realm="paramd", error="insufficient_scope", scope="%s"'
                             % needed)
        self.assertEqual(self.weights(self.name), before)  # nothing changed
        # write: trains, but does not delete or checkpoint.
        status, _, parsed, raw = self.request("POST", path + "/push", push, WRITE)
        self.assertEqual(status, 200, raw)
        self.assertEqual(parsed["step"], 1)
        status, _, _, _ = self.request("DELETE", path, None, WRITE)
        self.assertEqual(status, 403)
        status, _, _, _ = self.request("POST", "/v1/checkpoint", None, WRITE)
        self.assertEqual(status, 403)
        # admin: everything.
        status, _, _, raw = self.request("POST", "/v1/checkpoint", None, ADMIN)
        self.assertEqual(status, 200, raw)
        status, _, _, raw = self.request("DELETE", path, None, ADMIN)
        self.assertIn(status, (200, 204), raw)

    def test_refusals_cannot_forge_log_lines(self):
        """A URL with an encoded newline, refused for its token, is logged
        on one line: control characters become '?'."""
        status, _, _, _ = self.request(
            "GET", "/v1/models/x%0a2026-12-02T00:00:00.000Z%20ERROR%20forged", token=READ + "x")
        self.assertEqual(status, 401)
        line = self.server.wait_for_log(r"x\?2026-12-02T00:00:00\.000Z ERROR forged")
        self.assertIsNotNone(line, self.server.log_text()[-2000:])
        self.assertIn("refused a token", line)
        self.assertFalse(any(entry.startswith("2026-12-02T00:00:00.000Z ERROR forged")
                             for entry in self.server.log_lines))
        self.assertTrue(any("x?2026-12-02T00:00:00.000Z ERROR forged" in entry
                            for entry in self.server.log_lines))

    def test_a_refused_upload_is_not_read(self):
        """401 comes from the headers alone: the client gets its answer
        without sending the (announced) 64 MiB body."""
        connection = socket.create_connection((self.server.host, self.server.port), timeout=30)
        self.addCleanup(connection.close)
        connection.sendall(("POST /v1/models/%s/push HTTP/1.1\r\nHost: x\r\n"
                            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                            % (self.name, 64 << 20)).encode())
        reply = connection.recv(4096).decode("latin-1")
        self.assertTrue(reply.startswith("HTTP/1.1 401"), reply)


class MetricsOpenTests(TokenServerTestCase):
    EXTRA_ARGS = ("--metrics-auth", "none")

    def test_metrics_may_be_open_while_the_api_is_not(self):
        status, _, _, raw = self.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"paramd_", raw)
        status, _, _, _ = self.request("GET", "/v1/models")
        self.assertEqual(status, 401)


class BinaryProtocolTokenTests(TokenServerTestCase):

    def test_hello_needs_a_valid_token_and_a_refusal_closes(self):
        for token, fragment in (("", "needs a bearer token"), (READ + "x", "not valid")):
            connection, header, payload = self.tcp(token, expect_ok=False)
            self.assert_wire_error((header, payload), "unauthorized", fragment)
            self.assertTrue(connection.closed(10))
        # Nothing but HELLO before it.
        connection = Connection(self.server.tcp_port, hello=False)
        self.addCleanup(connection.close)
        self.assert_wire_error(connection.call(wire.encode_model_request(wire.LIST, 1)),
                               "hello_required")

    def test_a_refusal_reaches_a_client_that_pipelined_more(self):
        """HELLO with a bad token and 4 MiB more in one go: the server
        answers, shuts its side down and drains what follows (a close with
        unread data would make the kernel reset the connection, which can
        destroy the ERROR in flight), then closes within its linger time."""
        sock = socket.create_connection((self.server.host, self.server.tcp_port), timeout=30)
        self.addCleanup(sock.close)
        data = wire.encode_hello(1, token=READ + "x") + wire.encode_echo(2, b"x" * (4 << 20))

        def send():
            try:
                sock.sendall(data)
            except OSError:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        header = wire.parse_header(self.read_exactly(sock, wire.HEADER_SIZE))
        self.assertEqual(header.opcode, wire.ERROR)
        code, _, message = wire.decode_error(self.read_exactly(sock, header.length))
        self.assertEqual(code, CODES["unauthorized"], message)
        start = time.monotonic()
        sock.settimeout(15)
        while sock.recv(65536):
            pass  # nothing more comes: only the end
        self.assertLess(time.monotonic() - start, 10)
        sender.join(15)

    @staticmethod
    def read_exactly(sock, count):
        chunks = b""
        while len(chunks) < count:
            chunk = sock.recv(count - len(chunks))
            if not chunk:
                raise ConnectionError("closed after %d of %d bytes" % (len(chunks), count))
            chunks += chunk
        return chunks

    def test_roles_on_the_binary_protocol(self):
        name = "tcp_roles"
        status, _, _, raw = self.request("PUT", "/v1/models/" + name, SGD_MODEL, WRITE)
        self.assertEqual(status, 201, raw)
        before = self.weights(name)
        reader, _, _ = self.tcp(READ)
        header, payload = reader.call(wire.encode_lookup(reader.take_id(), name))
        self.assertEqual(header.opcode, wire.LOOKUP | wire.REPLY)
        model_id = wire.decode_lookup_reply(payload)["model_id"]
        grads = [wire.item(0, b"\0\0\x80\x3f" * 3)]
        self.assert_wire_error(reader.call(wire.encode_push(reader.take_id(), model_id, grads)),
                               "forbidden", "write role")
        self.assert_wire_error(reader.call(wire.encode_model_request(wire.DELETE,
                                                                     reader.take_id(), name)),
                               "forbidden", "admin role")
        header, _ = reader.call(wire.encode_pull(reader.take_id(), model_id, [wire.item(0, count=3)]))
        self.assertEqual(header.opcode, wire.PULL | wire.REPLY)
        self.assertEqual(self.weights(name), before)
        writer, _, _ = self.tcp(WRITE)
        header, payload = writer.call(wire.encode_push(writer.take_id(), model_id, grads))
        self.assertEqual(header.opcode, wire.PUSHPULL | wire.REPLY,
                         wire.decode_error(payload) if header.opcode == wire.ERROR else "")
        self.assert_wire_error(writer.call(wire.encode_model_request(wire.DELETE,
                                                                     writer.take_id(), name)),
                               "forbidden", "admin role")
        admin, _, _ = self.tcp(ADMIN)
        header, _ = admin.call(wire.encode_model_request(wire.DELETE, admin.take_id(), name))
        self.assertEqual(header.opcode, wire.DELETE | wire.REPLY)


class ReloadTests(unittest.TestCase):

    def test_sighup_rotates_tokens_and_a_bad_file_keeps_the_old_ones(self):
        directory = tempfile.mkdtemp(prefix="paramd-reload-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = token_file(directory)
        with Server(["--token-file", path]) as server:
            def status(token):
                return server.request("GET", "/v1/models", None, bearer(token))[0]
            connection = Connection(server.tcp_port, hello=False)
            self.addCleanup(connection.close)
            header, _ = connection.call(wire.encode_hello(1, token=WRITE))
            self.assertEqual(header.opcode, wire.HELLO | wire.REPLY)
            self.assertEqual(status(WRITE), 200)
            # A broken file: the old tokens stay in force.
            token_file(directory, "write %s\nsuperuser %s\n" % (WRITE, ADMIN))
            server.process.send_signal(signal.SIGHUP)
            self.assertIsNotNone(server.wait_for_log(r"kept the old tokens: .*line 2"))
            self.assertEqual(status(WRITE), 200)
            self.assertEqual(status(ADMIN), 200)
            # The write token revoked, a new one added.
            fresh = "fresh-0123456789abcdef"
            token_file(directory, "read %s\nadmin %s\n" % (fresh, ADMIN))
            server.process.send_signal(signal.SIGHUP)
            self.assertIsNotNone(server.wait_for_log(r"reloaded .*: 1 read, 0 write and 1 admin"))
            self.assertEqual(status(WRITE), 401)
            self.assertEqual(status(fresh), 200)
            # The open connection's token is checked again on its next request.
            header, payload = connection.call(wire.encode_model_request(wire.LIST, 2))
            self.assertEqual(header.opcode, wire.ERROR)
            self.assertEqual(wire.decode_error(payload)[0], CODES["unauthorized"])
            self.assertTrue(connection.closed(10))


class DefaultsTests(unittest.TestCase):

    def test_defaults_are_loopback(self):
        help_text = subprocess.run([binary_path(), "--help"], capture_output=True, text=True,
                                   check=True).stdout
        self.assertIn("(default: 127.0.0.1:8470)", help_text)
        self.assertIn("(default: 127.0.0.1:8471)", help_text)

    def test_listening_beyond_loopback_without_tokens_warns(self):
        with Server(http="0.0.0.0:0", tcp="0.0.0.0:0") as server:
            self.assertIsNotNone(server.wait_for_log(
                r"WARNING: the HTTP API listens on 0\.0\.0\.0.*no --token-file"))
            self.assertIsNotNone(server.wait_for_log(
                r"WARNING: the binary protocol listens on 0\.0\.0\.0.*no --token-file"))
        directory = tempfile.mkdtemp(prefix="paramd-defaults-")
        self.addCleanup(shutil.rmtree, directory, True)
        with Server(["--token-file", token_file(directory)], http="0.0.0.0:0",
                    tcp="0.0.0.0:0") as server:
            server.wait_for_log("authentication:")
            self.assertNotIn("no --token-file", server.log_text())
        with Server() as server:  # loopback: no warning at all
            self.assertNotIn("WARN", server.log_text())

    def test_bad_token_files_refuse_to_start(self):
        directory = tempfile.mkdtemp(prefix="paramd-badtokens-")
        self.addCleanup(shutil.rmtree, directory, True)
        for text, message in (("write short\n", "line 1: the token is shorter than 16"),
                              ("", "no tokens"),
                              ("owner %s\n" % ADMIN, "unknown role")):
            path = token_file(directory, text)
            result = subprocess.run([binary_path(), "--http", "127.0.0.1:0", "--tcp",
                                     "127.0.0.1:0", "--data-dir",
                                     os.path.join(directory, "var"), "--token-file", path],
                                    capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 2, result.stderr)
            self.assertIn(message, result.stderr)
            self.assertNotIn(ADMIN, result.stderr)  # secrets stay out of logs


def make_certificate(directory):
    """A self-signed P-256 certificate for 127.0.0.1: (certificate, key)."""
    certificate = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", certificate], check=True, capture_output=True)
    return certificate, key


@unittest.skipUnless(shutil.which("curl") and shutil.which("openssl"), "needs curl and openssl")
class TlsTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.mkdtemp(prefix="paramd-tls-")
        cls.certificate, cls.key = make_certificate(cls.directory)
        cls.tokens = token_file(cls.directory)
        cls.server = Server(["--tls-cert", cls.certificate, "--tls-key", cls.key,
                             "--token-file", cls.tokens])

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)
        assert status == 0, cls.server.log_text()

    def curl(self, *arguments):
        url = "https://127.0.0.1:%d" % self.server.port
        return subprocess.run(["curl", "-sS", "--max-time", "30"] +
                              [a.replace("URL", url) for a in arguments],
                              capture_output=True, text=True, timeout=60)

    def test_https_with_curl(self):
        self.assertIn("https=127.0.0.1:%d" % self.server.port, self.server.log_text())
        result = self.curl("--cacert", self.certificate, "URL/livez")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout), {"status": "ok"})
        # A token over TLS; and a model created and read back.
        result = self.curl("--cacert", self.certificate, "-X", "PUT", "-H",
                           "Authorization: Bearer " + WRITE, "-d", json.dumps(SGD_MODEL),
                           "URL/v1/models/tls")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('"name":"tls"', result.stdout.replace(" ", ""))
        result = self.curl("--cacert", self.certificate, "-w", "%{http_code}", "-o",
                           os.devnull, "URL/v1/models/tls")
        self.assertEqual(result.stdout, "401")

    def test_untrusted_certificate_and_old_protocols_are_refused(self):
        result = self.curl("URL/livez")  # no --cacert: the self-signed chain is untrusted
        self.assertEqual(result.returncode, 60, result.stderr)
        result = self.curl("--cacert", self.certificate, "--tlsv1.0", "--tls-max", "1.1",
                           "URL/livez")
        self.assertNotEqual(result.returncode, 0)
        # Plain HTTP to the TLS port gets no HTTP answer.
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        with self.assertRaises((http.client.HTTPException, OSError)):
            connection.request("GET", "/livez")
            connection.getresponse().read()
        connection.close()
        # The server still serves TLS clients afterwards.
        self.assertEqual(self.curl("--cacert", self.certificate, "URL/livez").returncode, 0)

    def test_mismatched_key_refuses_to_start(self):
        other_certificate, other_key = make_certificate(tempfile.mkdtemp(dir=self.directory))
        result = subprocess.run([binary_path(), "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0",
                                 "--data-dir", os.path.join(self.directory, "var2"),
                                 "--tls-cert", self.certificate, "--tls-key", other_key],
                                capture_output=True, text=True, timeout=60)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("TLS", result.stderr)
        result = subprocess.run([binary_path(), "--tls-cert", self.certificate],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--tls-cert and --tls-key go together", result.stderr)


def slow_send(host, port, data, interval, limit):
    """Sends data one byte per interval; returns the seconds until the server
    closed the connection, or None if it was still open after limit s."""
    sock = socket.create_connection((host, port), timeout=10)
    start = time.monotonic()
    try:
        for index in range(len(data) * 1000):
            if time.monotonic() - start > limit:
                return None
            if index < len(data):
                try:
                    sock.send(data[index:index + 1])
                except OSError:
                    return time.monotonic() - start
            sock.settimeout(interval)
            try:
                if sock.recv(4096) == b"":
                    return time.monotonic() - start
            except socket.timeout:
                pass
            except OSError:
                return time.monotonic() - start
        return None
    finally:
        sock.close()


class LimitTests(unittest.TestCase):

    def test_slow_http_client_is_cut_off(self):
        """The request line at once, then a header byte every 0.3 s: cut
        after --request-timeout (2 s), long before --idle-timeout (60 s)."""
        with Server(["--request-timeout", "2", "--idle-timeout", "60"]) as server:
            data = b"GET /v1/models HTTP/1.1\r\n"
            sock = socket.create_connection((server.host, server.port), timeout=10)
            self.addCleanup(sock.close)
            sock.sendall(data)
            cut = slow_send(server.host, server.port, b"GET /livez HTTP/1.1\r\nX-Slow: " +
                            b"a" * 200, 0.3, 30)
            self.assertIsNotNone(cut, "a slow client kept its connection for 30 s")
            self.assertLess(cut, 15)
            self.assertGreater(cut, 1.0)
            self.assertIsNotNone(server.wait_for_log("did not arrive within --request-timeout"))
            # A normal client is served meanwhile and afterwards.
            self.assertEqual(server.request("GET", "/livez")[0], 200)

    def test_slow_frame_is_cut_off_and_idle_connections_stay(self):
        with Server(["--request-timeout", "2", "--idle-timeout", "60"]) as server:
            idle = Connection(server.tcp_port)
            self.addCleanup(idle.close)
            hello = wire.encode_hello(1, client="slow")
            cut = slow_send(server.host, server.tcp_port, hello, 0.3, 30)
            self.assertIsNotNone(cut)
            self.assertLess(cut, 15)
            self.assertIsNotNone(server.wait_for_log(r"did not arrive whole within 2 s"))
            # The idle (but whole-framed) connection was left alone.
            header, _ = idle.call(wire.encode_echo(2, b"12345678"))
            self.assertEqual(header.opcode, wire.ECHO | wire.REPLY)

    def test_a_client_slow_to_read_replies_is_not_cut_off(self):
        """--request-timeout counts only while the server reads: with 64 MiB
        of replies queued it stops reading, and a client that reads them
        after 4 s (twice the timeout) gets every one."""
        with Server(["--request-timeout", "2", "--idle-timeout", "60"]) as server:
            connection = Connection(server.tcp_port)
            self.addCleanup(connection.close)
            payload = bytes(range(256)) * 800  # 200 KiB
            count = 400                        # 80 MiB of replies
            frames = b"".join(wire.encode_echo(10 + i, payload) for i in range(count))
            sender = threading.Thread(target=connection.send, args=(frames,), daemon=True)
            sender.start()
            time.sleep(4)
            for i in range(count):
                header, body = connection.read_frame()
                self.assertEqual((header.opcode, header.request_id), (wire.ECHO | wire.REPLY,
                                                                      10 + i))
                self.assertEqual(len(body), len(payload))
            sender.join(30)
            self.assertNotIn("did not arrive whole", server.log_text())

    def test_connections_per_address(self):
        with Server(["--max-connections-per-ip", "2"]) as server:
            first, second = Connection(server.tcp_port), Connection(server.tcp_port)
            third = Connection(server.tcp_port, hello=False)
            self.assertTrue(third.closed(10))
            self.assertIsNotNone(server.wait_for_log(r"127\.0\.0\.1 refused: it has 2 "
                                                     r"connections already"))
            first.close()
            time.sleep(0.3)
            fourth = Connection(server.tcp_port)  # room again
            header, _ = fourth.call(wire.encode_echo(3, b"12345678"))
            self.assertEqual(header.opcode, wire.ECHO | wire.REPLY)
            for connection in (second, third, fourth):
                connection.close()
            # HTTP: libmicrohttpd refuses the third connection from 127.0.0.1.
            held = [socket.create_connection((server.host, server.port)) for _ in range(2)]
            try:
                extra = socket.create_connection((server.host, server.port), timeout=10)
                extra.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    answer = extra.recv(100)
                except OSError:
                    answer = b""
                extra.close()
                self.assertEqual(answer, b"")
            finally:
                for sock in held:
                    sock.close()
            time.sleep(0.3)
            self.assertEqual(server.request("GET", "/livez")[0], 200)

    def test_http_connection_limit_and_idle_timeout(self):
        """--max-connections 2 on HTTP: a third connection waits unserved
        (libmicrohttpd stops accepting; it stays in the listen backlog)
        while two are open; --idle-timeout 2 closes the idle kept-alive
        ones, and then the third is served."""
        with Server(["--max-connections", "2", "--idle-timeout", "2"]) as server:
            held = [http.client.HTTPConnection(server.host, server.port, timeout=10)
                    for _ in range(2)]
            for connection in held:
                connection.request("GET", "/livez")
                self.assertEqual(connection.getresponse().read(), b'{"status":"ok"}\n')
            start = time.monotonic()
            extra = socket.create_connection((server.host, server.port), timeout=10)
            self.addCleanup(extra.close)
            extra.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            extra.settimeout(0.8)
            with self.assertRaises(socket.timeout):
                extra.recv(100)
            extra.settimeout(30)
            self.assertTrue(extra.recv(100).startswith(b"HTTP/1.1 200"))
            self.assertGreater(time.monotonic() - start, 1.0)
            # The kept-alive connections were closed for being idle.
            for connection in held:
                connection.sock.settimeout(15)
                self.assertEqual(connection.sock.recv(100), b"")
                connection.close()

    def test_waiting_pushes_are_limited(self):
        """--max-waiting-pushes 1 and 2-worker sync models: a second
        waiting push gets 503 overloaded with Retry-After, and nothing
        changes; the round completes once room is back."""
        with Server(["--max-waiting-pushes", "1"]) as server:
            model = {"optimizer": {"name": "SGD", "lr": 1.0},
                     "consistency": {"mode": "sync", "workers": 2, "timeout": 30},
                     "tensors": [{"name": "w", "shape": [2], "values": [0, 0]}]}
            self.assertEqual(server.request("PUT", "/v1/models/s", model)[0], 201)
            results = {}

            def push(worker, value):
                results[worker] = server.request("POST", "/v1/models/s/push", {
                    "worker": worker, "version": 0, "grads": {"w": b64_floats([value] * 2)}})

            first = threading.Thread(target=push, args=("a", 2.0))
            first.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if server.request("GET", "/v1/models/s")[2]["consistency"]["waiting"] == 1:
                    break
                time.sleep(0.05)
            self.assertEqual(server.request("GET", "/v1/models/s")[2]["consistency"]["waiting"],
                             1)
            # A second model's waiting push would pass the limit.
            self.assertEqual(server.request("PUT", "/v1/models/t", model)[0], 201)
            status, headers, parsed, _ = server.request("POST", "/v1/models/t/push", {
                "worker": "x", "version": 0, "grads": {"w": b64_floats([5.0, 5.0])}})
            self.assertEqual(status, 503)
            self.assertEqual(parsed["error"]["code"], "overloaded")
            self.assertEqual(headers.get("retry-after"), "1")
            self.assertEqual(server.request("GET", "/v1/models/t")[2]["step"], 0)
            # The second worker of "s" completes the round: never refused.
            push("b", 4.0)
            first.join(30)
            self.assertEqual(results["a"][0], 200, results["a"][3])
            self.assertEqual(results["b"][0], 200, results["b"][3])
            self.assertEqual(results["b"][2]["step"], 1)


if __name__ == "__main__":
    unittest.main()
