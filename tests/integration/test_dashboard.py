#!/usr/bin/python3
"""The dashboard at GET / in headless Chromium (Debian's chromium package)
while a training run pushes: the page must fetch the history endpoints and
draw every plot; the test waits until it has, checks the canvases really
hold drawn pixels, and saves a screenshot as BUILD/dashboard.png."""

import os
import threading
import time
import unittest

from cdp import CHROMIUM, Browser
from common import ServerTestCase
from harness import b64_floats, binary_path

MODEL = {
    "optimizer": {"name": "AdamW", "lr": 0.05},
    "schedule": {"name": "CosineAnnealingLR", "T_max": 400},
    "tensors": [{"name": "w", "shape": [16, 16], "init": {"name": "normal", "std": 1.0, "seed": 3}}],
}

# Counts the non-white pixels of the canvas of one series.
INK = """(function (series) {
  var canvas = document.querySelector('canvas[data-series="' + series + '"]');
  if (!canvas) return -1;
  var data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data, ink = 0;
  for (var i = 0; i < data.length; i += 4)
    if (data[i] < 200 || data[i + 1] < 200 || data[i + 2] < 200) ink++;
  return ink;
})"""


class DashboardTests(ServerTestCase):
    SERVER_ARGS = ("--stats-sample-ms", "100", "--checkpoint-interval", "0")

    def test_page_is_served(self):
        status, headers, _, raw = self.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        text = raw.decode("utf-8")
        self.assertIn("<canvas", text.replace("el(\"canvas\"", "<canvas"))
        self.assertIn("/history", text)
        self.assertNotIn("http://", text.split("<script>")[1].split("</script>")[0].replace("http://HOST", ""))
        self.assertEqual(self.request("POST", "/")[0], 405)

    def test_plots_draw_in_headless_chromium(self):
        self.assertTrue(os.path.exists(CHROMIUM), "chromium is not installed (deploy/install-deps.sh)")
        self.create_model("training", MODEL)
        stop = threading.Event()

        def train():
            with self.server.client() as client:
                k, step = 0, 0
                while not stop.is_set() and k < 3000:
                    k += 1
                    grads = {"w": b64_floats([0.01 * ((i * 7 + k) % 13 - 6) for i in range(256)])}
                    # "version": the step the gradient was computed at, 0 to 3 steps stale.
                    status, _, reply, _ = client.request(
                        "POST", "/v1/models/training/push",
                        {"grads": grads, "loss": 3.0 / (1 + 0.05 * k) + 0.1 * (k % 7) / 7,
                         "version": max(0, step - k % 4)})
                    if status == 200:
                        step = reply["step"]
                    time.sleep(0.004)

        thread = threading.Thread(target=train)
        thread.start()
        try:
            with Browser() as browser:
                page = browser.page()
                page.call("Emulation.setDeviceMetricsOverride", width=1280, height=720,
                          deviceScaleFactor=1, mobile=False)
                page.call("Page.navigate", url="http://127.0.0.1:%d/" % self.server.port)
                deadline = time.monotonic() + 60
                drawn = 0
                while time.monotonic() < deadline:
                    # (document.body is null until the navigation has committed)
                    drawn = int(page.evaluate("document.body ? document.body.getAttribute('data-drawn') : 0") or 0)
                    if drawn >= 5:
                        break
                    time.sleep(0.25)
                self.assertGreaterEqual(drawn, 5, "the loss plot never drew 5 points; status: %s"
                                        % page.evaluate("document.getElementById('status').textContent"))
                for series in ("loss", "lr", "grad_norm", "update_ratio", "pushes_per_second", "staleness"):
                    ink = page.evaluate(INK + "(%r)" % series)
                    self.assertGreater(ink, 200, "the %s plot is empty (%d pixels)" % (series, ink))
                self.assertIn("step", page.evaluate("document.querySelector('.summary').textContent"))
                png = page.screenshot()
                page.close()
        finally:
            stop.set()
            thread.join(30)
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        path = os.path.join(os.path.dirname(os.path.abspath(binary_path())), "dashboard.png")
        with open(path, "wb") as stream:
            stream.write(png)
        print("\n    dashboard screenshot: %s (%d bytes)" % (path, len(png)))


class DashboardTokenTests(unittest.TestCase):
    """Issue 9: on a server with tokens the page asks for one, and shows the
    models once it has a read token (here from the link's #token=)."""

    def test_page_asks_for_a_token_and_uses_it(self):
        import tempfile
        from harness import Server
        self.assertTrue(os.path.exists(CHROMIUM), "chromium is not installed")
        token = "dashboard-read-0123456789"
        with tempfile.TemporaryDirectory(prefix="paramd-dashboard-") as directory:
            path = os.path.join(directory, "tokens")
            with open(path, "w") as handle:
                handle.write("read %s\nwrite writer-0123456789abcdef\n" % token)
            os.chmod(path, 0o600)
            with Server(["--token-file", path]) as server:
                status, _, _, raw = server.request(
                    "PUT", "/v1/models/guarded", MODEL,
                    {"Authorization": "Bearer writer-0123456789abcdef"})
                self.assertEqual(status, 201, raw)
                with Browser() as browser:
                    page = browser.page()
                    url = "http://127.0.0.1:%d/" % server.port

                    def wait_for(expression):
                        deadline = time.monotonic() + 30
                        while time.monotonic() < deadline:
                            value = page.evaluate("document.body ? (%s) : null" % expression)
                            if value:
                                return value
                            time.sleep(0.2)
                        return None

                    page.call("Page.navigate", url=url)
                    self.assertEqual(wait_for("document.getElementById('login') && "
                                              "getComputedStyle(document.getElementById("
                                              "'login')).display === 'block' && 'shown'"),
                                     "shown")
                    self.assertIn("read token is needed",
                                  page.evaluate("document.getElementById('status').textContent"))
                    page.call("Page.navigate", url=url + "#token=" + token)
                    status_text = wait_for("/1 model/.test(document.getElementById('status')"
                                           ".textContent) && document.getElementById('status')"
                                           ".textContent")
                    self.assertIsNotNone(status_text, page.evaluate(
                        "document.getElementById('status').textContent"))
                    # The token left the address bar.
                    self.assertNotIn(token, page.evaluate("window.location.href"))
                    page.close()


if __name__ == "__main__":
    unittest.main()
