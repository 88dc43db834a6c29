"""paramd.Client: models, pushes and pulls with numpy arrays, over the
binary protocol (or HTTP), on one server or a sharded service.

    client = paramd.Client("127.0.0.1:8471")                     # one server
    client = paramd.Client(shard_map="var/cluster/shard-map.json")  # shards
    client.create("m", {"optimizer": {"name": "AdamW"},
                        "tensors": [{"name": "w", "shape": [3]}]})
    result = client.pushpull("m", {"w": np.ones(3)}, worker="w0")
    result.weights["w"], result.step

docs/PYTHON.md is the guide.
"""

import base64
import concurrent.futures
import math
import json
import os
import re
import socket
import threading
import time

import numpy as np

from . import dtypes
from . import errors
from . import protocol as wire
from . import transport
from .transport import check_token, tls_context
from .sharding import ShardMap

DEFAULT_TCP_PORT = 8471
DEFAULT_HTTP_PORT = 8470
# The optimizers whose update needs the whole tensor: a sharded service
# never splits their tensors (docs/SHARDING.md, "Placement").
WHOLE_TENSOR_OPTIMIZERS = ("LAMB", "LARS", "Adafactor", "Muon")
AUTO = "auto"
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


def default_worker_name():
    """host-pid, in the model-name rules (what workers call themselves by default)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100].lstrip(".") or "host"
    return "%s-%d" % (host, os.getpid())


class TensorPlacement:
    """Where one tensor lives: `pieces` is [(shard, offset, count)] in
    shard order, one whole piece for a tensor held by one shard."""

    __slots__ = ("name", "shape", "count", "pieces")

    def __init__(self, name, shape, count, pieces):
        self.name, self.shape, self.count, self.pieces = name, tuple(shape), count, pieces

    @property
    def split(self):
        return len(self.pieces) > 1

    def __repr__(self):
        return "TensorPlacement(%r, shape=%r, pieces=%r)" % (self.name, self.shape, self.pieces)


class _Model:
    """What the client knows about a model: placement, ids, steps."""

    def __init__(self, name):
        self.name = name
        self.tensors = {}      # name -> TensorPlacement, in the order the shards list them
        self.ids = {}          # shard -> (model_id, {tensor: tensor_id}) over TCP
        self.steps = {}        # shard -> the step that shard last reported
        self.description = None
        self.lock = threading.Lock()

    @property
    def shards(self):
        return sorted({s for t in self.tensors.values() for s, _, _ in t.pieces})

    @property
    def spans_shards(self):
        return len(self.shards) > 1

    def note_step(self, shard, step):
        with self.lock:
            self.steps[shard] = step


class Weights(dict):
    """{tensor: float32 numpy array of its shape}, with the `step` read (the
    largest over the shards) and `steps` by shard."""

    def __init__(self, values, steps):
        super().__init__(values)
        self.steps = dict(steps)
        self.step = max(steps.values()) if steps else 0


class PushResult:
    """What a push did.  `step` is the model's step after it (the largest of
    the shards' when several took part; `steps` has each), `lr` the learning
    rate used, `grad_norm` the norm before clipping (NaN when the model does
    not clip by norm), `loss_scale` (NaN without one), `skipped`,
    `accumulated`, `dropped` (sync: too late for its step), `staleness`
    (HTTP replies only, else None), `evaluate` (LBFGS models: the weights
    are the next point to evaluate and the step goes on; False once the
    step is done and the weights are its result), and `weights` ({tensor:
    float32 array}, for pushpull; {} for push)."""

    __slots__ = ("step", "steps", "lr", "grad_norm", "loss_scale", "skipped", "accumulated",
                 "dropped", "staleness", "weights", "sent_grad_norm", "evaluate")

    def __repr__(self):
        return ("PushResult(step=%d, lr=%r, grad_norm=%r, skipped=%r, weights=%s)"
                % (self.step, self.lr, self.grad_norm, self.skipped, sorted(self.weights)))


class _Reply:
    """One shard's push reply."""
    __slots__ = ("step", "lr", "grad_norm", "loss_scale", "skipped", "accumulated", "dropped",
                 "staleness", "weights", "evaluate")


