#!/usr/bin/python3
"""Packaging, as a user gets it: `make install` into a temporary DESTDIR
installs a complete tree (binaries, libparamd.a, libparamd.so.0 with its
soname and link, headers, paramd.pc, man pages, the example configuration,
the systemd unit), a program built against it with pkg-config runs against
the installed paramd, and `make uninstall` removes it; the systemd unit
passes `systemd-analyze verify` and starts paramd as systemd would; and the
man page and the example configuration document every option of
`paramd --help`, so that a new option cannot go undocumented."""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import unittest

from harness import REPOSITORY_ROOT, Server, START_TIMEOUT, STOP_TIMEOUT, binary_path

BUILD = os.path.dirname(os.environ.get("PARAMD_BINARY", "build/paramd")) or "build"
if not os.path.isabs(BUILD):
    BUILD = os.path.join(REPOSITORY_ROOT, BUILD)
SANITIZED = os.path.basename(BUILD.rstrip("/")) == "sanitize"
MAN_PAGE = os.path.join(REPOSITORY_ROOT, "docs", "man", "paramd.8")
PARAMCTL_MAN_PAGE = os.path.join(REPOSITORY_ROOT, "docs", "man", "paramctl.1")
EXAMPLE_CONFIG = os.path.join(REPOSITORY_ROOT, "deploy", "paramd.conf.example")
UNIT = os.path.join(REPOSITORY_ROOT, "deploy", "systemd", "paramd.service")
COMMAND_LINE_ONLY = {"config", "help", "version"}


def run(command, **kwargs):
    kwargs.setdefault("timeout", 600)
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def help_options(binary=None):
    """[(name, default or None)] of every --option `paramd --help` lists."""
    result = run([binary or binary_path(), "--help"])
    assert result.returncode == 0, result.stderr
    options = []
    for line in result.stdout.splitlines():
        match = re.match(r"^  (--[a-z0-9-]+)\b", line)
        if match:
            options.append([match.group(1)[2:], None])
            continue
        default = re.match(r"^\s+\(default: (.*)\)$", line)
        if default and options and options[-1][1] is None:
            options[-1][1] = default.group(1)
    return [tuple(option) for option in options]


def troff_text(text):
    """Troff source with the escapes this project's pages use undone."""
    text = text.replace("\\-", "-").replace("\\e", "\\")
    return re.sub(r"\\f[BIRP]", "", text)


