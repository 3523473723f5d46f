"""The little BSON the MongoDB probe needs, written here so the probe adds no dependency.

Used by `mongo.py` (the `hello` command and its reply) and by `portway.testing.mongo_origin`
(the test server that answers like mongod). Python values map to BSON as: float -> double,
str -> string, dict -> document, list -> array, bytes -> binary (subtype 0), `ObjectId` ->
ObjectId, bool -> boolean, datetime -> UTC datetime, None -> null, int -> int32 (int64 when it does
not fit, or when wrapped in `Int64`), `Timestamp` -> timestamp. Decoding gives the same types back.
Other BSON types (regex, decimal128, code, ...) raise ProbeError: a `hello` reply has none.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any, NamedTuple

from portway.probe.results import ProbeError

Document = dict[str, Any]

_INT32 = struct.Struct("<i")
_INT64 = struct.Struct("<q")
_UINT32 = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")


class Int64(int):
    """An int that is always encoded as BSON int64 (mongod sends counters and ids that way)."""


class ObjectId(bytes):
    """A 12-byte BSON ObjectId."""


class Timestamp(NamedTuple):
    """A BSON (internal MongoDB) timestamp: seconds and an increment."""

    time: int
    inc: int


def encode(document: Document) -> bytes:
    """One BSON document, keys in insertion order (MongoDB wants the command name first)."""
    body = b"".join(_element(key, value) for key, value in document.items())
    return _INT32.pack(len(body) + 5) + body + b"\x00"


def _cstring(text: str) -> bytes:
    raw = text.encode()
    if b"\x00" in raw:
        raise ValueError(f"BSON keys cannot contain NUL: {text!r}")
    return raw + b"\x00"


def _element(key: str, value: Any) -> bytes:  # noqa: PLR0911, PLR0912 - one return per BSON type
    name = _cstring(key)
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return b"\x08" + name + (b"\x01" if value else b"\x00")
    if isinstance(value, Int64):
        return b"\x12" + name + _INT64.pack(value)
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return b"\x10" + name + _INT32.pack(value)
        return b"\x12" + name + _INT64.pack(value)
    if isinstance(value, float):
        return b"\x01" + name + _DOUBLE.pack(value)
    if isinstance(value, str):
        raw = value.encode()
        return b"\x02" + name + _INT32.pack(len(raw) + 1) + raw + b"\x00"
    if isinstance(value, dict):
        return b"\x03" + name + encode(value)
    if isinstance(value, list):
        return b"\x04" + name + encode({str(i): item for i, item in enumerate(value)})
    if isinstance(value, ObjectId):
        if len(value) != 12:
            raise ValueError("an ObjectId is 12 bytes")
        return b"\x07" + name + bytes(value)
    if isinstance(value, bytes):
        return b"\x05" + name + _INT32.pack(len(value)) + b"\x00" + value
    if isinstance(value, datetime):
        millis = int(value.astimezone(UTC).timestamp() * 1000)
        return b"\x09" + name + _INT64.pack(millis)
    if value is None:
        return b"\x0a" + name
    if isinstance(value, Timestamp):
        return b"\x11" + name + _UINT32.pack(value.inc) + _UINT32.pack(value.time)
    raise TypeError(f"cannot encode {type(value).__name__} as BSON")


def document_size(data: bytes, offset: int = 0) -> int | None:
    """The length a BSON document starting at `offset` declares, or None if fewer than 4 bytes."""
    if len(data) < offset + 4:
        return None
    (size,) = _INT32.unpack_from(data, offset)
    if size < 5:
        raise ProbeError(f"BSON document length {size} is too small")
    return int(size)


def decode(data: bytes) -> Document:
    """Decode exactly one BSON document; raises ProbeError on anything malformed."""
    try:
        document, end = _document(memoryview(data), 0)
    except (
        struct.error,
        IndexError,
        UnicodeDecodeError,
        ValueError,
        OverflowError,
        OSError,
    ) as exc:
        # OverflowError/OSError: a datetime outside what the platform can represent.
        raise ProbeError(f"malformed BSON: {exc}") from None
    if end != len(data):
        raise ProbeError("trailing bytes after the BSON document")
    return document


def _document(data: memoryview, offset: int) -> tuple[Document, int]:
    (size,) = _INT32.unpack_from(data, offset)
    end = offset + size
    if size < 5 or end > len(data) or data[end - 1] != 0:
        raise ProbeError(f"BSON document of {size} bytes does not fit")
    result: Document = {}
    pos = offset + 4
    while pos < end - 1:
        kind = data[pos]
        nul = bytes(data[pos + 1 : end]).index(b"\x00")
        key = bytes(data[pos + 1 : pos + 1 + nul]).decode()
        pos, result[key] = _value(data, kind, pos + 2 + nul, end)
    if pos != end - 1:
        raise ProbeError("BSON elements overrun their document")
    return result, end


def _value(data: memoryview, kind: int, pos: int, end: int) -> tuple[int, Any]:  # noqa: PLR0911, PLR0912
    """Decode one value of BSON type `kind` at `pos`; returns (next position, value)."""
    if kind == 0x01:
        return pos + 8, _DOUBLE.unpack_from(data, pos)[0]
    if kind == 0x02:
        (size,) = _INT32.unpack_from(data, pos)
        if size < 1 or pos + 4 + size > end:
            raise ProbeError("BSON string overruns its document")
        return pos + 4 + size, bytes(data[pos + 4 : pos + 3 + size]).decode()
    if kind in (0x03, 0x04):
        inner, after = _document(data, pos)
        return after, (list(inner.values()) if kind == 0x04 else inner)
    if kind == 0x05:
        (size,) = _INT32.unpack_from(data, pos)
        if size < 0 or pos + 5 + size > end:
            raise ProbeError("BSON binary overruns its document")
        return pos + 5 + size, bytes(data[pos + 5 : pos + 5 + size])
    if kind == 0x07:
        return pos + 12, ObjectId(data[pos : pos + 12])
    if kind == 0x08:
        return pos + 1, data[pos] != 0
    if kind == 0x09:
        millis = _INT64.unpack_from(data, pos)[0]
        return pos + 8, datetime.fromtimestamp(millis / 1000, tz=UTC)
    if kind == 0x0A:
        return pos, None
    if kind == 0x10:
        return pos + 4, _INT32.unpack_from(data, pos)[0]
    if kind == 0x11:
        inc, time = _UINT32.unpack_from(data, pos)[0], _UINT32.unpack_from(data, pos + 4)[0]
        return pos + 8, Timestamp(time, inc)
    if kind == 0x12:
        return pos + 8, Int64(_INT64.unpack_from(data, pos)[0])
    raise ProbeError(f"unsupported BSON type 0x{kind:02x}")
