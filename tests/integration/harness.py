#!/usr/bin/python3
"""Test harness for paramd's integration tests (standard library only).

    with Server() as server:
        status, headers, body, raw = server.request("GET", "/livez")

Server starts PARAMD_BINARY (default build/paramd) on ephemeral ports:

    paramd --http 127.0.0.1:0 --tcp 127.0.0.1:0 --data-dir <tempdir> [extra args]

and reads its stderr until the "listening" log line, e.g.

    2026-11-22T05:31:02.123Z INFO  paramd 0.1.0 listening: http=127.0.0.1:40123 tcp=...

(https= for a server with --tls-cert; Server.scheme says which) to learn
the HTTP port.  A background thread keeps draining stderr into
Server.log_lines so the pipe never fills up and tests can inspect the log.
"""

import array
import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTENING_PATTERN = re.compile(r"https?=([0-9.]+):(\d+)")
TCP_PATTERN = re.compile(r"tcp=([0-9.]+):(\d+)")

# Generous limits: the suite must also pass against an AddressSanitizer build.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0


def binary_path():
    """The paramd binary under test: $PARAMD_BINARY, else build/paramd."""
    path = os.environ.get("PARAMD_BINARY", "build/paramd")
    if not os.path.isabs(path) and not os.path.exists(path):
        candidate = os.path.join(REPOSITORY_ROOT, path)
        if os.path.exists(candidate):
            path = candidate
    return path


# ---------------------------------------------------------------------------
# float32 encoding helpers
# ---------------------------------------------------------------------------

def _to_float32_array(values):
    if isinstance(values, array.array) and values.typecode == "f":
        result = array.array("f", values)
    else:
        result = array.array("f", [float(value) for value in values])
    return result


def float32_bytes(values):
    """Little-endian float32 bytes of a sequence of numbers."""
    data = _to_float32_array(values)
    if sys.byteorder != "little":
        data.byteswap()
    return data.tobytes()


def b64_floats(values):
    """{"dtype": "float32", "b64": ...} for a list or array of numbers."""
    return b64_raw(float32_bytes(values))


def b64_raw(data):
    """{"dtype": "float32", "b64": ...} for raw little-endian float32 bytes."""
    return {"dtype": "float32", "b64": base64.b64encode(data).decode("ascii")}


def floats_from_b64(obj):
    """array('f') from a {"dtype": "float32", "b64": ...} object."""
    if not isinstance(obj, dict) or obj.get("dtype") != "float32" or not isinstance(obj.get("b64"), str):
        raise ValueError("not a float32 b64 object: %r" % (obj,))
    data = base64.b64decode(obj["b64"], validate=True)
    if len(data) % 4 != 0:
        raise ValueError("b64 payload of %d bytes is not whole float32 values" % len(data))
    result = array.array("f")
    result.frombytes(data)
    if sys.byteorder != "little":
        result.byteswap()
    return result


def f32(value):
    """value rounded to float32 (as a Python float)."""
    return array.array("f", [value])[0]


# ---------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------

def _encode_body(body, headers):
    headers = dict(headers or {})
    if body is None:
        return None, headers
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode("utf-8")
    elif isinstance(body, str):
        body = body.encode("utf-8")
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    return body, headers


def _perform(connection, method, path, body, headers):
    body, headers = _encode_body(body, headers)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    raw = response.read()
    response_headers = {name.lower(): value for name, value in response.getheaders()}
    parsed = None
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
    return response.status, response_headers, parsed, raw, response


class KeepAliveClient:
    """One HTTP/1.1 connection reused for every request."""

    def __init__(self, host, port, timeout=REQUEST_TIMEOUT):
        self.host, self.port, self.timeout = host, port, timeout
        self.connection = http.client.HTTPConnection(host, port, timeout=timeout)
        self.reconnects = 0

    def request(self, method, path, body=None, headers=None):
        """(status, headers, parsed JSON or None, raw bytes); fails if the
        server closed the connection instead of keeping it alive."""
        status, response_headers, parsed, raw, response = _perform(
            self.connection, method, path, body, headers)
        if response.will_close:
            # The server asked to close; open a new one for the next request
            # and remember it so tests can check keep-alive really works.
            self.connection.close()
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.reconnects += 1
        return status, response_headers, parsed, raw

    def close(self):
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------

