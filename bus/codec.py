"""msgpack codec for bus messages, carrying numpy arrays without pickle.

A message travels as ZeroMQ parts ``[payload, *buffers]``. ``payload`` is one
msgpack map. A numpy array inside it becomes msgpack extension type 1 whose
body is the msgpack array ``[dtype, shape, data]``:

- ``dtype``: a numpy type string, always little-endian (``"<f4"``, ``"|u1"``);
- ``shape``: a list of non-negative ints;
- ``data``: either ``bin`` (the raw C-order bytes, for small arrays) or an int
  ``k``: the bytes are ZeroMQ part ``k + 1`` (out of band).

Arrays of ``OUT_OF_BAND_BYTES`` or more go out of band: the sender hands numpy's
buffer to ZeroMQ without copying, the receiver wraps the received part without
copying, and a Node.js receiver gets each large array in its own, aligned
allocation (msgpack ``bin`` fields arrive at arbitrary offsets).
"""
from __future__ import annotations

from typing import Any, Sequence

import msgpack
import numpy as np

EXT_NDARRAY = 1
OUT_OF_BAND_BYTES = 16 * 1024
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Plain numeric types only: anything else (object, void, datetime) is refused.
ALLOWED_DTYPES = frozenset(
    ["|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"]
)


class CodecError(ValueError):
    """A message that cannot be decoded; the text says why in one line."""


def _dtype_str(dtype: np.dtype) -> str:
    return dtype.newbyteorder("<").str if dtype.byteorder == ">" else dtype.str


def encode(message: dict, out_of_band_bytes: int = OUT_OF_BAND_BYTES) -> list:
    """Encode ``message`` into ZeroMQ parts ``[payload, *buffers]``."""
    buffers: list = []

    def default(value: Any):
        if isinstance(value, np.ndarray):
            dtype = _dtype_str(value.dtype)
            if dtype not in ALLOWED_DTYPES:
                raise TypeError(f"cannot send arrays of dtype {value.dtype}")
            array = np.ascontiguousarray(value, dtype=np.dtype(dtype))
            if array.nbytes >= out_of_band_bytes:
                buffers.append(memoryview(array).cast("B"))
                data: Any = len(buffers) - 1
            else:
                data = array.tobytes()
            header = msgpack.packb([dtype, list(array.shape), data], use_bin_type=True)
            return msgpack.ExtType(EXT_NDARRAY, header)
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, tuple):
            return list(value)
        raise TypeError(f"cannot encode {type(value).__name__}")

    payload = msgpack.packb(message, default=default, use_bin_type=True)
    return [payload, *buffers]


def decode(parts: Sequence, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """Decode ZeroMQ parts (bytes, or ``zmq.Frame`` for zero copy) into a dict.

    Arrays come back read-only, as views on the received buffers.
    Raises ``CodecError`` for anything malformed.
    """
    if not parts:
        raise CodecError("empty message")
    buffers = [part.buffer if hasattr(part, "buffer") else part for part in parts]
    total = sum(len(b) for b in buffers)
    if total > max_bytes:
        raise CodecError(f"message of {total} bytes exceeds the {max_bytes}-byte limit")

    def ext_hook(code: int, body: bytes):
        if code != EXT_NDARRAY:
            raise CodecError(f"unknown extension type {code}")
        try:
            dtype, shape, data = msgpack.unpackb(body, raw=False)
        except Exception as exc:
            raise CodecError(f"bad array header: {exc}") from None
        if dtype not in ALLOWED_DTYPES:
            raise CodecError(f"array dtype {dtype!r} not allowed")
        if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise CodecError(f"bad array shape {shape!r}")
        if isinstance(data, int) and not isinstance(data, bool):
            if not 0 <= data < len(buffers) - 1:
                raise CodecError(f"array refers to missing part {data + 1}")
            data = buffers[data + 1]
        elif not isinstance(data, bytes):
            raise CodecError("array data is neither bytes nor a part index")
        itemsize = np.dtype(dtype).itemsize
        if int(np.prod(shape, dtype=np.int64)) * itemsize != len(data):
            raise CodecError(f"array of shape {shape} and dtype {dtype} does not match {len(data)} bytes")
        return np.frombuffer(data, dtype=dtype).reshape(shape)

    try:
        message = msgpack.unpackb(
            buffers[0], raw=False, ext_hook=ext_hook, strict_map_key=True
        )
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises many types for garbage
        raise CodecError(f"not a msgpack message: {type(exc).__name__}: {exc}") from None
    if not isinstance(message, dict):
        raise CodecError(f"payload is a {type(message).__name__}, not a map")
    return message


def to_json_compatible(value: Any) -> Any:
    """Arrays -> nested lists, NaN -> None, bytes -> length note; for JSON output files."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return [to_json_compatible(v) for v in value] if value.ndim > 1 else [
                None if np.isnan(v) else float(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, dict):
        return {k: to_json_compatible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_compatible(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
