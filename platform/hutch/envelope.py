"""What a task message may contain, checked field by field before anything runs.

A worker must refuse, with a reason, every message it does not fully understand:
running it would fail later (after the task's side effects, in the follow-ups),
and requeueing it would fail the same way for ever. ``TaskMessage.decode``
(hutch.messages) runs these checks on every header and body field; each failure
is a MessageError whose text names the field, and the worker dead-letters the
message with that text as its reason (docs/protocol.md, "Validation").

Rules beyond the plain types:

- the ``hutch`` header is the protocol's major version: a worker reads only
  PROTOCOL_VERSION, and refuses a message without the header (every hutch
  sender has always set it);
- unknown headers and body keys are ignored (``x-`` headers belong to RabbitMQ);
  a change that older workers must not ignore takes a new major version;
- ids fit the ``hutch_tasks`` columns, counts a 32-bit column, and route names
  leave room for the topology prefix in every name derived from them, so a
  value that passed can never make a later database write or publish fail;
- signatures (``link``, ``link_error``, and those nested in them: a chain's
  next step, a group's members, a chord's body) are checked to the bottom with
  an explicit stack, so no nesting depth can make the check itself fail.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any, cast

from .config import COMPRESSIONS, SERIALIZERS
from .errors import ConfigurationError, MessageError

ID_LENGTH = 155
"""The longest task id a message may carry: the width of ``hutch_tasks.task_id``
(Celery's own tables allow 155; ids are UUIDs in practice)."""

PROTOCOL_VERSION = 1
"""The major version this code writes and reads (the ``hutch`` header)."""
VERSION_HEADER = "hutch"

MAX_DELAY_SECONDS = 2**28 - 1
"""The delay ladder's reach: about 8.5 years."""
NAME_LENGTH = 255
"""Task names, schedule names and routes: the width of their columns."""
ROUTE_WORD_BYTES = 180
"""A route's size as one topic word (``.``, ``*``, ``#`` and ``%`` take 3 bytes): with
the ladder's digits and a topology prefix of up to 69 bytes, every queue, exchange and
routing key derived from it fits AMQP's 255-byte names."""
MAX_COUNT = 2**31 - 1
"""Retry and lost-attempt counts: a 32-bit column."""
MAX_SECONDS = 100 * 366 * 86400.0
"""Time limits and relative expiry: anything longer is a mistake (and would overflow)."""

class Path:
    """Where a field is (``link[0].options.countdown``), built by ``+`` in constant time
    and spelled out only for an error message: a deep signature costs no long strings."""

    __slots__ = ("parent", "part")

    def __init__(self, parent: Path | None, part: str) -> None:
        self.parent, self.part = parent, part

    def __add__(self, part: str) -> Path:
        return Path(self, part)

    def __str__(self) -> str:
        parts: list[str] = []
        node: Path | None = self
        while node is not None:
            parts.append(node.part)
            node = node.parent
        return "".join(reversed(parts))

    def __format__(self, spec: str) -> str:
        return str(self)


Check = Callable[[Any], Any]
"""A value check: returns the value (perhaps converted) or raises ValueError/TypeError
saying what is wrong with it; the caller names the field."""


# -- value checks --------------------------------------------------------------------

def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _text(limit: int, empty: bool = False) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or (not value and not empty):
            raise ValueError(f"expected a non-empty string, got {_short(value)}")
        if len(value) > limit:
            raise ValueError(f"longer than {limit} characters ({len(value)})")
        if "\x00" in value:
            raise ValueError("contains a NUL character")
        return value
    return check


ident = _text(ID_LENGTH)
name_text = _text(NAME_LENGTH)
label_text = _text(NAME_LENGTH, empty=True)

NOTICE_KEY = re.compile(r"[A-Za-z0-9_.-]{1,200}")
"""A client's notice key: a RabbitMQ routing key (at most 255 bytes) that spells no
wildcard, with room to spare."""


def notice_key(value: Any) -> str:
    """The ``notify`` header: the key the task's completion notice goes under."""
    if not isinstance(value, str) or not NOTICE_KEY.fullmatch(value):
        raise ValueError(f"expected 1-200 ASCII letters, digits, '.', '-' or '_', got "
                         f"{_short(value)}")
    return value


def route(value: Any, empty: bool = False) -> str:
    route: str = _text(NAME_LENGTH, empty)(value)
    size = len(route.encode()) + 2 * (route.count(".") + route.count("*") + route.count("#")
                                      + route.count("%"))
    if size > ROUTE_WORD_BYTES:
        raise ValueError(f"route name too long: {size} bytes as a topic word, at most "
                         f"{ROUTE_WORD_BYTES}")
    return route


def whole(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected a whole number {low}..{high}, got {_short(value)}")
        return value
    return check


count = whole(0, MAX_COUNT)
priority = whole(0, 255)


def number(low: float, high: float) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"expected a number {low:g}..{high:g}, got {_short(value)}")
        return float(value)
    return check


seconds = number(0, MAX_SECONDS)


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_short(value)}")
    return value


