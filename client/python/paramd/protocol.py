"""paramd's binary protocol, version 1 (proto/PROTOCOL.md), in pure Python.

Encoders return whole frames as bytes; decoders take a payload (the bytes
after a frame's 16-byte header) and return plain Python values.  Only the
standard library is used: float data travels as bytes of little-endian
float32, float16 or bfloat16, which numpy (numpy.frombuffer) or the array
module read directly.

    frame = encode_hello(request_id=1, client="my-worker")
    header = parse_header(data[:16])     # -> Header(opcode, length, request_id)
"""

import collections
import math
import struct

VERSION = 1
HEADER_SIZE = 16
MAGIC = b"PD"

HELLO, LOOKUP, PUSH, PULL, PUSHPULL, STATS, ECHO, CREATE, DELETE, LIST = range(1, 11)
REPLY = 0x80
ERROR = 0xFF
OPCODE_NAMES = {HELLO: "HELLO", LOOKUP: "LOOKUP", PUSH: "PUSH", PULL: "PULL",
                PUSHPULL: "PUSHPULL", STATS: "STATS", ECHO: "ECHO", CREATE: "CREATE",
                DELETE: "DELETE", LIST: "LIST", ERROR: "ERROR"}

FLOAT32, FLOAT16, BFLOAT16 = 1, 2, 3
DTYPE_SIZES = {FLOAT32: 4, FLOAT16: 2, BFLOAT16: 2}
DTYPE_NAMES = {FLOAT32: "float32", FLOAT16: "float16", BFLOAT16: "bfloat16"}
DTYPE_CODES = {name: code for code, name in DTYPE_NAMES.items()}

PUSH_HAS_LOSS, PUSH_HAS_GRAD_NORM, PUSH_HAS_VERSION = 1, 2, 4
PUSH_SKIPPED, PUSH_ACCUMULATED, PUSH_DROPPED, PUSH_EVALUATE = 1, 2, 4, 8

Header = collections.namedtuple("Header", "version opcode length request_id")
Item = collections.namedtuple("Item", "tensor_id dtype offset count data")
Tensor = collections.namedtuple("Tensor", "tensor_id dtype shape count name")


class ProtocolError(Exception):
    """Bytes that are not a valid frame or payload."""


def padded(n):
    return (n + 7) & ~7


def _pad(data):
    return data + b"\0" * (padded(len(data)) - len(data))


def _string(text):
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return _pad(struct.pack("<H", len(raw)) + raw)


def frame(opcode, request_id, payload=b""):
    """A whole frame: header and payload (padded to a multiple of 8)."""
    payload = _pad(bytes(payload))
    return struct.pack("<2sBBIQ", MAGIC, VERSION, opcode, len(payload), request_id) + payload


def parse_header(data):
    if len(data) < HEADER_SIZE:
        raise ProtocolError("a frame header has %d bytes, got %d" % (HEADER_SIZE, len(data)))
    magic, version, opcode, length, request_id = struct.unpack_from("<2sBBIQ", data)
    if magic != MAGIC:
        raise ProtocolError("bad magic %r" % magic)
    return Header(version, opcode, length, request_id)


# -- requests -------------------------------------------------------------

def encode_hello(request_id, token="", client="", min_version=VERSION, max_version=VERSION):
    payload = struct.pack("<BBHI", min_version, max_version, 0, 0) + _string(token) + _string(client)
    return frame(HELLO, request_id, payload)


def encode_lookup(request_id, model, names=()):
    payload = struct.pack("<II", len(names), 0) + _string(model)
    for name in names:
        payload += _string(name)
    return frame(LOOKUP, request_id, payload)


def item(tensor_id, data=b"", dtype=FLOAT32, offset=0, count=None):
    """An item: data is bytes of `dtype` values (count derived from it)."""
    data = bytes(data)
    if count is None:
        count = len(data) // DTYPE_SIZES[dtype]
    return Item(tensor_id, dtype, offset, count, data)


def _item_bytes(entry, with_data=True):
    head = struct.pack("<IBBHQQ", entry.tensor_id, entry.dtype, 0, 0, entry.offset, entry.count)
    return head + (_pad(entry.data) if with_data else b"")


def encode_push(request_id, model_id, items, loss=None, grad_norm=None, worker="",
                with_weights=True, version=None):
    return b"".join(encode_push_parts(request_id, model_id, items, loss, grad_norm, worker,
                                      with_weights, version))


