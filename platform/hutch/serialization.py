"""Serializer and compression registries, and the value tagging they share.

JSON, msgpack and YAML cannot carry every Python value a task passes around, so
values go through one tagging pass first: datetimes, dates, times, UUIDs,
Decimals, bytes, tuples, sets and frozensets become small ``{"__hutch__": kind,
"v": ...}`` objects and come back as the same type. Ranges and other iterables
that are not containers become lists (so ``range(10)`` is sent as a list by
every serializer). An object with a ``__json__()`` method (a signature, a
result handle) is sent as what that returns: a signature as its dict, a handle as
its id. Pickle needs no tagging and is never accepted unless a worker's
``accept_content`` names it.
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgpack

from .errors import ContentDisallowed, MessageTooLarge, SerializationError

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
    as_json = getattr(type(value), "__json__", None)
    if as_json is not None:
        return to_primitive(as_json(value))
    if isinstance(value, (range, map, filter, zip)) or _is_generator(value):
        return [to_primitive(v) for v in value]
    raise SerializationError(f"cannot serialize a value of type {type(value).__qualname__}")


def from_primitive(value: Any) -> Any:
    """Undo :func:`to_primitive`; a tag that names no kind, or whose value is not one of
    that kind, is a SerializationError (never another exception)."""
    if isinstance(value, list):
        return [from_primitive(v) for v in value]
    if isinstance(value, dict):
        kind = value.get(TAG)
        if kind is not None and len(value) == 2 and "v" in value:
            return _untag(kind, value["v"])
        return {k: from_primitive(v) for k, v in value.items()}
    return value


def _untag(kind: Any, payload: Any) -> Any:
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise SerializationError(f"unknown tagged value kind {_short(kind)}")
    try:
        return decoder(payload)
    except SerializationError:
        raise
    except Exception as exc:  # noqa: BLE001 - each decoder fails in its own way
        raise SerializationError(f"tagged value of kind {kind!r} cannot be read from "
                                 f"{_short(payload)}: {type(exc).__name__}: {exc}") from None


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about hostile input."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
    "bytes": lambda v: base64.b64decode(v, validate=True),
    "tuple": lambda v: tuple(_tagged_items(v)),
    "set": lambda v: set(_tagged_items(v)),
    "frozenset": lambda v: frozenset(_tagged_items(v)),
}


def _tagged_items(value: Any) -> list[Any]:
    """The items of a tagged tuple or set, which travel as a list (and only as one)."""
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return [from_primitive(i) for i in value]


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# PyYAML is imported on first use: most processes never meet a YAML message, and the
# import is a fiftieth of a second of every CLI call and worker start.
def _yaml_dumps(value: Any) -> bytes:
    import yaml

    text: str = yaml.safe_dump(value, allow_unicode=True, sort_keys=False)
    return text.encode()


def _yaml_loads(data: bytes) -> Any:
    import yaml

    return yaml.safe_load(data)


SERIALIZERS: dict[str, Serializer] = {
    s.name: s
    for s in (
        Serializer("json", "application/json", _json_dumps, json.loads, True),
        Serializer("msgpack", "application/x-msgpack",
                   lambda v: msgpack.packb(v, use_bin_type=True),
                   lambda b: msgpack.unpackb(b, raw=False, strict_map_key=True), True),
        Serializer("yaml", "application/x-yaml", _yaml_dumps, _yaml_loads, True),
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


PLAIN_ENCODINGS = ("", "utf-8", "binary")
"""``content_encoding`` values of an uncompressed body (compared case-insensitively)."""

UNPACK_CHUNK = 1 << 20
"""Bytes a compressed body is unpacked by at a time, so a body that unpacks past the
limit is refused after at most this much more than the limit was produced."""


def loads(body: bytes, content_type: str | None, content_encoding: str | None,
          accept: tuple[str, ...] | None = None, max_bytes: int | None = None) -> Any:
    """Decode a body, refusing serializers not in ``accept`` (when given) and bodies over
    ``max_bytes`` (when given) as received or once decompressed (MessageTooLarge)."""
    ser = serializer_for_content_type(content_type)
    if accept is not None and ser.name not in accept:
        raise ContentDisallowed(
            f"refused content of type {ser.name} ({ser.content_type}): "
            f"accept_content is {', '.join(accept)}")
    if max_bytes is not None and len(body) > max_bytes:
        raise MessageTooLarge(f"body of {len(body)} bytes is over the limit of {max_bytes} "
                              "bytes (worker_max_message_bytes)")
    if content_encoding in COMPRESSIONS:
        body = unpack(body, content_encoding, max_bytes)
    elif (content_encoding or "").lower() not in PLAIN_ENCODINGS:
        raise SerializationError(
            f"unknown content encoding {_short(content_encoding)} (known: "
            f"{', '.join(COMPRESSIONS)}; utf-8 or binary for an uncompressed body)")
    try:
        value = ser.loads(body)
    except Exception as exc:  # noqa: BLE001 - every parser fails in its own way
        raise SerializationError(f"body is not valid {ser.name}: {exc}") from exc
    if not ser.tagged:
        return value
    try:
        return from_primitive(value)
    except RecursionError:
        raise SerializationError("body is nested too deeply to decode") from None


def unpack(body: bytes, name: str, max_bytes: int | None = None) -> bytes:
    """Decompress ``body`` piece by piece, refusing it (MessageTooLarge) as soon as the
    output passes ``max_bytes``: a small body that unpacks to gigabytes never does.
    Streams written one after another (gzip members, bzip2 and xz streams) are all read,
    as the one-shot functions of the standard library do."""
    produced: list[bytes] = []
    size = 0
    data = body
    try:
        while True:
            decompressor = _DECOMPRESSORS[name]()
            for piece in _pieces(decompressor, data):
                size += len(piece)
                if max_bytes is not None and size > max_bytes:
                    raise MessageTooLarge(
                        f"{name} body of {len(body)} bytes unpacks to more than {max_bytes} "
                        "bytes, the limit (worker_max_message_bytes)")
                produced.append(piece)
            if not decompressor.eof:
                raise SerializationError(f"body is not valid {name} data: it ends early")
            data = decompressor.unused_data
            if name == "gzip":
                data = data.lstrip(b"\x00")  # gzip allows zero padding after a member
            if not data:
                return b"".join(produced)
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise SerializationError(f"body is not valid {name} data: {exc}") from None


def _pieces(decompressor: Any, data: bytes) -> Iterator[bytes]:
    """Output of one stream, at most UNPACK_CHUNK bytes at a time. zlib objects keep
    input they did not use in ``unconsumed_tail``; bz2 and lzma ones keep it inside
    and say ``needs_input`` once they want more."""
    if hasattr(decompressor, "unconsumed_tail"):
        while True:
            piece = decompressor.decompress(data, UNPACK_CHUNK)
            data = decompressor.unconsumed_tail
            yield piece
            if decompressor.eof or (not data and not piece):
                return
    yield decompressor.decompress(data, UNPACK_CHUNK)
    while not decompressor.eof and not decompressor.needs_input:
        yield decompressor.decompress(b"", UNPACK_CHUNK)


_DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    "zlib": zlib.decompressobj,
    "gzip": lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS),
    "bzip2": bz2.BZ2Decompressor,
    "lzma": lzma.LZMADecompressor,
}


def encode_args_for_row(value: Any) -> Any:
    """Arguments as the JSON the hutch_tasks row keeps (None when JSON cannot hold them)."""
    try:
        return to_primitive(value)
    except Exception:
        return None
