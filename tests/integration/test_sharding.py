#!/usr/bin/python3
"""Sharding across server instances (issue 6, items 1, 3 and 5): three real
shards on loopback, each started with the same shard map.

Checks that the servers place tensors exactly as the documented rule
(client/python/paramd/sharding.py computes it independently), that pushes
routed over the shards give bit-for-bit the weights of one unsharded
server - asynchronous, with global-norm clipping from the client's norm,
and synchronous with several workers - that a stale shard map is noticed,
that a shard killed with SIGKILL gives clear errors and recovers once it
is back, and (as root) shards in separate network namespaces.
"""

import array
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

from cluster import (Cluster, ClusterTestCase, Router, ShardError, StaleShardMap,
                     write_shard_map)
from harness import b64_floats, floats_from_b64
from test_tcp import Connection

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "client", "python"))
from paramd import protocol as wire  # noqa: E402

SPLIT_THRESHOLD = 64


def model_body(optimizer, consistency=None, clip=None):
    body = {"optimizer": optimizer,
            "tensors": [{"name": "embedding", "shape": [50, 4],
                         "init": {"name": "normal", "std": 0.1, "seed": 1}},
                        {"name": "fc1.weight", "shape": [8, 8],
                         "init": {"name": "uniform", "a": -0.5, "b": 0.5, "seed": 2}},
                        {"name": "fc1.bias", "shape": [8], "init": {"name": "zeros"}},
                        {"name": "fc2.weight", "shape": [3, 8],
                         "init": {"name": "normal", "std": 0.3, "seed": 3}},
                        {"name": "fc2.bias", "shape": [3], "init": {"name": "zeros"}},
                        {"name": "head", "shape": [97], "init": {"name": "constant", "val": 1.0}}]}
    if consistency:
        body["consistency"] = consistency
    if clip:
        body["clip"] = clip
    return body


def tensor_counts(body):
    counts = {}
    for tensor in body["tensors"]:
        n = 1
        for size in tensor["shape"]:
            n *= size
        counts[tensor["name"]] = n
    return counts


def gradients(body, worker, step):
    """Deterministic float32-representable gradients for one push."""
    generator = random.Random(1000 * worker + step)
    result = {}
    for name, count in tensor_counts(body).items():
        values = array.array("f", [generator.uniform(-1, 1) for _ in range(count)])
        result[name] = list(values)
    return result


def single_server_push(server, name, grads, **fields):
    body = dict(fields, grads={t: b64_floats(v) for t, v in grads.items()})
    status, _, parsed, raw = server.request("POST", "/v1/models/%s/push" % name, body)
    assert status == 200, raw[:2000]
    return parsed


def single_server_weights(server, name):
    status, _, parsed, raw = server.request("GET", "/v1/models/%s/weights?encoding=b64" % name)
    assert status == 200, raw[:2000]
    return {t: list(floats_from_b64(v)) for t, v in parsed["weights"].items()}


def global_norm(grads):
    return math.sqrt(sum(float(v) * float(v) for values in grads.values() for v in values))