def timestamp(value: Any) -> dt.datetime:
    """An ISO 8601 string (or an AMQP timestamp); a naive time is UTC."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {_short(value)}") from None
    else:
        raise ValueError(f"expected an ISO 8601 time string, got {_short(value)}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def sequence(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list, got {_short(value)}")
    return tuple(value)


def keywords(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {_short(value)}")
    bad = next((k for k in value if not isinstance(k, str)), None)
    if bad is not None:
        raise ValueError(f"keys must be strings, got {_short(bad)}")
    return value


STAMPS_CHARS = 8192
"""The longest ``stamps`` header (as JSON text): stamps label a task, they carry no data."""
_STAMP_SCALARS = (str, int, float, bool)


def stamp_values(value: Any) -> dict[str, Any]:
    """Stamps (``Signature.stamp``): names to a JSON value each, a scalar or a list of
    scalars, at most STAMPS_CHARS as JSON; names fit a column and an AMQP short string."""
    keywords(value)
    for name, item in value.items():
        _named(f"[{name!r}]", _stamp_name, name)
        for part in item if isinstance(item, list) else [item]:
            if part is not None and (not isinstance(part, _STAMP_SCALARS) or (
                    isinstance(part, float) and not math.isfinite(part))):
                raise ValueError(f"[{name!r}]: expected a string, number, true/false, null "
                                 f"or a list of them, got {_short(item)}")
    size = len(json.dumps(value, separators=(",", ":")))
    if size > STAMPS_CHARS:
        raise ValueError(f"{size} characters as JSON, at most {STAMPS_CHARS}")
    return cast(dict[str, Any], value)


_stamp_name = _text(NAME_LENGTH)


def stamps_header(value: Any) -> dict[str, Any]:
    """The ``stamps`` header: a JSON object in a string, so RabbitMQ tools show it as
    text and every header stays a plain value."""
    if not isinstance(value, str):
        raise ValueError(f"expected a JSON object as a string, got {_short(value)}")
    try:
        parsed = json.loads(value)
    except ValueError:
        raise ValueError(f"not JSON: {_short(value)}") from None
    return stamp_values(parsed)


def stamps_text(value: dict[str, Any]) -> str:
    """``value`` as the ``stamps`` header; ConfigurationError naming the field if it
    cannot be one (the sender's mistake, refused before anything is published)."""
    try:
        return json.dumps(stamp_values(value), separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"stamps: {exc}") from None


CUSTOM_HEADERS_MAX = 64
"""Custom headers a message may carry (more are dropped): trace context needs two or
three (``traceparent``, ``tracestate``, ``baggage``)."""
CUSTOM_VALUE_CHARS = 8192
"""The longest custom header string: W3C ``baggage``'s own limit."""
_INT64 = 2**63
_CUSTOM_SCALARS = (str, int, float, bool)


def custom_value(value: Any) -> Any:
    """One custom header's value: a plain value every AMQP client reads the same way (a
    string up to CUSTOM_VALUE_CHARS, a 64-bit whole number, a finite number, a boolean,
    none); a table, a list, bytes or a timestamp is not one."""
    if value is None:
        return None
    if not isinstance(value, _CUSTOM_SCALARS):
        raise ValueError(f"expected a string, number, true/false or null, got "
                         f"{type(value).__name__}")
    if isinstance(value, str) and len(value) > CUSTOM_VALUE_CHARS:
        raise ValueError(f"longer than {CUSTOM_VALUE_CHARS} characters ({len(value)})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        raise ValueError("a whole number beyond 64 bits")
    return value


_custom_name = _text(NAME_LENGTH)


def split_custom(headers: Mapping[str, Any], protocol: Container[str], taken: Container[str]
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """The custom headers of an AMQP table, and those that may not be one, with why. A
    ``protocol`` name, or RabbitMQ's ``x-``, is no custom header (left out silently); a
    ``taken`` name (an attribute of ``self.request``) may not be one; at most
    CUSTOM_HEADERS_MAX are kept."""
    kept: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(name, str) and (name in protocol or name.startswith("x-")):
            continue
        if name in taken:
            dropped[_label(name)] = "a name self.request has an attribute of its own by"
            continue
        try:
            _named("name", _custom_name, name, required=True)
            custom_value(value)
        except ValueError as exc:
            dropped[_label(name)] = str(exc)
            continue
        if len(kept) >= CUSTOM_HEADERS_MAX:
            dropped[_label(name)] = f"more than {CUSTOM_HEADERS_MAX} custom headers"
            continue
        kept[name] = value
    return kept, dropped


def _label(name: Any) -> str:
    """A header's name in a log line, however long or odd."""
    return name[:80] if isinstance(name, str) else _short(name)


def custom_table(value: Any) -> dict[str, Any]:
    """A message's custom headers as code gives them: each name a string, each value
    plain (:func:`custom_value`); names the protocol or ``self.request`` use are left
    out when the message is encoded (hutch.messages.own_custom_headers)."""
    keywords(value)
    if len(value) > CUSTOM_HEADERS_MAX:
        raise ValueError(f"at most {CUSTOM_HEADERS_MAX} custom headers, got {len(value)}")
    for name, item in value.items():
        _named(f"[{name!r}]", _custom_name, name)
        _named(f"[{name!r}]", custom_value, item)
    return cast(dict[str, Any], value)


def chord_marker(value: Any) -> dict[str, Any]:
    """A chord header task's marker: ``{"group_id": <chord id>, "counts": bool}``."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a chord marker {{'group_id', 'counts'}}, got {_short(value)}")
    _named("group_id", ident, value.get("group_id"), required=True)
    _named("counts", flag, value.get("counts"))
    return value


def one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{_short(value)} is not one of {', '.join(choices)}")
        return cast(str, value)
    return check


def signature_eta(value: Any) -> dt.datetime:
    """A signature's eta: a datetime (tagged on the wire) within the ladder's reach."""
    if not isinstance(value, dt.datetime):
        raise ValueError(f"expected a datetime, got {_short(value)}")
    aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if (aware - dt.datetime.now(dt.timezone.utc)).total_seconds() > MAX_DELAY_SECONDS:
        raise ValueError(f"more than {MAX_DELAY_SECONDS} seconds (about 8.5 years) ahead")
    return value


def expiry(value: Any) -> Any:
    return value if isinstance(value, dt.datetime) else number(-MAX_SECONDS, MAX_SECONDS)(value)


RETRY_POLICY = {"max_retries": count, "interval_start": seconds,
                "interval_step": seconds, "interval_max": seconds}


def retry_policy(value: Any) -> dict[str, Any]:
    keywords(value)
    for key, item in value.items():
        if key not in RETRY_POLICY:
            raise ValueError(f"unknown key {_short(key)} (known: {', '.join(RETRY_POLICY)})")
        _named(key, RETRY_POLICY[key], item)
    return cast(dict[str, Any], value)


def _named(name: str | Path, check: Check, value: Any, required: bool = False) -> Any:
    """``check(value)`` with the field's name put before any complaint (None: absent)."""
    if value is None:
        if required:
            raise ValueError(f"{name}: missing")
        return None
    try:
        return check(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{name}: {exc}") from None


# -- the declaration of a message field ---------------------------------------------

HEADER, BODY, PROPERTY, CUSTOM = "header", "body", "property", "custom"
"""Where a field travels: an AMQP header (plain strings and numbers that RabbitMQ tools
can show), the encoded body, an AMQP property, or (CUSTOM, a mapping) the headers of the
AMQP table that the protocol does not define, each under its own name."""


@dataclass(frozen=True)
class FieldSpec:
    """The declaration of one TaskMessage field, kept in its dataclass metadata
    (hutch.messages). Encoding, decoding, the call options a signature may carry, a
    task's defaults and the hutch_tasks row all read it, so adding a field is one
    declaration plus the code that acts on it."""

    place: str
    """HEADER, BODY, PROPERTY or CUSTOM."""
    check: Check
    """What a worker accepts on the wire; the field's name goes before any complaint."""
    required: bool = False
    signatures: bool = False
    """Holds a list of signatures, checked to the bottom against the call options."""
    option: Parts | None = None
    """How the field is checked as a signature's call option of the same name; None:
    not a call option."""
    task_default: bool = False
    """``@app.task`` may give a default for it (a TaskOptions field of the same name)."""
    setting: str | None = None
    """The Settings attribute that holds the app-wide default, if any."""
    row: str | None = None
    """The hutch_tasks column it fills, if any."""
    to_row: Callable[[Any], Any] | None = None
    """How the column holds the value, where not as it is."""


Specs = Mapping[str, FieldSpec]


# -- headers -------------------------------------------------------------------------

def check_version(headers: Mapping[str, Any]) -> None:
    """Refuse a message of another major version, or one that does not say its version."""
    version = headers.get(VERSION_HEADER)
    if version is None:
        raise MessageError(f"no protocol version header {VERSION_HEADER!r}, so not a hutch "
                           f"task message (this worker speaks hutch protocol "
                           f"{PROTOCOL_VERSION})")
    if isinstance(version, bool) or not isinstance(version, int) or version != PROTOCOL_VERSION:
        raise MessageError(f"protocol version {_short(version)} is not one this worker "
                           f"speaks: it reads hutch protocol {PROTOCOL_VERSION} only")


def read_headers(headers: Any, message_id: Any, checks: Mapping[str, Check],
                 required: tuple[str, ...]) -> dict[str, Any]:
    """Every header in ``checks``, checked and converted (None where absent); the task id
    falls back to the AMQP ``message_id``. MessageError names the first bad header."""
    if not isinstance(headers, Mapping):
        raise MessageError(f"headers: expected a table, got {_short(headers)}")
    check_version(headers)
    out: dict[str, Any] = {}
    for name, check in checks.items():
        value = headers.get(name)
        try:
            out[name] = None if value is None else check(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MessageError(f"header {name!r}: {exc}") from None
    if out["id"] is None and message_id:
        try:
            out["id"] = ident(message_id)
        except ValueError as exc:
            raise MessageError(f"property 'message_id': {exc}") from None
    missing = [name for name in required if out[name] is None]
    if missing:
        raise MessageError(f"not a hutch task message: header(s) "
                           f"{', '.join(map(repr, missing))} missing")
    return out


def read_priority(value: Any) -> int | None:
    """The AMQP ``priority`` property (0-255, or none)."""
    try:
        return None if value is None else priority(value)
    except ValueError as exc:
        raise MessageError(f"property 'priority': {exc}") from None


def peek(headers: Any, name: str, check: Check) -> Any:
    """One header's value if it is valid, else None, without raising: for what is done
    before a message is decoded (its RECEIVED row, the delay ladder's routing)."""
    if not isinstance(headers, Mapping):
        return None
    try:
        return _named(name, check, headers.get(name))
    except ValueError:
        return None


def peek_identity(headers: Any, message_id: Any) -> tuple[str | None, str | None]:
    """(task id, task name) where valid: a message whose ``id`` header is present but
    bad has no usable id, even if its ``message_id`` looks like one."""
    given = headers.get("id") if isinstance(headers, Mapping) else None
    if given is not None:
        task_id = peek(headers, "id", ident)
    else:
        task_id = message_id if _valid(ident, message_id) else None
    return task_id, peek(headers, "task", name_text)


def _valid(check: Check, value: Any) -> bool:
    try:
        check(value)
    except (TypeError, ValueError):
        return False
    return True


# -- body ------------------------------------------------------------------------------

def read_body(payload: Any, specs: Specs, options: Mapping[str, Parts]) -> dict[str, Any]:
    """The body fields of ``specs``, checked (signatures to the bottom, against the call
    ``options``); None where absent. MessageError names the first bad field."""
    if not isinstance(payload, dict):
        raise MessageError(f"body: expected a mapping with 'args' and 'kwargs', got "
                           f"{type(payload).__name__}")
    try:
        return {name: signature_list(payload.get(name), name, options) if spec.signatures
                else _named(name, spec.check, payload.get(name))
                for name, spec in specs.items()}
    except ValueError as exc:
        raise MessageError(f"body field {exc}") from None


def signature_list(value: Any, where: str, options: Mapping[str, Parts]
                   ) -> tuple[dict[str, Any], ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: expected a list of signatures, got {_short(value)}")
    for i, item in enumerate(value):
        check_signature(item, options, f"{where}[{i}]")
    return tuple(value)


def check_signature(data: Any, options: Mapping[str, Parts],
                    where: str = "signature") -> dict[str, Any]:
    """A signature in wire form and every signature nested in it, its call options
    checked by ``options``; ValueError naming the path
    (``link[0].options.link[0].task``) of the first bad field."""
    pending: list[tuple[Any, Path]] = [(data, Path(None, where))]
    while pending:
        sig, at = pending.pop()
        pending.extend(_signature_parts(sig, at, options))
    return cast(dict[str, Any], data)


def _signature_parts(sig: Any, at: Path, options: Mapping[str, Parts]
                     ) -> list[tuple[Any, Path]]:
    """Check one signature's own fields; returns the signatures nested in it."""
    if not isinstance(sig, dict):
        raise ValueError(f"{at}: expected a signature (a mapping with 'task'), got "
                         f"{_short(sig)}")
    _named(at + ".task", name_text, sig.get("task"), required=True)
    _named(at + ".args", sequence, sig.get("args"))
    kwargs = _named(at + ".kwargs", keywords, sig.get("kwargs")) or {}
    _named(at + ".immutable", flag, sig.get("immutable"))
    nested = _option_parts(sig.get("options"), at + ".options", options)
    kind = sig.get("subtask_type")
    if kind is None:
        return nested
    parts = COMPOSITES.get(kind) if isinstance(kind, str) else None
    if parts is None:
        raise ValueError(f"{at}.subtask_type: {_short(kind)} is not one of "
                         f"{', '.join(COMPOSITES)}")
    return nested + parts(kwargs, at + ".kwargs")


def _option_parts(given: Any, at: Path, options: Mapping[str, Parts]
                  ) -> list[tuple[Any, Path]]:
    if given is None:
        return []
    if not isinstance(given, dict):
        raise ValueError(f"{at}: expected a mapping, got {_short(given)}")
    nested: list[tuple[Any, Path]] = []
    for key, value in given.items():
        check = options.get(key) if isinstance(key, str) else None
        if check is None:
            raise ValueError(f"{at}: unknown option {_short(key)}")
        if value is not None:
            nested += check(value, at + f".{key}")
    if given.get("eta") is not None and given.get("countdown") is not None:
        raise ValueError(f"{at}: either eta or countdown, not both")
    return nested


Parts = Callable[[Any, Path], list[tuple[Any, Path]]]
"""Checks one part of a signature; returns the signatures nested in it, with their paths."""


def plain(check: Check) -> Parts:
    """An option holding a value (no signatures inside)."""
    def parts(value: Any, at: Path) -> list[tuple[Any, Path]]:
        _named(at, check, value)
        return []
    return parts


def linked(value: Any, at: Path) -> list[tuple[Any, Path]]:
    """``link``/``link_error`` of a signature: one signature or a list of them."""
    if not isinstance(value, (list, tuple)):
        return [(value, at)]
    return [(item, at + f"[{i}]") for i, item in enumerate(value)]


def any_route(value: Any) -> str:
    """A route as a call option: empty means the default route."""
    return route(value, empty=True)


def serializer_name(value: Any) -> str:
    return cast(str, one_of(SERIALIZERS)(value))


def compression_name(value: Any) -> str:
    return cast(str, one_of(COMPRESSIONS)(value))


def _members(key: str, at_least: int) -> Parts:
    def parts(kwargs: dict[str, Any], at: Path) -> list[tuple[Any, Path]]:
        items = _named(at + f".{key}", sequence, kwargs.get(key), required=True)
        if len(items) < at_least:
            raise ValueError(f"{at}.{key}: at least {at_least} signature(s) needed")
        return [(item, at + f".{key}[{i}]") for i, item in enumerate(items)]
    return parts


def _chord_parts(kwargs: dict[str, Any], at: Path) -> list[tuple[Any, Path]]:
    for key in ("header", "body"):
        _named(at + f".{key}", lambda v: v, kwargs.get(key), required=True)
    return [(kwargs["header"], at + ".header"), (kwargs["body"], at + ".body")]


def _chunks_parts(kwargs: dict[str, Any], at: Path) -> list[tuple[Any, Path]]:
    _named(at + ".it", sequence, kwargs.get("it"), required=True)
    _named(at + ".n", whole(1, MAX_COUNT), kwargs.get("n"), required=True)
    _named(at + ".task", lambda v: v, kwargs.get("task"), required=True)
    return [(kwargs["task"], at + ".task")]


COMPOSITES: dict[str, Parts] = {
    "chain": _members("tasks", 1), "group": _members("tasks", 0),
    "chord": _chord_parts, "chunks": _chunks_parts,
}
"""Workflow signatures (``subtask_type``) and the signatures their kwargs hold."""
