#!/usr/bin/python3
"""Deployment files, checked as far as this machine allows: the container
image's Dockerfile (no Docker engine runs here, so it is parsed, not
built: stages, user, volume, ports, and the runtime packages against the
libraries `ldd build/paramd` needs), the Kubernetes manifests (parsed with
python3-yaml; the StatefulSet, its headless Service, the shard map in the
ConfigMap, probes, volumes, the worker Job), the pod's command line run on
the real paramd as pod paramd-1, the Job's worker program run against real
shards, and deploy/prometheus.yml (promtool)."""

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import REPOSITORY_ROOT, Server, ServerStartError, binary_path
from cluster import Cluster

try:
    import yaml
except ImportError:  # python3-yaml (deploy/install-deps.sh installs it)
    yaml = None

BUILD = os.path.dirname(os.environ.get("PARAMD_BINARY", "build/paramd")) or "build"
if not os.path.isabs(BUILD):
    BUILD = os.path.join(REPOSITORY_ROOT, BUILD)
DEPLOY = os.path.join(REPOSITORY_ROOT, "deploy")
DOCKERFILE = os.path.join(DEPLOY, "docker", "Dockerfile")
K8S = os.path.join(DEPLOY, "k8s")
# In every Debian image, so never in an apt-get list.
BASE_PACKAGES = {"libc6", "libgcc-s1"}


def run(command, **kwargs):
    kwargs.setdefault("timeout", 300)
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def help_option_names():
    result = run([binary_path(), "--help"])
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"^  --([a-z0-9-]+)", result.stdout, re.M))


def config_settings(text):
    """{name: value} of a paramd configuration file's settings."""
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip()
    return settings


# ---------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------

def dockerfile_stages(path):
    """[{"from": image, "name": alias, "instructions": [(KEYWORD, text)]}]."""
    with open(path) as handle:
        text = handle.read()
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if current and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            stages.append({"from": words[0],
                           "name": words[2] if len(words) == 3 and words[1].upper() == "AS" else None,
                           "instructions": []})
        else:
            assert stages, "instruction before FROM: " + line
            stages[-1]["instructions"].append((keyword, rest))
    return stages


def instructions(stage, keyword):
    return [rest for key, rest in stage["instructions"] if key == keyword]


def apt_packages(stage):
    """The packages the stage's RUN lines give to apt-get install."""
    packages = []
    for command in instructions(stage, "RUN"):
        for part in re.split(r"&&|;|\|\|", command):
            words = shlex.split(part)
            if len(words) > 2 and words[0] == "apt-get" and "install" in words:
                packages += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return packages


def package_of(path):
    """The Debian package that installed the file at path, or None."""
    candidates = [path, os.path.realpath(path)]
    for candidate in list(candidates):
        if candidate.startswith("/usr/lib/"):
            candidates.append(candidate[len("/usr"):])
        elif candidate.startswith("/lib/"):
            candidates.append("/usr" + candidate)
    for candidate in candidates:
        result = run(["dpkg", "-S", candidate])
        if result.returncode == 0:
            return result.stdout.split(":")[0].strip()
    return None


def needed_libraries(binary):
    """{soname: resolved path} of a binary's direct NEEDED libraries."""
    dynamic = run(["readelf", "-d", binary])
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", dynamic.stdout)
    resolved = {}
    for line in run(["ldd", binary]).stdout.splitlines():
        match = re.match(r"\s*(\S+) => (/\S+)", line)
        if match:
            resolved[match.group(1)] = match.group(2)
    return {name: resolved.get(name) for name in needed}


class DockerfileTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.stages = dockerfile_stages(DOCKERFILE)
        cls.runtime = cls.stages[-1]
        cls.build = next(s for s in cls.stages if s["name"] == "build")

    def test_multi_stage_build_on_bookworm_run_on_slim(self):
        self.assertGreaterEqual(len(self.stages), 2)
        self.assertEqual(self.stages[0]["from"], "debian:bookworm")
        self.assertEqual(self.stages[0]["name"], "build")
        self.assertEqual(self.runtime["from"], "debian:bookworm-slim")
        builds = " ".join(instructions(self.build, "RUN"))
        self.assertIn("deploy/install-deps.sh --build-only", builds)
        self.assertRegex(builds, r"make .*\ball\b")
        self.assertRegex(builds, r"make install .*DESTDIR=/out")
        # Every stage another copies from exists, and nothing but the
        # runtime packages is installed in the last one (no compiler).
        names = {s["name"] for s in self.stages}
        for stage in self.stages:
            for copy in instructions(stage, "COPY"):
                match = re.search(r"--from=(\S+)", copy)
                if match:
                    self.assertIn(match.group(1), names)
        for package in apt_packages(self.runtime):
            self.assertFalse(package.endswith("-dev") or package in ("build-essential", "gcc"),
                             package)

    def test_runtime_packages_cover_every_linked_library(self):
        if not shutil.which("readelf") or not shutil.which("dpkg"):
            self.skipTest("needs readelf and dpkg")
        listed = set(apt_packages(self.runtime))
        self.assertTrue(listed)
        for package in listed:
            known = run(["dpkg-query", "-W", "-f=${Package}", package])
            self.assertEqual(known.returncode, 0, "no Debian package %r (a typo?)" % package)
        missing = []
        for program in ("paramd", "paramctl"):
            for soname, path in needed_libraries(os.path.join(BUILD, program)).items():
                if re.match(r"lib(asan|ubsan)\.", soname):
                    continue  # a SANITIZE=1 build's runtime, not the image's
                self.assertIsNotNone(path, "%s: %s is not found" % (program, soname))
                package = package_of(path)
                self.assertIsNotNone(package, "no Debian package holds %s" % path)
                if package not in listed and package not in BASE_PACKAGES:
                    missing.append("%s (%s, for %s)" % (package, soname, program))
        self.assertEqual(missing, [], "the runtime stage does not install these packages")

    def test_worker_stage_runs_the_python_client(self):
        worker = next(s for s in self.stages if s["name"] == "worker")
        self.assertEqual(worker["from"], "debian:bookworm-slim")
        self.assertIn("python3-numpy", apt_packages(worker))  # paramd.Client needs numpy
        self.assertIn("client/python/paramd /opt/paramd/python/paramd", instructions(worker, "COPY"))
        self.assertIn("PYTHONPATH=/opt/paramd/python", instructions(worker, "ENV"))
        self.assertNotIn(instructions(worker, "USER")[0].split(":")[0], ("0", "root"))
        # The manifests run the images this file builds.
        with open(os.path.join(K8S, "job-workers.yaml")) as handle:
            job = [o for o in yaml.safe_load_all(handle) if o and o["kind"] == "Job"][0] \
                if yaml else None
        with open(os.path.join(K8S, "statefulset.yaml")) as handle:
            statefulset = yaml.safe_load(handle) if yaml else None
        if yaml is not None:
            self.assertEqual(job["spec"]["template"]["spec"]["containers"][0]["image"],
                             "paramd-worker:0.1.0")
            self.assertEqual(statefulset["spec"]["template"]["spec"]["containers"][0]["image"],
                             "paramd:0.1.0")
        with open(DOCKERFILE) as handle:
            text = handle.read()
        self.assertIn("-t paramd:0.1.0 .", text)
        self.assertIn("--target worker -t paramd-worker:0.1.0 .", text)

    def test_non_root_user_volume_ports_health(self):
        users = instructions(self.runtime, "USER")
        self.assertEqual(len(users), 1)
        uid = users[0].split(":")[0]
        self.assertRegex(uid, r"^[1-9][0-9]*$", "USER must be a numeric non-root uid")
        self.assertIn("--uid %s" % uid, " ".join(instructions(self.runtime, "RUN")))
        volumes = json.loads(instructions(self.runtime, "VOLUME")[0])
        self.assertEqual(volumes, ["/var/lib/paramd"])
        self.assertEqual(instructions(self.runtime, "EXPOSE")[0].split(), ["8470", "8471"])
        health = instructions(self.runtime, "HEALTHCHECK")
        self.assertEqual(len(health), 1)
        self.assertRegex(health[0], r"CMD .*http://127\.0\.0\.1:8470/readyz")
        self.assertIn("curl", apt_packages(self.runtime))
        entrypoint = json.loads(instructions(self.runtime, "ENTRYPOINT")[0])
        self.assertEqual(entrypoint, ["/usr/local/bin/paramd", "--config", "/etc/paramd/paramd.conf"])

    def test_container_config_listens_everywhere_on_the_volume(self):
        copies = instructions(self.runtime, "COPY")
        self.assertIn("deploy/docker/paramd.conf /etc/paramd/paramd.conf", copies)
        with open(os.path.join(DEPLOY, "docker", "paramd.conf")) as handle:
            settings = config_settings(handle.read())
        self.assertEqual(settings["http"], "0.0.0.0:8470")
        self.assertEqual(settings["tcp"], "0.0.0.0:8471")
        self.assertEqual(settings["data-dir"], "/var/lib/paramd")
        # The real paramd accepts it (flags, which override, keep the test
        # on loopback and a temporary directory).
        with Server(["--config", os.path.join(DEPLOY, "docker", "paramd.conf")]) as server:
            self.assertEqual(server.request("GET", "/readyz")[0], 200)

    def test_copied_files_exist(self):
        """COPY sources are in the repository or in the build stage's
        `make install DESTDIR=/out` tree, and .dockerignore keeps host
        builds out of the context."""
        with tempfile.TemporaryDirectory() as destdir:
            environment = {k: v for k, v in os.environ.items()
                           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
            arguments = ["make", "-C", REPOSITORY_ROOT, "install", "DESTDIR=" + destdir,
                         "BUILD=" + os.path.relpath(BUILD, REPOSITORY_ROOT)]
            if os.path.basename(BUILD) == "sanitize":
                arguments.append("SANITIZE=1")
            installed = run(arguments, env=environment)
            self.assertEqual(installed.returncode, 0, installed.stderr)
            for stage in self.stages:
                for copy in instructions(stage, "COPY"):
                    words = [w for w in copy.split() if not w.startswith("--")]
                    for source in words[:-1]:
                        if "--from=build" in copy:
                            self.assertTrue(source.startswith("/out/"), source)
                            path = os.path.join(destdir, source[len("/out/"):])
                        elif source == ".":
                            continue
                        else:
                            path = os.path.join(REPOSITORY_ROOT, source)
                        self.assertTrue(os.path.exists(path), copy)
        with open(os.path.join(REPOSITORY_ROOT, ".dockerignore")) as handle:
            ignored = handle.read().split()
        self.assertIn("build", ignored)
        self.assertIn("var", ignored)


# ---------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------

@unittest.skipIf(yaml is None, "python3-yaml is not installed (deploy/install-deps.sh)")
class KubernetesManifestTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.files = sorted(glob.glob(os.path.join(K8S, "*.yaml")))
        cls.objects = []
        for path in cls.files:
            if os.path.basename(path) == "kustomization.yaml":
                continue
            with open(path) as handle:
                cls.objects += [(path, o) for o in yaml.safe_load_all(handle) if o is not None]

        def one(kind, name=None):
            found = [o for _, o in cls.objects
                     if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
            assert len(found) == 1, "%d %s objects named %s" % (len(found), kind, name)
            return found[0]

        cls.one = staticmethod(one)
        cls.statefulset = one("StatefulSet")
        cls.service = one("Service")
        cls.pod = cls.statefulset["spec"]["template"]
        cls.container = cls.pod["spec"]["containers"][0]
        cls.args = cls.container["args"]
        cls.replicas = cls.statefulset["spec"]["replicas"]
        cls.namespace = cls.statefulset["metadata"]["namespace"]
        cls.ports = {p["name"]: p["containerPort"] for p in cls.container["ports"]}

    def argument(self, option):
        self.assertIn(option, self.args)
        return self.args[self.args.index(option) + 1]

    def mount_of(self, path):
        """(volume, key) of the file at path in the container's mounts."""
        for mount in self.container["volumeMounts"]:
            prefix = mount["mountPath"].rstrip("/") + "/"
            if path.startswith(prefix):
                volume = next(v for v in self.pod["spec"]["volumes"] if v["name"] == mount["name"])
                return volume, path[len(prefix):]
        self.fail("%s is on no volume" % path)

    def config_map(self, name):
        return self.one("ConfigMap", name)

    def test_every_file_is_in_the_kustomization_and_namespaced(self):
        with open(os.path.join(K8S, "kustomization.yaml")) as handle:
            resources = yaml.safe_load(handle)["resources"]
        self.assertEqual(sorted(resources), sorted(os.path.basename(p) for p in self.files
                                                   if not p.endswith("kustomization.yaml")))
        self.one("Namespace", self.namespace)
        for path, o in self.objects:
            self.assertIn("apiVersion", o, path)
            if o["kind"] != "Namespace":
                self.assertEqual(o["metadata"].get("namespace"), self.namespace,
                                 "%s: %s" % (path, o["metadata"]["name"]))

    def test_headless_service_of_the_statefulset(self):
        spec = self.service["spec"]
        self.assertEqual(spec["clusterIP"], "None")
        self.assertEqual(self.statefulset["spec"]["serviceName"], self.service["metadata"]["name"])
        labels = self.pod["metadata"]["labels"]
        for key, value in spec["selector"].items():
            self.assertEqual(labels.get(key), value)
        for key, value in self.statefulset["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(labels.get(key), value)
        for port in spec["ports"]:
            self.assertEqual(self.ports[port["targetPort"]], port["port"], port)

    def test_shard_id_and_shard_map_wiring(self):
        self.assertEqual(self.argument("--shard-id"), "from-hostname")
        volume, key = self.mount_of(self.argument("--shard-map"))
        config_map = self.config_map(volume["configMap"]["name"])
        shard_map = json.loads(config_map["data"][key])
        sys.path.insert(0, os.path.join(REPOSITORY_ROOT, "client", "python"))
        from paramd.sharding import ShardMap
        parsed = ShardMap.from_json(shard_map)
        self.assertEqual(len(parsed.shards), self.replicas)
        name, service = self.statefulset["metadata"]["name"], self.service["metadata"]["name"]
        for i, shard in enumerate(sorted(shard_map["shards"], key=lambda s: s["id"])):
            host = "%s-%d.%s.%s.svc.cluster.local" % (name, i, service, self.namespace)
            self.assertEqual(shard["id"], i)
            self.assertEqual(shard["http"], "%s:%d" % (host, self.ports["http"]))
            self.assertEqual(shard["tcp"], "%s:%d" % (host, self.ports["tcp"]))

    def test_container_config(self):
        """The image reads /etc/paramd/paramd.conf: the ConfigMap's, with
        the data directory on the claim and threads matching the CPU limit."""
        volume, key = self.mount_of("/etc/paramd/paramd.conf")
        settings = config_settings(self.config_map(volume["configMap"]["name"])["data"][key])
        self.assertEqual(settings["http"], "0.0.0.0:%d" % self.ports["http"])
        self.assertEqual(settings["tcp"], "0.0.0.0:%d" % self.ports["tcp"])
        claims = [c["metadata"]["name"] for c in self.statefulset["spec"]["volumeClaimTemplates"]]
        data_mount = next(m for m in self.container["volumeMounts"]
                          if m["mountPath"] == settings["data-dir"])
        self.assertIn(data_mount["name"], claims)
        self.assertEqual(settings["threads"], str(self.container["resources"]["limits"]["cpu"]))

    def test_arguments_are_paramd_options(self):
        known = help_option_names()
        for argument in self.args:
            if argument.startswith("--"):
                name = argument[2:]
                self.assertIn(name, known, "%s is not an option of paramd" % argument)

    def test_token_file_from_a_secret(self):
        volume, key = self.mount_of(self.argument("--token-file"))
        secret = self.one("Secret", volume["secret"]["secretName"])
        items = {item["path"]: item["key"] for item in volume["secret"].get("items", [])}
        self.assertIn(items.get(key, key), secret["stringData"])
        roles = {}
        for line in secret["stringData"][items.get(key, key)].splitlines():
            role, token = line.split()
            self.assertIn(role, ("read", "write", "admin"))
            self.assertRegex(token, r"^[A-Za-z0-9._~+/-]{16,256}=*$")  # docs/SECURITY.md
            roles[token] = role
        # The workers' token is a write token of the file.
        self.assertEqual(roles[secret["stringData"]["worker-token"]], "write")
        # paramd itself accepts the file (tests/unit/test_auth.c has the format).
        with tempfile.NamedTemporaryFile("w", suffix=".tokens") as tokens:
            tokens.write(secret["stringData"][items.get(key, key)])
            tokens.flush()
            os.chmod(tokens.name, 0o600)
            with Server(["--token-file", tokens.name]) as server:
                self.assertIsNotNone(server.wait_for_log(r"authentication: 1 read, 1 write and "
                                                         r"1 admin"), server.log_text())
                status, _, _, _ = server.request("GET", "/v1/models", headers={
                    "Authorization": "Bearer " + secret["stringData"]["worker-token"]})
                self.assertEqual(status, 200)
                self.assertEqual(server.request("GET", "/v1/models")[0], 401)

    def test_probes(self):
        for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez"),
                            ("readinessProbe", "/readyz")):
            get = self.container[probe]["httpGet"]
            self.assertEqual(get["path"], path)
            self.assertIn(get["port"], (self.ports["http"], "http"))
        startup = self.container["startupProbe"]
        # Long enough to restore large checkpoints before paramd listens.
        self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"], 300)

    def test_storage_resources_security_and_scraping(self):
        claims = self.statefulset["spec"]["volumeClaimTemplates"]
        self.assertEqual(len(claims), 1)
        self.assertIn("ReadWriteOnce", claims[0]["spec"]["accessModes"])
        self.assertIn("storage", claims[0]["spec"]["resources"]["requests"])
        requests = self.container["resources"]["requests"]
        self.assertIn("cpu", requests)
        self.assertIn("memory", requests)
        security = self.pod["spec"]["securityContext"]
        self.assertTrue(security["runAsNonRoot"])
        runtime = dockerfile_stages(DOCKERFILE)[-1]
        self.assertEqual(str(security["runAsUser"]), instructions(runtime, "USER")[0].split(":")[0])
        self.assertGreaterEqual(self.pod["spec"]["terminationGracePeriodSeconds"], 60)
        annotations = self.pod["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(annotations["prometheus.io/port"], str(self.ports["http"]))
        self.assertEqual(annotations["prometheus.io/path"], "/metrics")

    def test_worker_job(self):
        job = self.one("Job")
        self.assertEqual(job["spec"]["completionMode"], "Indexed")
        spec = job["spec"]["template"]["spec"]
        self.assertIn(spec["restartPolicy"], ("OnFailure", "Never"))
        container = spec["containers"][0]
        environment = {e["name"]: e.get("value") for e in container.get("env", [])}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        # The shard map: the shards' ConfigMap, at PARAMD_SHARD_MAP.
        shard_map = environment["PARAMD_SHARD_MAP"]
        name = next(n for n, p in mounts.items() if shard_map.startswith(p + "/"))
        self.assertEqual(volumes[name]["configMap"]["name"], self.config_map("paramd-config")["metadata"]["name"])
        self.assertIn(os.path.basename(shard_map), self.config_map("paramd-config")["data"])
        # The program: a key of the worker ConfigMap that the command runs.
        script = container["command"][-1]
        name = next(n for n, p in mounts.items() if script.startswith(p + "/"))
        worker_map = self.config_map(volumes[name]["configMap"]["name"])
        self.assertIn(os.path.basename(script), worker_map["data"])
        compile(worker_map["data"][os.path.basename(script)], script, "exec")

    def materialise_mounts(self, directory):
        """Writes the ConfigMap and Secret volumes the container mounts
        under directory, as the kubelet would; returns [(mountPath, local)]."""
        mounts = []
        for mount in self.container["volumeMounts"]:
            volume = next((v for v in self.pod["spec"]["volumes"] if v["name"] == mount["name"]),
                          {})  # none: a claim of volumeClaimTemplates
            if "configMap" in volume:
                source, data = volume["configMap"], self.config_map(volume["configMap"]["name"])["data"]
            elif "secret" in volume:
                source = volume["secret"]
                data = self.one("Secret", source["secretName"])["stringData"]
            else:
                continue
            items = {i["key"]: i["path"] for i in source.get("items", [])} or {k: k for k in data}
            local = os.path.join(directory, mount["name"])
            os.makedirs(local)
            for key, path in items.items():
                with open(os.path.join(local, path), "w") as handle:
                    handle.write(data[key])
            mounts.append((mount["mountPath"].rstrip("/") + "/", local + "/"))
        return mounts

    def test_pod_command_line_runs_as_pod_one(self):
        """The image's entrypoint with the mounted ConfigMap and Secret
        files and the StatefulSet's arguments, in a UTS namespace named
        paramd-1: shard 1 of the ConfigMap's map (flags keep it on
        loopback and a temporary data directory)."""
        if not shutil.which("unshare") or run(["unshare", "--uts", "true"]).returncode != 0:
            self.skipTest("unshare --uts is not permitted here (needs root)")
        known = help_option_names()
        runtime = dockerfile_stages(DOCKERFILE)[-1]
        entrypoint = json.loads(instructions(runtime, "ENTRYPOINT")[0])
        with tempfile.TemporaryDirectory() as directory:
            mounts = self.materialise_mounts(directory)

            def local(argument):
                for mount_path, path in mounts:
                    if argument.startswith(mount_path):
                        return path + argument[len(mount_path):]
                return argument

            arguments = [local(a) for a in entrypoint[1:]]
            self.assertTrue(os.path.exists(arguments[-1]), "the image's config is not mounted")
            arguments += [local(argument) for argument in self.args]
            self.assertIn("token-file", known)
            wrapper = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', "paramd-1"]
            # Server puts --http, --tcp and --data-dir first, then these; the
            # file's settings give way to all of them.
            with Server(arguments, wrapper=wrapper) as server:
                self.assertRegex(server.log_text(), r"listening: .* shard=1/%d " % self.replicas)
                # The Secret's token file is in force; the probes need no token.
                self.assertIsNotNone(server.wait_for_log(r"authentication: 1 read, 1 write and 1 "
                                                         r"admin tokens"), server.log_text())
                self.assertEqual(server.request("GET", "/readyz")[0], 200)
                self.assertEqual(server.request("GET", "/livez")[0], 200)
                self.assertEqual(server.request("GET", "/v1/models")[0], 401)

    def test_worker_program_trains_against_real_shards(self):
        """The Job's worker.py, two of them, against two real shards that
        require the Secret's tokens, with the Secret's worker token."""
        job = self.one("Job")
        container = job["spec"]["template"]["spec"]["containers"][0]
        script = self.config_map("paramd-worker")["data"][os.path.basename(container["command"][-1])]
        secret = self.one("Secret", "paramd-tokens")["stringData"]
        with tempfile.TemporaryDirectory() as directory:
            paths = {}
            for name, text in (("worker.py", script), ("tokens", secret["tokens"]),
                               ("worker-token", secret["worker-token"])):
                paths[name] = os.path.join(directory, name)
                with open(paths[name], "w") as handle:
                    handle.write(text)
                os.chmod(paths[name], 0o600)
            with Cluster(2, split_threshold=8,
                         extra_args=["--token-file", paths["tokens"]]) as cluster:
                workers = []
                for index in range(2):
                    environment = dict(os.environ, PARAMD_SHARD_MAP=cluster.map_path,
                                       JOB_COMPLETION_INDEX=str(index), STEPS="200",
                                       PYTHONPATH=os.path.join(REPOSITORY_ROOT, "client", "python"),
                                       WAIT_SECONDS="60", PARAMD_TOKEN_FILE=paths["worker-token"])
                    workers.append(subprocess.Popen([sys.executable, paths["worker.py"]],
                                                    env=environment, stdout=subprocess.PIPE,
                                                    stderr=subprocess.STDOUT, text=True))
                for index, worker in enumerate(workers):
                    output = worker.communicate(timeout=300)[0]
                    self.assertEqual(worker.returncode, 0, output)
                    self.assertIn("worker %d done" % index, output)
                # w is split over both shards, so each took every push of
                # both workers, and saw them by name.
                authorization = {"Authorization": "Bearer " + secret["worker-token"]}
                for server in cluster.servers:
                    status, _, body, raw = server.request("GET", "/v1/models/k8s-demo",
                                                          headers=authorization)
                    self.assertEqual(status, 200, raw)
                    self.assertEqual(body["step"], 400)
                    self.assertEqual(sorted(body["consistency"]["seen_workers"]),
                                     ["worker-0", "worker-1"])
                    self.assertEqual(server.request("GET", "/v1/models/k8s-demo")[0], 401)


# ---------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------

@unittest.skipIf(yaml is None, "python3-yaml is not installed (deploy/install-deps.sh)")
class PrometheusConfigTest(unittest.TestCase):

    def setUp(self):
        with open(os.path.join(DEPLOY, "prometheus.yml")) as handle:
            self.config = yaml.safe_load(handle)
        self.jobs = {job["job_name"]: job for job in self.config["scrape_configs"]}

    @unittest.skipUnless(shutil.which("promtool"), "promtool (prometheus) is not installed")
    def test_promtool_accepts_it(self):
        """promtool checks that credentials files exist: the read token is
        written where Prometheus' pod would have the Secret mounted."""
        with open(os.path.join(DEPLOY, "prometheus.yml")) as handle:
            text = handle.read()
        credentials = self.jobs["paramd-k8s"]["authorization"]["credentials_file"]
        with tempfile.TemporaryDirectory() as directory:
            token = os.path.join(directory, "read-token")
            with open(token, "w") as handle:
                handle.write("CHANGE-ME-prometheus-token\n")
            config = os.path.join(directory, "prometheus.yml")
            with open(config, "w") as handle:
                handle.write(text.replace(credentials, token))
            result = run(["promtool", "check", "config", config])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_kubernetes_job_sends_the_secrets_read_token(self):
        """The StatefulSet runs with --token-file, so /metrics (with
        --metrics-auth read, the default) needs a read token: the Secret
        has one for Prometheus, listed with the read role."""
        credentials = self.jobs["paramd-k8s"]["authorization"]["credentials_file"]
        with open(os.path.join(K8S, "secret.yaml")) as handle:
            secret = yaml.safe_load(handle)["stringData"]
        self.assertEqual(os.path.basename(credentials), "read-token")
        self.assertIn("read %s" % secret["read-token"], secret["tokens"].splitlines())

    def test_kubernetes_targets_are_the_statefulset_pods(self):
        with open(os.path.join(K8S, "statefulset.yaml")) as handle:
            statefulset = yaml.safe_load(handle)
        with open(os.path.join(K8S, "service.yaml")) as handle:
            service = yaml.safe_load(handle)
        container = statefulset["spec"]["template"]["spec"]["containers"][0]
        http = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
        name, namespace = statefulset["metadata"]["name"], statefulset["metadata"]["namespace"]
        expected = ["%s-%d.%s.%s.svc.cluster.local:%d" % (name, i, service["metadata"]["name"],
                                                          namespace, http)
                    for i in range(statefulset["spec"]["replicas"])]
        job = self.jobs["paramd-k8s"]
        self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")
        targets = [t for group in job["static_configs"] for t in group["targets"]]
        self.assertEqual(targets, expected)
        shards = [group["labels"]["shard"] for group in job["static_configs"]]
        self.assertEqual(shards, [str(i) for i in range(len(expected))])

    def test_local_targets_are_the_local_cluster(self):
        # deploy/local-cluster.sh: shard i's HTTP port is 8470 + 10 i.
        targets = [t for g in self.jobs["paramd-local"]["static_configs"] for t in g["targets"]]
        self.assertEqual(targets, ["127.0.0.1:%d" % (8470 + 10 * i) for i in range(len(targets))])

    def test_kubernetes_discovery_example_keeps_the_annotated_pods(self):
        with open(os.path.join(K8S, "prometheus-kubernetes-sd.yml")) as handle:
            job = yaml.safe_load(handle)["scrape_configs"][0]
        self.assertEqual(job["kubernetes_sd_configs"][0]["role"], "pod")
        keep = job["relabel_configs"][0]
        self.assertEqual(keep["source_labels"],
                         ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"])
        self.assertEqual((keep["action"], keep["regex"]), ("keep", "true"))


if __name__ == "__main__":
    unittest.main()
