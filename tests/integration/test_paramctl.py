#!/usr/bin/python3
"""paramctl against the real server, over the binary protocol and over HTTP
(standard library only): every subcommand, its output compared with the
HTTP API, exit codes, --help, .npy files written and read byte by byte, and
bad files.  numpy is used to cross-check .npy files only when it is
installed.
"""

import ast
import json
import os
import socket
import struct
import subprocess
import tempfile
import unittest

from common import ServerTestCase
from harness import b64_floats, f32, floats_from_b64

TIMEOUT = 120
NPY_MAGIC = b"\x93NUMPY"


def paramctl_path():
    build = os.path.dirname(os.environ.get("PARAMD_BINARY", "build/paramd")) or "build"
    return os.path.join(build, "paramctl")


def npy_bytes(values, shape, descr="<f4", fortran=False, version=(1, 0)):
    """A .npy file as numpy writes it (header padded to 64 bytes)."""
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False", repr(tuple(shape)))
    size_field = 2 if version[0] == 1 else 4
    total = len(NPY_MAGIC) + 2 + size_field + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    length = struct.pack("<H" if size_field == 2 else "<I", len(header))
    fmt = {"<f4": "<%df", ">f4": ">%df", "<f8": "<%dd", "<f2": "<%de", "<i4": "<%di"}[descr]
    data = struct.pack(fmt % len(values), *values)
    return NPY_MAGIC + bytes(version) + length + header.encode("latin1") + data


def raw_npy(header):
    """A version-1.0 .npy with this header text and no data."""
    return NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(header)) + header


def parse_npy(data):
    """(header dict, float32 values) of a version-1.0 .npy, checked strictly."""
    assert data[:6] == NPY_MAGIC, data[:10]
    assert data[6:8] == b"\x01\x00", data[6:8]
    (length,) = struct.unpack("<H", data[8:10])
    assert (10 + length) % 64 == 0, "data not 64-byte aligned"
    header = data[10:10 + length].decode("latin1")
    assert header.endswith("\n")
    fields = ast.literal_eval(header)
    body = data[10 + length:]
    assert fields["descr"] == "<f4" and fields["fortran_order"] is False, fields
    count = 1
    for size in fields["shape"]:
        count *= size
    assert len(body) == 4 * count, (len(body), count)
    return fields, list(struct.unpack("<%df" % count, body))


class ParamctlCase(ServerTestCase):
    """Shared helpers; subclasses pick the transport."""

    TRANSPORT = None  # "--tcp" or "--http"

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory(prefix="paramctl-test-")

    def tearDown(self):
        self.tmp.cleanup()
        super().tearDown()

    def address(self):
        port = self.server.tcp_port if self.TRANSPORT == "--tcp" else self.server.port
        return "127.0.0.1:%d" % port

    def paramctl(self, *arguments, transport=True):
        command = [paramctl_path()]
        if transport and self.TRANSPORT:
            command += [self.TRANSPORT, self.address()]
        command += list(arguments)
        return subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=TIMEOUT, text=True)

    def ok(self, *arguments):
        result = self.paramctl(*arguments)
        self.assertEqual(result.returncode, 0, "paramctl %s: %s" % (arguments, result.stderr))
        self.assertEqual(result.stderr, "")
        return result.stdout

    def fails(self, code, *arguments, stderr_has=()):
        result = self.paramctl(*arguments)
        self.assertEqual(result.returncode, code, "paramctl %s: exit %d, stderr %r" % (
            arguments, result.returncode, result.stderr))
        self.assertTrue(result.stderr.startswith("paramctl: "), result.stderr)
        for text in stderr_has:
            self.assertIn(text, result.stderr)
        return result.stderr

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def write(self, name, data):
        mode = "wb" if isinstance(data, bytes) else "w"
        with open(self.path(name), mode) as handle:
            handle.write(data)
        return self.path(name)

    def http_error(self, method, path):
        status, _, parsed, _ = self.request(method, path)
        self.assertGreaterEqual(status, 400)
        return parsed["error"]

    def model_body(self, values=(1, 2, 3, 4, 5, 6)):
        return {"optimizer": {"name": "SGD", "lr": 0.5},
                "tensors": [{"name": "w", "shape": [2, 3], "values": list(values)},
                            {"name": "s", "shape": []},
                            {"name": "v", "shape": [4]}]}


