#!/usr/bin/python3
"""A sharded paramd service for the integration tests: N real servers with
one shard map, and a small routing client that places tensors with
client/python/paramd/sharding.py (the documented placement, computed
independently of the servers) and fans pushes out to the shards in
parallel over HTTP.

    with Cluster(3, split_threshold=64) as cluster:
        router = Router(cluster.shard_map, cluster.servers)
        router.create("m", body)
        weights = router.push("m", {"w": [...]}, worker="w0")
"""

import json
import os
import socket
import sys
import tempfile
import threading
import unittest

from harness import Server, b64_floats, floats_from_b64

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "client", "python"))
from paramd.sharding import ShardMap  # noqa: E402

# Optimizers whose update needs the whole tensor: never split.
WHOLE_TENSOR_OPTIMIZERS = {"LAMB", "LARS", "Adafactor", "Muon"}


def free_ports(count, host="127.0.0.1"):
    """`count` distinct ports free on host right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_shard_map(path, version, split_threshold, addresses):
    """addresses: [(http "host:port", tcp "host:port")] by shard id."""
    document = {"version": version, "split_threshold": split_threshold,
                "shards": [{"id": i, "http": h, "tcp": t} for i, (h, t) in enumerate(addresses)]}
    with open(path + ".tmp", "w") as handle:
        json.dump(document, handle)
    os.replace(path + ".tmp", path)
    return ShardMap.from_json(document)


class Cluster:
    """N shards.  hosts: the address each shard listens on (default all
    127.0.0.1); wrappers: a command prefix per shard (network namespaces)."""

    def __init__(self, count, split_threshold=64, version=1, hosts=None, wrappers=None,
                 extra_args=()):
        self.count = count
        self._tempdir = tempfile.TemporaryDirectory(prefix="paramd-cluster-")
        self.directory = self._tempdir.name
        self.map_path = os.path.join(self.directory, "shard-map.json")
        hosts = hosts or ["127.0.0.1"] * count
        ports = free_ports(2 * count)
        self.addresses = [("%s:%d" % (hosts[i], ports[2 * i]), "%s:%d" % (hosts[i], ports[2 * i + 1]))
                          for i in range(count)]
        self.shard_map = write_shard_map(self.map_path, version, split_threshold, self.addresses)
        self.wrappers = wrappers or [()] * count
        self.extra_args = list(extra_args)
        self.servers = [None] * count
        try:
            for i in range(count):
                self.start(i)
        except BaseException:
            self.stop()
            raise

    def data_dir(self, shard):
        path = os.path.join(self.directory, "shard-%d" % shard)
        os.makedirs(path, exist_ok=True)
        return path

    def start(self, shard):
        """Starts (or restarts) one shard on its own addresses and data directory."""
        http, tcp = self.addresses[shard]
        self.servers[shard] = Server(["--shard-map", self.map_path, "--shard-id", str(shard)]
                                     + self.extra_args, data_dir=self.data_dir(shard), http=http,
                                     tcp=tcp, wrapper=self.wrappers[shard])
        return self.servers[shard]

    def stop(self):
        """Stops every shard; returns their exit statuses."""
        statuses = []
        for server in self.servers:
            if server is not None and server.process is not None and server.returncode is None:
                statuses.append(server.stop())
        self._tempdir.cleanup()
        return statuses

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class ClusterTestCase(unittest.TestCase):
    """Starts a cluster of SHARDS shards (self.cluster) and one single
    server (self.single) per test class, to compare them; checks at the end
    that every server exits cleanly."""

    SHARDS = 3
    SPLIT_THRESHOLD = 64

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cluster = Cluster(cls.SHARDS, split_threshold=cls.SPLIT_THRESHOLD)
        cls.single = Server()

    @classmethod
    def tearDownClass(cls):
        statuses = cls.cluster.stop() + [cls.single.stop()]
        if any(status != 0 for status in statuses):
            raise AssertionError("a server exited with %r" % statuses)
        super().tearDownClass()

    def name(self, suffix=""):
        """A model name unique to the running test."""
        return (self.id().split(".")[-1] + suffix)[:128]


class ShardError(Exception):
    """A shard's error reply (or an unreachable shard), naming the shard."""

    def __init__(self, shard, status, error):
        self.shard, self.status, self.error = shard, status, error
        super().__init__("shard %d: %s %s" % (shard, status, error))


