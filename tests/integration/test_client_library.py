#!/usr/bin/python3
"""The C client library as a user gets it: only paramd_* symbols exported
from libparamd.so, its soname, the libparamd.so link, paramd.pc, and the
example program built with `pkg-config --cflags --libs paramd` and run
against the real server (standard library only)."""

import os
import shutil
import subprocess
import tempfile
import unittest

from common import ServerTestCase
from harness import REPOSITORY_ROOT

BUILD = os.path.dirname(os.environ.get("PARAMD_BINARY", "build/paramd")) or "build"
if not os.path.isabs(BUILD):
    BUILD = os.path.join(REPOSITORY_ROOT, BUILD)
LIBRARY = os.path.join(BUILD, "libparamd.so.0")


def run(command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)


def dynamic_symbols(undefined=False):
    flag = "--undefined-only" if undefined else "--defined-only"
    result = run(["nm", "-D", flag, LIBRARY])
    assert result.returncode == 0, result.stderr
    return [line.split()[-1] for line in result.stdout.splitlines() if line.strip()]


class LibraryFilesTest(unittest.TestCase):

    @unittest.skipUnless(shutil.which("nm"), "nm (binutils) is not installed")
    def test_only_the_public_api_is_exported(self):
        symbols = dynamic_symbols()
        for name in ("paramd_connect", "paramd_pushpull", "paramd_batch_run", "paramd_strerror",
                     "paramd_client_errstr", "paramd_reconnect"):
            self.assertIn(name, symbols)
        for name in symbols:
            self.assertTrue(name.startswith("paramd_") and not name.startswith("paramd__"),
                            "exported: %s" % name)
        # The half-float array helpers are internal too.
        self.assertNotIn("paramd_float16_decode", symbols)

    @unittest.skipUnless(shutil.which("readelf"), "readelf (binutils) is not installed")
    def test_soname_and_link(self):
        result = run(["readelf", "-d", LIBRARY])
        self.assertIn("Library soname: [libparamd.so.0]", result.stdout)
        self.assertEqual(os.readlink(os.path.join(BUILD, "libparamd.so")), "libparamd.so.0")
        self.assertTrue(os.path.exists(os.path.join(BUILD, "libparamd.a")))

    def test_pkg_config_file(self):
        with open(os.path.join(BUILD, "paramd.pc")) as handle:
            text = handle.read()
        for line in ("Name: paramd", "Version: 0.1.0", "Libs: -L${libdir} -lparamd",
                     "Cflags: -I${includedir}"):
            self.assertIn(line, text)
        self.assertTrue(text.startswith("prefix="), text)


class ExampleTest(ServerTestCase):

    def test_prebuilt_example_trains(self):
        result = run([os.path.join(BUILD, "examples", "train_loop"), "127.0.0.1",
                      str(self.server.tcp_port), "300"])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("connected to paramd 0.1.0", result.stdout)

    @unittest.skipUnless(shutil.which("pkg-config") and shutil.which("cc"), "no pkg-config or cc")
    def test_example_builds_with_pkg_config_against_the_shared_library(self):
        environment = dict(os.environ, PKG_CONFIG_PATH=BUILD)
        flags = run(["pkg-config", "--cflags", "--libs", "paramd"], env=environment)
        self.assertEqual(flags.returncode, 0, flags.stderr)
        arguments = flags.stdout.split()
        if "__asan_init" in dynamic_symbols(undefined=True):
            arguments = ["-fsanitize=address,undefined"] + arguments  # a SANITIZE=1 build
        with tempfile.TemporaryDirectory() as directory:
            program = os.path.join(directory, "train_loop")
            source = os.path.join(REPOSITORY_ROOT, "client", "examples", "train_loop.c")
            built = run(["cc", "-std=c11", "-Wall", "-Werror", source, "-o", program] + arguments)
            self.assertEqual(built.returncode, 0, built.stderr)
            linked = run(["ldd", program])
            self.assertIn("libparamd.so.0 => " + LIBRARY, linked.stdout)
            result = run([program, "127.0.0.1", str(self.server.tcp_port), "300"])
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertIn("loss", result.stdout)


if __name__ == "__main__":
    unittest.main()
