#!/usr/bin/python3
"""The Python client against a sharded service: three real shards and one
single server.  Placement learned by LOOKUP (and over HTTP) follows the
documented rule; split tensors are reassembled; every push through the
shards gives bit-for-bit the weights one server computes (async, clipped by
the total norm with the client's global grad_norm, sync with three
workers); each shard is sent its own version; stale maps raise
StaleShardMap naming both versions.
"""

import json
import os
import sys
import unittest

import numpy as np

from cluster import ClusterTestCase, write_shard_map
from common import run_concurrently

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "client", "python"))
import paramd  # noqa: E402

TIMEOUT = 60.0
SHAPES = [("embedding", [50, 4]), ("fc.weight", [8, 9]), ("fc.bias", [8]), ("scale", [])]


def model_body(optimizer, **extra):
    document = {"optimizer": optimizer,
                "tensors": [{"name": n, "shape": s, "init": {"name": "uniform", "a": -1, "b": 1,
                                                             "seed": i + 3}}
                            for i, (n, s) in enumerate(SHAPES)]}
    document.update(extra)
    return document


def gradients(rng, names=None):
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES
            if names is None or n in names}


class ShardedClientTests(ClusterTestCase):

    def sharded(self, **kwargs):
        client = paramd.Client(shard_map=self.cluster.map_path, timeout=TIMEOUT, **kwargs)
        self.addCleanup(client.close)
        return client

    def one(self):
        client = paramd.Client("127.0.0.1:%d" % self.single.tcp_port, timeout=TIMEOUT)
        self.addCleanup(client.close)
        return client

    def assert_same(self, sharded, single, name):
        a, b = sharded.pull(name), single.pull(name)
        self.assertEqual(sorted(a), sorted(b))
        for tensor in a:
            self.assertEqual(a[tensor].shape, b[tensor].shape)
            self.assertEqual(a[tensor].tobytes(), b[tensor].tobytes(),
                             "tensor %s differs between the shards and one server" % tensor)

    # -- placement ------------------------------------------------------------------

    def test_placement_is_learned_from_the_shards(self):
        for transport in ("tcp", "http"):
            client = self.sharded(transport=transport)
            name = self.name("_" + transport)
            description = client.create(name, model_body({"name": "AdamW"}))
            self.assertEqual([t["name"] for t in description["tensors"]], [n for n, _ in SHAPES])
            self.assertEqual(description["parameters"], 200 + 72 + 8 + 1)
            placement = client.placement(name)
            for tensor, shape in SHAPES:
                count = int(np.prod(shape))
                expected = self.cluster.shard_map.placement(name, tensor, count)
                self.assertEqual(placement[tensor].pieces, expected, tensor)
                self.assertEqual(placement[tensor].shape, tuple(shape))
            self.assertEqual(len(placement["embedding"].pieces), 3)
            self.assertEqual(len(placement["fc.weight"].pieces), 3)
            self.assertEqual(len(placement["fc.bias"].pieces), 1)

    def test_whole_tensor_optimizers_stay_whole(self):
        client = self.sharded()
        name = self.name()
        client.create(name, model_body({"name": "LAMB"}))
        for tensor, shape in SHAPES:
            pieces = client.placement(name)[tensor].pieces
            self.assertEqual(len(pieces), 1, tensor)
            self.assertEqual(pieces, self.cluster.shard_map.placement(
                name, tensor, int(np.prod(shape)), whole=True))
        single = self.one()
        single.create(name, model_body({"name": "LAMB"}))
        rng = np.random.default_rng(4)
        for _ in range(3):
            grads = gradients(rng)
            client.pushpull(name, grads)
            single.pushpull(name, grads)
        self.assert_same(client, single, name)

    # -- equality with one server ----------------------------------------------------

    def test_async_pushes_equal_one_server(self):
        for transport in ("tcp", "http"):
            name = self.name("_" + transport)
            body = model_body({"name": "Adam", "lr": 0.01, "weight_decay": 0.1})
            client, single = self.sharded(transport=transport), self.one()
            client.create(name, body)
            single.create(name, body)
            rng = np.random.default_rng(5)
            for step in range(4):
                grads = gradients(rng, None if step % 2 == 0 else ["embedding", "fc.bias"])
                a = client.pushpull(name, grads, dtype="float16" if step == 3 else None)
                b = single.pushpull(name, grads, dtype="float16" if step == 3 else None)
                for tensor in grads:
                    self.assertEqual(a.weights[tensor].tobytes(), b.weights[tensor].tobytes(),
                                     "%s %s step %d" % (transport, tensor, step))
            self.assert_same(client, single, name)
            self.assertEqual(client.pull(name, dtype="bfloat16")["embedding"].tobytes(),
                             single.pull(name, dtype="bfloat16")["embedding"].tobytes())

    def test_total_norm_clipping_uses_the_clients_global_norm(self):
        """The client computes the push's global norm exactly as one server
        computes it, and sends it to every shard: the weights equal one
        server's, which computed the norm itself."""
        for norm_type in (2, 1, "inf"):
            name = self.name("_%s" % norm_type)
            body = model_body({"name": "SGD", "lr": 0.5, "momentum": 0.9},
                              clip={"max_norm": 1.0, "norm_type": norm_type})
            client, single = self.sharded(), self.one()
            client.create(name, body)
            single.create(name, body)
            rng = np.random.default_rng(6)
            for step in range(3):
                # The last push reaches one shard only, which still needs the norm.
                grads = gradients(rng, ["fc.bias"] if step == 2 else None)
                a = client.pushpull(name, grads)
                b = single.pushpull(name, grads)
                self.assertEqual(a.grad_norm, b.grad_norm)
                self.assertEqual(a.sent_grad_norm, b.grad_norm)
                norms = [float(np.linalg.norm(g.reshape(-1).astype(np.float64),
                                              np.inf if norm_type == "inf" else norm_type))
                         for g in grads.values()]
                expected = np.linalg.norm(norms, np.inf if norm_type == "inf" else norm_type)
                self.assertAlmostEqual(a.grad_norm, expected, delta=1e-9 * expected)
            self.assert_same(client, single, name)

    def test_sync_workers_equal_the_single_server_average(self):
        body = model_body({"name": "SGD", "lr": 0.1, "momentum": 0.5},
                          consistency={"mode": "sync", "workers": 3, "timeout": 60})
        name = self.name()
        setup = self.sharded()
        setup.create(name, body)
        self.one().create(name, body)
        def worker(index, make_client):
            with make_client() as client:
                rng = np.random.default_rng(100 + index)
                for _ in range(4):
                    result = client.pushpull(name, gradients(rng), worker="w%d" % index,
                                             version="auto")
                    if len(set(result.steps.values())) != 1:
                        return "shards at different steps: %r" % result.steps

        for make_client in (lambda: paramd.Client(shard_map=self.cluster.map_path, timeout=TIMEOUT),
                            lambda: paramd.Client("127.0.0.1:%d" % self.single.tcp_port,
                                                  timeout=TIMEOUT)):
            self.assertEqual(run_concurrently([lambda i=i: worker(i, make_client)
                                               for i in range(3)]), [])
        self.assert_same(setup, self.one(), name)
        self.assertEqual(setup.describe(name)["step"], 4)

    def test_each_shard_gets_its_own_version(self):
        client = self.sharded()
        name = self.name()
        client.create(name, model_body({"name": "SGD", "lr": 0.1}))
        bias_shard = client.placement(name)["fc.bias"].pieces[0][0]
        rng = np.random.default_rng(7)
        for _ in range(3):     # only fc.bias's shard steps
            client.pushpull(name, gradients(rng, ["fc.bias"]), worker="w", version="auto")
        client.pushpull(name, gradients(rng), worker="w", version="auto")
        shards = client.describe(name)["shards"]
        for shard, description in shards.items():
            seen = description["consistency"]["seen_workers"]["w"]
            self.assertEqual(seen["last_version"], 3 if shard == bias_shard else 0, shard)
            self.assertEqual(seen["staleness"], 0)
            self.assertEqual(description["step"], 4 if shard == bias_shard else 1)

    def test_pipelined_pushes_to_every_shard(self):
        client, single = self.sharded(), self.one()
        name = self.name()
        body = model_body({"name": "RMSprop", "lr": 0.01})
        client.create(name, body)
        single.create(name, body)
        rng = np.random.default_rng(8)
        batches = [gradients(rng) for _ in range(100)]
        pending = [client.pushpull_async(name, g) for g in batches]
        for g in batches:
            single.push(name, g)
        results = [p.result() for p in pending]
        self.assertEqual([r.step for r in results], list(range(1, 101)))
        self.assertEqual(results[-1].steps, {0: 100, 1: 100, 2: 100})
        self.assert_same(client, single, name)

    def test_large_split_tensor(self):
        client, single = self.sharded(), self.one()
        name = self.name()
        body = {"optimizer": {"name": "AdamW"},
                "tensors": [{"name": "big", "shape": [1000, 1000],
                             "init": {"name": "normal", "seed": 9}}]}
        client.create(name, body)
        single.create(name, body)
        grad = np.random.default_rng(9).standard_normal((1000, 1000)).astype(np.float32)
        a = client.pushpull(name, {"big": grad})
        b = single.pushpull(name, {"big": grad})
        self.assertEqual(a.weights["big"].tobytes(), b.weights["big"].tobytes())
        self.assertEqual(len(client.placement(name)["big"].pieces), 3)

    # -- errors -----------------------------------------------------------------------

    def test_create_conflict_and_delete_everywhere(self):
        client = self.sharded()
        name = self.name()
        client.create(name, model_body({"name": "SGD", "lr": 0.1}))
        with self.assertRaises(paramd.ModelExists):
            client.create(name, model_body({"name": "SGD", "lr": 0.1}))
        self.assertEqual(client.list()["models"][[m["name"] for m in client.list()["models"]]
                                                 .index(name)]["shards"], 3)
        client.delete(name)
        for server in self.cluster.servers:
            status, _, _, _ = server.request("GET", "/v1/models/" + name)
            self.assertEqual(status, 404)

    def test_single_address_client_of_a_shard_gets_stale_shard_map(self):
        client = self.sharded()
        name = self.name()
        client.create(name, model_body({"name": "SGD", "lr": 0.1}))
        lone = paramd.Client(self.cluster.addresses[0][1], timeout=TIMEOUT)
        self.addCleanup(lone.close)
        with self.assertRaises(paramd.StaleShardMap) as caught:
            lone.pushpull(name, {"embedding": np.zeros((50, 4))})
        failure = caught.exception
        self.assertEqual((failure.client_version, failure.server_version), (None, 1))
        self.assertIn("shard map version 1", str(failure))
        self.assertEqual(failure.code, -22)

    def test_stale_map_names_both_versions(self):
        """A map of version 5 whose shards 0 and 1 changed places: the
        servers refuse the ranges, and the error names both versions."""
        client = self.sharded()
        name = self.name()
        client.create(name, model_body({"name": "SGD", "lr": 0.1}))
        addresses = list(self.cluster.addresses)
        addresses[0], addresses[1] = addresses[1], addresses[0]
        path = os.path.join(self.cluster.directory, "stale-map.json")
        write_shard_map(path, 5, self.SPLIT_THRESHOLD, addresses)
        stale = paramd.Client(shard_map=path, timeout=TIMEOUT)
        self.addCleanup(stale.close)
        with self.assertRaises(paramd.StaleShardMap) as caught:
            stale.pushpull(name, {"embedding": np.zeros((50, 4))})
        failure = caught.exception
        self.assertEqual((failure.client_version, failure.server_version), (5, 1))
        self.assertIn("shard map version 5", str(failure))
        self.assertIn("shard map version 1", str(failure))
        # A push is not atomic across shards: shard 2, where the map was
        # right, applied its range.
        self.assertEqual(failure.applied_on, [2])
        self.assertEqual(sorted(failure.shard_errors), [0, 1])
        # Reloading the right map fixes it.
        with open(self.cluster.map_path) as handle:
            stale.reload_shard_map(json.load(handle))
        self.assertEqual(stale.pushpull(name, {"embedding": np.zeros((50, 4))}).steps,
                         {0: 1, 1: 1, 2: 2})


if __name__ == "__main__":
    unittest.main()
