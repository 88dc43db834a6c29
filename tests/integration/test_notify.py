#!/usr/bin/python3
"""systemd's readiness protocol, for real: the test binds an AF_UNIX
datagram socket, starts the real paramd with NOTIFY_SOCKET naming it (as
systemd does for Type=notify), and checks that READY=1 arrives only when
the server answers on both ports with its checkpoints restored, and that
SIGTERM sends STOPPING=1 (server/notify.c)."""

import http.client
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import Server, binary_path, START_TIMEOUT, STOP_TIMEOUT

STATUS_PATTERN = re.compile(r"^STATUS=listening: http=127\.0\.0\.1:(\d+) tcp=127\.0\.0\.1:(\d+)$", re.M)


def get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class NotifyTest(unittest.TestCase):

    def setUp(self):
        self.directory = tempfile.TemporaryDirectory(prefix="paramd-notify-")
        self.data_dir = os.path.join(self.directory.name, "data")
        self.log_path = os.path.join(self.directory.name, "paramd.log")
        self.process = None

    def tearDown(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.directory.cleanup()

    def listen(self, name):
        """A datagram socket bound at name ('@...': abstract)."""
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind("\0" + name[1:] if name.startswith("@") else name)
        receiver.settimeout(START_TIMEOUT)
        self.addCleanup(receiver.close)
        return receiver

    def start(self, notify_socket):
        environment = dict(os.environ, NOTIFY_SOCKET=notify_socket)
        log = open(self.log_path, "wb")
        self.addCleanup(log.close)
        self.process = subprocess.Popen(
            [binary_path(), "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0",
             "--data-dir", self.data_dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=environment)

    def log_text(self):
        with open(self.log_path, errors="replace") as handle:
            return handle.read()

    def test_ready_after_restore_and_stopping_on_sigterm(self):
        # A checkpoint for the next start to restore (SIGTERM writes it).
        with Server(data_dir=self.data_dir) as first:
            status, _, _, raw = first.request("PUT", "/v1/models/restored", {
                "optimizer": {"name": "SGD", "lr": 0.5}, "tensors": [{"name": "w", "shape": [4]}]})
            self.assertEqual(status, 201, raw)
        self.assertTrue(os.path.exists(os.path.join(self.data_dir, "restored.safetensors")))

        receiver = self.listen(os.path.join(self.directory.name, "notify"))
        self.start(receiver.getsockname())
        # The first datagram must be READY=1: nothing is sent before it.
        message = receiver.recv(4096).decode()
        self.assertIn("READY=1", message.splitlines(), message)
        match = STATUS_PATTERN.search(message)
        self.assertIsNotNone(match, message)
        http_port, tcp_port = int(match.group(1)), int(match.group(2))
        # At READY=1 the server already answers, with its models restored:
        # the ports come from the datagram, not from the log.
        self.assertEqual(get(http_port, "/readyz")[0], 200)
        status, body = get(http_port, "/v1/models/restored")
        self.assertEqual(status, 200, body)
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=30):
            pass
        self.assertRegex(self.log_text(), r"listening: http=127\.0\.0\.1:%d tcp=127\.0\.0\.1:%d"
                         % (http_port, tcp_port))

        self.process.send_signal(signal.SIGTERM)
        receiver.settimeout(STOP_TIMEOUT)
        message = receiver.recv(4096).decode()
        self.assertIn("STOPPING=1", message.splitlines(), message)
        self.assertEqual(self.process.wait(STOP_TIMEOUT), 0, self.log_text())

    def test_abstract_socket(self):
        name = "@paramd-test-notify-%d" % os.getpid()
        receiver = self.listen(name)
        self.start(name)
        message = receiver.recv(4096).decode()
        self.assertIn("READY=1", message.splitlines(), message)
        self.process.send_signal(signal.SIGTERM)
        self.assertIn("STOPPING=1", receiver.recv(4096).decode().splitlines())
        self.assertEqual(self.process.wait(STOP_TIMEOUT), 0, self.log_text())

    def test_unreachable_socket_is_a_warning_not_a_failure(self):
        missing = os.path.join(self.directory.name, "nobody-listens")
        self.start(missing)
        deadline = time.monotonic() + START_TIMEOUT
        while ("cannot notify" not in self.log_text() and self.process.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.05)
        text = self.log_text()
        self.assertRegex(text, r"WARN .*cannot notify %s" % re.escape(missing))
        self.assertIsNone(self.process.poll(), text)
        self.process.send_signal(signal.SIGTERM)
        self.assertEqual(self.process.wait(STOP_TIMEOUT), 0, self.log_text())

if __name__ == "__main__":
    unittest.main()
