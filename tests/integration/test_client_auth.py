#!/usr/bin/python3
"""The clients against a server with bearer tokens (--token-file) and TLS
(--tls-cert): the Python client with no, an unknown, a read, a write and an
admin token over the binary protocol and over HTTP (the exceptions, and
nothing changed by a refused request: weights and steps identical),
PARAMD_TOKEN and its precedence, https:// with a self-signed certificate
made at test time (and refused without tls_ca, with the wrong CA and under
another host name), RemoteOptimizer passing token and tls_ca through, and
paramctl with --token-file and PARAMD_TOKEN over both transports and over
HTTPS with --cacert.
"""

import base64
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

from common import ServerTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import paramd  # noqa: E402

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
TIMEOUT = 60.0
TOKENS = {"read": "read-" + "r" * 24, "write": "write-" + "w" * 24, "admin": "admin-" + "a" * 24}
UNKNOWN = "unknown-" + "u" * 24
# What each operation needs (docs/SECURITY.md): read observes, write trains
# and creates, admin deletes.
ROLE_ORDER = ["read", "write", "admin"]

_files = None


def setUpModule():
    global _files
    _files = tempfile.TemporaryDirectory(prefix="paramd-auth-test-")
    directory = _files.name
    with open(os.path.join(directory, "tokens"), "w") as handle:
        handle.write("# test tokens\n")
        for role, token in TOKENS.items():
            handle.write("%s %s\n" % (role, token))
    os.chmod(os.path.join(directory, "tokens"), 0o600)
    for name in ("server", "other"):
        subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2",
                        "-keyout", os.path.join(directory, name + "-key.pem"),
                        "-out", os.path.join(directory, name + "-cert.pem")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)


def tearDownModule():
    _files.cleanup()


def path(name):
    return os.path.join(_files.name, name)


def paramctl_path():
    build = os.path.dirname(os.environ.get("PARAMD_BINARY", "build/paramd")) or "build"
    return os.path.join(build, "paramctl")


MODEL_BODY = {"optimizer": {"name": "SGD", "lr": 0.5},
              "tensors": [{"name": "w", "shape": [4], "values": [1, 2, 3, 4]}]}


class TokenServerCase(ServerTestCase):
    """One server per class with the test tokens (and TLS when TLS is set)."""

    TLS = False
    EXTRA_ARGS = ()

    @classmethod
    def server_arguments(cls):
        args = ["--token-file", path("tokens")] + list(cls.EXTRA_ARGS)
        if cls.TLS:
            args += ["--tls-cert", path("server-cert.pem"), "--tls-key", path("server-key.pem")]
        return args

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        assert cls.server.scheme == ("https" if cls.TLS else "http"), cls.server.scheme

    # -- raw HTTP with the admin token, independent of the clients ---------

    def raw(self, method, url, body=None, token=TOKENS["admin"]):
        if self.TLS:
            context = ssl.create_default_context(cafile=path("server-cert.pem"))
            connection = http.client.HTTPSConnection(self.server.host, self.server.port,
                                                     timeout=TIMEOUT, context=context)
        else:
            connection = http.client.HTTPConnection(self.server.host, self.server.port,
                                                    timeout=TIMEOUT)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        try:
            connection.request(method, url, None if body is None else json.dumps(body), headers)
            response = connection.getresponse()
            raw = response.read()
            return response.status, dict(response.getheaders()), json.loads(raw) if raw else None
        finally:
            connection.close()

    def model_name(self, suffix=""):
        return (self.id().split(".")[-1] + suffix)[:100]

    def create(self, name):
        status, _, reply = self.raw("PUT", "/v1/models/" + name, MODEL_BODY)
        self.assertEqual(status, 201, reply)
        self.addCleanup(self.raw, "DELETE", "/v1/models/" + name)

    def snapshot(self, name):
        """(step, float32 bytes of w) as the server has them."""
        status, _, reply = self.raw("GET", "/v1/models/%s/weights?encoding=b64" % name)
        self.assertEqual(status, 200, reply)
        return reply["step"], base64.b64decode(reply["weights"]["w"]["b64"])

    def models(self):
        status, _, reply = self.raw("GET", "/v1/models")
        self.assertEqual(status, 200, reply)
        return sorted(m["name"] for m in reply["models"])


