"""The task message envelope and its codec to AMQP properties, headers and body.

The envelope is split so that RabbitMQ tools and the dead-letter views can read
what a message is without decoding its body: identity, routing and timing live
in AMQP headers (plain strings and numbers), while arguments and callbacks live
in the body, encoded with the chosen serializer. docs/protocol.md is the
reference for every field. The control broadcast's revoke command and the signal
names it carries live here too, below the worker that reads them and the
operator tools that send them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import signal as signals
import socket
from dataclasses import dataclass, field
from typing import Any

from . import envelope, serialization
from .errors import ConfigurationError, MessageError, SerializationError  # noqa: F401 - decode raises them
from .logs import get_logger

PROTOCOL_VERSION = envelope.PROTOCOL_VERSION

DELAY_TICK = 0.125
"""The delay ladder's resolution in seconds: a delay is rounded up to whole ticks, so
rounding makes a task at most 125 ms late (hutch.brokers.amqp.ladder)."""
MAX_DELAY_SECONDS = envelope.MAX_DELAY_SECONDS
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
    def decode(cls, wire: Wire, accept: tuple[str, ...] | None = None,
               max_bytes: int | None = None) -> TaskMessage:
        """Parse a delivery, checking every header and body field (hutch.envelope) before
        anything can act on it. Raises MessageError for a bad envelope (its text names the
        field), SerializationError for a body that cannot be read, ContentDisallowed for
        one that may not (``accept``), MessageTooLarge for one over ``max_bytes`` as
        received or unpacked."""
        h = envelope.read_headers(wire.headers, wire.message_id)
        payload = serialization.loads(wire.body, wire.content_type, wire.content_encoding,
                                      accept, max_bytes)
        body = envelope.read_body(payload)
        return cls(
            task=h["task"], id=h["id"], args=body["args"], kwargs=body["kwargs"],
            queue=h["queue"], eta=h["eta"], expires=h["expires"], retries=h["retries"] or 0,
            parent_id=h["parent_id"], root_id=h["root_id"], group_id=h["group_id"],
            link=body["link"], link_error=body["link_error"], chord=body["chord"],
            headers=body["headers"], ignore_result=bool(h["ignore_result"]),
            time_limit=h["time_limit"], soft_time_limit=h["soft_time_limit"],
            priority=envelope.read_priority(wire.priority),
            serializer=serialization.serializer_for_content_type(wire.content_type).name,
            compression=wire.content_encoding
            if wire.content_encoding in serialization.COMPRESSIONS else None,
            origin=h["origin"] or "", sent_at=h["sent_at"], schedule_name=h["schedule_name"],
        )


def peek_identity(wire: Wire) -> tuple[str | None, str | None]:
    """(task id, task name) from the headers alone, where valid: for recording a message
    that fails to decode."""
    return envelope.peek_identity(wire.headers, wire.message_id)


def delay_ticks(wire: Wire, now: dt.datetime | None = None) -> int:
    """Ticks of DELAY_TICK seconds until the message's eta, rounded up so it never runs
    early; 0 if due."""
    eta = envelope.peek(wire.headers, "eta")
    if eta is None:  # none, or one that cannot be read: due, so a worker refuses it
        return 0
    now = now or dt.datetime.now(dt.timezone.utc)
    remaining = (eta - now).total_seconds()
    if remaining <= 0:
        return 0
    return int(math.ceil(min(remaining, MAX_DELAY_SECONDS) / DELAY_TICK))


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


DEAD_REASON_HEADER = "dead_reason"
DEAD_ID_HEADER = "dead_id"
DEAD_HEADERS = (DEAD_REASON_HEADER, "dead_by", "dead_at", DEAD_ID_HEADER)
"""On the copy of a message that a worker refused and put into the route's dead-letter
queue itself (hutch.worker.executor): why (``ErrorType: message``), which worker, when,
and, for a message without a usable task id, an id for ``hutch dlq show``."""
REASON_LENGTH = 1000


def refused(wire: Wire, reason: str, worker: str, dead_id: str | None = None) -> Wire:
    """``wire`` as the dead letter of a refusal: no broker history, no TTL (a dead letter
    must not expire), and the DEAD_HEADERS."""
    clean = without_broker_headers(wire)
    headers = {**clean.headers, DEAD_REASON_HEADER: " ".join(reason.split())[:REASON_LENGTH],
               "dead_by": worker, "dead_at": _iso(dt.datetime.now(dt.timezone.utc))}
    if dead_id is not None:
        headers[DEAD_ID_HEADER] = dead_id
    return dataclasses.replace(clean, headers=headers, expiration=None)


def replayable(wire: Wire) -> Wire:
    """A dead letter made new: no x-death history or refusal, retry and lost-attempt
    counts back to 0."""
    clean = without_broker_headers(wire)
    headers = {k: v for k, v in clean.headers.items()
               if k not in WORKER_HEADERS and k not in DEAD_HEADERS}
    return dataclasses.replace(clean, headers={**headers, "retries": 0})


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


__all__ = ["TaskMessage", "Wire", "peek_identity", "SerializationError"]


# -- control messages (ops/control.py sends them, worker/revocations.py reads them) --

control_log = get_logger("hutch.control")

DEFAULT_SIGNAL = "SIGTERM"


@dataclass(frozen=True)
class RevokeCommand:
    """The broadcast body: ``{"command": "revoke", "ids": [...], "terminate": ..., "signal": ...}``."""

    ids: tuple[str, ...]
    terminate: bool = False
    signal: str = DEFAULT_SIGNAL

    def encode(self) -> bytes:
        return json.dumps({"command": "revoke", "ids": list(self.ids),
                           "terminate": self.terminate, "signal": self.signal}).encode()

    @classmethod
    def decode(cls, body: bytes) -> RevokeCommand | None:
        """The command in ``body``, or None for anything else (logged, never raised)."""
        try:
            data = json.loads(body)
            if data.get("command") != "revoke":
                raise ValueError(f"unknown command {data.get('command')!r}")
            ids = tuple(i for i in data["ids"] if isinstance(i, str))
            return cls(ids, bool(data.get("terminate")),
                       signal_name(data.get("signal") or DEFAULT_SIGNAL))
        except (ValueError, TypeError, KeyError, AttributeError, ConfigurationError) as exc:
            control_log.warning("control message ignored", error=f"{type(exc).__name__}: {exc}")
            return None


def signal_name(value: str | int | None) -> str:
    """``"SIGKILL"``, ``"KILL"``, ``"kill"`` or ``9`` → ``"SIGKILL"``; anything else is refused."""
    if value is None:
        return DEFAULT_SIGNAL
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return signals.Signals(value).name
        name = str(value).upper()
        return signals.Signals[name if name.startswith("SIG") else f"SIG{name}"].name
    except (KeyError, ValueError):
        raise ConfigurationError(f"signal: unknown signal {value!r}") from None


def signal_number(name: str) -> int:
    return int(signals.Signals[signal_name(name)])


def encode_notice(task_ids: list[str]) -> bytes:
    return json.dumps(task_ids, separators=(",", ":")).encode()


def decode_notice(body: bytes) -> list[str]:
    try:
        ids = json.loads(body)
    except ValueError:
        return []
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