def make_environment():
    """The environment without the calling make's jobserver settings."""
    return {name: value for name, value in os.environ.items()
            if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def make(target, destdir):
    arguments = ["make", "-C", REPOSITORY_ROOT, target, "DESTDIR=" + destdir,
                 "BUILD=" + os.path.relpath(BUILD, REPOSITORY_ROOT)]
    if SANITIZED:
        arguments.append("SANITIZE=1")
    return run(arguments, env=make_environment())


def unit_settings(text):
    """{key: [values]} of a systemd unit's lines (keys may repeat)."""
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def wait_ready(receiver, process, log_path):
    """The READY=1 datagram paramd sends to receiver, or a failure."""
    receiver.settimeout(START_TIMEOUT)
    try:
        message = receiver.recv(4096).decode()
    except socket.timeout:
        process.kill()
        with open(log_path) as handle:
            raise AssertionError("no READY=1; log:\n" + handle.read())
    assert "READY=1" in message.splitlines(), message
    return message


# ---------------------------------------------------------------------------
# Options documented everywhere
# ---------------------------------------------------------------------------

class OptionsDocumentedTest(unittest.TestCase):

    def test_help_lists_the_options(self):
        names = [name for name, _ in help_options()]
        for name in ("http", "tcp", "data-dir", "shard-id", "config", "help", "version"):
            self.assertIn(name, names)

    def test_every_option_has_a_man_page_entry_with_its_default(self):
        with open(MAN_PAGE) as handle:
            source = handle.read()
        # Entries: ".TP" then ".BI \-\-name ..." or ".B \-\-name".
        entries = {}
        for match in re.finditer(r"^\.TP\n\.BI? \\-\\-([a-z0-9\\-]+)(.*?)(?=^\.TP|^\.SH)", source,
                                 re.M | re.S):
            entries[match.group(1).replace("\\-", "-")] = troff_text(match.group(2))
        missing = []
        for name, default in help_options():
            if name not in entries:
                missing.append(name)
            elif default not in (None, "", "none") and default not in entries[name]:
                missing.append("%s (its default %s)" % (name, default))
        self.assertEqual(missing, [], "paramd --help options without an entry in %s"
                         % os.path.relpath(MAN_PAGE, REPOSITORY_ROOT))
        known = {name for name, _ in help_options()}
        self.assertEqual(sorted(set(entries) - known), [], "entries for options paramd lacks")

    def test_every_option_is_in_the_example_config_with_its_default(self):
        with open(EXAMPLE_CONFIG) as handle:
            text = handle.read()
        settings = dict(re.findall(r"^#?([a-z0-9-]+) = ?(.*)$", text, re.M))
        options = dict((name, default) for name, default in help_options()
                       if name not in COMMAND_LINE_ONLY)
        missing = [name for name in options if name not in settings]
        self.assertEqual(missing, [], "paramd --help options missing from deploy/paramd.conf.example")
        for name, value in settings.items():
            self.assertIn(name, options, "the example sets an option paramd lacks")
            if re.search(r"^#%s = ?" % re.escape(name), text, re.M):
                self.assertEqual(value, options[name], "#%s shows a default --help does not" % name)

    def test_the_example_config_uncommented_is_accepted(self):
        with open(EXAMPLE_CONFIG) as handle:
            text = re.sub(r"^#([a-z0-9-]+ =)", r"\1", handle.read(), flags=re.M)
        self.assertGreater(len(re.findall(r"^[a-z]", text, re.M)), 10)
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as config:
            config.write(text)
            config.flush()
            # The harness's --http, --tcp and --data-dir override the file's.
            with Server(["--config", config.name]) as server:
                self.assertEqual(server.request("GET", "/readyz")[0], 200)

    def test_paramctl_man_page_has_every_option_and_command(self):
        result = run([os.path.join(BUILD, "paramctl"), "--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        options = set(re.findall(r"^  (?:-h, )?(--[a-z-]+)", result.stdout, re.M))
        commands_text = result.stdout.split("commands:")[1].split("options:")[0]
        commands = set(re.findall(r"^  ([a-z]+) ", commands_text, re.M))
        self.assertGreaterEqual(len(options), 5)
        self.assertGreaterEqual(len(commands), 6)
        with open(PARAMCTL_MAN_PAGE) as handle:
            page = troff_text(handle.read())
        for option in options:
            self.assertRegex(page, r"(?m)^\.(BI?|BR) %s\b" % re.escape(option))
        for command in commands:
            self.assertRegex(page, r"(?m)^\.BI? \"?%s\b" % command)

    @unittest.skipUnless(shutil.which("groff"), "groff is not installed")
    def test_man_pages_render_without_warnings(self):
        for page in (MAN_PAGE, PARAMCTL_MAN_PAGE):
            result = run(["groff", "-man", "-ww", "-z", "-Tutf8", page])
            self.assertEqual((result.returncode, result.stderr), (0, ""), page)


# ---------------------------------------------------------------------------
# make install
# ---------------------------------------------------------------------------

EXPECTED_FILES = {
    "usr/local/bin/paramd", "usr/local/bin/paramctl",
    "usr/local/lib/libparamd.a", "usr/local/lib/libparamd.so.0", "usr/local/lib/libparamd.so",
    "usr/local/lib/pkgconfig/paramd.pc",
    "usr/local/include/paramd/client.h", "usr/local/include/paramd/paramd.h",
    "usr/local/include/paramd/protocol.h",
    "usr/local/share/man/man8/paramd.8", "usr/local/share/man/man1/paramctl.1",
    "usr/local/share/doc/paramd/paramd.conf.example", "usr/local/share/doc/paramd/tokens.conf",
    "usr/local/lib/systemd/system/paramd.service",
    "etc/paramd/paramd.conf",
}

CLIENT_PROGRAM = r"""
#include <paramd/client.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    int error;
    if (argc != 2)
        return 2;
    paramd_client *c = paramd_connect("127.0.0.1", atoi(argv[1]), 10000, &error);
    if (c == NULL || error != PARAMD_OK) {
        fprintf(stderr, "connect: %s\n", c ? paramd_client_errstr(c) : "out of memory");
        return 1;
    }
    const char *model = "{\"optimizer\": {\"name\": \"SGD\", \"lr\": 0.5},"
                        " \"tensors\": [{\"name\": \"w\", \"shape\": [4], \"values\": [1, 2, 3, 4]}]}";
    float grad[4] = {1, 1, 1, 1}, weights[4] = {0};
    if (paramd_create_model(c, "installed", model, NULL) != PARAMD_OK ||
        paramd_pushpull_tensor(c, "installed", "w", grad, weights, 4, NULL, NULL) != PARAMD_OK) {
        fprintf(stderr, "request: %s\n", paramd_client_errstr(c));
        paramd_close(c);
        return 1;
    }
    printf("%s weights %g %g %g %g\n", paramd_server_name(c), weights[0], weights[1], weights[2],
           weights[3]);
    paramd_close(c);
    return 0;
}
"""


class InstallTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.TemporaryDirectory(prefix="paramd-install-")
        cls.destdir = os.path.join(cls.directory.name, "root")
        result = make("install", cls.destdir)
        if result.returncode != 0:
            cls.directory.cleanup()
            raise AssertionError("make install failed:\n" + result.stdout + result.stderr)
        cls.prefix = os.path.join(cls.destdir, "usr", "local")

    @classmethod
    def tearDownClass(cls):
        cls.directory.cleanup()

    def path(self, relative):
        return os.path.join(self.destdir, relative)

    def pkg_config_environment(self):
        return dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.prefix, "lib", "pkgconfig"),
                    PKG_CONFIG_SYSROOT_DIR=self.destdir)

    def test_tree_is_complete(self):
        found = set()
        for root, _, files in os.walk(self.destdir):
            for name in files:
                found.add(os.path.relpath(os.path.join(root, name), self.destdir))
        self.assertEqual(found, EXPECTED_FILES)
        for program in ("paramd", "paramctl"):
            mode = os.stat(self.path("usr/local/bin/" + program)).st_mode
            self.assertTrue(mode & stat.S_IXOTH, program)
        self.assertEqual(os.readlink(self.path("usr/local/lib/libparamd.so")), "libparamd.so.0")
        self.assertFalse(os.path.islink(self.path("usr/local/lib/libparamd.so.0")))
        for relative in ("usr/local/include/paramd/client.h", "usr/local/share/man/man8/paramd.8"):
            self.assertFalse(os.stat(self.path(relative)).st_mode & stat.S_IXUSR, relative)
        with open(self.path("usr/local/share/doc/paramd/paramd.conf.example")) as installed, \
                open(EXAMPLE_CONFIG) as source:
            self.assertEqual(installed.read(), source.read())

    @unittest.skipUnless(shutil.which("readelf") and shutil.which("nm"), "no binutils")
    def test_libraries(self):
        dynamic = run(["readelf", "-d", self.path("usr/local/lib/libparamd.so.0")])
        self.assertIn("Library soname: [libparamd.so.0]", dynamic.stdout)
        archive = run(["nm", "--defined-only", self.path("usr/local/lib/libparamd.a")])
        self.assertRegex(archive.stdout, r"(?m) T paramd_connect$")
        self.assertRegex(archive.stdout, r"(?m) T paramd_pushpull_tensor$")

    @unittest.skipUnless(shutil.which("pkg-config"), "pkg-config is not installed")
    def test_pkg_config_points_into_the_tree(self):
        environment = self.pkg_config_environment()
        version = run(["pkg-config", "--modversion", "paramd"], env=environment)
        self.assertEqual(version.returncode, 0, version.stderr)
        with open(os.path.join(REPOSITORY_ROOT, "include", "paramd", "paramd.h")) as handle:
            expected = re.search(r'PARAMD_VERSION_STRING "(.*)"', handle.read()).group(1)
        self.assertEqual(version.stdout.strip(), expected)
        flags = run(["pkg-config", "--cflags", "--libs", "paramd"], env=environment)
        self.assertIn("-I" + os.path.join(self.prefix, "include"), flags.stdout.split())
        self.assertIn("-L" + os.path.join(self.prefix, "lib"), flags.stdout.split())
        self.assertIn("-lparamd", flags.stdout.split())
        with open(self.path("usr/local/lib/pkgconfig/paramd.pc")) as handle:
            self.assertIn("prefix=/usr/local\n", handle.read())

    @unittest.skipUnless(shutil.which("cc"), "no C compiler")
    def test_each_header_compiles_on_its_own(self):
        for header in ("client.h", "paramd.h", "protocol.h"):
            result = run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                          "-fsyntax-only", "-I" + os.path.join(self.prefix, "include"), "-x", "c",
                          "-"], input="#include <paramd/%s>\nint main(void) { return 0; }\n" % header)
            self.assertEqual(result.returncode, 0, header + result.stderr)

    @unittest.skipUnless(shutil.which("pkg-config") and shutil.which("cc"), "no pkg-config or cc")
    def test_a_program_built_with_pkg_config_runs_against_the_installed_server(self):
        flags = run(["pkg-config", "--cflags", "--libs", "paramd"], env=self.pkg_config_environment())
        self.assertEqual(flags.returncode, 0, flags.stderr)
        arguments = flags.stdout.split()
        if SANITIZED:
            arguments = ["-fsanitize=address,undefined"] + arguments
        source = os.path.join(self.directory.name, "client.c")
        program = os.path.join(self.directory.name, "client")
        with open(source, "w") as handle:
            handle.write("#include <stdlib.h>\n" + CLIENT_PROGRAM)
        built = run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", source, "-o", program]
                    + arguments)
        self.assertEqual(built.returncode, 0, built.stderr)
        environment = dict(os.environ, LD_LIBRARY_PATH=os.path.join(self.prefix, "lib"))
        linked = run(["ldd", program], env=environment)
        self.assertIn("libparamd.so.0 => " + os.path.join(self.prefix, "lib", "libparamd.so.0"),
                      linked.stdout)
        installed_paramd = self.path("usr/local/bin/paramd")
        with Server(binary=installed_paramd) as server:
            result = run([program, str(server.tcp_port)], env=environment)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertEqual(result.stdout.split()[1:], ["0.1.0", "weights", "0.5", "1.5", "2.5",
                                                         "3.5"], result.stdout)
            listed = run([self.path("usr/local/bin/paramctl"), "--tcp",
                          "127.0.0.1:%d" % server.tcp_port, "list"])
            self.assertEqual(listed.returncode, 0, listed.stderr)
            self.assertIn('"installed"', listed.stdout)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_installed_unit_verifies_with_the_installed_man_page(self):
        with open(self.path("usr/local/lib/systemd/system/paramd.service")) as handle:
            text = handle.read()
        self.assertIn("ExecStart=/usr/local/bin/paramd --config /etc/paramd/paramd.conf", text)
        # The unit as it would run from this DESTDIR: systemd-analyze checks
        # that ExecStart is executable and that `man paramd(8)` finds the page.
        unit = os.path.join(self.directory.name, "paramd.service")
        with open(unit, "w") as handle:
            handle.write(text.replace("/usr/local/bin/paramd", self.path("usr/local/bin/paramd")))
        environment = dict(os.environ, MANPATH=os.path.join(self.prefix, "share", "man"))
        result = run(["systemd-analyze", "verify", unit], env=environment)
        self.assertEqual((result.returncode, result.stderr), (0, ""), result.stdout)