class PythonClientTokenTests(TokenServerCase):

    def addresses(self):
        scheme = "https" if self.TLS else "http"
        options = {"tls_ca": path("server-cert.pem")} if self.TLS else {}
        return {"tcp": ("127.0.0.1:%d" % self.server.tcp_port, {}),
                "http": ("%s://127.0.0.1:%d" % (scheme, self.server.port), options)}

    def client(self, transport, token, **extra):
        address, options = self.addresses()[transport]
        client = paramd.Client(address, token=token, timeout=TIMEOUT, **dict(options, **extra))
        self.addCleanup(client.close)
        return client

    def operations(self, name):
        """(role needed, what, call(client)) for every kind of request."""
        grads = {"w": np.full(4, 0.25, dtype=np.float32)}
        return [
            ("read", "pull", lambda c: c.pull(name)),
            ("read", "describe", lambda c: c.describe(name)),
            ("read", "list", lambda c: c.list()),
            ("write", "push", lambda c: c.push(name, grads)),
            ("write", "pushpull", lambda c: c.pushpull(name, grads)),
            ("write", "create", lambda c: c.create(name + "_new", MODEL_BODY)),
            ("admin", "delete", lambda c: c.delete(name)),
        ]

    def test_every_token_over_both_transports(self):
        for transport in ("tcp", "http"):
            for who in ("none", "unknown", "read", "write", "admin"):
                token = {"none": "", "unknown": UNKNOWN}.get(who, TOKENS.get(who))
                with self.subTest(transport=transport, token=who):
                    name = self.model_name("_%s_%s" % (transport, who))
                    self.create(name)
                    self.addCleanup(self.raw, "DELETE", "/v1/models/%s_new" % name)
                    client = self.client(transport, token)
                    for needed, what, call in self.operations(name):
                        before, models = self.snapshot(name), self.models()
                        allowed = who in ROLE_ORDER and \
                            ROLE_ORDER.index(who) >= ROLE_ORDER.index(needed)
                        if allowed:
                            call(client)
                            continue
                        expected = paramd.Forbidden if who in ROLE_ORDER else paramd.Unauthorized
                        with self.assertRaises(expected, msg=what) as caught:
                            call(client)
                        failure = caught.exception
                        self.assertEqual(failure.code, -30 if expected is paramd.Forbidden else -29)
                        self.assertEqual(failure.name, "forbidden" if expected is paramd.Forbidden
                                         else "unauthorized")
                        if expected is paramd.Forbidden:
                            self.assertIn("needs a token with the %s role" % needed,
                                          failure.message)
                            self.assertIn("has %s" % who, failure.message)
                        elif who == "none":
                            self.assertIn("needs a bearer token", failure.message)
                        else:
                            self.assertIn("not valid", failure.message)
                        # Nothing changed: the same step, the same bytes,
                        # the same models.
                        self.assertEqual(self.snapshot(name), before, what)
                        self.assertEqual(self.models(), models, what)

    def test_write_token_trains(self):
        name = self.model_name()
        self.create(name)
        for transport in ("tcp", "http"):
            client = self.client(transport, TOKENS["write"])
            step, _ = self.snapshot(name)
            result = client.pushpull(name, {"w": np.ones(4, dtype=np.float32)})
            self.assertEqual(result.step, step + 1)
            now, data = self.snapshot(name)
            self.assertEqual(now, step + 1)
            self.assertEqual(np.frombuffer(data, dtype="<f4").tobytes(),
                             result.weights["w"].astype("<f4").tobytes())

    def test_environment_token_and_its_precedence(self):
        name = self.model_name()
        self.create(name)
        saved = os.environ.get("PARAMD_TOKEN")
        self.addCleanup(lambda: os.environ.__setitem__("PARAMD_TOKEN", saved) if saved is not None
                        else os.environ.pop("PARAMD_TOKEN", None))
        for transport in ("tcp", "http"):
            with self.subTest(transport=transport):
                os.environ["PARAMD_TOKEN"] = " %s\n" % TOKENS["write"]
                self.client(transport, None).push(name, {"w": np.ones(4)})   # from the environment
                with self.assertRaises(paramd.Unauthorized):
                    self.client(transport, "").pull(name)           # "" sends no token at all
                with self.assertRaises(paramd.Forbidden):           # the argument wins
                    self.client(transport, TOKENS["read"]).push(name, {"w": np.ones(4)})
                os.environ["PARAMD_TOKEN"] = TOKENS["read"]
                with self.assertRaises(paramd.Forbidden):
                    self.client(transport, None).push(name, {"w": np.ones(4)})
                self.client(transport, TOKENS["write"]).push(name, {"w": np.ones(4)})
                del os.environ["PARAMD_TOKEN"]
                with self.assertRaises(paramd.Unauthorized):
                    self.client(transport, None).pull(name)
        self.assertEqual(self.snapshot(name)[0], 4)

    def test_a_token_that_is_not_a_bearer_token_is_refused_before_sending(self):
        for bad in ("two words", "line\r\nX-Injected: 1", "tab\tbed"):
            for transport in ("tcp", "http"):
                with self.assertRaises(ValueError):
                    self.client(transport, bad)

    def test_unauthorized_tcp_connection_recovers_with_a_new_client(self):
        name = self.model_name()
        self.create(name)
        client = self.client("tcp", UNKNOWN)
        for _ in range(3):      # each call connects again and is refused again
            with self.assertRaises(paramd.Unauthorized):
                client.pull(name)
        self.assertEqual(len(self.client("tcp", TOKENS["read"]).pull(name)["w"]), 4)