def encode_push_parts(request_id, model_id, items, loss=None, grad_norm=None, worker="",
                      with_weights=True, version=None):
    """encode_push as a list of buffers to write in order, without copying
    the items' data: each item's `data` may be any bytes-like object (a
    contiguous numpy array), and goes out as it is."""
    flags = (PUSH_HAS_LOSS if loss is not None else 0) | \
            (PUSH_HAS_GRAD_NORM if grad_norm is not None else 0) | \
            (PUSH_HAS_VERSION if version is not None else 0)
    head = struct.pack("<IIIIddQ", model_id, len(items), flags, 0,
                       loss if loss is not None else math.nan,
                       grad_norm if grad_norm is not None else math.nan,
                       version if version is not None else 0)
    parts = [None, head + _string(worker)]
    length = len(parts[1])
    for entry in items:
        data = memoryview(entry.data).cast("B")
        parts.append(struct.pack("<IBBHQQ", entry.tensor_id, entry.dtype, 0, 0, entry.offset,
                                 entry.count))
        parts.append(data)
        pad = padded(len(data)) - len(data)
        if pad:
            parts.append(b"\0" * pad)
        length += 24 + len(data) + pad
    parts[0] = struct.pack("<2sBBIQ", MAGIC, VERSION, PUSHPULL if with_weights else PUSH,
                           length, request_id)
    return parts


def encode_pull(request_id, model_id, ranges):
    """ranges: Items whose data is ignored (tensor_id, dtype, offset, count)."""
    payload = struct.pack("<II", model_id, len(ranges))
    for entry in ranges:
        payload += _item_bytes(entry, with_data=False)
    return frame(PULL, request_id, payload)


def encode_model_request(opcode, request_id, model=""):
    return frame(opcode, request_id, b"" if opcode == LIST else _string(model))


def encode_create(request_id, model, json_text):
    body = json_text.encode("utf-8") if isinstance(json_text, str) else bytes(json_text)
    return frame(CREATE, request_id, struct.pack("<II", len(body), 0) + _string(model) + _pad(body))


def encode_echo(request_id, payload):
    return frame(ECHO, request_id, payload)


# -- replies --------------------------------------------------------------

class _Reader:
    def __init__(self, data):
        self.data, self.position = memoryview(data), 0

    def take(self, n, what):
        if n > len(self.data) - self.position:
            raise ProtocolError("%s runs past the end of the payload" % what)
        chunk = self.data[self.position:self.position + n]
        self.position += n
        return chunk

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def string(self, what):
        (length,) = self.unpack("<H", what)
        text = bytes(self.take(length, what)).decode("utf-8", "replace")
        self.skip_padding(what)
        return text

    def skip_padding(self, what):
        self.take(padded(self.position) - self.position, what)

    def items(self, count, with_data=True, copy=True):
        result = []
        for _ in range(count):
            tensor_id, dtype, _, _, offset, n = self.unpack("<IBBHQQ", "an item")
            data = b""
            if with_data:
                data = self.take(n * DTYPE_SIZES.get(dtype, 0), "item data")
                data = bytes(data) if copy else data
                self.skip_padding("item data")
            result.append(Item(tensor_id, dtype, offset, n, data))
        return result


def decode_error(payload):
    r = _Reader(payload)
    code, shard_map_version = r.unpack("<iI", "ERROR")
    return code, shard_map_version, r.string("message")


def decode_hello_reply(payload):
    r = _Reader(payload)
    version, _, _, _, max_frame = r.unpack("<BBHIQ", "HELLO reply")
    return {"version": version, "max_frame_size": max_frame, "server": r.string("server")}


def decode_lookup_reply(payload):
    r = _Reader(payload)
    model_id, count, step = r.unpack("<IIQ", "LOOKUP reply")
    tensors = []
    for _ in range(count):
        tensor_id, dtype, dims, _, numel = r.unpack("<IBBHQ", "an entry")
        shape = list(r.unpack("<%dQ" % dims, "a shape")) if dims else []
        tensors.append(Tensor(tensor_id, dtype, shape, numel, r.string("a name")))
    return {"model_id": model_id, "step": step, "tensors": tensors}


def decode_push_reply(payload, copy=True):
    """copy=False leaves each item's data a memoryview of `payload`."""
    r = _Reader(payload)
    step, lr, grad_norm, loss_scale, flags, count = r.unpack("<QdddII", "PUSH reply")
    return {"step": step, "lr": lr, "grad_norm": grad_norm, "loss_scale": loss_scale,
            "skipped": bool(flags & PUSH_SKIPPED), "accumulated": bool(flags & PUSH_ACCUMULATED),
            "dropped": bool(flags & PUSH_DROPPED), "evaluate": bool(flags & PUSH_EVALUATE),
            "items": r.items(count, copy=copy)}


def decode_pull_reply(payload, copy=True):
    r = _Reader(payload)
    step, count, _ = r.unpack("<QII", "PULL reply")
    return {"step": step, "items": r.items(count, copy=copy)}


def decode_json_reply(payload):
    r = _Reader(payload)
    length, _ = r.unpack("<II", "JSON reply")
    return bytes(r.take(length, "JSON")).decode("utf-8")
