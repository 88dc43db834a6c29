#!/usr/bin/python3
"""GET /metrics scraped by a real Prometheus server (Debian's prometheus
package) and linted by its promtool; GET /v1/models/{model}/stats and
/history against the real server.

The Prometheus test starts `prometheus` on a free loopback port with a
generated configuration that scrapes paramd every second, then reads the
series back through Prometheus' HTTP query API (/api/v1/query).
"""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from common import ServerTestCase
from harness import b64_floats

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "client", "python"))
from paramd import protocol as wire  # noqa: E402

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
MODEL = {
    "optimizer": {"name": "AdamW", "lr": 0.01},
    "clip": {"max_norm": 100.0},
    "loss_scale": "dynamic",
    "tensors": [{"name": "w", "shape": [8, 4], "init": {"name": "normal", "std": 0.1, "seed": 1}},
                {"name": "b", "shape": [4]}],
}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tcp_hello_and_list(port):
    """One HELLO and one LIST over the binary protocol."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        for request in (wire.encode_hello(1, client="test_metrics"),
                        wire.frame(wire.LIST, 2)):
            connection.sendall(request)
            header = wire.parse_header(connection.recv(wire.HEADER_SIZE, socket.MSG_WAITALL))
            if header.length:
                connection.recv(header.length, socket.MSG_WAITALL)


class MetricsTests(ServerTestCase):
    SERVER_ARGS = ("--stats-sample-ms", "0", "--checkpoint-interval", "0")

    def train(self, name, pushes):
        scale = 65536.0
        with self.server.client() as client:
            for k in range(pushes):
                grads = {"w": b64_floats([scale * 0.01 * ((i + k) % 5 - 2) for i in range(32)]),
                         "b": b64_floats([scale * 0.02] * 4)}
                status, _, reply, raw = client.request(
                    "POST", "/v1/models/%s/push" % name, {"grads": grads, "loss": 2.0 / (k + 1)})
                self.assertEqual(status, 200, raw[:500])
                scale = reply["loss_scale"]
        return reply

    def test_exposition_passes_promtool(self):
        name = self.model_name()
        self.create_model(name, MODEL)
        self.train(name, 3)
        self.request("GET", "/v1/models/%s/weights?tensors=nothere" % name)  # a 404
        status, headers, _, raw = self.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        text = raw.decode("utf-8")
        for family in ("paramd_requests_total", "paramd_push_duration_seconds",
                       "paramd_received_bytes_total", "paramd_sent_bytes_total",
                       "paramd_updates_applied_total", "paramd_rejected_gradients_total",
                       "paramd_model_step", "paramd_model_lr", "paramd_model_loss",
                       "paramd_model_loss_ema", "paramd_model_grad_norm", "paramd_model_update_ratio",
                       "paramd_push_staleness_steps", "paramd_checkpoint_duration_seconds",
                       "paramd_checkpoint_last_success_timestamp_seconds", "paramd_build_info"):
            self.assertIn("# TYPE %s " % family, text)
        self.assertIn('paramd_requests_total{transport="http",operation="pull",status="tensor_not_found"} 1', text)
        self.assertIn('paramd_model_step{model="%s"} 3' % name, text)
        self.assertIn('paramd_push_staleness_steps_count{model="%s"} 0' % name, text)
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=raw, capture_output=True, timeout=60)
        self.assertEqual(lint.returncode, 0, lint.stdout.decode() + lint.stderr.decode())

    def test_stats_and_history(self):
        name = self.model_name()
        self.create_model(name, MODEL)
        reply = self.train(name, 4)
        status, _, stats, raw = self.request("GET", "/v1/models/%s/stats" % name)
        self.assertEqual(status, 200, raw)
        self.assertEqual(stats["step"], reply["step"])
        self.assertEqual(stats["loss"], 0.5)
        self.assertEqual(stats["grad_norm_source"], "clip")
        self.assertGreater(stats["grad_norm"], 0)
        self.assertGreater(stats["update_ratio"], 0)
        tensors = {t["name"]: t for t in stats["tensors"]}
        self.assertEqual(sorted(tensors), ["b", "w"])
        w = tensors["w"]
        weights = self.weights(name)["weights"]["w"]
        self.assertAlmostEqual(w["weight_norm"], math.sqrt(sum(v * v for v in weights)), places=5)
        self.assertEqual(sorted(w["state"]), ["exp_avg", "exp_avg_sq"])
        self.assertEqual(w["state"]["exp_avg"]["length"], 32)
        self.assertGreaterEqual(w["state"]["exp_avg_sq"]["min"], 0)
        self.assertGreater(w["update_norm"], 0)
        self.assertEqual(w["sampled_step"], 4)
        # The history gains a point a second.
        time.sleep(2.5)
        status, _, history, raw = self.request("GET", "/v1/models/%s/history" % name)
        self.assertEqual(status, 200, raw)
        points = history["points"]
        self.assertGreaterEqual(len(points["time_ms"]), 2)
        self.assertGreater(points["time_ms"][-1], points["time_ms"][0])
        self.assertEqual(points["loss"][-1], 0.5)
        self.assertEqual(points["step"][-1], reply["step"])
        for series in ("lr", "loss_ema", "grad_norm", "update_ratio", "pushes_per_second", "staleness"):
            self.assertEqual(len(points[series]), len(points["time_ms"]), series)
        later = self.request("GET", "/v1/models/%s/history?since=%d" % (name, points["time_ms"][-2]))[2]
        self.assertEqual(later["points"]["time_ms"][0], points["time_ms"][-1])
        status, _, error, _ = self.request("GET", "/v1/models/%s/history?since=yesterday" % name)
        self.assertEqual((status, error["error"]["code"]), (400, "bad_request"))
        self.assertEqual(self.request("GET", "/v1/models/nothere/stats")[0], 404)

    def test_spectral_norm_estimate(self):
        """/stats gives each 2-D tensor's largest singular value by power
        iteration: numpy's np.linalg.norm(w, 2) to 1e-4."""
        import numpy
        generator = numpy.random.RandomState(3)
        matrices = {"tall": generator.standard_normal((30, 8)),
                    "wide": generator.standard_normal((5, 40)),
                    "diagonal": numpy.diag([3.0, 2.0, 1.0])}
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 0.1},
                                 "tensors": [{"name": n, "shape": list(m.shape),
                                              "values": [float(v) for v in
                                                         m.astype(numpy.float32).ravel()]}
                                             for n, m in matrices.items()]
                                 + [{"name": "vector", "shape": [4]}]})
        status, _, stats, raw = self.request("GET", "/v1/models/%s/stats" % name)
        self.assertEqual(status, 200, raw)
        by_name = {t["name"]: t for t in stats["tensors"]}
        for n, m in matrices.items():
            expected = numpy.linalg.norm(m.astype(numpy.float32).astype(numpy.float64), 2)
            self.assertAlmostEqual(by_name[n]["spectral_norm"] / expected, 1.0, delta=1e-4,
                                   msg="%s: %r vs %r" % (n, by_name[n]["spectral_norm"], expected))
            self.assertGreater(by_name[n]["spectral_norm_iterations"], 0)
        self.assertNotIn("spectral_norm", by_name["vector"])

    def test_averaged_weights_over_http(self):
        name = self.model_name()
        self.create_model(name, {"optimizer": {"name": "SGD", "lr": 1.0},
                                 "averaging": {"ema": {"decay": 0.5}},
                                 "tensors": [{"name": "w", "shape": [2], "values": [1, 2]}]})
        for grad in ([1, 1], [2, 2]):
            status, _, _, raw = self.request("POST", "/v1/models/%s/push" % name,
                                             {"grads": {"w": grad}})
            self.assertEqual(status, 200, raw)
        # w: [0, 1] then [-2, -1]; ema: [0, 1] then 0.5 * [0, 1] + 0.5 * [-2, -1].
        status, _, body, raw = self.request("GET", "/v1/models/%s/weights?average=ema" % name)
        self.assertEqual(status, 200, raw)
        self.assertEqual(body["weights"]["w"], [-1.0, 0.0])
        before = self.request("GET", "/v1/models/%s/weights" % name)[2]
        status, _, body, _ = self.request("GET", "/v1/models/%s/weights?average=median" % name)
        self.assertEqual(status, 400)
        self.assertIn("average", body["error"]["message"])
        status, _, body, _ = self.request("GET", "/v1/models/%s/weights?average=swa" % name)
        self.assertEqual(status, 400)
        self.assertIn("swa", body["error"]["message"])
        self.assertEqual(self.request("GET", "/v1/models/%s/weights" % name)[2], before)

    def test_real_prometheus_scrapes_paramd(self):
        self.assertTrue(os.path.exists(PROMETHEUS), "prometheus is not installed (deploy/install-deps.sh)")
        name = self.model_name()
        self.create_model(name, MODEL)
        self.train(name, 6)
        tcp_hello_and_list(self.server.tcp_port)
        self.assertEqual(self.request("POST", "/v1/models/%s/checkpoint" % name)[0], 200)
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="paramd-prometheus-") as directory:
            config = os.path.join(directory, "prometheus.yml")
            with open(config, "w") as stream:
                stream.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                             "scrape_configs:\n  - job_name: paramd\n    static_configs:\n"
                             "      - targets: ['127.0.0.1:%d']\n" % self.server.port)
            log = open(os.path.join(directory, "prometheus.log"), "w+")
            process = subprocess.Popen(
                [PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(directory, "data"),
                 "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                def query(expression):
                    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": expression}))
                    with urllib.request.urlopen(url, timeout=10) as response:
                        body = json.load(response)
                    self.assertEqual(body["status"], "success", body)
                    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1])
                            for r in body["data"]["result"]}

                def value(expression):
                    results = query(expression)
                    self.assertEqual(len(results), 1, "%s: %r" % (expression, results))
                    return list(results.values())[0]

                deadline = time.monotonic() + 90
                while True:
                    try:
                        if query('paramd_model_step{model="%s"}' % name):
                            break
                    except (OSError, AssertionError):
                        pass
                    if time.monotonic() > deadline or process.poll() is not None:
                        log.seek(0)
                        self.fail("Prometheus never scraped paramd:\n" + log.read()[-3000:])
                    time.sleep(0.5)
                self.assertEqual(value('up{job="paramd"}'), 1)
                self.assertEqual(value('paramd_model_step{model="%s"}' % name), 6)
                self.assertEqual(value('paramd_updates_applied_total{model="%s"}' % name), 6)
                # (other tests of this class push to the same server)
                self.assertGreaterEqual(value('paramd_requests_total{transport="http",operation="push",status="ok"}'), 6)
                self.assertGreaterEqual(value('sum(paramd_requests_total{transport="tcp"})'), 2)
                self.assertGreaterEqual(value('paramd_push_duration_seconds_count{transport="http"}'), 6)
                quantile = value('histogram_quantile(0.5, paramd_push_duration_seconds_bucket{transport="http"})')
                self.assertTrue(0 < quantile < 10, quantile)
                self.assertAlmostEqual(value('paramd_model_lr{model="%s"}' % name), 0.01)
                self.assertAlmostEqual(value('paramd_model_loss{model="%s"}' % name), 2.0 / 6)
                self.assertGreater(value('paramd_model_loss_ema{model="%s"}' % name), 2.0 / 6)
                self.assertGreater(value('paramd_model_grad_norm{model="%s"}' % name), 0)
                self.assertGreater(value('paramd_model_update_ratio{model="%s"}' % name), 0)
                self.assertEqual(value('paramd_push_staleness_steps_count{model="%s"}' % name), 0)
                self.assertEqual(len(query('paramd_rejected_gradients_total{model="%s"}' % name)), 5)
                self.assertGreater(value('paramd_checkpoint_last_success_timestamp_seconds{model="%s"}' % name),
                                   time.time() - 600)
                self.assertEqual(value('paramd_checkpoint_duration_seconds_count{model="%s"}' % name), 1)
                self.assertGreater(value('paramd_received_bytes_total{transport="http"}'), 0)
                self.assertGreater(value('paramd_sent_bytes_total{transport="tcp"}'), 0)
                self.assertEqual(value('count(paramd_build_info{version!=""})'), 1)
                # One more push shows up in the next scrapes.
                self.train(name, 1)
                deadline = time.monotonic() + 30
                while value('paramd_model_step{model="%s"}' % name) != 7:
                    self.assertLess(time.monotonic(), deadline, "the new step never reached Prometheus")
                    time.sleep(0.5)
            finally:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                log.close()


if __name__ == "__main__":
    unittest.main()