class PythonClientTlsTests(PythonClientTokenTests):
    """The same over HTTPS, and certificate verification."""

    TLS = True

    def https(self):
        return "https://127.0.0.1:%d" % self.server.port

    def test_verification_fails_without_the_certificate(self):
        name = self.model_name()
        self.create(name)
        before = self.snapshot(name)
        client = paramd.Client(self.https(), token=TOKENS["admin"], timeout=TIMEOUT)
        self.addCleanup(client.close)
        with self.assertRaises(paramd.ConnectFailed) as caught:
            client.push(name, {"w": np.ones(4)})
        self.assertIn("certificate did not verify", caught.exception.message)
        self.assertIn("tls_ca", caught.exception.message)
        other = paramd.Client(self.https(), token=TOKENS["admin"], timeout=TIMEOUT,
                              tls_ca=path("other-cert.pem"))
        self.addCleanup(other.close)
        with self.assertRaises(paramd.ConnectFailed) as caught:
            other.push(name, {"w": np.ones(4)})
        self.assertIn("certificate did not verify", caught.exception.message)
        self.assertEqual(self.snapshot(name), before)

    def test_host_name_is_checked(self):
        # The certificate names 127.0.0.1 only; "localhost" is the same
        # address under a name it does not hold.
        try:
            import socket
            socket.getaddrinfo("localhost", self.server.port, socket.AF_INET)
        except OSError:
            self.skipTest("localhost does not resolve")
        client = paramd.Client("https://localhost:%d" % self.server.port, token=TOKENS["read"],
                               timeout=TIMEOUT, tls_ca=path("server-cert.pem"))
        self.addCleanup(client.close)
        with self.assertRaises(paramd.ConnectFailed) as caught:
            client.list()
        self.assertIn("did not verify", caught.exception.message)

    def test_plain_http_to_an_https_server_fails(self):
        client = paramd.Client("http://127.0.0.1:%d" % self.server.port, token=TOKENS["read"],
                               timeout=TIMEOUT)
        self.addCleanup(client.close)
        with self.assertRaises((paramd.ConnectFailed, paramd.ConnectionFailed,
                                paramd.ParamdError)) as caught:
            client.list()
        self.assertNotIsInstance(caught.exception, (paramd.Unauthorized, paramd.Forbidden))

    def test_tls_ca_needs_an_https_address(self):
        with self.assertRaises(ValueError):        # the binary protocol has no TLS
            paramd.Client("127.0.0.1:%d" % self.server.tcp_port, tls_ca=path("server-cert.pem"))
        with self.assertRaises(ValueError):
            paramd.Client("http://127.0.0.1:%d" % self.server.port,
                          tls_ca=path("server-cert.pem"))
        with self.assertRaises(OSError):           # a CA file that is not there fails at once
            paramd.Client(self.https(), tls_ca=path("missing.pem"))

    def test_shard_map_with_https_entries(self):
        # A map of this one server: its "http" entry is https://, so the
        # HTTP transport (and patch, which only HTTP serves) uses TLS.
        name = self.model_name()
        self.addCleanup(self.raw, "DELETE", "/v1/models/" + name)
        shard_map = {"version": 1, "shards": [{"id": 0, "http": self.https(),
                                               "tcp": "127.0.0.1:%d" % self.server.tcp_port}]}
        client = paramd.Client(shard_map=shard_map, transport="http", token=TOKENS["write"],
                               tls_ca=path("server-cert.pem"), timeout=TIMEOUT)
        self.addCleanup(client.close)
        client.create(name, MODEL_BODY)
        result = client.pushpull(name, {"w": np.ones(4, dtype=np.float32)})
        self.assertEqual(result.weights["w"].tolist(), [0.5, 1.5, 2.5, 3.5])
        client.patch(name, {"optimizer": {"lr": 0.25}})
        self.assertEqual(self.raw("GET", "/v1/models/" + name)[2]["optimizer"]["lr"], 0.25)
        unverified = paramd.Client(shard_map=shard_map, transport="http", token=TOKENS["write"],
                                   timeout=TIMEOUT)
        self.addCleanup(unverified.close)
        with self.assertRaises(paramd.ConnectFailed):
            unverified.pull(name)

    def test_remote_optimizer_passes_token_and_tls_ca(self):
        try:
            import torch
        except ImportError:
            self.skipTest("no torch")
        from paramd.torch import RemoteOptimizer
        name = self.model_name()
        self.addCleanup(self.raw, "DELETE", "/v1/models/" + name)
        weight = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        with self.assertRaises(paramd.Forbidden):      # a read token cannot create the model
            RemoteOptimizer([("w", weight)], address=self.https(), model=name,
                            optimizer={"name": "SGD", "lr": 0.5}, token=TOKENS["read"],
                            tls_ca=path("server-cert.pem"), timeout=TIMEOUT)
        optimizer = RemoteOptimizer([("w", weight)], address=self.https(), model=name,
                                    optimizer={"name": "SGD", "lr": 0.5}, token=TOKENS["write"],
                                    tls_ca=path("server-cert.pem"), timeout=TIMEOUT)
        self.addCleanup(optimizer.client.close)
        weight.grad = torch.ones(4)
        optimizer.step()
        self.assertEqual(weight.detach().tolist(), [0.5, 1.5, 2.5, 3.5])
        step, data = self.snapshot(name)
        self.assertEqual((step, np.frombuffer(data, dtype="<f4").tolist()),
                         (1, [0.5, 1.5, 2.5, 3.5]))