class StaleShardMap(ShardError):
    pass


class Router:
    """Routes whole models over a cluster's shards by the placement rule."""

    def __init__(self, shard_map, servers):
        self.shard_map = shard_map
        self.servers = servers
        self.models = {}  # name -> {tensor: (count, [(shard, offset, length)])}

    def _call(self, shard, method, path, body=None):
        try:
            status, _, parsed, raw = self.servers[shard].request(method, path, body)
        except OSError as failure:
            raise ShardError(shard, "unreachable", str(failure))
        if status >= 400:
            error = parsed.get("error", {}) if isinstance(parsed, dict) else {"raw": raw[:500]}
            if status == 421 and error.get("shard_map_version", 0) != self.shard_map.version:
                raise StaleShardMap(shard, status, error)
            raise ShardError(shard, status, error)
        return parsed

    def _fan_out(self, calls):
        """calls: {shard: function}; runs them in parallel, returns {shard:
        result}, raising the first ShardError (by shard id)."""
        results, failures = {}, {}

        def run(shard, call):
            try:
                results[shard] = call()
            except ShardError as failure:
                failures[shard] = failure

        threads = [threading.Thread(target=run, args=item) for item in calls.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        if failures:
            raise failures[min(failures)]
        return results

    def learn(self, name, body):
        """The placement of a model's tensors, from its creation body."""
        whole = body["optimizer"]["name"] in WHOLE_TENSOR_OPTIMIZERS
        placement = {}
        for tensor in body["tensors"]:
            count = 1
            for size in tensor["shape"]:
                count *= size
            placement[tensor["name"]] = (count, self.shard_map.placement(name, tensor["name"],
                                                                         count, whole))
        self.models[name] = placement
        return placement

    def create(self, name, body, shards=None):
        self.learn(name, body)
        shards = range(len(self.servers)) if shards is None else shards
        return self._fan_out({s: (lambda s=s: self._call(s, "PUT", "/v1/models/" + name, body))
                              for s in shards})

    def push(self, name, grads, **fields):
        """grads: {tensor: [floats]} (whole tensors).  Returns (steps by
        shard, {tensor: [weights]} reassembled)."""
        per_shard = {}
        for tensor, values in grads.items():
            count, pieces = self.models[name][tensor]
            assert len(values) == count, tensor
            for shard, offset, length in pieces:
                per_shard.setdefault(shard, {})[tensor] = b64_floats(values[offset:offset + length])

        def call(shard):
            body = dict(fields, grads=per_shard[shard])
            return self._call(shard, "POST", "/v1/models/%s/push" % name, body)

        replies = self._fan_out({s: (lambda s=s: call(s)) for s in per_shard})
        weights = {t: [None] * self.models[name][t][0] for t in grads}
        for shard, reply in replies.items():
            for tensor, encoded in reply["weights"].items():
                offset = next(o for s, o, _ in self.models[name][tensor][1] if s == shard)
                values = floats_from_b64(encoded)
                weights[tensor][offset:offset + len(values)] = list(values)
        return {s: r["step"] for s, r in replies.items()}, weights, replies

    def pull(self, name):
        """Every weight of the model, reassembled: {tensor: [floats]}."""
        replies = self._fan_out({s: (lambda s=s: self._call(
            s, "GET", "/v1/models/%s/weights?encoding=b64" % name)) for s in range(len(self.servers))})
        weights = {t: [None] * count for t, (count, _) in self.models[name].items()}
        for shard, reply in replies.items():
            for tensor, encoded in reply["weights"].items():
                offset = next(o for s, o, _ in self.models[name][tensor][1] if s == shard)
                values = floats_from_b64(encoded)
                weights[tensor][offset:offset + len(values)] = list(values)
        return weights