class UninstallTest(unittest.TestCase):

    def test_uninstall_removes_the_tree_and_keeps_a_changed_config(self):
        with tempfile.TemporaryDirectory(prefix="paramd-uninstall-") as directory:
            destdir = os.path.join(directory, "root")
            self.assertEqual(make("install", destdir).returncode, 0)
            result = make("uninstall", destdir)
            self.assertEqual(result.returncode, 0, result.stderr)
            left = [os.path.join(root, name) for root, _, files in os.walk(destdir)
                    for name in files]
            self.assertEqual(left, [])
            # An administrator's change survives make install and uninstall.
            self.assertEqual(make("install", destdir).returncode, 0)
            config = os.path.join(destdir, "etc", "paramd", "paramd.conf")
            with open(config, "a") as handle:
                handle.write("threads = 2\n")
            self.assertEqual(make("install", destdir).returncode, 0)
            with open(config) as handle:
                self.assertTrue(handle.read().endswith("threads = 2\n"))
            result = make("uninstall", destdir)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("kept", result.stdout)
            left = [os.path.relpath(os.path.join(root, name), destdir)
                    for root, _, files in os.walk(destdir) for name in files]
            self.assertEqual(left, ["etc/paramd/paramd.conf"])


# ---------------------------------------------------------------------------
# The systemd unit
# ---------------------------------------------------------------------------