class OverloadedTests(TokenServerCase):
    """--max-waiting-pushes 1: with one push waiting in a sync model, a push
    that would wait in another is refused with Overloaded (HTTP 503 with
    Retry-After, and over the binary protocol), and nothing changed.  (A
    model that alone could need more than the limit is refused at creation.)"""

    EXTRA_ARGS = ("--max-waiting-pushes", "1")

    def waiting(self, name):
        status, _, reply = self.raw("GET", "/v1/models/" + name)
        self.assertEqual(status, 200, reply)
        return reply["consistency"]["waiting"]

    def wait_for_waiting(self, name, count):
        deadline = time.monotonic() + 60
        while self.waiting(name) != count:
            self.assertLess(time.monotonic(), deadline, "never %d waiting pushes" % count)
            time.sleep(0.02)

    def test_overloaded(self):
        name = self.model_name()
        body = dict(MODEL_BODY, consistency={"mode": "sync", "workers": 2, "timeout": 600})
        other = name + "_b"
        for model in (name, other):
            status, _, reply = self.raw("PUT", "/v1/models/" + model, body)
            self.assertEqual(status, 201, reply)
            self.addCleanup(self.raw, "DELETE", "/v1/models/" + model)
        before, other_before = self.snapshot(name), self.snapshot(other)
        # w0's push waits for the other two workers, on a connection of
        # its own (a waiting push holds its connection's later requests).
        first = paramd.Client("127.0.0.1:%d" % self.server.tcp_port, token=TOKENS["write"],
                              timeout=TIMEOUT)
        self.addCleanup(first.close)
        pending = first.push_async(name, {"w": np.ones(4)}, worker="w0")
        self.wait_for_waiting(name, 1)
        for address in ("http://127.0.0.1:%d" % self.server.port,
                        "127.0.0.1:%d" % self.server.tcp_port):
            with self.subTest(address=address):
                client = paramd.Client(address, token=TOKENS["write"], timeout=TIMEOUT)
                self.addCleanup(client.close)
                with self.assertRaises(paramd.Overloaded) as caught:
                    client.push(other, {"w": np.ones(4)}, worker="w1")
                self.assertEqual((caught.exception.code, caught.exception.name),
                                 (-31, "overloaded"))
                self.assertIn("--max-waiting-pushes", caught.exception.message)
                self.assertEqual(caught.exception.retry_after,
                                 1.0 if address.startswith("http") else None)
        self.assertFalse(pending.done())
        # Closing w0's connection drops its waiting push; nothing changed.
        first.close()
        self.wait_for_waiting(name, 0)
        self.assertEqual(self.snapshot(name), before)
        self.assertEqual(self.snapshot(other), other_before)
        self.assertEqual(self.waiting(other), 0)


