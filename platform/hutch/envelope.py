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
import math
from collections.abc import Callable, Mapping
from typing import Any, cast

from .config import COMPRESSIONS, SERIALIZERS
from .errors import MessageError

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


_id = _text(ID_LENGTH)
_name = _text(NAME_LENGTH)
_label = _text(NAME_LENGTH, empty=True)


def _route(value: Any, empty: bool = False) -> str:
    route: str = _text(NAME_LENGTH, empty)(value)
    size = len(route.encode()) + 2 * sum(route.count(c) for c in ".*#%")
    if size > ROUTE_WORD_BYTES:
        raise ValueError(f"route name too long: {size} bytes as a topic word, at most "
                         f"{ROUTE_WORD_BYTES}")
    return route


def _whole(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected a whole number {low}..{high}, got {_short(value)}")
        return value
    return check


_count = _whole(0, MAX_COUNT)
_priority = _whole(0, 255)


def _number(low: float, high: float) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"expected a number {low:g}..{high:g}, got {_short(value)}")
        return float(value)
    return check


_seconds = _number(0, MAX_SECONDS)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_short(value)}")
    return value


def _time(value: Any) -> dt.datetime:
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


def _sequence(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list, got {_short(value)}")
    return tuple(value)


def _keywords(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {_short(value)}")
    bad = next((k for k in value if not isinstance(k, str)), None)
    if bad is not None:
        raise ValueError(f"keys must be strings, got {_short(bad)}")
    return value


def _marker(value: Any) -> dict[str, Any]:
    """A chord header task's marker: ``{"group_id": <chord id>, "counts": bool}``."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a chord marker {{'group_id', 'counts'}}, got {_short(value)}")
    _named("group_id", _id, value.get("group_id"), required=True)
    _named("counts", _flag, value.get("counts"))
    return value


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{_short(value)} is not one of {', '.join(choices)}")
        return cast(str, value)
    return check


def _eta(value: Any) -> dt.datetime:
    """A signature's eta: a datetime (tagged on the wire) within the ladder's reach."""
    if not isinstance(value, dt.datetime):
        raise ValueError(f"expected a datetime, got {_short(value)}")
    aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if (aware - dt.datetime.now(dt.timezone.utc)).total_seconds() > MAX_DELAY_SECONDS:
        raise ValueError(f"more than {MAX_DELAY_SECONDS} seconds (about 8.5 years) ahead")
    return value


def _expiry(value: Any) -> Any:
    return value if isinstance(value, dt.datetime) else _number(-MAX_SECONDS, MAX_SECONDS)(value)


RETRY_POLICY = {"max_retries": _count, "interval_start": _seconds,
                "interval_step": _seconds, "interval_max": _seconds}


def _retry_policy(value: Any) -> dict[str, Any]:
    _keywords(value)
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


# -- headers -------------------------------------------------------------------------

HEADERS: dict[str, Check] = {
    "task": _name, "id": _id, "queue": _route, "retries": _count, "origin": _label,
    "sent_at": _time, "eta": _time, "expires": _time,
    "parent_id": _id, "root_id": _id, "group_id": _id,
    "time_limit": _seconds, "soft_time_limit": _seconds, "ignore_result": _flag,
    "schedule_name": _name, "republished": _flag, "continued": _flag, "rate_slot": _time,
    "lost_attempts": _count,
}
"""Every header protocol 1 defines, with its check (docs/protocol.md, "Headers")."""
REQUIRED = ("task", "id", "queue")


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


def read_headers(headers: Any, message_id: Any = None) -> dict[str, Any]:
    """Every protocol header, checked and converted (None where absent); the task id
    falls back to the AMQP ``message_id``. MessageError names the first bad header."""
    if not isinstance(headers, Mapping):
        raise MessageError(f"headers: expected a table, got {_short(headers)}")
    check_version(headers)
    out: dict[str, Any] = {}
    for name, check in HEADERS.items():
        value = headers.get(name)
        try:
            out[name] = None if value is None else check(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MessageError(f"header {name!r}: {exc}") from None
    if out["id"] is None and message_id:
        try:
            out["id"] = _id(message_id)
        except ValueError as exc:
            raise MessageError(f"property 'message_id': {exc}") from None
    missing = [name for name in REQUIRED if out[name] is None]
    if missing:
        raise MessageError(f"not a hutch task message: header(s) "
                           f"{', '.join(map(repr, missing))} missing")
    return out


def read_priority(value: Any) -> int | None:
    """The AMQP ``priority`` property (0-255, or none)."""
    try:
        return None if value is None else _priority(value)
    except ValueError as exc:
        raise MessageError(f"property 'priority': {exc}") from None


def peek(headers: Any, name: str) -> Any:
    """One header's value if it is valid, else None, without raising: for what is done
    before a message is decoded (its RECEIVED row, the delay ladder's routing)."""
    if not isinstance(headers, Mapping):
        return None
    try:
        return _named(name, HEADERS[name], headers.get(name))
    except ValueError:
        return None


def peek_identity(headers: Any, message_id: Any) -> tuple[str | None, str | None]:
    """(task id, task name) where valid: a message whose ``id`` header is present but
    bad has no usable id, even if its ``message_id`` looks like one."""
    given = headers.get("id") if isinstance(headers, Mapping) else None
    if given is not None:
        task_id = peek(headers, "id")
    else:
        task_id = message_id if _valid(_id, message_id) else None
    return task_id, peek(headers, "task")


def _valid(check: Check, value: Any) -> bool:
    try:
        check(value)
    except (TypeError, ValueError):
        return False
    return True


# -- body ------------------------------------------------------------------------------

def read_body(payload: Any) -> dict[str, Any]:
    """The body's fields, checked (signatures to the bottom) and with defaults filled in;
    MessageError names the first bad field."""
    if not isinstance(payload, dict):
        raise MessageError(f"body: expected a mapping with 'args' and 'kwargs', got "
                           f"{type(payload).__name__}")
    try:
        return {
            "args": _named("args", _sequence, payload.get("args")) or (),
            "kwargs": _named("kwargs", _keywords, payload.get("kwargs")) or {},
            "link": _signature_list(payload.get("link"), "link"),
            "link_error": _signature_list(payload.get("link_error"), "link_error"),
            "chord": _named("chord", _marker, payload.get("chord")),
            "headers": _named("headers", _keywords, payload.get("headers")) or {},
        }
    except ValueError as exc:
        raise MessageError(f"body field {exc}") from None


def _signature_list(value: Any, where: str) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: expected a list of signatures, got {_short(value)}")
    for i, item in enumerate(value):
        check_signature(item, f"{where}[{i}]")
    return tuple(value)


def check_signature(data: Any, where: str = "signature") -> dict[str, Any]:
    """A signature in wire form and every signature nested in it; ValueError naming the
    path (``link[0].options.link[0].task``) of the first bad field."""
    pending: list[tuple[Any, Path]] = [(data, Path(None, where))]
    while pending:
        sig, at = pending.pop()
        pending.extend(_signature_parts(sig, at))
    return cast(dict[str, Any], data)


def _signature_parts(sig: Any, at: Path) -> list[tuple[Any, Path]]:
    """Check one signature's own fields; returns the signatures nested in it."""
    if not isinstance(sig, dict):
        raise ValueError(f"{at}: expected a signature (a mapping with 'task'), got "
                         f"{_short(sig)}")
    _named(at + ".task", _name, sig.get("task"), required=True)
    _named(at + ".args", _sequence, sig.get("args"))
    kwargs = _named(at + ".kwargs", _keywords, sig.get("kwargs")) or {}
    _named(at + ".immutable", _flag, sig.get("immutable"))
    nested = _option_parts(sig.get("options"), at + ".options")
    kind = sig.get("subtask_type")
    if kind is None:
        return nested
    parts = COMPOSITES.get(kind) if isinstance(kind, str) else None
    if parts is None:
        raise ValueError(f"{at}.subtask_type: {_short(kind)} is not one of "
                         f"{', '.join(COMPOSITES)}")
    return nested + parts(kwargs, at + ".kwargs")


def _option_parts(options: Any, at: Path) -> list[tuple[Any, Path]]:
    if options is None:
        return []
    if not isinstance(options, dict):
        raise ValueError(f"{at}: expected a mapping, got {_short(options)}")
    nested: list[tuple[Any, Path]] = []
    for key, value in options.items():
        check = OPTIONS.get(key) if isinstance(key, str) else None
        if check is None:
            raise ValueError(f"{at}: unknown option {_short(key)}")
        if value is not None:
            nested += check(value, at + f".{key}")
    if options.get("eta") is not None and options.get("countdown") is not None:
        raise ValueError(f"{at}: either eta or countdown, not both")
    return nested


Parts = Callable[[Any, Path], list[tuple[Any, Path]]]
"""Checks one part of a signature; returns the signatures nested in it, with their paths."""


def _plain(check: Check) -> Parts:
    """An option holding a value (no signatures inside)."""
    def parts(value: Any, at: Path) -> list[tuple[Any, Path]]:
        _named(at, check, value)
        return []
    return parts


def _linked(value: Any, at: Path) -> list[tuple[Any, Path]]:
    """``link``/``link_error`` of a signature: one signature or a list of them."""
    if not isinstance(value, (list, tuple)):
        return [(value, at)]
    return [(item, at + f"[{i}]") for i, item in enumerate(value)]


OPTIONS: dict[str, Parts] = {
    "link": _linked, "link_error": _linked,
    "eta": _plain(_eta), "countdown": _plain(_number(-MAX_DELAY_SECONDS, MAX_DELAY_SECONDS)),
    "expires": _plain(_expiry), "retry": _plain(_flag), "retry_policy": _plain(_retry_policy),
    "serializer": _plain(_one_of(SERIALIZERS)), "compression": _plain(_one_of(COMPRESSIONS)),
    "queue": _plain(lambda v: _route(v, empty=True)),
    "routing_key": _plain(lambda v: _route(v, empty=True)),
    "priority": _plain(_priority), "task_id": _plain(_id), "parent_id": _plain(_id),
    "root_id": _plain(_id), "group_id": _plain(_id), "headers": _plain(_keywords),
    "time_limit": _plain(_seconds), "soft_time_limit": _plain(_seconds),
    "ignore_result": _plain(_flag), "schedule_name": _plain(_name), "chord": _plain(_marker),
}
"""The call options a signature may carry (hutch.call_options.CALL_OPTIONS; a test keeps the
two equal) and how each is checked."""


def _members(key: str, at_least: int) -> Parts:
    def parts(kwargs: dict[str, Any], at: Path) -> list[tuple[Any, Path]]:
        items = _named(at + f".{key}", _sequence, kwargs.get(key), required=True)
        if len(items) < at_least:
            raise ValueError(f"{at}.{key}: at least {at_least} signature(s) needed")
        return [(item, at + f".{key}[{i}]") for i, item in enumerate(items)]
    return parts


def _chord_parts(kwargs: dict[str, Any], at: Path) -> list[tuple[Any, Path]]:
    for key in ("header", "body"):
        _named(at + f".{key}", lambda v: v, kwargs.get(key), required=True)
    return [(kwargs["header"], at + ".header"), (kwargs["body"], at + ".body")]


def _chunks_parts(kwargs: dict[str, Any], at: Path) -> list[tuple[Any, Path]]:
    _named(at + ".it", _sequence, kwargs.get("it"), required=True)
    _named(at + ".n", _whole(1, MAX_COUNT), kwargs.get("n"), required=True)
    _named(at + ".task", lambda v: v, kwargs.get("task"), required=True)
    return [(kwargs["task"], at + ".task")]


COMPOSITES: dict[str, Parts] = {
    "chain": _members("tasks", 1), "group": _members("tasks", 0),
    "chord": _chord_parts, "chunks": _chunks_parts,
}
"""Workflow signatures (``subtask_type``) and the signatures their kwargs hold."""