class ServerStartError(RuntimeError):
    pass


class Server:
    """A paramd process on ephemeral ports with its own data directory.

    http and tcp choose the addresses to listen on (e.g. fixed ports for
    the shards of a shard map); wrapper is a command to run paramd under
    (e.g. ["ip", "netns", "exec", "ns0"])."""

    def __init__(self, extra_args=(), data_dir=None, binary=None, start=True,
                 http="127.0.0.1:0", tcp="127.0.0.1:0", wrapper=()):
        self.binary = binary or binary_path()
        self.extra_args = list(extra_args)
        self.http_address, self.tcp_address = http, tcp
        self.wrapper = list(wrapper)
        self._tempdir = None
        if data_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="paramd-test-")
            data_dir = self._tempdir.name
        self.data_dir = data_dir
        self.process = None
        self.host = None
        self.port = None
        self.tcp_port = None
        self.scheme = None         # "http", or "https" for a server with --tls-cert
        self.log_lines = []
        self._log_condition = threading.Condition()
        self._drain_thread = None
        self._drain_done = False
        self.returncode = None
        if start:
            self.start()

    # -- lifecycle ----------------------------------------------------------

    @property
    def command(self):
        return self.wrapper + [self.binary, "--http", self.http_address, "--tcp",
                               self.tcp_address, "--data-dir", self.data_dir] + self.extra_args

    def start(self, timeout=START_TIMEOUT):
        if not os.path.exists(self.binary):
            raise ServerStartError("paramd binary not found: %s (set PARAMD_BINARY)" % self.binary)
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._drain_thread = threading.Thread(target=self._drain, name="paramd-stderr", daemon=True)
        self._drain_thread.start()
        deadline = time.monotonic() + timeout
        with self._log_condition:
            while True:
                for line in self.log_lines:
                    match = LISTENING_PATTERN.search(line)
                    if match:
                        self.scheme = "https" if match.group(0).startswith("https") else "http"
                        self.host, self.port = match.group(1), int(match.group(2))
                        tcp = TCP_PATTERN.search(line)
                        self.tcp_port = int(tcp.group(2)) if tcp else None
                        return self
                if self._drain_done:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._log_condition.wait(remaining)
        # No listening line: clean up and report what the server said.
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._drain_thread.join(5)
        raise ServerStartError("paramd did not report its HTTP port (exit status %r); stderr:\n%s"
                               % (self.process.returncode, self.log_text()))

    def _drain(self):
        stream = self.process.stderr
        try:
            for raw_line in iter(stream.readline, b""):
                line = raw_line.decode("utf-8", "replace").rstrip("\n")
                with self._log_condition:
                    self.log_lines.append(line)
                    self._log_condition.notify_all()
        finally:
            with self._log_condition:
                self._drain_done = True
                self._log_condition.notify_all()

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends `sig`, waits for the exit and returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                self._finish()
                raise AssertionError("paramd did not exit within %.0f s of signal %d; log:\n%s"
                                     % (timeout, sig, self.log_text()))
        self._finish()
        return self.returncode

    def _finish(self):
        self.returncode = self.process.returncode
        if self._drain_thread is not None:
            self._drain_thread.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process is not None:
            self._finish()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None:
            self.kill()
        else:
            self.stop()

    # -- logs ---------------------------------------------------------------

    def log_text(self):
        with self._log_condition:
            return "\n".join(self.log_lines)

    def wait_for_log(self, pattern, timeout=10.0):
        """The first log line matching regex `pattern`, or None after timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._log_condition:
            while True:
                for line in self.log_lines:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._drain_done:
                    return None
                self._log_condition.wait(remaining)

    # -- HTTP ---------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT):
        """One request on a fresh connection.  body: dict/list (sent as JSON),
        bytes or str (sent raw) or None.  Returns (status, headers with
        lower-case names, parsed JSON or None, raw body bytes)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            status, response_headers, parsed, raw, _ = _perform(connection, method, path, body, headers)
        finally:
            connection.close()
        return status, response_headers, parsed, raw

    def client(self, timeout=REQUEST_TIMEOUT):
        """A KeepAliveClient on this server."""
        return KeepAliveClient(self.host, self.port, timeout)