class ParamctlTokenTests(TokenServerCase):
    """paramctl with --token-file and PARAMD_TOKEN, over TCP, HTTP and HTTPS."""

    TLS = True

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory(prefix="paramctl-auth-")
        self.addCleanup(self.tmp.cleanup)

    def token_file(self, text, mode=0o600):
        name = os.path.join(self.tmp.name, "token-%d" % len(os.listdir(self.tmp.name)))
        with open(name, "w") as handle:
            handle.write(text)
        os.chmod(name, mode)
        return name

    def paramctl(self, *arguments, env_token=None):
        env = dict(os.environ)
        env.pop("PARAMD_TOKEN", None)
        if env_token is not None:
            env["PARAMD_TOKEN"] = env_token
        result = subprocess.run([paramctl_path()] + list(arguments), capture_output=True,
                                env=env, timeout=TIMEOUT * 2)
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    def transports(self):
        return {"tcp": ["--tcp", "127.0.0.1:%d" % self.server.tcp_port],
                "https": ["--http", "https://127.0.0.1:%d" % self.server.port,
                          "--cacert", path("server-cert.pem")]}

    def test_token_file_over_both_transports(self):
        name = self.model_name()
        self.create(name)
        gradient = os.path.join(self.tmp.name, "g.npy")
        np.save(gradient, np.full(4, 2.0, dtype=np.float32))
        files = {"read": self.token_file("# a comment\n\n%s\n" % TOKENS["read"]),
                 "write": self.token_file("write %s\n" % TOKENS["write"]),
                 "admin": self.token_file(TOKENS["admin"])}
        for transport, where in self.transports().items():
            with self.subTest(transport=transport):
                before = self.snapshot(name)
                code, _, err = self.paramctl(*where, "push", name, "w", gradient)
                self.assertEqual(code, 1, err)
                self.assertIn("unauthorized", err)
                self.assertIn("--token-file FILE or set PARAMD_TOKEN", err)
                code, _, err = self.paramctl(*where, "--token-file", files["read"], "push", name,
                                             "w", gradient)
                self.assertEqual(code, 1, err)
                self.assertIn("forbidden", err)
                self.assertIn("write role", err)
                self.assertIn("role is too low", err)
                self.assertEqual(self.snapshot(name), before)
                code, out, err = self.paramctl(*where, "--token-file", files["read"], "describe",
                                               name)
                self.assertEqual((code, json.loads(out)["name"]), (0, name), err)
                self.assertEqual(err, "")
                code, out, err = self.paramctl(*where, "--token-file", files["write"], "push",
                                               name, "w", gradient)
                self.assertEqual(code, 0, err)
                self.assertEqual(json.loads(out)["step"], before[0] + 1)
                code, _, err = self.paramctl(*where, "--token-file", files["write"], "delete", name)
                self.assertEqual(code, 1, err)
                self.assertIn("admin role", err)
                pulled = os.path.join(self.tmp.name, "w-%s.npy" % transport)
                code, _, err = self.paramctl(*where, "--token-file", files["admin"], "pull", name,
                                             "w", pulled)
                self.assertEqual(code, 0, err)
                self.assertEqual(np.load(pulled).astype("<f4").tobytes(), self.snapshot(name)[1])
        code, _, err = self.paramctl(*self.transports()["tcp"], "--token-file", files["admin"],
                                     "delete", name)
        self.assertEqual(code, 0, err)
        self.assertNotIn(name, self.models())

    def test_environment_token_and_precedence(self):
        name = self.model_name()
        self.create(name)
        for transport, where in self.transports().items():
            with self.subTest(transport=transport):
                code, out, err = self.paramctl(*where, "list", env_token=TOKENS["read"])
                self.assertEqual(code, 0, err)
                self.assertIn(name, [m["name"] for m in json.loads(out)["models"]])
                code, _, err = self.paramctl(*where, "list", env_token=UNKNOWN)
                self.assertEqual(code, 1, err)
                self.assertIn("unauthorized", err)
                self.assertIn("PARAMD_TOKEN", err)
                # --token-file wins over the environment.
                code, _, err = self.paramctl(*where, "--token-file",
                                             self.token_file(TOKENS["read"]), "delete", name,
                                             env_token=TOKENS["admin"])
                self.assertEqual(code, 1, err)
                self.assertIn("forbidden", err)
        self.assertIn(name, self.models())

    def test_token_file_problems(self):
        where = self.transports()["tcp"]
        code, out, err = self.paramctl(*where, "--token-file",
                                       self.token_file(TOKENS["read"] + "\n", mode=0o644), "list")
        self.assertEqual(code, 0, err)
        self.assertIn("warning", err)
        self.assertIn("chmod 600", err)
        for text in ("", "# only a comment\n", "guest %s\n" % TOKENS["read"],
                     "not a token at all\n", "t\u00f6ken-with-umlaut-0123456789\n"):
            code, _, err = self.paramctl(*where, "--token-file", self.token_file(text), "list")
            self.assertEqual(code, 4, (text, err))
            self.assertIn("--token-file", err)
        code, _, err = self.paramctl(*where, "--token-file", os.path.join(self.tmp.name, "none"),
                                     "list")
        self.assertEqual(code, 4, err)
        code, _, err = self.paramctl(*where, "list", env_token="bad token")
        self.assertEqual(code, 2, err)

    def test_https_verification(self):
        https = "https://127.0.0.1:%d" % self.server.port
        token = self.token_file(TOKENS["read"])
        code, _, err = self.paramctl("--http", https, "--token-file", token, "list")
        self.assertEqual(code, 3, err)
        self.assertIn("certificate did not verify", err)
        self.assertIn("--cacert", err)
        code, _, err = self.paramctl("--http", https, "--cacert", path("other-cert.pem"),
                                     "--token-file", token, "list")
        self.assertEqual(code, 3, err)
        self.assertIn("did not verify", err)
        code, out, err = self.paramctl("--http", https + "/", "--cacert", path("server-cert.pem"),
                                       "--token-file", token, "list")
        self.assertEqual(code, 0, err)
        self.assertIn("models", json.loads(out))
        code, _, err = self.paramctl("--http", "127.0.0.1:%d" % self.server.port, "--token-file",
                                     token, "list")
        self.assertEqual(code, 3, err)
        self.assertIn("https://", err)
        for arguments in (["--tcp", "127.0.0.1:%d" % self.server.tcp_port],
                          ["--http", "127.0.0.1:%d" % self.server.port]):
            code, _, err = self.paramctl(*arguments, "--cacert", path("server-cert.pem"), "list")
            self.assertEqual(code, 2, err)
            self.assertIn("--cacert", err)
        code, _, err = self.paramctl("--http", "ftp://127.0.0.1:1", "list")
        self.assertEqual(code, 2, err)