class _Gathered:
    """A request fanned out to several shards: result() waits for every
    part, then combines them, or raises the error of the lowest shard (with
    every shard's error in `.shard_errors`)."""

    def __init__(self, parts, combine, timeout, on_error=None):
        self._parts, self._combine, self._timeout = parts, combine, timeout
        self._on_error = on_error
        self._done, self._value, self._error = False, None, None

    def done(self):
        return self._done or all(p.done() for p in self._parts.values())

    def result(self, timeout=None):
        """The combined result; raises the error of the lowest failed shard,
        or Timeout (not final: call again) when a reply has not come in time."""
        if not self._done:
            timeout = self._timeout if timeout is None else timeout
            deadline = None if timeout is None else time.monotonic() + timeout
            for shard in sorted(self._parts):
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self._parts[shard].wait(left):
                    raise errors.Timeout(errors.TIMEOUT, "no reply from %s within %g s (the "
                                         "request may still be applied)"
                                         % ("shard %d" % shard if len(self._parts) > 1
                                            else "the server", timeout), shard
                                         if len(self._parts) > 1 else None)
            values, failures = {}, {}
            for shard in sorted(self._parts):
                try:
                    values[shard] = self._parts[shard].result(0)
                except errors.ParamdError as failure:
                    if failure.shard is None and len(self._parts) > 1:
                        failure.shard = shard
                    failures[shard] = failure
            if failures:
                error = failures[min(failures)]
                error.shard_errors = failures
                error.applied_on = sorted(values)
                if self._on_error is not None:
                    self._on_error(failures, values)
                self._error = error
            else:
                try:
                    self._value = self._combine(values)
                except errors.ParamdError as failure:
                    self._error = failure
            self._done = True
        if self._error is not None:
            raise self._error
        return self._value


def _count(shape):
    count = 1
    for size in shape:
        count *= int(size)
    return count


def _b64(array):
    return base64.b64encode(memoryview(array).cast("B")).decode("ascii")


def _from_b64(obj, what):
    if not isinstance(obj, dict) or "b64" not in obj:
        raise errors.ParamdError(errors.BAD_FRAME, "%s: expected base64 floats" % what)
    return dtypes.decode(base64.b64decode(obj["b64"]), dtypes.code(obj.get("dtype", "float32")))


def norm_of(values, norm_type=2.0):
    """The p-norm of one array, exactly as the server computes it for
    clipping (server/clip.c): float32 values widened to double and summed
    one after the other in element order."""
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if math.isinf(norm_type):
        return float(np.max(np.abs(values))) if values.size else 0.0
    total = 0.0
    chunk = 1 << 20
    for start in range(0, values.size, chunk):
        part = np.abs(values[start:start + chunk].astype(np.float64))
        if norm_type == 2:
            part = part * part
        elif norm_type != 1:
            part = np.power(part, norm_type)
        # np.add.accumulate is strictly sequential, as the server's loop.
        total = float(np.add.accumulate(np.concatenate(([total], part)))[-1])
    if norm_type == 2:
        return math.sqrt(total)
    if norm_type == 1:
        return total
    return math.pow(total, 1.0 / norm_type)


def total_norm(arrays, norm_type=2.0):
    """The global norm of several gradients (the p-norm of their p-norms),
    as one server computes it over the tensors of a push, in that order."""
    norms = [norm_of(a, norm_type) for a in arrays]
    if math.isinf(norm_type):
        return max(norms) if norms else 0.0
    total = 0.0
    for n in norms:
        total += n * n if norm_type == 2 else math.pow(n, norm_type)
    return math.sqrt(total) if norm_type == 2 else math.pow(total, 1.0 / norm_type)


def merge_descriptions(descriptions, order=None):
    """One description of a model held by several shards: shard 0's, with
    `tensors` holding every tensor once (whole shape and numel, `shards`:
    the shards that hold it), `parameters` and `memory_bytes` summed, `step`
    the largest, and `shards` the shards' own descriptions by id."""
    if len(descriptions) == 1:
        return next(iter(descriptions.values()))
    first = descriptions[min(descriptions)]
    merged = dict(first)
    merged.pop("shard", None)
    tensors = {}
    for shard in sorted(descriptions):
        for entry in descriptions[shard].get("tensors", []):
            name = entry["name"]
            if name not in tensors:
                whole = dict(entry)
                whole.pop("range", None)
                whole["numel"] = entry.get("range", {}).get("of", entry.get("numel"))
                whole["shards"] = []
                tensors[name] = whole
            tensors[name]["shards"].append(shard)
    names = list(tensors)
    if order:
        rank = {name: i for i, name in enumerate(order)}
        names.sort(key=lambda n: rank.get(n, len(rank)))
    merged["tensors"] = [tensors[n] for n in names]
    for key in ("parameters", "memory_bytes"):
        if all(key in d for d in descriptions.values()):
            merged[key] = sum(d[key] for d in descriptions.values())
    merged["step"] = max(d.get("step", 0) for d in descriptions.values())
    merged["shards"] = {s: descriptions[s] for s in sorted(descriptions)}
    return merged


class _Shard:
    def __init__(self, shard_id, tcp=None, http=None):
        self.id, self.tcp, self.http = shard_id, tcp, http

    def close(self):
        for connection in (self.tcp, self.http):
            if connection is not None:
                connection.close()


