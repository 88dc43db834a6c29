#!/usr/bin/python3
"""paramctl --shard-map against three real paramd shards on loopback
(standard library only): every subcommand, with the shards' own HTTP API
and an unsharded paramd doing the same as references; weights written by
pull byte for byte equal to the unsharded server's, clipping by total norm
included; exit codes for a bad map file, a shard that is down and usage
errors.

The shards run with a shard map whose addresses are placeholders (they bind
free ports); paramctl reads a map of the same version and split threshold
with the addresses the shards really bound.  Placement depends only on the
shard count and the threshold.
"""

import json
import os
import socket
import struct
import tempfile
import unittest

from harness import Server
from test_paramctl import ParamctlCase, npy_bytes, parse_npy

SHARDS = 3
VERSION = 4
SPLIT_THRESHOLD = 8


def write_map(path, version, shards):
    """shards: [(http_port or None, tcp_port)]."""
    entries = []
    for index, (http, tcp) in enumerate(shards):
        entry = {"id": index, "tcp": "127.0.0.1:%d" % tcp}
        if http:
            entry["http"] = "127.0.0.1:%d" % http
        entries.append(entry)
    with open(path, "w") as handle:
        json.dump({"version": version, "split_threshold": SPLIT_THRESHOLD, "shards": entries},
                  handle)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ShardedParamctlTest(ParamctlCase):
    """The class's own server (ServerTestCase) is the unsharded reference."""

    TRANSPORT = "--shard-map"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.maps = tempfile.TemporaryDirectory(prefix="paramctl-sharded-")
        cls.server_map = os.path.join(cls.maps.name, "server-map.json")
        cls.map = os.path.join(cls.maps.name, "shard-map.json")
        write_map(cls.server_map, VERSION, [(None, 1 + i) for i in range(SHARDS)])
        cls.shards = []
        try:
            for i in range(SHARDS):
                cls.shards.append(Server(["--shard-map", cls.server_map, "--shard-id", str(i)]))
        except Exception:
            cls.tearDownClass()
            raise
        write_map(cls.map, VERSION, [(s.port, s.tcp_port) for s in cls.shards])

    @classmethod
    def tearDownClass(cls):
        failures = []
        for server in cls.shards:
            status = server.stop()
            if status != 0:
                failures.append("paramd exited with %r; log:\n%s" % (status, server.log_text()))
        cls.maps.cleanup()
        super().tearDownClass()
        if failures:
            raise AssertionError("\n".join(failures))

    def address(self):
        return self.map

    # -- helpers ------------------------------------------------------------

    def unsharded(self, *arguments):
        result = self.paramctl("--tcp", "127.0.0.1:%d" % self.server.tcp_port, *arguments,
                               transport=False)
        self.assertEqual(result.returncode, 0, "paramctl %s: %s" % (arguments, result.stderr))
        return result.stdout

    def fails_with(self, code, arguments, stderr_has=()):
        """fails(), with the arguments' own transport."""
        result = self.paramctl(*arguments, transport=False)
        self.assertEqual(result.returncode, code, "paramctl %s: exit %d, stderr %r" % (
            arguments, result.returncode, result.stderr))
        for text in stderr_has:
            self.assertIn(text, result.stderr)

    def read(self, path):
        with open(path, "rb") as handle:
            return handle.read()

    def body(self, **extra):
        # "w" (24 elements) and "v" (12) are above the threshold and split;
        # "b" and "s" are whole.
        body = {"optimizer": {"name": "SGD", "lr": 0.5, "momentum": 0.9},
                "tensors": [{"name": "w", "shape": [4, 6], "values": list(range(24))},
                            {"name": "b", "shape": [3], "values": [1, 2, 3]},
                            {"name": "v", "shape": [12], "init": {"name": "normal", "std": 1,
                                                                  "seed": 5}},
                            {"name": "s", "shape": []}]}
        body.update(extra)
        return body

    def create_both(self, name, body):
        spec = self.write("model.json", json.dumps(body))
        created = json.loads(self.ok("create", name, spec))
        self.unsharded("create", name, spec)
        return created

    # -- tests --------------------------------------------------------------

    def test_create_describe_list_stats_delete(self):
        name = self.model_name()
        created = self.create_both(name, self.body())
        self.assertEqual(created["name"], name)
        self.assertEqual(created["shard_map_version"], VERSION)
        self.assertEqual(created["parameters"], 24 + 3 + 12 + 1)
        self.assertEqual([s["id"] for s in created["shards"]], list(range(SHARDS)))
        # Every shard holds its part: the split tensors' ranges, the whole
        # tensors on one shard each, as the shards' own HTTP API says.
        holders = {}
        for index, shard in enumerate(self.shards):
            status, _, own, raw = shard.request("GET", "/v1/models/" + name)
            self.assertEqual(status, 200, raw)
            self.assertEqual(own["shard"]["id"], index)
            for tensor in own["tensors"]:
                holders.setdefault(tensor["name"], []).append(index)
                if tensor["name"] == "w":
                    first = 24 * index // SHARDS
                    self.assertEqual(tensor["range"], {"offset": first,
                                                       "count": 24 * (index + 1) // SHARDS - first,
                                                       "of": 24})
        self.assertEqual(holders["w"], list(range(SHARDS)))
        self.assertEqual(holders["v"], list(range(SHARDS)))
        self.assertEqual(len(holders["b"]), 1)
        self.assertEqual(len(holders["s"]), 1)

        described = json.loads(self.ok("describe", name))
        self.assertEqual(described["step"], 0)
        for index, shard in enumerate(self.shards):
            self.assertEqual(described["shards"][index]["tcp"], "127.0.0.1:%d" % shard.tcp_port)
            _, _, own, _ = shard.request("GET", "/v1/models/" + name)
            self.assertEqual(described["shards"][index]["description"]["tensors"],
                             own["tensors"])
        self.assertEqual(json.loads(self.ok("stats", name))["shards"][0]["id"], 0)
        listed = json.loads(self.ok("list"))
        entry = [m for m in listed["models"] if m["name"] == name]
        self.assertEqual(len(entry), 1)
        self.assertEqual(entry[0]["shards"], list(range(SHARDS)))
        self.assertEqual(entry[0]["parameters"], 40)
        counters = json.loads(self.ok("stats"))
        self.assertEqual(counters["shard_map_version"], VERSION)
        self.assertEqual(len(counters["shards"]), SHARDS)
        self.assertEqual(counters["pushes"], sum(s["stats"]["pushes"] for s in counters["shards"]))

        spec = self.write("again.json", json.dumps(self.body()))
        self.fails(1, "create", name, spec, stderr_has=["model_exists", "shard 0 (127.0.0.1:%d)" % self.shards[0].tcp_port])
        self.assertEqual(self.ok("delete", name), "")
        for shard in self.shards:
            status, _, _, _ = shard.request("GET", "/v1/models/" + name)
            self.assertEqual(status, 404)
        self.fails(1, "describe", name, stderr_has=["model_not_found", "any of the 3 shards"])
        self.fails(1, "delete", name, stderr_has=["model_not_found"])

    def test_push_and_pull_match_one_server(self):
        name = self.model_name()
        self.create_both(name, self.body(clip={"max_norm": 2.0}))
        gradients = {"w": [0.25 * i - 3 for i in range(24)], "b": [1.5, -2, 0.5],
                     "v": [(-1) ** i * 0.1 * i for i in range(12)], "s": [4.0]}
        shapes = {"w": (4, 6), "b": (3,), "v": (12,), "s": ()}
        for round_ in range(2):
            for tensor, values in gradients.items():
                grad = self.write("%s-%d.npy" % (tensor, round_),
                                  npy_bytes([v * (round_ + 1) for v in values], shapes[tensor]))
                a = json.loads(self.ok("push", name, tensor, grad))
                b = json.loads(self.unsharded("push", name, tensor, grad))
                # The clipping norm: the library's, over the one tensor of
                # each push, is the server's own.
                self.assertEqual(a["grad_norm"], b["grad_norm"])
                self.assertEqual(a["lr"], b["lr"])
        for tensor in gradients:
            mine, theirs = self.path(tensor + "-sharded.npy"), self.path(tensor + "-one.npy")
            self.ok("pull", name, tensor, mine)
            self.unsharded("pull", name, tensor, theirs)
            self.assertEqual(self.read(mine), self.read(theirs), tensor)
            fields, _ = parse_npy(self.read(mine))
            self.assertEqual(fields["shape"], shapes[tensor])
        raw = self.path("w.raw")
        self.ok("pull", name, "w", raw)
        self.assertEqual(len(self.read(raw)), 24 * 4)
        # Raw float32 is the .npy's data.
        _, values = parse_npy(self.read(self.path("w-sharded.npy")))
        self.assertEqual(list(struct.unpack("<24f", self.read(raw))), values)
        bad = self.write("short.npy", npy_bytes([1.0] * 5, (5,)))
        self.fails(1, "push", name, "w", bad, stderr_has=["bad_range", "nothing was sent"])
        self.fails(1, "pull", name, "nope", self.path("x.npy"), stderr_has=["tensor_not_found"])

    def test_bad_maps_and_dead_shards(self):
        self.fails_with(4, ["--shard-map", self.path("missing.json"), "list"],
                   stderr_has=[self.path("missing.json")])
        broken = self.write("broken.json", '{"version": 1, "shards": [')
        self.fails_with(4, ["--shard-map", broken, "list"], stderr_has=["shard map"])
        dead = free_port()
        down = self.path("down.json")
        write_map(down, VERSION, [(None, self.shards[0].tcp_port), (None, dead),
                                  (None, self.shards[2].tcp_port)])
        self.fails_with(3, ["--shard-map", down, "list"],
                   stderr_has=["connect_failed", "shard 1 (127.0.0.1:%d)" % dead])
        stale = self.path("stale.json")
        write_map(stale, VERSION - 1, [(s.port, s.tcp_port) for s in self.shards])
        name = self.model_name()
        self.ok("create", name, self.write("model.json", json.dumps(self.body())))
        self.fails_with(1, ["--shard-map", stale, "pull", name, "w", self.path("w.npy")],
                   stderr_has=["not_owner", "is version %d, but the shard runs version %d"
                               % (VERSION - 1, VERSION)])
        self.ok("delete", name)
        self.fails_with(2, ["--shard-map", self.map, "--tcp", "127.0.0.1:1", "list"],
                   stderr_has=["one of --tcp, --http and --shard-map"])
        self.fails_with(2, ["--shard-map"], stderr_has=["needs a value"])
        result = self.paramctl("--help", transport=False)
        self.assertEqual(result.returncode, 0)
        self.assertIn("--shard-map FILE", result.stdout)


if __name__ == "__main__":
    unittest.main()
