#!/usr/bin/python3
"""Checkpoints against the real server: SIGTERM writes them and a restart
restores them exactly; the on-demand routes; deletion; kill -9 at random
moments of a checkpointed training run, many times over; flipped bytes and
truncated files (fallback to .prev, or refusal to start).

Every comparison reads the checkpoint file with safetensors_reader.py (an
independent reader that checks the CRC itself) and compares it with what
the restarted server returns from GET /weights, GET /state and GET
/v1/models/{model}, and with a fresh checkpoint the restarted server writes
before any push (which also covers the accumulation buffers and schedule
state that the API does not return).
"""

import base64
import json
import os
import random
import shutil
import signal
import tempfile
import threading
import time
import unittest

from harness import Server, ServerStartError, b64_floats, f32, floats_from_b64
from safetensors_reader import CheckpointError, read_checkpoint

RICH_MODEL = {
    "optimizer": {"name": "AdamW", "lr": 0.01, "weight_decay": 0.01},
    "param_groups": [{"tensors": ["b"], "weight_decay": 0.0}],
    "schedule": {"name": "StepLR", "step_size": 3, "gamma": 0.5},
    "loss_scale": {"init_scale": 1024, "growth_interval": 3},
    "accumulate": 2,
    "grad_noise": {"eta": 0.001, "seed": 11},
    "tensors": [{"name": "w", "shape": [64, 32], "init": {"name": "normal", "std": 0.1, "seed": 1}},
                {"name": "b", "shape": [32]}],
}

FACTORED_MODEL = {
    "optimizer": {"name": "Adafactor", "lr": 0.01},
    "tensors": [{"name": "m", "shape": [16, 8], "init": {"name": "normal", "std": 0.5, "seed": 2}}],
}


def gradient(count, seed):
    rng = random.Random(seed)
    return [rng.uniform(-0.1, 0.1) for _ in range(count)]


def push(client, name, shapes, seed, loss=None):
    grads = {}
    for tensor, count in shapes.items():
        grads[tensor] = b64_floats(gradient(count, seed * 1000 + len(tensor)))
    body = {"grads": grads}
    if loss is not None:
        body["loss"] = loss
    status, _, parsed, raw = client.request("POST", "/v1/models/%s/push" % name, body)
    if status != 200:
        raise AssertionError("push %s: %s %s" % (name, status, raw[:500]))
    return parsed


def counts_of(description):
    shapes = {}
    for tensor in description["tensors"]:
        shapes[tensor["name"]] = tensor["numel"]
    return shapes


