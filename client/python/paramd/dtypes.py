"""Float arrays on the wire: float32, float16 and bfloat16 (little-endian),
converted with numpy exactly as the server's proto/half.c converts them
(round to nearest, ties to even; NaN stays NaN, with its sign)."""

import numpy as np

from . import protocol as wire

FLOAT32 = "float32"
FLOAT16 = "float16"
BFLOAT16 = "bfloat16"
NAMES = (FLOAT32, FLOAT16, BFLOAT16)
_F32 = np.dtype("<f4")
_F16 = np.dtype("<f2")
_U16 = np.dtype("<u2")


def code(name):
    try:
        return wire.DTYPE_CODES[name]
    except KeyError:
        raise ValueError("dtype must be one of %s, got %r" % (", ".join(NAMES), name)) from None


def float32_to_bfloat16_bits(values):
    """uint16 bfloat16 bit patterns of float32 values (nearest, ties to even)."""
    values = np.ascontiguousarray(values, dtype=_F32)
    bits = values.view("<u4")
    rounded = ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).astype(_U16)
    nan = np.isnan(values)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x0040).astype(_U16)
    return rounded


def bfloat16_bits_to_float32(bits):
    return (np.asarray(bits, dtype=_U16).astype("<u4") << 16).view(_F32)


def wire_dtype(array, requested=None):
    """The dtype to send an array as: `requested`, else float16 for numpy
    float16 arrays and float32 for everything else."""
    if requested is not None:
        code(requested)
        return requested
    return FLOAT16 if np.asarray(array).dtype == np.float16 else FLOAT32


def encode(array, dtype):
    """Little-endian bytes-like (a contiguous numpy array) of `array` as `dtype`."""
    array = np.asarray(array)
    if dtype == FLOAT32:
        return np.ascontiguousarray(array, dtype=_F32).reshape(-1)
    if dtype == FLOAT16:
        return np.ascontiguousarray(array, dtype=_F16).reshape(-1)
    if dtype == BFLOAT16:
        if array.dtype == _U16:   # already bfloat16 bits (e.g. a torch.bfloat16 view)
            return np.ascontiguousarray(array).reshape(-1)
        return float32_to_bfloat16_bits(np.asarray(array, dtype=_F32).reshape(-1))
    raise ValueError("dtype must be one of %s, got %r" % (", ".join(NAMES), dtype))


def decode(data, dtype_code):
    """float32 numpy array (read-only view where possible) of wire data."""
    if dtype_code == wire.FLOAT32:
        return np.frombuffer(data, dtype=_F32)
    if dtype_code == wire.FLOAT16:
        return np.frombuffer(data, dtype=_F16).astype(_F32)
    if dtype_code == wire.BFLOAT16:
        return bfloat16_bits_to_float32(np.frombuffer(data, dtype=_U16))
    raise ValueError("unknown dtype code %r" % dtype_code)
