"""What crosses between the child that runs a person's code and the checker: plain data only.

Messages are length-prefixed JSON. Values are tagged trees whose leaves are plain numeric
arrays (dtype, shape and raw bytes), numbers, short strings and ``None``; dicts, lists and
tuples nest them. Anything else the person's code returns becomes an :class:`Opaque` (its
type's name and why), and the last item of a returned tuple (a cache) stays in the child as
a :class:`Remote` handle. Nothing from the child is ever unpickled or evaluated: the parent
rebuilds base-class ``ndarray`` objects from bytes, with a dtype from an allow-list, inside
size and depth limits, so the child can send numbers and names and nothing else.

Used on both sides; imports only the standard library and NumPy.
"""

from __future__ import annotations

import base64
import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Largest message read from the child, bytes.
MAX_MESSAGE = 64 * 2**20
#: Largest array accepted, elements; deepest nesting; longest string.
MAX_ELEMENTS = 2_000_000
MAX_DEPTH = 24
MAX_TEXT = 4000
#: The dtypes an array may have (complex ones too: they are a verdict of their own).
DTYPES = {np.dtype(t).str for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8",
                                     "c8", "c16")} | {np.dtype(bool).str}


class WireError(ValueError):
    """A message that is not what the protocol allows; says what."""


@dataclass(frozen=True)
class Opaque:
    """Something the person's code returned that is not plain data: its type and why."""

    type_name: str
    note: str = ""

    def __str__(self) -> str:
        return self.type_name + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Remote:
    """A value that stays in the child (a forward's cache): the child's handle to it."""

    generation: int
    handle: int


# ---------------------------------------------------------------------------------------
# Child side: the person's values to tagged trees
# ---------------------------------------------------------------------------------------


def _array(value: Any) -> dict:
    array = np.array(value, copy=True)  # a base-class copy: no subclass, no view of anything else
    if array.dtype.str not in DTYPES:
        return {"opaque": [f"array of {array.dtype}", "not a numeric array"]}
    if array.size > MAX_ELEMENTS:
        return {"opaque": [f"array of shape {array.shape}", "too large to compare"]}
    data = np.ascontiguousarray(array)
    return {"nd": [array.dtype.str, list(array.shape), base64.b64encode(data.tobytes()).decode("ascii")]}


def _scalar(value: Any) -> dict | None:
    if value is None or isinstance(value, bool):
        return {"v": value}
    if isinstance(value, (int, float)) and type(value) in (int, float):
        return {"v": value} if not isinstance(value, int) or abs(value) < 2**53 else {"v": float(value)}
    if isinstance(value, str) and type(value) is str:
        return {"s": value[:MAX_TEXT]}
    if isinstance(value, (np.ndarray, np.generic)):
        return _array(value)
    return None


def encode(value: Any, depth: int = 0, keep_last: Any = None) -> dict:
    """A tagged tree of ``value`` (child side). ``keep_last(value)`` turns the last item of a
    top-level tuple or list into a handle. Never raises: what cannot be read is an Opaque."""
    try:
        if depth > MAX_DEPTH:
            return {"opaque": [type(value).__name__, "nested too deeply"]}
        plain = _scalar(value)
        if plain is not None:
            return plain
        if isinstance(value, dict):
            items = [[k if isinstance(k, str) else repr(k)[:80], encode(v, depth + 1)]
                     for k, v in list(value.items())[:10_000]]
            return {"dict": items}
        if isinstance(value, (tuple, list)):
            items = list(value)[:10_000]
            tag = "tuple" if isinstance(value, tuple) else "list"
            if keep_last is not None and items:
                return {tag: [encode(v, depth + 1) for v in items[:-1]] + [{"ref": keep_last(items[-1])}]}
            return {tag: [encode(v, depth + 1) for v in items]}
        if hasattr(value, "__array__"):
            return _array(np.asarray(value))
        return {"opaque": [type(value).__name__[:80], ""]}
    except BaseException as error:  # noqa: BLE001 - SystemExit from an __array__ is the person's doing
        return {"opaque": [_type_name(value), f"reading it raised {type(error).__name__}"]}


def _type_name(value: Any) -> str:
    try:
        return type(value).__name__[:80]
    except BaseException:  # noqa: BLE001
        return "object"


# ---------------------------------------------------------------------------------------
# Parent side: tagged trees back to plain values, validated
# ---------------------------------------------------------------------------------------


