#!/usr/bin/python3
"""The real paramd with --config FILE: the file's settings take effect,
flags override them wherever --config stands, every option of --help is a
setting of the file, errors name FILE:LINE and refuse to start; and
--shard-id from-hostname (a StatefulSet pod's ordinal, deploy/k8s/)."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import Server, ServerStartError, binary_path

RUN_TIMEOUT = 60


def help_options():
    """{name: default} of every option `paramd --help` lists with a default."""
    result = subprocess.run([binary_path(), "--help"], capture_output=True, text=True,
                            timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    options = {}
    name = None
    for line in result.stdout.splitlines():
        match = re.match(r"^  --([a-z0-9-]+)(?: (\S+))?\s", line + " ")
        if match:
            name = match.group(1)
            continue
        default = re.match(r"^\s+\(default: (.*)\)$", line)
        if default and name:
            options[name] = default.group(1)
            name = None
    return options


class ConfigFileTest(unittest.TestCase):

    def setUp(self):
        self.directory = tempfile.TemporaryDirectory(prefix="paramd-config-")
        self.addCleanup(self.directory.cleanup)

    def write(self, text, name="paramd.conf"):
        path = os.path.join(self.directory.name, name)
        with open(path, "w") as handle:
            handle.write(text)
        return path

    def run_paramd(self, *args):
        return subprocess.run([binary_path()] + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)

    def test_file_values_apply(self):
        data_dir = os.path.join(self.directory.name, "from-file")
        config = self.write("# test configuration\n\nhttp = 127.0.0.1:0\ntcp = 127.0.0.1:0\n"
                            "data-dir = %s\ncheckpoint-interval = 0.5\n" % data_dir)
        # Only --config on the command line: the addresses and the data
        # directory come from the file.
        process = subprocess.Popen([binary_path(), "--config", config], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            lines = []
            for line in process.stderr:
                lines.append(line)
                if "checkpoints every" in line or "ERROR" in line:
                    break
            text = "".join(lines)
            self.assertRegex(text, r"listening: http=127\.0\.0\.1:\d+ tcp=127\.0\.0\.1:\d+ "
                             r"data_dir=%s " % re.escape(data_dir))
            self.assertIn("checkpoints every 0.5 s to %s" % data_dir, text)
            self.assertTrue(os.path.exists(os.path.join(data_dir, "paramd.lock")))
            process.terminate()
            self.assertEqual(process.wait(RUN_TIMEOUT), 0)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stderr.close()
        # The harness passes --http, --tcp and --data-dir itself; add the file.
        with Server(["--config", config]) as server:
            self.assertIsNotNone(server.wait_for_log(
                "checkpoints every 0.5 s to %s" % re.escape(server.data_dir)), server.log_text())

    def test_flags_override_the_file_wherever_they_stand(self):
        config = self.write("checkpoint-interval = 0.5\nlog-level = info\n")
        for arguments in (["--checkpoint-interval", "7", "--config", config],
                          ["--config", config, "--checkpoint-interval=7"],
                          ["--config=" + config, "--checkpoint-interval", "7"]):
            with Server(arguments) as server:
                self.assertIsNotNone(server.wait_for_log("checkpoints every 7 s"),
                                     "%s: %s" % (arguments, server.log_text()))
            self.assertNotIn("every 0.5 s", server.log_text())
        # The file's log level (error: no info lines), and a flag placed
        # before --config that overrides it.
        quiet = self.write("log-level = error\n", "quiet.conf")
        with Server(["--log-level", "info", "--config", quiet]) as server:
            self.assertIsNotNone(server.wait_for_log("checkpoints every"), server.log_text())
        with Server(["--config", quiet]) as server:
            pass
        self.assertNotIn("checkpoints every", server.log_text())
        self.assertNotIn("shutting down", server.log_text())

    def test_every_help_option_is_a_setting(self):
        options = help_options()
        for name in ("http", "tcp", "data-dir", "threads", "shard-id", "log-level"):
            self.assertIn(name, options)
        self.assertNotIn("help", options)
        del options["config"]
        text = "".join("%s = %s\n" % (name, "" if default == "none" else default)
                       for name, default in options.items())
        config = self.write(text)
        with Server(["--config", config]) as server:
            status, _, _, _ = server.request("GET", "/readyz")
            self.assertEqual(status, 200)

    def test_errors_name_file_and_line(self):
        cases = [
            ("threads = 2\n\nno-such-option = 1\n", r":3: unknown option \"no-such-option\""),
            ("# x\nthreads = lots\n", r":2: threads: \"lots\": must be a number"),
            ("http = 127.0.0.1\n", r":1: http: \"127\.0\.0\.1\" is not HOST:PORT"),
            ("log-level = loud\n", r":1: log-level: \"loud\": must be debug, info, warn or error"),
            ("--threads = 2\n", r":1: write the name without \"--\""),
            ("threads 2\n", r":1: expected \"name = value\""),
            ("threads = 1\nthreads = 2\n", r":2: \"threads\" is already set on line 1"),
            ("config = other.conf\n", r":1: \"config\" is a command-line option only"),
        ]
        for text, expected in cases:
            config = self.write(text)
            with tempfile.TemporaryDirectory() as data_dir:
                result = self.run_paramd("--config", config, "--http", "127.0.0.1:0", "--tcp",
                                         "127.0.0.1:0", "--data-dir", data_dir)
                self.assertEqual(os.listdir(data_dir), [], "started: " + text)
            self.assertEqual(result.returncode, 2, text + result.stderr)
            self.assertRegex(result.stderr, "^paramd: --config: " + re.escape(config) + expected)
            self.assertNotIn("listening", result.stderr)

    def test_command_line_errors(self):
        missing = os.path.join(self.directory.name, "missing.conf")
        result = self.run_paramd("--config", missing)
        self.assertEqual(result.returncode, 2)
        self.assertIn("%s: cannot open it: No such file or directory" % missing, result.stderr)
        config = self.write("threads = 1\n")
        result = self.run_paramd("--config", config, "--config", config)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--config is given twice", result.stderr)
        result = self.run_paramd("--config")
        self.assertEqual(result.returncode, 2)
        self.assertIn("--config needs a value", result.stderr)
        # --help never reads the file.
        result = self.run_paramd("--config", missing, "--help")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("--config FILE", result.stdout)


def can_set_hostname():
    if not shutil.which("unshare"):
        return False
    result = subprocess.run(["unshare", "--uts", "sh", "-c", "hostname paramd-1"],
                            capture_output=True, timeout=RUN_TIMEOUT)
    return result.returncode == 0


def with_hostname(name):
    """A Server wrapper running paramd in its own UTS namespace as `name`."""
    return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name]


@unittest.skipUnless(can_set_hostname(), "unshare --uts is not permitted here (needs root)")
class ShardIdFromHostnameTest(unittest.TestCase):

    def setUp(self):
        self.directory = tempfile.TemporaryDirectory(prefix="paramd-ordinal-")
        self.addCleanup(self.directory.cleanup)
        self.map_path = os.path.join(self.directory.name, "shard-map.json")
        with open(self.map_path, "w") as handle:
            json.dump({"version": 4, "shards": [
                {"id": i, "http": "paramd-%d.paramd.ml.svc.cluster.local:8470" % i,
                 "tcp": "paramd-%d.paramd.ml.svc.cluster.local:8471" % i} for i in range(3)]},
                handle)

    def test_the_pod_ordinal_is_the_shard_id(self):
        for ordinal in (0, 2):
            with Server(["--shard-map", self.map_path, "--shard-id", "from-hostname"],
                        wrapper=with_hostname("paramd-%d" % ordinal)) as server:
                self.assertRegex(server.log_text(), r"listening: .* shard=%d/3 " % ordinal)
                status, _, body, raw = server.request("PUT", "/v1/models/m", {
                    "optimizer": {"name": "SGD", "lr": 1},
                    "tensors": [{"name": "w", "shape": [4]}]})
                self.assertEqual(status, 201, raw)
                self.assertEqual(body["shard"]["id"], ordinal)

    def test_a_name_without_an_ordinal_or_beyond_the_map_is_refused(self):
        for hostname, expected in (("paramd", 'the host name "paramd" does not end in -N'),
                                   ("paramd-3", "--shard-id 3: the shard map")):
            server = Server(["--shard-map", self.map_path, "--shard-id", "from-hostname"],
                            wrapper=with_hostname(hostname), start=False)
            with self.assertRaises(ServerStartError) as caught:
                server.start(timeout=30)
            self.assertIn(expected, str(caught.exception))
            self.assertEqual(server.process.returncode, 2)
            server.kill()


if __name__ == "__main__":
    unittest.main()