class ParamctlPlainHttpTests(TokenServerCase):
    """paramctl's Authorization header over plain HTTP."""

    def test_token_over_http(self):
        name = self.model_name()
        self.create(name)
        where = ["--http", "http://127.0.0.1:%d" % self.server.port]
        env = dict(os.environ, PARAMD_TOKEN=TOKENS["write"])
        run = subprocess.run([paramctl_path()] + where + ["describe", name], capture_output=True,
                             env=env, timeout=TIMEOUT)
        self.assertEqual(run.returncode, 0, run.stderr)
        env.pop("PARAMD_TOKEN")
        run = subprocess.run([paramctl_path()] + where + ["describe", name], capture_output=True,
                             env=env, timeout=TIMEOUT)
        self.assertEqual(run.returncode, 1, run.stderr)
        self.assertIn(b"unauthorized", run.stderr)
        with tempfile.NamedTemporaryFile("w", suffix=".tok") as handle:
            handle.write("admin %s\n" % TOKENS["admin"])
            handle.flush()
            os.chmod(handle.name, 0o600)
            run = subprocess.run([paramctl_path()] + where + ["--token-file", handle.name,
                                                               "delete", name],
                                 capture_output=True, env=env, timeout=TIMEOUT)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertNotIn(name, self.models())


if __name__ == "__main__":
    unittest.main()
