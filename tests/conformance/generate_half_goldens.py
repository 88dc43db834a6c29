#!/usr/bin/python3
"""Write the float16 and bfloat16 conversion golden files.

References: numpy's float16 (IEEE binary16, round to nearest even) for
float16, and torch's bfloat16 (round to nearest even) for bfloat16.
tests/unit/test_half.c replays both files through proto/half.h.

Each file, tests/conformance/half/<format>.json, holds

    {"format": "float16" | "bfloat16",
     "generator": "tests/conformance/generate_half_goldens.py",
     "reference": "numpy 1.24.2" | "torch 1.13...",
     "to_float32": {"count": 65536, "fnv1a64": "<hex>"},
     "from_float32": {"count": N, "fnv1a64": "<hex>"},
     "cases_to_float32": [["<16-bit hex>", "<32-bit hex>"], ...],
     "cases_from_float32": [["<32-bit hex>", "<16-bit hex>"], ...]}

to_float32 covers every 16-bit pattern in order; from_float32 covers the
inputs that inputs_from_float32() lists (test_half.c builds the same list):
around every finite value of the format and around every midpoint between
two neighbours (the pattern itself and one float32 ulp either side, both
signs), then 2^20 patterns spread over all of float32 by a Weyl sequence.
The digests are 64-bit FNV-1a over the outputs as little-endian bytes, with
every NaN written in one canonical form (0x7e00 / 0x7fc0 / 0x7fc00000),
since NaN signs and payloads differ between implementations and are not part
of paramd's contract: torch 1.13 writes every NaN as bfloat16 0xffff, numpy
keeps payloads without quieting.  (test_half.c checks paramd's own NaN rule,
sign kept and quiet, separately.)  The explicit cases
name the interesting values, so a failure shows a concrete input.
"""
import json
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "half")
MASK = 0xFFFFFFFF
WEYL_COUNT = 1 << 20


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def canonical16(bits, fmt):
    bits = bits.astype(np.uint32)
    if fmt == "float16":
        nan = ((bits & 0x7C00) == 0x7C00) & ((bits & 0x03FF) != 0)
        return np.where(nan, 0x7E00, bits).astype(np.uint16)
    nan = ((bits & 0x7F80) == 0x7F80) & ((bits & 0x007F) != 0)
    return np.where(nan, 0x7FC0, bits).astype(np.uint16)


def canonical32(bits):
    bits = bits.astype(np.uint64)
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, 0x7FC00000, bits).astype(np.uint32)


def to_float32(patterns, fmt):
    """float32 bit patterns of 16-bit patterns, by the reference."""
    patterns = np.asarray(patterns, dtype=np.uint16)
    if fmt == "float16":
        return patterns.view(np.float16).astype(np.float32).view(np.uint32)
    # bfloat16 is the upper half of a float32: torch agrees with the shift.
    t = torch.from_numpy(patterns.view(np.int16).copy()).view(torch.bfloat16)
    return t.to(torch.float32).numpy().view(np.uint32)


def from_float32(bits, fmt):
    """16-bit patterns of float32 bit patterns, by the reference."""
    values = np.asarray(bits, dtype=np.uint32).view(np.float32)
    if fmt == "float16":
        with np.errstate(over="ignore", invalid="ignore"):
            return values.astype(np.float16).view(np.uint16)
    t = torch.from_numpy(values.copy()).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16)


def inputs_from_float32(fmt):
    """The float32 inputs of the from_float32 digest (see the docstring)."""
    limit = 0x7C00 if fmt == "float16" else 0x7F80  # finite non-negative patterns
    patterns = np.arange(limit, dtype=np.uint32)
    if fmt == "float16":
        values = to_float32(patterns.astype(np.uint16), fmt).view(np.float32).astype(np.float64)
        following = to_float32((patterns + 1).astype(np.uint16), fmt).view(np.float32).astype(np.float64)
        with np.errstate(invalid="ignore"):
            midpoints = ((values + following) / 2).astype(np.float32)
        midpoints[limit - 1] = np.float32(65520.0)  # between 65504 and "65536"
        centres = values.astype(np.float32).view(np.uint32)
        middles = midpoints.view(np.uint32)
    else:
        centres = patterns << 16
        middles = centres + 0x8000
    inputs = []
    for sign in (0, 0x80000000):
        for base in (centres, middles):
            for delta in (-1, 0, 1):
                block = ((base.astype(np.int64) + delta) & MASK).astype(np.uint32) | np.uint32(sign)
                inputs.append(block)
    weyl = ((np.arange(WEYL_COUNT, dtype=np.uint64) * 0x9E3779B1 + 0x7F4A7C15) & MASK).astype(np.uint32)
    inputs.append(weyl)
    # Interleave as test_half.c does: for each sign, for centre then middle,
    # for each delta, every pattern in order.
    return np.concatenate(inputs)