class ShardingTests(ClusterTestCase):
    SPLIT_THRESHOLD = SPLIT_THRESHOLD

    def router(self):
        return Router(self.cluster.shard_map, self.cluster.servers)

    def create_both(self, name, body):
        router = self.router()
        router.create(name, body)
        status, _, _, raw = self.single.request("PUT", "/v1/models/" + name, body)
        self.assertEqual(status, 201, raw)
        return router

    def assert_same_weights(self, router, name):
        sharded = router.pull(name)
        single = single_server_weights(self.single, name)
        self.assertEqual(sorted(sharded), sorted(single))
        for tensor in single:
            self.assertEqual(array.array("f", sharded[tensor]).tobytes(),
                             array.array("f", single[tensor]).tobytes(),
                             "tensor %s differs between the shards and one server" % tensor)

    # -- placement ----------------------------------------------------------------

    def test_placement_follows_the_documented_rule(self):
        name = self.name()
        body = model_body({"name": "SGD", "lr": 0.1})
        body["tensors"] += [{"name": "extra.%d" % i, "shape": [i + 1]} for i in range(12)]
        router = self.router()
        router.create(name, body)
        counts = tensor_counts(body)
        held = {s: {} for s in range(3)}
        for shard in range(3):
            status, _, description, raw = self.cluster.servers[shard].request(
                "GET", "/v1/models/" + name)
            self.assertEqual(status, 200, raw)
            self.assertEqual(description["shard"]["id"], shard)
            self.assertEqual(description["shard"]["shard_map_version"], 1)
            for tensor in description["tensors"]:
                held[shard][tensor["name"]] = tensor.get("range")
        for tensor, count in counts.items():
            pieces = router.models[name][tensor][1]
            if count > SPLIT_THRESHOLD:
                self.assertEqual(len(pieces), 3, tensor)
                for shard, offset, length in pieces:
                    self.assertEqual(held[shard][tensor],
                                     {"offset": offset, "count": length, "of": count}, tensor)
            else:
                (shard, _, _), = pieces
                self.assertIn(tensor, held[shard])
                for other in set(range(3)) - {shard}:
                    self.assertNotIn(tensor, held[other])
        # Small tensors spread over every shard.
        owners = {router.models[name][t][1][0][0] for t, c in counts.items()
                  if c <= SPLIT_THRESHOLD}
        self.assertEqual(owners, {0, 1, 2})
        # A tensor asked of the wrong shard: not_owner, naming the owner.
        tensor = next(t for t, c in counts.items() if c <= SPLIT_THRESHOLD)
        owner = router.models[name][tensor][1][0][0]
        wrong = (owner + 1) % 3
        status, _, parsed, raw = self.cluster.servers[wrong].request(
            "POST", "/v1/models/%s/push" % name, {"grads": {tensor: [0.0] * counts[tensor]}})
        self.assertEqual(status, 421, raw)
        self.assertEqual(parsed["error"]["code"], "not_owner")
        self.assertEqual(parsed["error"]["owner"], owner)
        self.assertEqual(parsed["error"]["shard_map_version"], 1)
        self.assertIn("shard %d" % owner, parsed["error"]["message"])

    def test_whole_tensor_optimizers_are_never_split(self):
        name = self.name()
        body = model_body({"name": "LAMB", "lr": 0.01, "weight_decay": 0.01})
        router = self.create_both(name, body)
        for tensor, (count, pieces) in router.models[name].items():
            self.assertEqual(len(pieces), 1, "%s (%d elements) was split" % (tensor, count))
        for step in range(3):
            router.push(name, gradients(body, 0, step))
            single_server_push(self.single, name, gradients(body, 0, step))
        self.assert_same_weights(router, name)

    # -- async --------------------------------------------------------------------

    def test_async_pushes_equal_one_server(self):
        name = self.name()
        body = model_body({"name": "AdamW", "lr": 0.01, "weight_decay": 0.1, "amsgrad": True})
        router = self.create_both(name, body)
        for step in range(4):
            for worker in range(3):
                grads = gradients(body, worker, step)
                router.push(name, grads, worker="w%d" % worker)
                single_server_push(self.single, name, grads, worker="w%d" % worker)
        self.assert_same_weights(router, name)
        # A push of only some tensors touches only their shards.
        partial = {"fc1.bias": [0.5] * 8}
        steps, _, _ = router.push(name, partial)
        self.assertEqual(len(steps), 1)
        single_server_push(self.single, name, partial)
        self.assert_same_weights(router, name)

    def test_global_norm_clipping_is_exact_with_the_clients_norm(self):
        name = self.name()
        body = model_body({"name": "SGD", "lr": 0.5, "momentum": 0.9},
                          clip={"max_norm": 1.0})
        router = self.create_both(name, body)
        for step in range(3):
            grads = gradients(body, 0, step)
            norm = global_norm(grads)
            _, _, replies = router.push(name, grads, grad_norm=norm)
            for reply in replies.values():
                self.assertEqual(reply["grad_norm"], norm)
            single_server_push(self.single, name, grads, grad_norm=norm)
        self.assert_same_weights(router, name)
        # Without the client's norm a shard cannot clip by the total norm.
        shard = router.models[name]["embedding"][1][0][0]
        status, _, parsed, raw = self.cluster.servers[shard].request(
            "POST", "/v1/models/%s/push" % name,
            {"grads": {"embedding": [0.0] * router.models[name]["embedding"][1][0][2]}})
        self.assertEqual(status, 400, raw)
        self.assertIn("grad_norm", parsed["error"]["message"])

    # -- sync and ssp -------------------------------------------------------------

    def test_sync_workers_equal_the_single_server_average(self):
        name = self.name()
        body = model_body({"name": "SGD", "lr": 0.1, "momentum": 0.5},
                          consistency={"mode": "sync", "workers": 3, "timeout": 60})
        router = self.create_both(name, body)
        rounds = 3

        def worker_loop(worker, push):
            version = 0
            for step in range(rounds):
                version = push(worker, gradients(body, worker, step), version)

        def sharded_push(worker, grads, version):
            steps, _, _ = router.push(name, grads, worker="w%d" % worker, version=version)
            self.assertEqual(set(steps.values()), {version + 1})
            return version + 1

        def single_push(worker, grads, version):
            reply = single_server_push(self.single, name, grads, worker="w%d" % worker,
                                       version=version)
            return reply["step"]

        for push in (sharded_push, single_push):
            threads = [threading.Thread(target=worker_loop, args=(w, push)) for w in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
        self.assert_same_weights(router, name)
        for shard in range(3):
            status, _, description, _ = self.cluster.servers[shard].request(
                "GET", "/v1/models/" + name)
            self.assertEqual(description["step"], rounds)

    def test_ssp_bound_holds_on_every_shard(self):
        name = self.name()
        body = model_body({"name": "SGD", "lr": 0.1},
                          consistency={"mode": "ssp", "workers": 2, "staleness": 0, "timeout": 30})
        router = self.router()
        router.create(name, body)
        router.push(name, gradients(body, 0, 0), worker="fast")
        done = threading.Event()
        threading.Thread(target=lambda: (router.push(name, gradients(body, 0, 1), worker="fast"),
                                         done.set())).start()
        self.assertFalse(done.wait(0.5), "the fast worker ran ahead of the slow one")
        router.push(name, gradients(body, 1, 0), worker="slow")
        self.assertTrue(done.wait(30))

    # -- stale maps, failures -------------------------------------------------------

    def test_stale_shard_map_is_noticed(self):
        name = self.name()
        body = model_body({"name": "SGD", "lr": 0.1})
        self.router().create(name, body)
        # A client still on an older two-shard map (version 0 < the servers' 1).
        old_map = write_shard_map(os.path.join(self.cluster.directory, "old.json"), 0,
                                  SPLIT_THRESHOLD, self.cluster.addresses[:2])
        stale = Router(old_map, self.cluster.servers[:2])
        stale.learn(name, body)
        failures = 0
        for step in range(3):
            try:
                stale.push(name, gradients(body, 0, step))
            except StaleShardMap as failure:
                failures += 1
                self.assertEqual(failure.error["code"], "not_owner")
                self.assertEqual(failure.error["shard_map_version"], 1)
        self.assertEqual(failures, 3, "a push with the old map went through")

    def test_tcp_ranges_and_not_owner_frames(self):
        name = self.name()
        body = model_body({"name": "SGD", "lr": 1.0})
        router = self.router()
        router.create(name, body)
        count, pieces = router.models[name]["embedding"]
        shard, offset, length = pieces[1]
        connection = Connection(self.cluster.servers[shard].tcp_port)
        self.addCleanup(connection.close)
        header, payload = connection.call(wire.encode_lookup(connection.take_id(), name))
        lookup = wire.decode_lookup_reply(payload)
        entry = next(t for t in lookup["tensors"] if t.name == "embedding")
        self.assertEqual(entry.count, count)  # the whole tensor's count
        grad = array.array("f", [1.0] * length).tobytes()
        header, payload = connection.call(wire.encode_push(
            connection.take_id(), lookup["model_id"],
            [wire.item(entry.tensor_id, grad, offset=offset, count=length)]))
        self.assertEqual(header.opcode, wire.PUSHPULL | wire.REPLY)
        reply = wire.decode_push_reply(payload)
        self.assertEqual((reply["items"][0].offset, reply["items"][0].count), (offset, length))
        # The whole tensor, or another shard's range: not_owner with the version.
        header, payload = connection.call(wire.encode_push(
            connection.take_id(), lookup["model_id"],
            [wire.item(entry.tensor_id, array.array("f", [1.0] * count).tobytes())]))
        self.assertEqual(header.opcode, wire.ERROR)
        code, version, message = wire.decode_error(payload)
        self.assertEqual((code, version), (-22, 1), message)
        self.assertIn("[%d, %d)" % (offset, offset + length), message)

    def test_shard_killed_and_restarted(self):
        name = self.name()
        body = model_body({"name": "SGD", "lr": 0.1})
        cluster = Cluster(3, split_threshold=SPLIT_THRESHOLD)
        self.addCleanup(cluster.stop)
        router = Router(cluster.shard_map, cluster.servers)
        router.create(name, body)
        router.push(name, gradients(body, 0, 0))
        victim = router.models[name]["fc1.bias"][1][0][0]
        cluster.servers[victim].process.send_signal(signal.SIGKILL)
        cluster.servers[victim].process.wait()
        with self.assertRaises(ShardError) as caught:
            router.push(name, gradients(body, 0, 1))
        self.assertEqual(caught.exception.shard, victim)
        self.assertEqual(caught.exception.status, "unreachable")
        # Tensors on the other shards still train.
        survivors = {t: v for t, v in gradients(body, 0, 1).items()
                     if all(s != victim for s, _, _ in router.models[name][t][1])}
        self.assertTrue(survivors)
        router.push(name, survivors)
        # Back on the same addresses: once the model is there again, pushes
        # go through.
        cluster.servers[victim]._finish()
        cluster.start(victim)
        try:
            router.push(name, gradients(body, 0, 2))
        except ShardError as failure:
            self.assertEqual(failure.shard, victim)
            self.assertEqual(failure.error.get("code"), "model_not_found")
            router.create(name, body, shards=[victim])
            router.push(name, gradients(body, 0, 2))

    @unittest.skipUnless(hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("ip"),
                         "needs root and iproute2 to create network namespaces")
    def test_shards_in_network_namespaces(self):
        namespaces = ["paramd-test-%d-%d" % (os.getpid(), i) for i in range(2)]
        hosts = []
        cluster = None
        try:
            for i, namespace in enumerate(namespaces):
                subnet = "10.%d.%d" % (200 + os.getpid() % 50, i)
                outside, inside = "pdv%d-%do" % (os.getpid() % 10000, i), "pdv%d-%di" % (
                    os.getpid() % 10000, i)
                for command in (["ip", "netns", "add", namespace],
                                ["ip", "link", "add", outside, "type", "veth", "peer", "name",
                                 inside],
                                ["ip", "link", "set", inside, "netns", namespace],
                                ["ip", "addr", "add", subnet + ".1/24", "dev", outside],
                                ["ip", "link", "set", outside, "up"],
                                ["ip", "netns", "exec", namespace, "ip", "addr", "add",
                                 subnet + ".2/24", "dev", inside],
                                ["ip", "netns", "exec", namespace, "ip", "link", "set", inside,
                                 "up"],
                                ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo",
                                 "up"]):
                    result = subprocess.run(command, capture_output=True, text=True)
                    if result.returncode != 0:
                        self.skipTest("cannot set up network namespaces here: %s: %s"
                                      % (" ".join(command), result.stderr.strip()))
                hosts.append(subnet + ".2")
            cluster = Cluster(2, split_threshold=SPLIT_THRESHOLD, hosts=hosts,
                              wrappers=[["ip", "netns", "exec", n] for n in namespaces])
            name = self.name()
            body = model_body({"name": "Adam", "lr": 0.01})
            router = Router(cluster.shard_map, cluster.servers)
            router.create(name, body)
            status, _, _, raw = self.single.request("PUT", "/v1/models/" + name, body)
            self.assertEqual(status, 201, raw)
            for step in range(3):
                router.push(name, gradients(body, 0, step))
                single_server_push(self.single, name, gradients(body, 0, step))
            self.assert_same_weights(router, name)
        finally:
            if cluster is not None:
                self.assertEqual(cluster.stop(), [0, 0])
            for namespace in namespaces:
                subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


if __name__ == "__main__":
    unittest.main()