class CheckpointCase(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="paramd-checkpoint-test-")
        self.servers = []

    def tearDown(self):
        for server in self.servers:
            server.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def start(self, *extra):
        server = Server(list(extra), data_dir=self.directory)
        self.servers.append(server)
        return server

    def create(self, server, name, body):
        status, _, parsed, raw = server.request("PUT", "/v1/models/" + name, body)
        self.assertEqual(status, 201, raw[:1000])
        return parsed

    def path(self, name, suffix=".safetensors"):
        return os.path.join(self.directory, name + suffix)

    def raw_floats(self, server, path):
        status, _, parsed, raw = server.request("GET", path)
        self.assertEqual(status, 200, raw[:1000])
        return parsed

    def assert_server_matches(self, server, name, checkpoint):
        """The restarted server holds exactly what `checkpoint` recorded."""
        training = checkpoint.training
        status, _, description, raw = server.request("GET", "/v1/models/" + name)
        self.assertEqual(status, 200, raw[:1000])
        self.assertEqual(description["step"], training["step"])
        steps = {t["name"]: t["step"] for t in description["tensors"]}
        for record in training["tensors"]:
            tensor = record["name"]
            self.assertEqual(steps[tensor], record["step"], tensor)
            weights = self.raw_floats(server, "/v1/models/%s/weights?tensors=%s&encoding=b64" % (name, tensor))
            self.assertEqual(floats_from_b64(weights["weights"][tensor]).tobytes(),
                             checkpoint.tensors[tensor].tobytes(), "weights of " + tensor)
            for slot in record["state"]:
                state = self.raw_floats(server, "/v1/models/%s/state?slot=%s&tensors=%s&encoding=b64"
                                        % (name, slot, tensor))
                self.assertEqual(floats_from_b64(state["state"][tensor]).tobytes(),
                                 checkpoint.tensors[tensor + "@" + slot].tobytes(),
                                 "%s of %s" % (slot, tensor))
        if "loss_scale" in training:
            self.assertEqual(f32(description["loss_scale"]["scale"]), training["loss_scale"]["scale"])
            self.assertEqual(description["loss_scale"]["growth_tracker"],
                             training["loss_scale"]["growth_tracker"])
        if "schedules" in training:
            self.assertAlmostEqual(description["lr"], training["schedules"][0]["group"]["lr"], delta=1e-8 * abs(description["lr"]))
        # Everything else (accumulation buffers, schedule state, noise draws):
        # a checkpoint of the restarted server equals the one it loaded.
        status, _, info, raw = server.request("POST", "/v1/models/%s/checkpoint" % name)
        self.assertEqual(status, 200, raw[:1000])
        self.assertEqual(info["step"], training["step"])
        again = read_checkpoint(self.path(name))
        self.assertEqual(again.training, training)
        self.assertEqual(again.config, checkpoint.config)
        self.assertEqual(sorted(again.tensors), sorted(checkpoint.tensors))
        for key, values in checkpoint.tensors.items():
            self.assertEqual(again.tensors[key].tobytes(), values.tobytes(), key)
            self.assertEqual(again.shapes[key], checkpoint.shapes[key], key)


