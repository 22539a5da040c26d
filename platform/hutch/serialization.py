"""Serializer and compression registries, and the value tagging they share.

JSON, msgpack and YAML cannot carry every Python value a task passes around, so
values go through one tagging pass first: datetimes, dates, times, UUIDs,
Decimals, bytes, tuples, sets and frozensets become small ``{"__hutch__": kind,
"v": ...}`` objects and come back as the same type. Ranges and other iterables
that are not containers become lists (so ``range(10)`` is sent as a list by
every serializer). Pickle needs no tagging and is never accepted unless a
worker's ``accept_content`` names it.
"""

from __future__ import annotations

import base64
import bz2
import datetime as dt
import gzip
import json
import lzma
import pickle
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgpack
import yaml

from .errors import ContentDisallowed, SerializationError

TAG = "__hutch__"


@dataclass(frozen=True)
class Serializer:
    name: str
    content_type: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]
    tagged: bool
    """Whether values go through the tagging pass (all but pickle)."""


@dataclass(frozen=True)
class Compression:
    name: str
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


def to_primitive(value: Any) -> Any:
    """Rewrite ``value`` into str/int/float/bool/None/list/dict with tags for other types."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"dictionary keys must be strings, got {type(key).__name__} {key!r}")
            out[key] = to_primitive(item)
        return out
    if isinstance(value, list):
        return [to_primitive(v) for v in value]
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        kind, payload = encoder(value)
        return {TAG: kind, "v": payload}
    if isinstance(value, (range, map, filter, zip)) or _is_generator(value):
        return [to_primitive(v) for v in value]
    raise SerializationError(f"cannot serialize a value of type {type(value).__qualname__}")


def from_primitive(value: Any) -> Any:
    """Undo :func:`to_primitive`."""
    if isinstance(value, list):
        return [from_primitive(v) for v in value]
    if isinstance(value, dict):
        kind = value.get(TAG)
        if kind is not None and len(value) == 2 and "v" in value:
            decoder = _DECODERS.get(kind)
            if decoder is None:
                raise SerializationError(f"unknown tagged value kind {kind!r}")
            return decoder(value["v"])
        return {k: from_primitive(v) for k, v in value.items()}
    return value


def _is_generator(value: Any) -> bool:
    return hasattr(value, "__next__") and hasattr(value, "__iter__")


_ENCODERS: dict[type, Callable[[Any], tuple[str, Any]]] = {
    dt.datetime: lambda v: ("datetime", v.isoformat()),
    dt.date: lambda v: ("date", v.isoformat()),
    dt.time: lambda v: ("time", v.isoformat()),
    dt.timedelta: lambda v: ("timedelta", v.total_seconds()),
    uuid.UUID: lambda v: ("uuid", str(v)),
    Decimal: lambda v: ("decimal", str(v)),
    bytes: lambda v: ("bytes", base64.b64encode(v).decode("ascii")),
    tuple: lambda v: ("tuple", [to_primitive(i) for i in v]),
    set: lambda v: ("set", [to_primitive(i) for i in v]),
    frozenset: lambda v: ("frozenset", [to_primitive(i) for i in v]),
}

_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(seconds=v),
    "uuid": uuid.UUID,
    "decimal": Decimal,
    "bytes": lambda v: base64.b64decode(v),
    "tuple": lambda v: tuple(from_primitive(i) for i in v),
    "set": lambda v: {from_primitive(i) for i in v},
    "frozenset": lambda v: frozenset(from_primitive(i) for i in v),
}


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _yaml_dumps(value: Any) -> bytes:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False).encode()


SERIALIZERS: dict[str, Serializer] = {
    s.name: s
    for s in (
        Serializer("json", "application/json", _json_dumps, json.loads, True),
        Serializer("msgpack", "application/x-msgpack",
                   lambda v: msgpack.packb(v, use_bin_type=True),
                   lambda b: msgpack.unpackb(b, raw=False, strict_map_key=True), True),
        Serializer("yaml", "application/x-yaml", _yaml_dumps, yaml.safe_load, True),
        Serializer("pickle", "application/x-python-serialize",
                   lambda v: pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL),
                   pickle.loads, False),
    )
}
_BY_CONTENT_TYPE = {s.content_type: s for s in SERIALIZERS.values()}

COMPRESSIONS: dict[str, Compression] = {
    c.name: c
    for c in (
        Compression("zlib", zlib.compress, zlib.decompress),
        Compression("gzip", gzip.compress, gzip.decompress),
        Compression("bzip2", bz2.compress, bz2.decompress),
        Compression("lzma", lzma.compress, lzma.decompress),
    )
}


def serializer(name: str) -> Serializer:
    try:
        return SERIALIZERS[name]
    except KeyError:
        raise SerializationError(
            f"unknown serializer {name!r} (known: {', '.join(SERIALIZERS)})") from None


def serializer_for_content_type(content_type: str | None) -> Serializer:
    found = _BY_CONTENT_TYPE.get(content_type or "")
    if found is None:
        raise SerializationError(f"unknown content type {content_type!r}")
    return found


def compression(name: str) -> Compression:
    try:
        return COMPRESSIONS[name]
    except KeyError:
        raise SerializationError(
            f"unknown compression {name!r} (known: {', '.join(COMPRESSIONS)})") from None


def dumps(value: Any, name: str = "json", compress: str | None = None) -> tuple[bytes, str, str]:
    """Encode ``value``; returns ``(body, content_type, content_encoding)``."""
    ser = serializer(name)
    try:
        body = ser.dumps(to_primitive(value) if ser.tagged else value)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f"{name} cannot encode this value: {exc}") from exc
    if compress:
        return compression(compress).compress(body), ser.content_type, compress
    return body, ser.content_type, "binary" if name in ("msgpack", "pickle") else "utf-8"


def loads(body: bytes, content_type: str | None, content_encoding: str | None,
          accept: tuple[str, ...] | None = None) -> Any:
    """Decode a body, refusing serializers not in ``accept`` (when given)."""
    ser = serializer_for_content_type(content_type)
    if accept is not None and ser.name not in accept:
        raise ContentDisallowed(
            f"refused content of type {ser.name} ({ser.content_type}): "
            f"accept_content is {', '.join(accept)}")
    if content_encoding in COMPRESSIONS:
        try:
            body = COMPRESSIONS[content_encoding].decompress(body)
        except Exception as exc:
            raise SerializationError(f"body is not valid {content_encoding} data: {exc}") from exc
    try:
        value = ser.loads(body)
    except Exception as exc:
        raise SerializationError(f"body is not valid {ser.name}: {exc}") from exc
    return from_primitive(value) if ser.tagged else value
