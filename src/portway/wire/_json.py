"""Strict JSON mapping between frame payloads and frozen dataclasses.

Used only by :mod:`portway.wire.messages`. Each message class is described once by its type hints;
from them this module builds an encoder (compact, keys in field order, ``None`` omitted) and a
decoder that checks every field's type and turns anything unexpected into :class:`ProtocolError`.
Unknown keys are ignored so that a newer peer may add fields.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import math
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError

MAX_INT = 2**63 - 1
MAX_STRING = 4096
MAX_ITEMS = 100_000

Decoder = Callable[[Any, str], Any]


def _fail(where: str, expected: str) -> ProtocolError:
    return ProtocolError(f"{where}: expected {expected}")


def _dec_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_STRING:
        raise _fail(where, f"a string of at most {MAX_STRING} characters")
    return value


def _dec_int(value: Any, where: str) -> int:
    # bool is an int subclass; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise _fail(where, "a non-negative 63-bit integer")
    return value


def _dec_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(where, "a finite number")
    return float(value)


def _dec_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, "true or false")
    return value


def _decoder_for(hint: Any) -> Decoder:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        assert len(args) == 1, "only X | None unions are supported"
        inner = _decoder_for(args[0])
        return lambda v, where: None if v is None else inner(v, where)
    if origin is tuple:
        item = _decoder_for(typing.get_args(hint)[0])

        def dec_tuple(value: Any, where: str) -> tuple[Any, ...]:
            if not isinstance(value, list) or len(value) > MAX_ITEMS:
                raise _fail(where, "a list")
            return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

        return dec_tuple
    if hint is Reason:
        return lambda v, where: Reason.from_label(_dec_str(v, where))
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        parse = getattr(hint, "parse", None)
        members = {m.value: m for m in hint}  # a dict lookup, not Enum.__call__, per message

        def dec_enum(value: Any, where: str) -> Any:
            member = members.get(value) if isinstance(value, str) else None
            if member is not None:
                return member
            text = _dec_str(value, where)
            if parse is not None:
                return parse(text)
            raise _fail(where, f"one of {list(members)}")

        return dec_enum
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return schema(hint)
    simple: dict[Any, Decoder] = {str: _dec_str, int: _dec_int, float: _dec_float, bool: _dec_bool}
    return simple[hint]


Coder = TypeVar("Coder")


def _once_per_class(build: Callable[[type[Any]], Coder]) -> Callable[[type[Any]], Coder]:
    """`build`, run once per message class: later calls return what the first one built."""
    built: dict[type[Any], Coder] = {}

    @functools.wraps(build)
    def get(cls: type[Any]) -> Coder:
        found = built.get(cls)
        if found is None:
            found = built[cls] = build(cls)
        return found

    return get


@_once_per_class
def schema(cls: type[Any]) -> Decoder:
    """The decoder that turns a parsed JSON object into an instance of ``cls``."""
    hints = typing.get_type_hints(cls)
    fields = [
        (f.name, "." + f.name, _decoder_for(hints[f.name]), f.default is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    ]

    def decode(value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise _fail(where, "an object")
        kwargs = {}
        for name, suffix, dec, required in fields:
            if name in value:
                kwargs[name] = dec(value[name], where + suffix)
            elif required:
                raise ProtocolError(f"{where}: missing field {name!r}")
        try:
            return cls(**kwargs)
        except ValueError as exc:  # __post_init__ rejects out-of-range values
            raise ProtocolError(f"{where}: {exc}") from None

    return decode


Encoder = Callable[[Any], Any]


def _encoder_for(hint: Any) -> Encoder | None:
    """What turns a field of type `hint` into plain JSON values; None when it already is one."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # X | None: a None field is left out
        return _encoder_for(next(a for a in typing.get_args(hint) if a is not type(None)))
    if origin is tuple:
        item = _encoder_for(typing.get_args(hint)[0])
        return list if item is None else lambda value: [item(v) for v in value]
    if hint is Reason:
        return lambda value: value.label
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return lambda value: value.value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _object_encoder(hint)
    return None


@_once_per_class
def _object_encoder(cls: type[Any]) -> Encoder:
    """The encoder of message class `cls`: its fields in order, None left out."""
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _encoder_for(hints[f.name])) for f in dataclasses.fields(cls)]

    def encode(value: Any) -> dict[str, Any]:
        out = {}
        for name, enc in fields:
            field = getattr(value, name)
            if field is not None:
                out[name] = field if enc is None else enc(field)
        return out

    return encode


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Built once: `json.dumps`/`json.loads` with any non-default option build a new coder per call,
# and messages are coded per connection (assign, assign_ok).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def dumps(message: Any) -> bytes:
    """Compact UTF-8 JSON for a message dataclass; ``None`` fields are left out."""
    return _ENCODER.encode(_object_encoder(type(message))(message)).encode()


def loads(cls: type[Any], payload: bytes) -> Any:
    """Decode a frame payload into ``cls``; any malformed input raises :class:`ProtocolError`."""
    try:
        value = _DECODER.decode(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError too
        raise ProtocolError(f"{cls.__name__}: payload is not JSON ({exc})") from None
    return schema(cls)(value, cls.__name__)
