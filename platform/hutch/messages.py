"""The task message envelope and its codec to AMQP properties, headers and body.

The envelope is split so that RabbitMQ tools and the dead-letter views can read
what a message is without decoding its body: identity, routing and timing live
in AMQP headers (plain strings and numbers), while arguments and callbacks live
in the body, encoded with the chosen serializer. docs/protocol.md is the
reference for every field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from . import serialization
from .errors import MessageError, SerializationError

PROTOCOL_VERSION = 1

DELAY_TICK = 0.125
"""The delay ladder's resolution in seconds: a delay is rounded up to whole ticks, so
rounding makes a task at most 125 ms late (hutch.amqp.ladder)."""
MAX_DELAY_SECONDS = 2**28 - 1
"""The delay ladder's reach: about 8.5 years."""
ORIGIN = f"{socket.gethostname()}:{os.getpid()}"

LOST_ATTEMPTS_HEADER = "lost_attempts"
"""Attempts of this retry whose worker process died under it (hutch.worker.poison)."""

SignatureDict = dict[str, Any]
"""A signature in its wire form: ``{"task", "args", "kwargs", "options", "immutable"}``."""


@dataclass(frozen=True)
class Wire:
    """A message as the broker carries it."""

    body: bytes
    content_type: str
    content_encoding: str
    headers: dict[str, Any]
    message_id: str
    priority: int | None = None
    expiration: str | None = None
    """AMQP per-message TTL in milliseconds, as a string."""


@dataclass(frozen=True)
class TaskMessage:
    """One request to run a task. Immutable: a retry or a callback is a new message."""

    task: str
    id: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "celery"
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    retries: int = 0
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    link: tuple[SignatureDict, ...] = ()
    link_error: tuple[SignatureDict, ...] = ()
    chord: SignatureDict | None = None
    """The chord body to trigger when this header task's group completes (issue #4)."""
    headers: dict[str, Any] = field(default_factory=dict)
    """Application headers (``headers=`` option), exposed as ``self.request.headers``."""
    ignore_result: bool = False
    time_limit: float | None = None
    soft_time_limit: float | None = None
    priority: int | None = None
    serializer: str = "json"
    compression: str | None = None
    origin: str = ORIGIN
    sent_at: dt.datetime | None = None
    schedule_name: str | None = None
    """Set by beat for the task runs it sends."""

    def replace(self, **changes: Any) -> TaskMessage:
        return dataclasses.replace(self, **changes)

    def encode(self) -> Wire:
        """Build the broker representation; raises SerializationError for bad arguments."""
        payload = {"args": list(self.args), "kwargs": self.kwargs,
                   "link": list(self.link), "link_error": list(self.link_error),
                   "chord": self.chord, "headers": self.headers}
        body, content_type, encoding = serialization.dumps(
            payload, self.serializer, self.compression)
        headers: dict[str, Any] = {
            "hutch": PROTOCOL_VERSION,
            "task": self.task,
            "id": self.id,
            "queue": self.queue,
            "retries": self.retries,
            "origin": self.origin,
            "sent_at": _iso(self.sent_at or dt.datetime.now(dt.timezone.utc)),
        }
        optional = {
            "eta": _iso(self.eta), "expires": _iso(self.expires),
            "parent_id": self.parent_id, "root_id": self.root_id, "group_id": self.group_id,
            "time_limit": self.time_limit, "soft_time_limit": self.soft_time_limit,
            "schedule_name": self.schedule_name,
        }
        headers.update({k: v for k, v in optional.items() if v is not None})
        if self.ignore_result:
            headers["ignore_result"] = True
        return Wire(body=body, content_type=content_type, content_encoding=encoding,
                    headers=headers, message_id=self.id, priority=self.priority)

    @classmethod
    def decode(cls, wire: Wire, accept: tuple[str, ...] | None = None) -> TaskMessage:
        """Parse a delivery. Raises MessageError for a bad envelope and
        SerializationError/ContentDisallowed for a body that cannot or may not be read."""
        h = wire.headers or {}
        task, task_id = h.get("task"), h.get("id") or wire.message_id
        if not isinstance(task, str) or not task or not isinstance(task_id, str) or not task_id:
            raise MessageError("not a hutch task message: headers 'task' and 'id' are required")
        payload = serialization.loads(wire.body, wire.content_type, wire.content_encoding, accept)
        if not isinstance(payload, dict) or not isinstance(payload.get("args", []), (list, tuple)) \
                or not isinstance(payload.get("kwargs", {}), dict):
            raise MessageError("body must be a mapping with 'args' (a list) and 'kwargs' (a mapping)")
        try:
            return cls(
                task=task, id=task_id,
                args=tuple(payload.get("args") or ()),
                kwargs=dict(payload.get("kwargs") or {}),
                queue=str(h.get("queue", "")),
                eta=_parse_time(h.get("eta")), expires=_parse_time(h.get("expires")),
                retries=int(h.get("retries", 0)),
                parent_id=h.get("parent_id"), root_id=h.get("root_id"),
                group_id=h.get("group_id"),
                link=tuple(payload.get("link") or ()),
                link_error=tuple(payload.get("link_error") or ()),
                chord=payload.get("chord"),
                headers=dict(payload.get("headers") or {}),
                ignore_result=bool(h.get("ignore_result", False)),
                time_limit=_float(h.get("time_limit")),
                soft_time_limit=_float(h.get("soft_time_limit")),
                priority=wire.priority,
                serializer=serialization.serializer_for_content_type(wire.content_type).name,
                compression=wire.content_encoding
                if wire.content_encoding in serialization.COMPRESSIONS else None,
                origin=str(h.get("origin", "")),
                sent_at=_parse_time(h.get("sent_at")),
                schedule_name=h.get("schedule_name"),
            )
        except (TypeError, ValueError) as exc:
            raise MessageError(f"malformed header: {exc}") from exc