class TransportTests:
    """Every subcommand; mixed into one class per transport."""

    def test_create_describe_list_delete(self):
        name = self.model_name()
        spec = self.write("model.json", json.dumps(self.model_body()))
        created = json.loads(self.ok("create", name, spec))
        self.assertEqual(created, self.describe(name))
        self.assertEqual(json.loads(self.ok("describe", name)), self.describe(name))
        self.assertEqual(json.loads(self.ok("stats", name)), self.describe(name))
        status, _, listed, _ = self.request("GET", "/v1/models")
        self.assertEqual(json.loads(self.ok("list")), listed)
        self.fails(1, "create", name, spec, stderr_has=["model_exists"])
        self.assertEqual(self.ok("delete", name), "")
        status, _, _, _ = self.request("GET", "/v1/models/" + name)
        self.assertEqual(status, 404)
        stderr = self.fails(1, "delete", name, stderr_has=["model_not_found"])
        error = self.http_error("DELETE", "/v1/models/" + name)
        self.assertEqual(stderr, "paramctl: %s: %s\n" % (error["code"], error["message"]))
        stderr = self.fails(1, "describe", name)
        error = self.http_error("GET", "/v1/models/" + name)
        self.assertEqual(stderr, "paramctl: %s: %s\n" % (error["code"], error["message"]))

    def test_create_refusals(self):
        name = self.model_name()
        self.fails(1, "create", name, self.write("bad.json", '{"optimizer": '),
                   stderr_has=["bad_json"])
        body = self.model_body()
        body["optimizer"]["name"] = "Nope"
        self.fails(1, "create", name, self.write("unknown.json", json.dumps(body)),
                   stderr_has=["unknown_optimizer"])
        self.fails(4, "create", name, self.path("missing.json"), stderr_has=["missing.json"])
        self.fails(1, "create", "bad/name", self.write("ok.json", json.dumps(self.model_body())),
                   stderr_has=["bad_name"] if self.TRANSPORT == "--tcp" else [])

    def test_push_and_pull(self):
        name = self.model_name()
        self.create_model(name, self.model_body())
        grads = [0.5, -1, 2, 0.25, 0, 8]
        pushed = json.loads(self.ok("push", name, "w", self.write("g.npy", npy_bytes(grads, (2, 3)))))
        self.assertEqual(pushed, {"step": 1, "lr": 0.5})
        expected = [f32(w - 0.5 * g) for w, g in zip([1, 2, 3, 4, 5, 6], grads)]
        self.assertEqual(list(floats_from_b64(self.weights(name, "?encoding=b64")["weights"]["w"])),
                         expected)
        # Pulled as .npy: the tensor's shape, float32, byte for byte.
        self.ok("pull", name, "w", self.path("w.npy"))
        with open(self.path("w.npy"), "rb") as handle:
            fields, values = parse_npy(handle.read())
        self.assertEqual(fields["shape"], (2, 3))
        self.assertEqual(values, expected)
        # Raw.
        self.ok("pull", name, "w", self.path("w.bin"))
        with open(self.path("w.bin"), "rb") as handle:
            self.assertEqual(list(struct.unpack("<6f", handle.read())), expected)
        # A scalar and a vector keep their shapes.
        self.ok("pull", name, "s", self.path("s.npy"))
        with open(self.path("s.npy"), "rb") as handle:
            fields, values = parse_npy(handle.read())
        self.assertEqual((fields["shape"], values), ((), [0.0]))
        self.ok("pull", name, "v", self.path("v.npy"))
        with open(self.path("v.npy"), "rb") as handle:
            self.assertEqual(parse_npy(handle.read())[0]["shape"], (4,))
        # What paramctl wrote, paramctl reads back (and numpy, when it is here).
        self.assertEqual(json.loads(self.ok("push", name, "w", self.path("w.npy")))["step"], 2)
        try:
            import numpy
        except ImportError:
            numpy = None
        if numpy is not None:
            array = numpy.load(self.path("v.npy"))
            self.assertEqual((array.dtype, array.shape), (numpy.dtype("<f4"), (4,)))

    def test_push_other_file_types(self):
        name = self.model_name()
        self.create_model(name, self.model_body([0] * 6))
        grads = [1, 2, 3, 4, 5, 6]
        files = {
            "raw.bin": struct.pack("<6f", *grads),
            "f8.npy": npy_bytes(grads, (6,), "<f8"),
            "f2.npy": npy_bytes(grads, (3, 2), "<f2"),
            "be.npy": npy_bytes(grads, (2, 3), ">f4"),
            "v2.npy": npy_bytes(grads, (2, 3), version=(2, 0)),
            "fortran1d.npy": npy_bytes(grads, (6,), fortran=True),
        }
        for step, (file_name, data) in enumerate(sorted(files.items()), 1):
            summary = json.loads(self.ok("push", name, "w", self.write(file_name, data)))
            self.assertEqual(summary["step"], step, file_name)
            weights = floats_from_b64(self.weights(name, "?encoding=b64")["weights"]["w"])
            self.assertEqual(list(weights), [-0.5 * g * step for g in grads], file_name)

    def test_bad_files(self):
        name = self.model_name()
        self.create_model(name, self.model_body())
        good = npy_bytes([1, 2, 3, 4, 5, 6], (2, 3))
        cases = {
            "odd.bin": (b"\0" * 10, "10 bytes is not a whole number of float32"),
            "truncated.npy": (good[:-4], "needs 24"),
            "ints.npy": (npy_bytes([1, 2, 3, 4, 5, 6], (2, 3), "<i4"), "descr '<i4'"),
            "fortran.npy": (npy_bytes([1, 2, 3, 4, 5, 6], (2, 3), fortran=True), "fortran_order"),
            "version.npy": (good[:6] + b"\x09\x00" + good[8:], "version 9.0"),
            "garbage.npy": (raw_npy(b"hello\n"), "expected '{'"),
            "unknown_key.npy": (raw_npy(b"{'descr': '<f4', 'x': 1}"), "unknown key 'x'"),
            "twice.npy": (raw_npy(b"{'descr': '<f4', 'descr': '<f4'}"), "appears twice"),
            "no_shape.npy": (raw_npy(b"{'descr': '<f4', 'fortran_order': False}"),
                             "missing key 'shape'"),
            "bad_shape.npy": (raw_npy(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}"),
                              "shape: expected a dimension"),
            "short_header.npy": (NPY_MAGIC + b"\x01\x00" + struct.pack("<H", 200) + b"{",
                                 "runs past the end"),
        }
        for file_name, (data, message) in cases.items():
            path = self.write(file_name, data)
            stderr = self.fails(4, "push", name, "w", path, stderr_has=[file_name, message])
        self.fails(4, "push", name, "w", self.path("absent.npy"),
                   stderr_has=["absent.npy", "No such file"])
        # Whole files of the wrong size are the server's to refuse.
        self.fails(1, "push", name, "w", self.write("five.npy", npy_bytes([1] * 5, (5,))))
        self.fails(1, "pull", name, "nope", self.path("x.npy"), stderr_has=["tensor_not_found"])
        self.fails(1, "push", name + "_absent", "w", self.write("six.bin", b"\0" * 24),
                   stderr_has=["model_not_found"])
        self.fails(4, "pull", name, "w", os.path.join(self.tmp.name, "no", "dir.npy"),
                   stderr_has=["dir.npy"])
        # Nothing was applied.
        self.assertEqual(self.describe(name)["step"], 0)