class CheckpointTests(CheckpointCase):
    def test_sigterm_writes_and_restart_restores(self):
        server = self.start("--checkpoint-interval", "0")
        self.create(server, "rich", RICH_MODEL)
        self.create(server, "factored", FACTORED_MODEL)
        with server.client() as client:
            for k in range(7):
                push(client, "rich", {"w": 64 * 32, "b": 32}, k, loss=1.0 / (k + 1))
                push(client, "factored", {"m": 128}, k)
        before = {name: server.request("GET", "/v1/models/%s/weights?encoding=b64" % name)[2]
                  for name in ("rich", "factored")}
        self.assertEqual(server.stop(signal.SIGTERM), 0)
        self.assertIn("checkpoint of model \"rich\" written", server.log_text())
        files = sorted(os.listdir(self.directory))
        self.assertIn("rich.safetensors", files)
        self.assertIn("factored.safetensors", files)
        self.assertFalse([f for f in files if f.endswith(".tmp")], files)
        rich = read_checkpoint(self.path("rich"))
        self.assertEqual(rich.metadata["format"], "paramd-checkpoint")
        self.assertEqual(rich.training["step"], 3)  # 7 pushes, accumulate 2
        self.assertEqual(rich.shapes["w"], [64, 32])
        self.assertIn("w@exp_avg_sq", rich.tensors)
        self.assertIn("w@accumulated", rich.tensors)
        self.assertEqual(rich.config["accumulate"]["steps"], 2)
        factored = read_checkpoint(self.path("factored"))
        # Adafactor's factored second moments are shorter than the tensor.
        lengths = sorted(len(v) for k, v in factored.tensors.items() if k.startswith("m@"))
        self.assertLess(lengths[0], 128)

        server = self.start()
        self.assertIn("restored from", server.wait_for_log("model \"rich\" restored", 10))
        self.assertIn(" listening: ", server.log_lines[0])  # still the first line
        for name, checkpoint in (("rich", rich), ("factored", factored)):
            after = server.request("GET", "/v1/models/%s/weights?encoding=b64" % name)[2]
            self.assertEqual(after["weights"], before[name]["weights"])
            self.assertEqual(after["step"], before[name]["step"])
            self.assert_server_matches(server, name, checkpoint)
        # Training goes on from there.
        with server.client() as client:
            reply = push(client, "rich", {"w": 64 * 32, "b": 32}, 99)
            self.assertEqual(reply["step"], 4)
        self.assertEqual(server.stop(), 0)

    def test_numpy_snippet_in_the_docs_reads_a_checkpoint(self):
        try:
            import numpy  # noqa: F401  (Debian's python3-numpy)
        except ImportError:
            self.skipTest("numpy is not installed")
        server = self.start("--checkpoint-interval", "0")
        self.create(server, "np", RICH_MODEL)
        with server.client() as client:
            push(client, "np", {"w": 64 * 32, "b": 32}, 1)
            push(client, "np", {"w": 64 * 32, "b": 32}, 2)
        self.assertEqual(server.stop(), 0)
        docs = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "API.md")).read()
        start = docs.index("import json, struct, numpy as np")
        snippet = docs[start:docs.index("```", start)].replace('"var/demo.safetensors"', repr(self.path("np")))
        snippet = snippet.replace("print(", "result = (")
        scope = {}
        exec(snippet, scope)
        tensors, config, training = scope["tensors"], scope["config"], scope["training"]
        checkpoint = read_checkpoint(self.path("np"))
        self.assertEqual(training, checkpoint.training)
        self.assertEqual(config, checkpoint.config)
        self.assertEqual(sorted(tensors), sorted(checkpoint.tensors))
        for key, values in checkpoint.tensors.items():
            self.assertEqual(list(tensors[key].shape), checkpoint.shapes[key])
            self.assertEqual(tensors[key].tobytes(), values.tobytes(), key)

    def test_on_demand_routes_and_delete(self):
        server = self.start("--checkpoint-interval", "0")
        self.create(server, "one", FACTORED_MODEL)
        self.create(server, "two", FACTORED_MODEL)
        # A name that looks like another model's previous checkpoint.
        self.create(server, "one.prev", RICH_MODEL)
        status, headers, info, raw = server.request("POST", "/v1/models/one/checkpoint")
        self.assertEqual(status, 200, raw)
        self.assertEqual(info["model"], "one")
        self.assertEqual(info["file"], self.path("one"))
        self.assertEqual(info["bytes"], os.path.getsize(self.path("one")))
        self.assertGreaterEqual(info["seconds"], info["snapshot_seconds"])
        self.assertFalse(os.path.exists(self.path("two")))
        status, _, info, raw = server.request("POST", "/v1/checkpoint")
        self.assertEqual(status, 200, raw)
        self.assertEqual(sorted(c["model"] for c in info["checkpoints"]), ["one", "one.prev", "two"])
        self.assertEqual(info["errors"], [])
        self.assertTrue(os.path.exists(self.path("one", ".safetensors.prev")))
        status, _, error, _ = server.request("POST", "/v1/models/nothere/checkpoint")
        self.assertEqual((status, error["error"]["code"]), (404, "model_not_found"))
        status, _, error, _ = server.request("GET", "/v1/models/one/checkpoint")
        self.assertEqual(status, 405)
        # The stats show the checkpoint.
        stats = server.request("GET", "/v1/models/one/stats")[2]
        self.assertEqual(stats["checkpoint"]["written"], 2)
        self.assertGreater(stats["checkpoint"]["last_time"], time.time() - 60)
        # A deleted model's files go, so it does not come back.
        self.assertEqual(server.request("DELETE", "/v1/models/two")[0], 204)
        self.assertFalse(os.path.exists(self.path("two")))
        self.assertEqual(server.stop(), 0)
        server = self.start()
        models = [m["name"] for m in server.request("GET", "/v1/models")[2]["models"]]
        self.assertEqual(models, ["one", "one.prev"])
        self.assertEqual(server.request("GET", "/v1/models/one.prev")[2]["optimizer"]["name"], "AdamW")
        self.assertEqual(server.stop(), 0)

    def test_periodic_checkpoints_skip_unchanged_models(self):
        server = self.start("--checkpoint-interval", "0.2")
        self.create(server, "p", FACTORED_MODEL)
        self.assertIsNotNone(server.wait_for_log("checkpoint of model \"p\" written", 10))
        time.sleep(1.0)
        written = server.log_text().count("checkpoint of model \"p\" written")
        self.assertEqual(written, 1, "an unchanged model was written again")
        with server.client() as client:
            push(client, "p", {"m": 128}, 1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and read_checkpoint(self.path("p")).training["step"] != 1:
            time.sleep(0.05)
        self.assertEqual(read_checkpoint(self.path("p")).training["step"], 1)
        self.assertEqual(server.stop(), 0)


class ShardCheckpointTests(CheckpointCase):
    """A shard checkpoints the part of each model it holds, restores it with
    the same placement, and refuses a checkpoint of another shard or map."""

    def shard_map(self, version):
        path = self.directory + "-map%d.json" % version
        with open(path, "w") as stream:
            json.dump({"version": version, "split_threshold": 64,
                       "shards": [{"id": 0, "http": "127.0.0.1:1"}, {"id": 1, "http": "127.0.0.1:2"}]}, stream)
        self.addCleanup(os.unlink, path)
        return path

    def test_shard_restores_its_part(self):
        map1 = self.shard_map(1)
        server = self.start("--shard-map", map1, "--shard-id", "0")
        body = {"optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9},
                "tensors": [{"name": "big", "shape": [16, 8], "init": {"name": "normal", "std": 1, "seed": 4}},
                            {"name": "a", "shape": [3], "values": [1, 2, 3]},
                            {"name": "b", "shape": [2], "values": [4, 5]},
                            {"name": "c", "shape": [2], "values": [6, 7]}]}
        created = self.create(server, "sharded", body)
        before = server.request("GET", "/v1/models/sharded/weights?encoding=b64")[2]
        self.assertEqual(server.stop(), 0)
        checkpoint = read_checkpoint(self.path("sharded"))
        self.assertEqual(checkpoint.training["shard"], {"id": 0, "shard_map_version": 1})
        self.assertEqual([t["name"] for t in checkpoint.config["tensors"]], ["big", "a", "b", "c"])
        self.assertEqual(checkpoint.shapes["big"], [64])  # this shard's half, 1-D
        server = self.start("--shard-map", map1, "--shard-id", "0")
        self.assertEqual(server.request("GET", "/v1/models/sharded")[2]["tensors"], created["tensors"])
        after = server.request("GET", "/v1/models/sharded/weights?encoding=b64")[2]
        self.assertEqual(after, before)
        self.assertEqual(server.stop(), 0)
        for extra in (("--shard-map", map1, "--shard-id", "1"),
                      ("--shard-map", self.shard_map(2), "--shard-id", "0"), ()):
            with self.assertRaises(ServerStartError) as raised:
                self.start(*extra)
            self.assertIn("written by shard 0 of shard map version 1", str(raised.exception))


class CrashTests(CheckpointCase):
    KILLS = 24

    def test_kill_9_at_random_moments(self):
        """kill -9 during a checkpointed training run, again and again: each
        restart holds exactly the last complete checkpoint."""
        rng = random.Random(8)
        shapes = {"w": 256 * 128, "b": 128}
        model = dict(RICH_MODEL)
        model["tensors"] = [{"name": "w", "shape": [256, 128], "init": {"name": "normal", "std": 0.1, "seed": 1}},
                            {"name": "b", "shape": [128]}]
        server = self.start("--checkpoint-interval", "0.05")
        self.create(server, "crash", model)
        steps, leftovers = [], 0
        seed = 0
        for kill in range(self.KILLS):
            stop = threading.Event()
            pushed = [0]

            def train(port=server.port, host=server.host):
                from harness import KeepAliveClient
                nonlocal seed
                try:
                    with KeepAliveClient(host, port, timeout=10) as client:
                        while not stop.is_set():
                            seed += 1
                            push(client, "crash", shapes, seed, loss=1.0)
                            pushed[0] += 1
                except Exception:
                    pass  # the server was killed under us

            thread = threading.Thread(target=train)
            thread.start()
            time.sleep(rng.uniform(0.15, 0.8))
            server.kill()          # SIGKILL, no final checkpoint
            stop.set()
            thread.join(20)
            leftovers += len([f for f in os.listdir(self.directory) if f.endswith(".tmp")])
            # The file on disk is always a complete, valid checkpoint.
            try:
                checkpoint = read_checkpoint(self.path("crash"))
            except (CheckpointError, FileNotFoundError) as error:
                raise AssertionError("after kill %d: %s" % (kill, error))
            server = self.start("--checkpoint-interval", "0.05")
            self.assertIsNone(server.wait_for_log("PREVIOUS|damaged", 0.1), server.log_text())
            self.assert_server_matches(server, "crash", checkpoint)
            steps.append(checkpoint.training["step"])
        self.assertEqual(server.stop(), 0)
        self.assertEqual(steps, sorted(steps), "a restart went back in time")
        self.assertGreater(steps[-1], steps[0], "no training was checkpointed")
        print("\n    kill -9 x%d: checkpointed steps %s; %d incomplete temporary files left by kills"
              % (self.KILLS, steps, leftovers))


class DamageTests(CheckpointCase):
    def two_checkpoints(self):
        server = self.start("--checkpoint-interval", "0")
        self.create(server, "d", FACTORED_MODEL)
        with server.client() as client:
            push(client, "d", {"m": 128}, 1)
            self.assertEqual(server.request("POST", "/v1/models/d/checkpoint")[0], 200)
            push(client, "d", {"m": 128}, 2)
            self.assertEqual(server.request("POST", "/v1/models/d/checkpoint")[0], 200)
        server.kill()
        previous = read_checkpoint(self.path("d", ".safetensors.prev"))
        self.assertEqual(previous.training["step"], 1)
        self.assertEqual(read_checkpoint(self.path("d")).training["step"], 2)
        return previous

    def flip(self, path, offset):
        with open(path, "r+b") as stream:
            data = bytearray(stream.read())
            data[offset % len(data)] ^= 0x01
            stream.seek(0)
            stream.write(data)

    def test_flipped_data_byte_falls_back_to_prev(self):
        previous = self.two_checkpoints()
        self.flip(self.path("d"), -3)  # inside the last tensor's data
        with self.assertRaises(CheckpointError):
            read_checkpoint(self.path("d"))
        server = self.start()
        line = server.wait_for_log("is damaged", 5)
        self.assertIn(self.path("d"), line)
        self.assertIn("checksum mismatch", line)
        self.assertIn("PREVIOUS", server.wait_for_log("restored from the PREVIOUS", 5))
        self.assertTrue(os.path.exists(self.path("d", ".safetensors.corrupt")))
        self.assert_server_matches(server, "d", previous)
        self.assertEqual(server.stop(), 0)

    def test_flipped_header_byte_falls_back_to_prev(self):
        previous = self.two_checkpoints()
        self.flip(self.path("d"), 40)
        server = self.start()
        self.assertIsNotNone(server.wait_for_log("restored from the PREVIOUS", 5), server.log_text())
        self.assert_server_matches(server, "d", previous)
        self.assertEqual(server.stop(), 0)

    def test_truncated_file_falls_back_to_prev(self):
        previous = self.two_checkpoints()
        size = os.path.getsize(self.path("d"))
        os.truncate(self.path("d"), size // 2)
        server = self.start()
        self.assertIsNotNone(server.wait_for_log("restored from the PREVIOUS", 5), server.log_text())
        self.assert_server_matches(server, "d", previous)
        self.assertEqual(server.stop(), 0)

    def test_both_damaged_refuses_to_start(self):
        self.two_checkpoints()
        self.flip(self.path("d"), -1)
        os.truncate(self.path("d", ".safetensors.prev"), 7)
        with self.assertRaises(ServerStartError) as raised:
            self.start()
        message = str(raised.exception)
        self.assertIn("refusing to start", message)
        self.assertIn(self.path("d"), message)
        self.assertIn(self.path("d", ".safetensors.prev"), message)
        self.assertIn("exit status 1", message)
        # Nothing was changed: both files are still there for the operator.
        self.assertTrue(os.path.exists(self.path("d")))
        self.assertTrue(os.path.exists(self.path("d", ".safetensors.prev")))


if __name__ == "__main__":
    unittest.main()