def _decode_array(spec: Any) -> np.ndarray:
    if not (isinstance(spec, list) and len(spec) == 3):
        raise WireError("an array must be [dtype, shape, bytes]")
    dtype, shape, data = spec
    if dtype not in DTYPES:
        raise WireError(f"dtype {dtype!r} is not allowed")
    if not (isinstance(shape, list) and len(shape) <= 8
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape)):
        raise WireError(f"bad shape {shape!r}")
    size = math.prod(shape)  # Python's integers: a product of huge sides does not wrap around to 0
    if size > MAX_ELEMENTS or not isinstance(data, str):
        raise WireError("array too large or without data")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise WireError("an array's bytes are not base64") from None
    if len(raw) != size * np.dtype(dtype).itemsize:
        raise WireError(f"{len(raw)} bytes do not make an array of shape {tuple(shape)} and dtype {dtype}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _number(body: Any, generation: int, depth: int) -> Any:
    if body is not None and not isinstance(body, (bool, int, float)):
        raise WireError("malformed number")
    return body


def _sequence(tag: str) -> Any:
    def read(body: Any, generation: int, depth: int) -> Any:
        if not isinstance(body, list):
            raise WireError(f"malformed {tag}")
        items = [decode(v, generation, depth + 1) for v in body]
        return tuple(items) if tag == "tuple" else items
    return read


def _mapping(body: Any, generation: int, depth: int) -> dict:
    if not isinstance(body, list):
        raise WireError("malformed dict")
    out = {}
    for pair in body:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise WireError("malformed dict item")
        out[pair[0][:200]] = decode(pair[1], generation, depth + 1)
    return out


def _handle(body: Any, generation: int, depth: int) -> Remote:
    if not isinstance(body, int) or isinstance(body, bool):
        raise WireError("malformed handle")
    return Remote(generation, body)


def _opaque(body: Any, generation: int, depth: int) -> Opaque:
    if not (isinstance(body, list) and len(body) == 2):
        raise WireError("malformed opaque value")
    return Opaque(str(body[0])[:80], str(body[1])[:200])


_READERS = {"v": _number, "s": lambda body, generation, depth: str(body)[:MAX_TEXT],
            "nd": lambda body, generation, depth: _decode_array(body), "tuple": _sequence("tuple"),
            "list": _sequence("list"), "dict": _mapping, "ref": _handle, "opaque": _opaque}


def decode(tree: Any, generation: int = 0, depth: int = 0) -> Any:
    """The plain value of a tagged tree (parent side); :class:`WireError` if malformed."""
    if depth > MAX_DEPTH + 2 or not isinstance(tree, dict) or len(tree) != 1:
        raise WireError("malformed value")
    [(tag, body)] = tree.items()
    if tag not in _READERS:
        raise WireError(f"unknown tag {str(tag)[:20]!r}")
    return _READERS[tag](body, generation, depth)


def encode_args(value: Any) -> dict:
    """The parent's arguments for a call (arrays, dicts, tuples, handles) as a tagged tree."""
    if isinstance(value, Remote):
        return {"ref": value.handle}
    if isinstance(value, dict):
        return {"dict": [[k, encode_args(v)] for k, v in value.items()]}
    if isinstance(value, (tuple, list)):
        return {"tuple" if isinstance(value, tuple) else "list": [encode_args(v) for v in value]}
    return encode(value)


def decode_args(tree: Any, refs: dict[int, Any]) -> Any:
    """Child side: the parent's arguments, handles replaced by the values they stand for."""
    tag, body = next(iter(tree.items()))
    if tag == "ref":
        return refs[body]
    if tag in ("tuple", "list"):
        items = [decode_args(v, refs) for v in body]
        return tuple(items) if tag == "tuple" else items
    if tag == "dict":
        return {k: decode_args(v, refs) for k, v in body}
    return decode(tree)


# ---------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------


def send(fd: int, message: dict) -> None:
    """Write one message: 8-byte length, then JSON."""
    data = json.dumps(message, allow_nan=True).encode("utf-8")
    data = struct.pack(">Q", len(data)) + data
    while data:
        written = os.write(fd, data)
        data = data[written:]


def read_exactly(fd: int, count: int) -> bytes:
    """``count`` bytes from ``fd``; WireError when it closes first."""
    chunks, left = [], count
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise WireError("the channel closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> dict:
    """Read one message (blocking); WireError if it is too large or not a JSON object."""
    (length,) = struct.unpack(">Q", read_exactly(fd, 8))
    if length > MAX_MESSAGE:
        raise WireError(f"a message of {length} bytes is larger than allowed")
    body = read_exactly(fd, length)  # a channel closed early says so (not "not a JSON message")
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise WireError(f"not a JSON message: {type(error).__name__}") from None
    if not isinstance(message, dict):
        raise WireError("a message must be a JSON object")
    return message