class TcpParamctlTest(TransportTests, ParamctlCase):
    TRANSPORT = "--tcp"

    def test_server_stats(self):
        stats = json.loads(self.ok("stats"))
        self.assertEqual(stats["server"], "paramd 0.1.0")
        self.assertIn("pushes", stats)


class HttpParamctlTest(TransportTests, ParamctlCase):
    TRANSPORT = "--http"

    def test_server_stats_need_tcp(self):
        self.fails(2, "stats", stderr_has=["--tcp"])


class ParamctlUsageTest(ParamctlCase):
    TRANSPORT = "--tcp"

    def test_help(self):
        for arguments in (["--help"], ["-h"], ["help"]):
            result = self.paramctl(*arguments, transport=False)
            self.assertEqual(result.returncode, 0)
            for text in ("usage: paramctl", "exit status", "3  cannot connect", "push MODEL TENSOR FILE"):
                self.assertIn(text, result.stdout)
        for command in ("create", "list", "describe", "delete", "push", "pull", "stats"):
            for arguments in ([command, "--help"], ["help", command], [command, "x", "-h"]):
                result = self.paramctl(*arguments, transport=False)
                self.assertEqual(result.returncode, 0, arguments)
                self.assertTrue(result.stdout.startswith("usage: paramctl [OPTIONS] " + command),
                                result.stdout)
        result = self.paramctl("--version", transport=False)
        self.assertEqual((result.returncode, result.stdout), (0, "paramctl 0.1.0\n"))

    def test_usage_errors(self):
        cases = [
            ([], "no command"),
            (["frobnicate"], "unknown command 'frobnicate'"),
            (["--bogus", "list"], "unknown option '--bogus'"),
            (["list", "extra"], "expected no arguments"),
            (["describe"], "expected MODEL"),
            (["push", "m", "w"], "expected MODEL TENSOR FILE"),
            (["push", "m", "w", "f", "g"], "got 4 arguments"),
            (["describe", "m", "--tcp"], "global options go before"),
            (["--tcp", "127.0.0.1:1", "--http", "127.0.0.1:2", "list"],
             "give one of --tcp, --http and --shard-map"),
            (["--tcp", "localhost", "list"], "expected HOST:PORT"),
            (["--tcp", "127.0.0.1:99999", "list"], "expected HOST:PORT"),
            (["--http=nohost:", "list"], "expected HOST:PORT"),
            (["--timeout", "0", "list"], "--timeout"),
            (["--timeout"], "needs a value"),
            (["help", "nope"], "unknown command 'nope'"),
        ]
        for arguments, message in cases:
            result = self.paramctl(*arguments, transport=False)
            self.assertEqual(result.returncode, 2, (arguments, result.stderr))
            self.assertIn(message, result.stderr, arguments)
            self.assertEqual(result.stdout, "")

    def test_cannot_connect(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()
        for option in ("--tcp", "--http"):
            result = self.paramctl(option, "127.0.0.1:%d" % port, "list", transport=False)
            self.assertEqual(result.returncode, 3, (option, result.stderr))
            self.assertIn("127.0.0.1:%d" % port, result.stderr)
        # A server that accepts and never answers: the timeout, then exit 3.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        try:
            for option in ("--tcp", "--http"):
                result = self.paramctl(option, "127.0.0.1:%d" % silent.getsockname()[1],
                                       "--timeout", "0.3", "list", transport=False)
                self.assertEqual(result.returncode, 3, (option, result.stderr))
        finally:
            silent.close()

    def test_equals_form_and_default_address(self):
        name = self.model_name()
        self.create_model(name, self.model_body())
        result = self.paramctl("--tcp=127.0.0.1:%d" % self.server.tcp_port, "describe", name,
                               transport=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout)["name"], name)


if __name__ == "__main__":
    unittest.main()