def peek_identity(wire: Wire) -> tuple[str | None, str | None]:
    """(task id, task name) from the headers alone, for recording a message that fails to decode."""
    h = wire.headers or {}
    task_id = h.get("id") or wire.message_id
    name = h.get("task")
    return (task_id if isinstance(task_id, str) and task_id else None,
            name if isinstance(name, str) else None)


def delay_ticks(wire: Wire, now: dt.datetime | None = None) -> int:
    """Ticks of DELAY_TICK seconds until the message's eta, rounded up so it never runs
    early; 0 if due."""
    eta = (wire.headers or {}).get("eta")
    if not eta:
        return 0
    now = now or dt.datetime.now(dt.timezone.utc)
    remaining = (_parse_time(eta) - now).total_seconds()
    if remaining <= 0:
        return 0
    return math.ceil(min(remaining, MAX_DELAY_SECONDS) / DELAY_TICK)


def delay_seconds(wire: Wire, now: dt.datetime | None = None) -> float:
    """Seconds until the message's eta, rounded up to the ladder's tick; 0 if due."""
    return delay_ticks(wire, now) * DELAY_TICK


def without_broker_headers(wire: Wire) -> Wire:
    """A clean copy for republishing: RabbitMQ's x-death history stays behind."""
    headers = {k: v for k, v in (wire.headers or {}).items() if not k.startswith("x-")}
    return dataclasses.replace(wire, headers=headers)


CONTINUED_HEADER = "continued"
"""On a copy a worker published in place of a delivery it acknowledged without running
(an eta still ahead, a rate-limit wait, an attempt whose process died): the same
attempt goes on, so a worker runs it although the row says RECEIVED or STARTED. Any
other new delivery that finds its attempt received already is a duplicate
(hutch.worker.claims)."""


def continuation(wire: Wire) -> Wire:
    """The copy a worker publishes to carry on a delivery it acknowledges unrun: clean of
    RabbitMQ's x-death history and marked as the same attempt going on."""
    clean = without_broker_headers(wire)
    return dataclasses.replace(clean, headers={**clean.headers, CONTINUED_HEADER: True})


def is_continued(wire: Wire) -> bool:
    return bool((wire.headers or {}).get(CONTINUED_HEADER))


REPUBLISHED_HEADER = "republished"
"""On a copy published again after a crash left it unknown whether the first one was
sent (an unconfirmed beat run, a chord body not marked sent): a worker acknowledges
the copy without running it once that task id has been received (hutch.worker.executor)."""


def republished(wire: Wire) -> Wire:
    """``wire`` marked as such a copy."""
    return dataclasses.replace(wire, headers={**wire.headers, REPUBLISHED_HEADER: True})


def resent(routed: list[tuple[str, Wire]]) -> list[tuple[str, Wire]]:
    """A publish being retried after the broker failed it: the first try may have been
    stored with its confirm lost (a RabbitMQ restart), so each message goes again as a
    republished copy, which a worker drops once its task id has been received."""
    return [(route, republished(wire)) for route, wire in routed]


def is_republished(wire: Wire) -> bool:
    return bool((wire.headers or {}).get(REPUBLISHED_HEADER))


WORKER_HEADERS = ("rate_slot", LOST_ATTEMPTS_HEADER, CONTINUED_HEADER)
"""Headers a worker adds for its own bookkeeping (a reserved rate-limit token, lost
attempts of a poison task); a
replayed dead letter starts without them."""


def replayable(wire: Wire) -> Wire:
    """A dead letter made new: no x-death history, retry and lost-attempt counts back to 0."""
    clean = without_broker_headers(wire)
    headers = {k: v for k, v in clean.headers.items() if k not in WORKER_HEADERS}
    return dataclasses.replace(clean, headers={**headers, "retries": 0})


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise MessageError(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


__all__ = ["TaskMessage", "Wire", "peek_identity", "SerializationError"]