class SystemdUnitTest(unittest.TestCase):

    def setUp(self):
        with open(UNIT) as handle:
            self.text = handle.read()
        self.settings = unit_settings(self.text)
        self.directory = tempfile.TemporaryDirectory(prefix="paramd-unit-")
        self.addCleanup(self.directory.cleanup)

    def exec_start(self):
        return self.settings["ExecStart"][0].split()

    def local_unit(self):
        """The unit with ExecStart on the built binary, which exists here."""
        path = os.path.join(self.directory.name, "paramd.service")
        with open(path, "w") as handle:
            handle.write(self.text.replace("ExecStart=/usr/local/bin/paramd",
                                           "ExecStart=" + os.path.abspath(binary_path())))
        return path

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_systemd_analyze_verify(self):
        result = run(["systemd-analyze", "verify", "--man=no", self.local_unit()])
        self.assertEqual((result.returncode, result.stderr), (0, ""), result.stdout)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_systemd_analyze_verify_with_the_tokens_drop_in(self):
        """deploy/systemd/tokens.conf in paramd.service.d/, its ExecStart the
        unit's plus --token-file, on the built binary too."""
        unit = self.local_unit()
        with open(os.path.join(REPOSITORY_ROOT, "deploy", "systemd", "tokens.conf")) as handle:
            text = handle.read()
        settings = unit_settings(text)
        self.assertEqual(settings["ExecStart"][0], "")
        self.assertEqual(settings["ExecStart"][1], self.settings["ExecStart"][0]
                         + " --token-file %d/tokens")
        self.assertEqual(settings["LoadCredential"], ["tokens:/etc/paramd/tokens"])
        drop_in = os.path.join(self.directory.name, "paramd.service.d")
        os.mkdir(drop_in)
        with open(os.path.join(drop_in, "tokens.conf"), "w") as handle:
            handle.write(text.replace("ExecStart=/usr/local/bin/paramd",
                                      "ExecStart=" + os.path.abspath(binary_path())))
        # A bad key in a drop-in is a complaint on stderr, so this would see one.
        result = run(["systemd-analyze", "verify", "--man=no", unit],
                     env=dict(os.environ, SYSTEMD_UNIT_PATH=self.directory.name + ":"))
        self.assertEqual((result.returncode, result.stderr), (0, ""), result.stdout)
        self.assertIn("token-file", {name for name, _ in help_options()})

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_exposure_is_low(self):
        result = run(["systemd-analyze", "security", "--offline=yes", self.local_unit()])
        if "--offline" in result.stderr:
            self.skipTest("systemd-analyze security has no --offline here")
        match = re.search(r"Overall exposure level for paramd\.service: ([0-9.]+)", result.stdout)
        self.assertIsNotNone(match, result.stdout + result.stderr)
        self.assertLessEqual(float(match.group(1)), 2.0, result.stdout)

    def test_hardening_and_readiness(self):
        s = self.settings
        expected = {"Type": "notify", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                    "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                    "StateDirectory": "paramd", "DynamicUser": "yes", "CapabilityBoundingSet": "",
                    "SystemCallArchitectures": "native"}
        for key, value in expected.items():
            self.assertEqual(s.get(key), [value], key)
        self.assertEqual(set(s["RestrictAddressFamilies"][0].split()),
                         {"AF_INET", "AF_INET6", "AF_UNIX"})
        self.assertIn("@system-service", s["SystemCallFilter"])
        self.assertGreaterEqual(int(s["LimitNOFILE"][0]), 4096)
        self.assertNotIn("User", s)  # DynamicUser allocates it
        # systemctl reload: SIGHUP, which reloads --token-file.
        self.assertEqual(s["ExecReload"], ["/bin/kill -HUP $MAINPID"])

    def test_exec_start_uses_known_options_and_the_state_directory(self):
        command = self.exec_start()
        self.assertEqual(command[0], "/usr/local/bin/paramd")
        known = {name for name, _ in help_options()}
        for argument in command[1:]:
            if argument.startswith("--"):
                self.assertIn(argument[2:].split("=")[0], known, argument)
        self.assertEqual(command[command.index("--data-dir") + 1],
                         "/var/lib/" + self.settings["StateDirectory"][0])
        self.assertEqual(command[command.index("--config") + 1], "/etc/paramd/paramd.conf")

    def test_exec_start_runs_and_notifies_as_under_systemd(self):
        """ExecStart's command line, with the example configuration as
        /etc/paramd/paramd.conf and flags (which override) for ports and the
        data directory, run with NOTIFY_SOCKET as systemd runs it."""
        command = self.exec_start()
        command[0] = binary_path()
        command[command.index("--config") + 1] = EXAMPLE_CONFIG
        command[command.index("--data-dir") + 1] = os.path.join(self.directory.name, "state")
        command += ["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"]
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(os.path.join(self.directory.name, "notify"))
        log_path = os.path.join(self.directory.name, "log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=log, env=dict(os.environ,
                                                            NOTIFY_SOCKET=receiver.getsockname()))
        try:
            wait_ready(receiver, process, log_path)
            process.send_signal(signal.SIGTERM)
            status = process.wait(STOP_TIMEOUT)
            with open(log_path) as handle:
                self.assertEqual(status, 0, handle.read())
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.assertTrue(os.path.exists(os.path.join(self.directory.name, "state", "paramd.lock")))


if __name__ == "__main__":
    unittest.main()