class Client:
    """A client of one paramd server or of a sharded service.

    Client("host:port")           the binary protocol at host:port (default 127.0.0.1:8471)
    Client("http://host:port")    the HTTP API only
    Client("https://host:port")   the HTTP API over TLS (tls_ca=PATH for a private CA)
    Client(shard_map=PATH)        every shard of a map (a path, a ShardMap or its JSON document)

    http="host:port" adds a single server's HTTP address (for patch() and
    state(), which only the HTTP API serves); a shard map has its own.
    transport="http" makes every request use HTTP (the fallback when the
    binary protocol is not reachable); the default uses the binary protocol
    wherever an address for it is known.  `worker` names this client in its
    pushes (see docs/SHARDING.md, "Consistency modes"); `timeout` (seconds)
    bounds connects and every call.

    `token` is the bearer token of a server with --token-file: it goes in
    HELLO over the binary protocol and in `Authorization: Bearer` over HTTP.
    When token is None (the default) the environment variable PARAMD_TOKEN
    gives it; token="" sends none even when PARAMD_TOKEN is set.  `tls_ca`
    is the CA file (or the server's self-signed certificate) that https://
    addresses are verified against; without it, the system's trust store.
    Certificates are always verified.

    Thread-safe: several threads may share one client; requests of
    different threads are pipelined on the same connections.
    """

    def __init__(self, address=None, *, shard_map=None, http=None, transport=None,
                 timeout=120.0, worker=None, token=None, name="paramd-python", tls_ca=None):
        if transport not in (None, "tcp", "http"):
            raise ValueError("transport must be 'tcp' or 'http', got %r" % (transport,))
        if address is not None and shard_map is not None:
            raise ValueError("give an address or a shard_map, not both")
        self.timeout = timeout
        self.worker = worker
        if token is None:
            token = os.environ.get("PARAMD_TOKEN", "").strip()
        self._token, self._name = check_token(token), name
        self._tls_ca = tls_ca
        # One context for every HTTPS connection; loading the CA file here
        # makes a missing or bad file fail now, not at the first request.
        self._tls_context = None
        if tls_ca is not None:
            self._tls_context = tls_context(tls_ca)
        self._transport = transport
        self._lock = threading.Lock()
        self._models = {}
        self._executor = None
        if shard_map is not None:
            if isinstance(shard_map, ShardMap):
                self.shard_map = shard_map
                self._map_path = None
            elif isinstance(shard_map, dict):
                self.shard_map = ShardMap.from_json(shard_map)
                self._map_path = None
            else:
                self._map_path = os.fspath(shard_map)
                self.shard_map = ShardMap.load(self._map_path)
            self.map_version = self.shard_map.version
            self._shards = [self._make_shard(s.id, s.tcp, s.http) for s in self.shard_map.shards]
        else:
            self.shard_map, self._map_path, self.map_version = None, None, None
            tcp = None
            if address is not None and str(address).startswith(("http://", "https://")):
                http, tcp = http or address, None
            elif address is not None or http is None:
                tcp = address if address is not None else "127.0.0.1:%d" % DEFAULT_TCP_PORT
            self._shards = [self._make_shard(0, tcp, http)]
        if tls_ca is not None and not any(s.http is not None and s.http.tls for s in self._shards):
            raise ValueError("tls_ca is given, but the client has no https:// address (the "
                             "binary protocol has no TLS)")

    def _make_shard(self, shard_id, tcp_address, http_address):
        tcp = http = None
        if tcp_address and self._transport != "http":
            scheme, host, port = transport.parse_url(tcp_address, DEFAULT_TCP_PORT)
            if scheme == "https":
                raise ValueError("%s: the binary protocol has no TLS; give an https:// address "
                                 "as the HTTP address" % (tcp_address,))
            tcp = transport.TcpConnection(host, port, self.timeout, self._token, self._name,
                                          shard=shard_id if self.shard_map else None,
                                          map_version=self.map_version)
        if http_address:
            scheme, host, port = transport.parse_url(http_address, DEFAULT_HTTP_PORT)
            tls = scheme == "https"
            if tls and self._tls_context is None:
                self._tls_context = tls_context()
            http = transport.HttpConnection(host, port, self.timeout,
                                            shard=shard_id if self.shard_map else None,
                                            map_version=self.map_version, token=self._token,
                                            tls=tls, context=self._tls_context if tls else None)
        if tcp is None and http is None:
            raise ValueError("shard %d has no %s address" % (
                shard_id, "HTTP" if self._transport == "http" else "usable"))
        return _Shard(shard_id, tcp, http)

    # -- lifetime -----------------------------------------------------------

    def close(self):
        for shard in self._shards:
            shard.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def reload_shard_map(self, shard_map=None):
        """Reads the shard map again (from its file, or the one given),
        reconnects and forgets every model's placement: what to do after a
        StaleShardMap."""
        if shard_map is None:
            if self._map_path is None:
                raise ValueError("this client's shard map came from no file: pass the new one")
            shard_map = self._map_path
        new = shard_map if isinstance(shard_map, ShardMap) else (
            ShardMap.from_json(shard_map) if isinstance(shard_map, dict) else ShardMap.load(shard_map))
        old_shards = self._shards
        with self._lock:
            self.shard_map, self.map_version = new, new.version
            self._shards = [self._make_shard(s.id, s.tcp, s.http) for s in new.shards]
            self._models.clear()
        for shard in old_shards:
            shard.close()

    @property
    def shard_count(self):
        return len(self._shards)

    def _run(self, function):
        """function() in a thread, as a Pending (for HTTP fan-outs)."""
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(2, 2 * len(self._shards)), thread_name_prefix="paramd")
            executor = self._executor
        pending = transport.Pending()

        def work():
            try:
                pending._finish(function())
            except errors.ParamdError as failure:
                pending._finish(error=failure)
            except BaseException as failure:   # a bug: keep it visible
                pending._finish(error=errors.ParamdError(errors.CODES["internal"],
                                                         "%s: %s" % (type(failure).__name__, failure)))
        executor.submit(work)
        return pending

    def _use_tcp(self, shard):
        return shard.tcp is not None

    def _http_of(self, shard, what):
        if shard.http is None:
            raise errors.ParamdError(errors.INVALID_ARGUMENT,
                                     "%s needs the HTTP API, and the client has no HTTP address "
                                     "for %s (give http=HOST:PORT, or a shard map with \"http\")"
                                     % (what, "the server" if self.shard_map is None
                                        else "shard %d" % shard.id))
        return shard.http

    def _gather(self, parts, combine, on_error=None):
        return _Gathered(parts, combine, self.timeout, on_error)

    # -- control plane ------------------------------------------------------

    def _json_call(self, shard, opcode, model="", body=None, http=None):
        """A JSON operation on one shard, as a Pending."""
        if self._use_tcp(shard):
            if opcode == wire.CREATE:
                text = json.dumps(body)
                encode = lambda rid: wire.encode_create(rid, model, text)  # noqa: E731
            else:
                encode = lambda rid: wire.encode_model_request(opcode, rid, model)  # noqa: E731
            if opcode == wire.DELETE:
                decode = transport.expect(opcode, lambda payload: None)
            else:
                decode = transport.expect(opcode, lambda payload: json.loads(
                    wire.decode_json_reply(payload)))
            return shard.tcp.submit(encode, decode)
        method, path, http_body = http
        return self._run(lambda: shard.http.request(method, path, http_body))

    def create(self, model, body):
        """Creates a model (on every shard) from the JSON body of
        `PUT /v1/models/{model}` (docs/API.md).  Returns its description
        (merged over the shards: see merge_descriptions).  Raises
        ModelExists when the name is taken on a shard."""
        self.forget(model)
        parts = {s.id: self._json_call(s, wire.CREATE, model, body,
                                       ("PUT", "/v1/models/" + _quote(model), body))
                 for s in self._shards}
        order = [t.get("name") for t in body.get("tensors", [])] if isinstance(body, dict) else None
        return self._gather(parts, lambda d: merge_descriptions(d, order)).result()

    def describe(self, model):
        """The model's description (GET /v1/models/{model}), merged over the shards."""
        parts = {s.id: self._json_call(s, wire.STATS, model, None,
                                       ("GET", "/v1/models/" + _quote(model), None))
                 for s in self._shards}
        info = self._models.get(model)
        order = list(info.tensors) if info is not None else None
        return self._gather(parts, lambda d: merge_descriptions(d, order)).result()

    def delete(self, model):
        """Deletes the model from every shard.  Raises ModelNotFound only
        when no shard had it."""
        self.forget(model)
        parts = {s.id: self._json_call(s, wire.DELETE, model, None,
                                       ("DELETE", "/v1/models/" + _quote(model), None))
                 for s in self._shards}
        for shard in sorted(parts):
            parts[shard].wait(self.timeout)
        missing = [s for s, p in parts.items() if isinstance(p.exception(0), errors.ModelNotFound)]
        if len(missing) == len(parts):
            parts[min(parts)].result(0)
        for shard in sorted(parts):
            if shard not in missing:
                parts[shard].result(0)

    def list(self):
        """{"models": [...]}: every model, once, sorted by name; over several
        shards `parameters` is summed and `step` is the largest."""
        parts = {s.id: self._json_call(s, wire.LIST, "", None, ("GET", "/v1/models", None))
                 for s in self._shards}

        def combine(listings):
            if len(listings) == 1:
                return next(iter(listings.values()))
            models = {}
            for shard in sorted(listings):
                for entry in listings[shard].get("models", []):
                    merged = models.setdefault(entry["name"], dict(entry, parameters=0, step=0,
                                                                   shards=0))
                    merged["parameters"] += entry.get("parameters", 0)
                    merged["step"] = max(merged["step"], entry.get("step", 0))
                    merged["shards"] += 1
                    merged.pop("tensors", None)
            return {"models": [models[n] for n in sorted(models)]}
        return self._gather(parts, combine).result()

    def stats(self):
        """The server's counters (binary STATS), by shard id."""
        parts = {}
        for s in self._shards:
            if s.tcp is None:
                raise errors.ParamdError(errors.INVALID_ARGUMENT,
                                         "stats needs the binary protocol (the HTTP API has no such "
                                         "route)")
            parts[s.id] = self._json_call(s, wire.STATS, "")
        return self._gather(parts, lambda d: d).result()

    def patch(self, model, body):
        """PATCH /v1/models/{model} on every shard (HTTP only): changes
        hyperparameters and training options.  Returns the merged description."""
        self.forget(model)
        parts = {s.id: self._run(lambda s=s: self._http_of(s, "patch").request(
            "PATCH", "/v1/models/" + _quote(model), body)) for s in self._shards}
        return self._gather(parts, lambda d: merge_descriptions(d)).result()

    # -- placement ----------------------------------------------------------

    def forget(self, model):
        """Drops what the client cached about a model (placement, ids,
        description); the next call learns it again."""
        with self._lock:
            self._models.pop(model, None)

    def placement(self, model):
        """{tensor: TensorPlacement}, learned from the shards (LOOKUP over
        the binary protocol, the description over HTTP) and cached."""
        return dict(self._model(model).tensors)

    def _model(self, model):
        with self._lock:
            info = self._models.get(model)
        if info is not None:
            return info
        info = self._learn(model)
        with self._lock:
            self._models.setdefault(model, info)
            return self._models[model]

    def _learn(self, model):
        info = _Model(model)
        parts = {}
        for s in self._shards:
            if self._use_tcp(s):
                parts[s.id] = s.tcp.submit(lambda rid: wire.encode_lookup(rid, model),
                                           transport.expect(wire.LOOKUP, wire.decode_lookup_reply))
            else:
                parts[s.id] = self._run(lambda s=s: s.http.request("GET", "/v1/models/" + _quote(model)))
        answers = self._gather(parts, lambda d: d).result()
        held = {}   # tensor -> {"shape", "count", "shards": {shard: (offset, count)}}
        for shard in sorted(answers):
            answer = answers[shard]
            if "model_id" in answer:     # LOOKUP
                ids = {}
                for t in answer["tensors"]:
                    ids[t.name] = t.tensor_id
                    entry = held.setdefault(t.name, {"shape": list(t.shape), "count": t.count,
                                                     "shards": {}})
                    self._check_same(model, t.name, entry, list(t.shape), t.count, shard)
                    entry["shards"][shard] = None
                info.ids[shard] = (answer["model_id"], ids)
                info.steps[shard] = answer["step"]
            else:                        # a description over HTTP
                for t in answer.get("tensors", []):
                    count = t.get("range", {}).get("of", t["numel"])
                    entry = held.setdefault(t["name"], {"shape": list(t["shape"]), "count": count,
                                                        "shards": {}})
                    self._check_same(model, t["name"], entry, list(t["shape"]), count, shard)
                    r = t.get("range")
                    entry["shards"][shard] = (r["offset"], r["count"]) if r else None
                info.steps[shard] = answer.get("step", 0)
        if all("model_id" not in a for a in answers.values()):
            info.description = merge_descriptions(answers)
        shard_count = len(self._shards)
        for name, entry in held.items():
            count, holders = entry["count"], entry["shards"]
            if len(holders) == 1:
                (shard,) = holders
                pieces = [(shard, 0, count)]
            else:
                pieces = []
                for k in range(shard_count):
                    offset, end = count * k // shard_count, count * (k + 1) // shard_count
                    if end > offset:
                        pieces.append((k, offset, end - offset))
                if sorted(holders) != [k for k, _, _ in pieces] or any(
                        holders[k] not in (None, (o, n)) for k, o, n in pieces):
                    raise self._placement_error(model, name, sorted(holders))
            info.tensors[name] = TensorPlacement(name, entry["shape"], count, pieces)
        return info

    def _placement_error(self, model, name, holders):
        """A tensor held by shards that are not a split over all of this
        client's shards: StaleShardMap when a shard's map version is not
        the client's, else NotOwner."""
        message = ("tensor %r of model %r is held by shards %s, which is not a split over all %d "
                   "shards of the client's map" % (name, model, holders, len(self._shards)))
        for shard in holders:
            try:
                description = self._json_call(self._shards[shard], wire.STATS, model, None, (
                    "GET", "/v1/models/" + _quote(model), None)).result(self.timeout)
            except errors.ParamdError:
                continue
            version = description.get("shard", {}).get("shard_map_version")
            if version is not None and version != self.map_version:
                return errors.StaleShardMap(message, shard, self.map_version, version)
        return errors.NotOwner(errors.NOT_OWNER, message)

    @staticmethod
    def _check_same(model, name, entry, shape, count, shard):
        if entry["shape"] != shape or entry["count"] != count:
            raise errors.ParamdError(errors.SHAPE_MISMATCH,
                                     "tensor %r of model %r has shape %s on shard %d but %s on "
                                     "another shard" % (name, model, shape, shard, entry["shape"]),
                                     shard)

    def _description(self, info):
        if info.description is None:
            info.description = self.describe(info.name)
        return info.description

    # -- pushes -------------------------------------------------------------

    def _prepare(self, info, grads, dtype):
        """[(name, wire dtype, flat wire array)] in the order given."""
        prepared = []
        for name, values in grads.items():
            placement = info.tensors.get(name)
            if placement is None:
                raise errors.ParamdError(errors.TENSOR_NOT_FOUND,
                                         "grads.%s: model %r has no tensor %r" % (name, info.name,
                                                                                  name))
            dt = dtypes.wire_dtype(values, dtype.get(name) if isinstance(dtype, dict) else dtype)
            data = dtypes.encode(values, dt)
            if data.size != placement.count:
                raise errors.ParamdError(errors.SHAPE_MISMATCH,
                                         "grads.%s: tensor has %d elements, got %d values"
                                         % (name, placement.count, data.size))
            prepared.append((name, dt, data))
        if not prepared:
            raise errors.ParamdError(errors.INVALID_ARGUMENT, "a push needs at least one gradient")
        return prepared

    def _clip_norm_type(self, info):
        """The norm type when the model clips by total norm, else None."""
        clip = self._description(info).get("clip")
        if not clip or "max_norm" not in clip or clip.get("per_tensor"):
            return None
        norm_type = clip.get("norm_type", 2.0)
        return math.inf if norm_type in ("inf", math.inf) else float(norm_type)

    def push_async(self, model, grads, **options):
        """push() without waiting: returns a pending result (result(timeout))."""
        return self._push(model, grads, False, options, copy=True)

    def pushpull_async(self, model, grads, **options):
        """pushpull() without waiting: returns a pending result, whose
        result(timeout=None) returns the PushResult or raises.  Requests on
        one connection are pipelined (written at once, answered in order);
        the gradients are copied when needed, so the arrays may be reused
        at once.  Over HTTP the request runs in a thread."""
        return self._push(model, grads, True, options, copy=True)

    def push(self, model, grads, **options):
        """Applies gradients; returns a PushResult without weights.
        Options as for pushpull."""
        return self._retrying(model, lambda: self._push(model, grads, False, options))

    def pushpull(self, model, grads, *, loss=None, grad_norm=None, worker=None, version=None,
                 dtype=None):
        """Applies one optimizer step with `grads` ({tensor: array-like of
        its element count}) and returns a PushResult with the weights right
        after it.

        loss: the worker's loss (ReduceLROnPlateau).  grad_norm: the global
        gradient norm for clipping; when the model is spread over several
        shards and clips by total norm, the client computes it (exactly as
        one server would over the tensors of this push) and sends it to
        every shard.  worker: this worker's name (default: the client's).
        version: the model step the gradients were computed at, or "auto"
        for the step each shard last reported to this client (sent to each
        shard separately).  dtype: "float32", "float16" or "bfloat16" on the
        wire, or {tensor: dtype} (default: float16 for numpy float16 arrays,
        else float32; bfloat16 also takes uint16 arrays of bfloat16 bits);
        the weights come back in that type and are returned as float32."""
        options = {"loss": loss, "grad_norm": grad_norm, "worker": worker, "version": version,
                   "dtype": dtype}
        return self._retrying(model, lambda: self._push(model, grads, True, options))

    def _retrying(self, model, start):
        """Runs start().result(); when every shard said model_not_found for
        a cached model id (the model was deleted and created again), looks
        the model up again and runs it once more: nothing was applied."""
        with self._lock:
            cached = model in self._models
        try:
            return start().result()
        except errors.ModelNotFound as failure:
            if not cached or getattr(failure, "applied_on", []):
                raise
            self.forget(model)
            return start().result()

    def _push(self, model, grads, with_weights, options, copy=False):
        unknown = set(options) - {"loss", "grad_norm", "worker", "version", "dtype"}
        if unknown:
            raise TypeError("unknown push options: %s" % ", ".join(sorted(unknown)))
        info = self._model(model)
        prepared = self._prepare(info, grads, options.get("dtype"))
        loss = options.get("loss")
        loss = None if loss is None else float(loss)
        worker = options.get("worker") or self.worker or ""
        grad_norm = options.get("grad_norm")
        if grad_norm is None and info.spans_shards:
            norm_type = self._clip_norm_type(info)
            if norm_type is not None:
                grad_norm = total_norm([dtypes.decode(memoryview(d).cast("B"), dtypes.code(dt))
                                        for _, dt, d in prepared], norm_type)
        version = options.get("version")
        per_shard = {}
        for name, dt, data in prepared:
            for shard, offset, count in info.tensors[name].pieces:
                per_shard.setdefault(shard, []).append((name, dt, offset, count,
                                                        data[offset:offset + count]))
        with info.lock:
            steps = dict(info.steps)
        parts = {}
        for shard_id, items in per_shard.items():
            shard_version = steps.get(shard_id, 0) if version == AUTO else version
            parts[shard_id] = self._push_shard(info, self._shards[shard_id], items, loss,
                                               grad_norm, worker, shard_version, with_weights,
                                               copy)

        def combine(replies):
            result = PushResult()
            result.steps = {s: r.step for s, r in replies.items()}
            result.step = max(result.steps.values())
            first = replies[min(replies)]
            result.lr, result.loss_scale = first.lr, first.loss_scale
            norms = [r.grad_norm for r in replies.values() if not math.isnan(r.grad_norm)]
            result.grad_norm = norms[0] if norms else math.nan
            result.skipped = any(r.skipped for r in replies.values())
            result.accumulated = any(r.accumulated for r in replies.values())
            result.dropped = any(r.dropped for r in replies.values())
            result.evaluate = any(r.evaluate for r in replies.values())
            stale = [r.staleness for r in replies.values() if r.staleness is not None]
            result.staleness = max(stale) if stale else None
            result.sent_grad_norm = grad_norm
            result.weights = {}
            if with_weights:
                for name, _, _ in prepared:
                    placement = info.tensors[name]
                    if not placement.split:
                        values = replies[placement.pieces[0][0]].weights[name]
                    else:
                        values = np.empty(placement.count, dtype=np.float32)
                        for shard, offset, count in placement.pieces:
                            values[offset:offset + count] = replies[shard].weights[name]
                    result.weights[name] = values.reshape(placement.shape)
            return result
        return self._gather(parts, combine)

    def _push_shard(self, info, shard, items, loss, grad_norm, worker, version, with_weights,
                    copy):
        """Submits one shard's part of a push; returns its Pending."""
        if self._use_tcp(shard):
            model_id, ids = info.ids[shard.id]
            wire_items = [wire.Item(ids[name], dtypes.code(dt), offset, count, data)
                          for name, dt, offset, count, data in items]
            names = [name for name, _, _, _, _ in items]

            def decode(opcode, payload):
                if opcode != (wire.PUSHPULL if with_weights else wire.PUSH) | wire.REPLY:
                    raise errors.ParamdError(errors.BAD_FRAME, "unexpected reply 0x%02x" % opcode)
                raw = wire.decode_push_reply(payload, copy=False)
                reply = _Reply()
                reply.step, reply.lr = raw["step"], raw["lr"]
                reply.grad_norm, reply.loss_scale = raw["grad_norm"], raw["loss_scale"]
                reply.skipped, reply.accumulated = raw["skipped"], raw["accumulated"]
                reply.dropped, reply.staleness = raw["dropped"], None
                reply.evaluate = raw["evaluate"]
                reply.weights = {names[i]: dtypes.decode(item.data, item.dtype)
                                 for i, item in enumerate(raw["items"])}
                info.note_step(shard.id, reply.step)
                return reply

            return shard.tcp.submit(
                lambda rid: wire.encode_push_parts(rid, model_id, wire_items, loss, grad_norm,
                                                   worker, with_weights, version), decode, copy)

        body = {"grads": {name: {"dtype": dt, "b64": _b64(data)}
                          for name, dt, _, _, data in items}}
        for key, value in (("loss", loss), ("grad_norm", grad_norm), ("version", version)):
            if value is not None:
                body[key] = value
        if worker:
            body["worker"] = worker

        def run():
            raw = shard.http.request("POST", "/v1/models/%s/push" % _quote(info.name), body)
            reply = _Reply()
            reply.step, reply.lr = raw["step"], raw.get("lr", math.nan)
            reply.grad_norm = raw.get("grad_norm", math.nan)
            reply.loss_scale = raw.get("loss_scale", math.nan)
            reply.skipped = bool(raw.get("skipped", False))
            accumulated = raw.get("accumulated")
            reply.accumulated = bool(accumulated) and any(
                i < raw.get("of", 1) for i in accumulated.values())
            reply.dropped = bool(raw.get("dropped", False))
            reply.evaluate = not raw.get("lbfgs", {}).get("step_done", True)
            reply.staleness = raw.get("staleness")
            reply.weights = {name: _from_b64(value, "weights." + name)
                             for name, value in raw.get("weights", {}).items()}
            info.note_step(shard.id, reply.step)
            return reply
        return self._run(run)

    # -- pulls --------------------------------------------------------------

    def pull_async(self, model, tensors=None, *, dtype="float32"):
        """pull() without waiting."""
        return self._pull(model, tensors, dtype)

    def pull(self, model, tensors=None, *, dtype="float32"):
        """Weights of the model (or of the tensors named): a Weights dict of
        float32 arrays of the tensors' shapes.  dtype is the type on the
        wire (float16 and bfloat16 halve the bytes; values come back widened
        exactly to float32)."""
        return self._retrying(model, lambda: self._pull(model, tensors, dtype))

    def _pull(self, model, tensors, dtype):
        info = self._model(model)
        names = list(info.tensors) if tensors is None else [tensors] if isinstance(tensors, str) \
            else list(tensors)
        for name in names:
            if name not in info.tensors:
                raise errors.ParamdError(errors.TENSOR_NOT_FOUND,
                                         "model %r has no tensor %r" % (model, name))
        code = dtypes.code(dtype)
        per_shard = {}
        for name in names:
            for shard, offset, count in info.tensors[name].pieces:
                per_shard.setdefault(shard, []).append((name, offset, count))
        parts = {}
        for shard_id, ranges in per_shard.items():
            shard = self._shards[shard_id]
            if self._use_tcp(shard):
                model_id, ids = info.ids[shard_id]
                wire_ranges = [wire.Item(ids[n], code, o, c, b"") for n, o, c in ranges]

                def decode(opcode, payload, shard_id=shard_id, ranges=ranges):
                    if opcode != wire.PULL | wire.REPLY:
                        raise errors.ParamdError(errors.BAD_FRAME, "unexpected reply 0x%02x" % opcode)
                    raw = wire.decode_pull_reply(payload, copy=False)
                    info.note_step(shard_id, raw["step"])
                    return raw["step"], {ranges[i][0]: dtypes.decode(item.data, item.dtype)
                                         for i, item in enumerate(raw["items"])}
                parts[shard_id] = shard.tcp.submit(
                    lambda rid, m=model_id, r=wire_ranges: wire.encode_pull(rid, m, r), decode)
            else:
                query = {"tensors": ",".join(n for n, _, _ in ranges), "dtype": dtype}

                def run(shard=shard, query=query):
                    raw = shard.http.request("GET", "/v1/models/%s/weights" % _quote(model),
                                             query=query)
                    info.note_step(shard.id, raw["step"])
                    return raw["step"], {n: _from_b64(v, "weights." + n)
                                         for n, v in raw["weights"].items()}
                parts[shard_id] = self._run(run)

        def combine(replies):
            out = {}
            for name in names:
                placement = info.tensors[name]
                if not placement.split:
                    values = replies[placement.pieces[0][0]][1][name]
                else:
                    values = np.empty(placement.count, dtype=np.float32)
                    for shard, offset, count in placement.pieces:
                        values[offset:offset + count] = replies[shard][1][name]
                out[name] = values.reshape(placement.shape)
            return Weights(out, {s: r[0] for s, r in replies.items()})
        return self._gather(parts, combine)

    # -- optimizer state ----------------------------------------------------

    def state(self, model, slot, tensors=None):
        """One optimizer state array per tensor that holds `slot`
        (GET /v1/models/{model}/state?slot=NAME, HTTP only): {tensor:
        float32 array}, shaped as the tensor when it has one value per
        weight, else flat (Adafactor's row_var and col_var).  tensors=None:
        every tensor whose description lists the slot."""
        info = self._model(model)
        if tensors is None:
            description = self.describe(model)
            tensors = [t["name"] for t in description["tensors"] if slot in t.get("state", [])]
        names = [tensors] if isinstance(tensors, str) else list(tensors)
        if not names:
            return {}
        per_shard = {}
        for name in names:
            if name not in info.tensors:
                raise errors.ParamdError(errors.TENSOR_NOT_FOUND,
                                         "model %r has no tensor %r" % (model, name))
            for shard, offset, count in info.tensors[name].pieces:
                per_shard.setdefault(shard, []).append(name)
        parts = {}
        for shard_id, shard_names in per_shard.items():
            http = self._http_of(self._shards[shard_id], "state")
            query = {"slot": slot, "tensors": ",".join(shard_names), "encoding": "b64"}
            parts[shard_id] = self._run(lambda h=http, q=query: h.request(
                "GET", "/v1/models/%s/state" % _quote(model), query=q))

        def combine(replies):
            out = {}
            for name in names:
                placement = info.tensors[name]
                pieces = [_from_b64(replies[s]["state"][name], "state." + name)
                          for s, _, _ in placement.pieces]
                values = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
                out[name] = values.reshape(placement.shape) if values.size == placement.count \
                    else values
            return out
        return self._gather(parts, combine).result()


def _quote(name):
    if not _NAME.match(name):
        raise errors.ParamdError(errors.CODES["bad_name"], "bad model name %r: 1 to 128 of "
                                 "A-Z a-z 0-9 . _ -, not starting with '.'" % name)
    return name
