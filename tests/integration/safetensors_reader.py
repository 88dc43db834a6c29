#!/usr/bin/python3
"""An independent reader of paramd checkpoints (standard library only).

    checkpoint = read_checkpoint(path)    # raises CheckpointError if damaged
    checkpoint.tensors["w"]               # array('f') of the weights
    checkpoint.tensors["w@exp_avg"]       # an optimizer state array
    checkpoint.shapes["w"], checkpoint.metadata, checkpoint.config, checkpoint.training

It follows the safetensors format (8-byte little-endian header length, JSON
header, raw little-endian data) and checks paramd's checksum, the CRC-32 of
the whole file with the eight hex digits of "paramd_crc32" read as zeros,
without using any of paramd's code.
"""

import array
import json
import struct
import sys
import zlib

CRC_PREFIX = b'"paramd_crc32":"'


class CheckpointError(ValueError):
    pass


class Checkpoint:
    def __init__(self, metadata, tensors, shapes):
        self.metadata = metadata
        self.tensors = tensors
        self.shapes = shapes
        self.config = json.loads(metadata["config"]) if "config" in metadata else None
        self.training = json.loads(metadata["training"]) if "training" in metadata else None


def crc_of(data):
    """(stored, computed) checksums of a file's bytes."""
    header_length = struct.unpack("<Q", data[:8])[0]
    header = data[8:8 + header_length]
    at = header.find(CRC_PREFIX)
    if at < 0 or header.find(CRC_PREFIX, at + 1) >= 0:
        raise CheckpointError("the header must hold exactly one paramd_crc32")
    digits = 8 + at + len(CRC_PREFIX)
    stored = int(data[digits:digits + 8].decode("ascii"), 16)
    computed = zlib.crc32(data[:digits] + b"00000000" + data[digits + 8:]) & 0xFFFFFFFF
    return stored, computed


def read_checkpoint(path):
    with open(path, "rb") as stream:
        data = stream.read()
    if len(data) < 8:
        raise CheckpointError("%d bytes: truncated" % len(data))
    header_length = struct.unpack("<Q", data[:8])[0]
    if header_length > len(data) - 8:
        raise CheckpointError("header length %d beyond the file's %d bytes" % (header_length, len(data)))
    try:
        stored, computed = crc_of(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError("bad checksum field: %s" % error)
    if stored != computed:
        raise CheckpointError("checksum mismatch: stored %08x, computed %08x" % (stored, computed))
    header = json.loads(data[8:8 + header_length].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    payload = data[8 + header_length:]
    tensors, shapes, end = {}, {}, 0
    for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        if entry["dtype"] != "F32":
            raise CheckpointError("%s: dtype %s" % (name, entry["dtype"]))
        begin, stop = entry["data_offsets"]
        if begin != end:
            raise CheckpointError("%s: data is not contiguous" % name)
        count = 1
        for dimension in entry["shape"]:
            count *= dimension
        if stop - begin != 4 * count:
            raise CheckpointError("%s: %d bytes for %d floats" % (name, stop - begin, count))
        values = array.array("f")
        values.frombytes(payload[begin:stop])
        if sys.byteorder != "little":
            values.byteswap()
        tensors[name] = values
        shapes[name] = list(entry["shape"])
        end = stop
    if end != len(payload):
        raise CheckpointError("%d bytes after the last tensor" % (len(payload) - end))
    return Checkpoint(metadata, tensors, shapes)