CASES_TO_FLOAT32 = [0x0000, 0x8000, 0x0001, 0x8001, 0x0002, 0x03FF, 0x0400, 0x0401, 0x3555,
                    0x3BFF, 0x3C00, 0x3C01, 0x7BFF, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01,
                    0x7FFF, 0x0080, 0x3F80, 0x7F7F, 0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0x4049,
                    0xC2F7, 0x1234, 0xABCD]

CASES_FROM_FLOAT32_VALUES = [
    0.0, -0.0, 1.0, -1.0, 0.1, 1.0 / 3.0, 65504.0, 65519.99609375, 65520.0, 65536.0, 1e5,
    3.4028234663852886e38, 2.0 ** -14, 2.0 ** -14 - 2.0 ** -24, 2.0 ** -24, 2.0 ** -25,
    3 * 2.0 ** -26, 2.0 ** -25 + 2.0 ** -40, 1e-8, 1e-45, 1.0 + 2.0 ** -11,
    1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 1.0 + 2.0 ** -8 + 2.0 ** -20,
    2.0 ** -126, 2.0 ** -133, 2.0 ** -134, 3 * 2.0 ** -135, 1.1754942e-38,
    3.3895313892515355e38, 3.3961775292304957e38, float("inf"), float("-inf"), 3.14159265,
    -2.71828182, 123456.789, -0.000123]
CASES_FROM_FLOAT32_BITS = [0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FA00000, 0x7F801000,
                           0x00000001, 0x80000001, 0x007FFFFF, 0x7F7FFFFF, 0x477FEFFF,
                           0x477FF000, 0x477FF001, 0x33000000, 0x33000001, 0x387FFFFF,
                           0x38800000]


def dump(golden):
    """JSON with one key, or one case, per line."""
    lines = []
    for key, value in golden.items():
        if isinstance(value, list):
            cases = ",\n  ".join(json.dumps(case) for case in value)
            lines.append(" %s: [\n  %s]" % (json.dumps(key), cases))
        else:
            lines.append(" %s: %s" % (json.dumps(key), json.dumps(value)))
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main():
    os.makedirs(OUT, exist_ok=True)
    for fmt, reference in (("float16", "numpy " + np.__version__),
                           ("bfloat16", "torch " + torch.__version__)):
        every = np.arange(65536, dtype=np.uint32).astype(np.uint16)
        decoded = canonical32(to_float32(every, fmt))
        inputs = inputs_from_float32(fmt)
        encoded = canonical16(from_float32(inputs, fmt), fmt)
        case_bits = (np.array(CASES_FROM_FLOAT32_VALUES, dtype=np.float32).view(np.uint32).tolist()
                     + CASES_FROM_FLOAT32_BITS + inputs[-256:].tolist())
        case_out = canonical16(from_float32(np.array(case_bits, dtype=np.uint32), fmt), fmt)
        to_out = canonical32(to_float32(np.array(CASES_TO_FLOAT32, dtype=np.uint16), fmt))
        golden = {
            "format": fmt,
            "generator": "tests/conformance/generate_half_goldens.py",
            "reference": reference,
            "to_float32": {"count": 65536,
                           "fnv1a64": fnv1a64(decoded.astype("<u4").tobytes())},
            "from_float32": {"count": int(inputs.size),
                             "fnv1a64": fnv1a64(encoded.astype("<u2").tobytes())},
            "cases_to_float32": [["%04x" % a, "%08x" % b]
                                 for a, b in zip(CASES_TO_FLOAT32, to_out.tolist())],
            "cases_from_float32": [["%08x" % a, "%04x" % b]
                                   for a, b in zip(case_bits, case_out.tolist())],
        }
        with open(os.path.join(OUT, fmt + ".json"), "w") as f:
            f.write(dump(golden))
        print(fmt, reference, golden["to_float32"]["fnv1a64"], inputs.size,
              golden["from_float32"]["fnv1a64"])


if __name__ == "__main__":
    main()
