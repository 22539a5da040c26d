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

import base64
import dataclasses
import datetime as dt
import json
import math
import os
import reprlib
import signal as signals
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from . import envelope, serialization
from .envelope import VERSION_HEADER, FieldSpec, plain
from .errors import ConfigurationError, MessageError, SerializationError  # noqa: F401 - decode raises them
from .logs import get_logger
from .serialization import encode_args_for_row

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


def _declare(place: str, check: envelope.Check, **spec: Any) -> dict[str, FieldSpec]:
    return {SPEC: FieldSpec(place, check, **spec)}


def header(check: envelope.Check, **spec: Any) -> dict[str, FieldSpec]:
    """Metadata of a field that travels as an AMQP header (see FieldSpec for ``spec``)."""
    return _declare(envelope.HEADER, check, **spec)


def body(check: envelope.Check, **spec: Any) -> dict[str, FieldSpec]:
    """Metadata of a field that travels in the encoded body."""
    return _declare(envelope.BODY, check, **spec)


def custom(check: envelope.Check, **spec: Any) -> dict[str, FieldSpec]:
    """Metadata of the field holding the custom headers: a mapping whose items travel as
    AMQP headers of their own names, beside the protocol's."""
    return _declare(envelope.CUSTOM, check, **spec)


def prop(check: envelope.Check, **spec: Any) -> dict[str, FieldSpec]:
    """Metadata of a field that travels as an AMQP property (TaskMessage.encode maps it)."""
    return _declare(envelope.PROPERTY, check, **spec)


SPEC = "hutch"
"""The dataclass metadata key of a field's FieldSpec."""


def _row_args(value: Any) -> Any:
    return encode_args_for_row(list(value) if isinstance(value, tuple) else value)


@dataclass(frozen=True)
class TaskMessage:
    """One request to run a task. Immutable: a retry or a callback is a new message.

    Each field is declared once, here: its metadata (hutch.envelope.FieldSpec) says where
    it travels, what a worker accepts, whether it is a call option and a task default,
    and which hutch_tasks column it fills. ``encode``/``decode``, the call options,
    ``@app.task``'s defaults, the worker's Request and the rows' values follow from it
    (docs/protocol.md is the reference for each field)."""

    task: str = field(metadata=header(envelope.name_text, required=True, row="name"))
    id: str = field(metadata=header(envelope.ident, required=True, row="task_id"))
    args: tuple[Any, ...] = field(default=(), metadata=body(
        envelope.sequence, row="args", to_row=_row_args))
    kwargs: dict[str, Any] = field(default_factory=dict, metadata=body(
        envelope.keywords, row="kwargs", to_row=_row_args))
    queue: str = field(default="celery", metadata=header(
        envelope.route, required=True, option=plain(envelope.any_route), task_default=True,
        setting="task_default_queue", row="queue"))
    eta: dt.datetime | None = field(default=None, metadata=header(
        envelope.timestamp, option=plain(envelope.signature_eta), row="eta"))
    expires: dt.datetime | None = field(default=None, metadata=header(
        envelope.timestamp, option=plain(envelope.expiry), row="expires"))
    retries: int = field(default=0, metadata=header(envelope.count, row="retries"))
    parent_id: str | None = field(default=None, metadata=header(
        envelope.ident, option=plain(envelope.ident), row="parent_id"))
    root_id: str | None = field(default=None, metadata=header(
        envelope.ident, option=plain(envelope.ident), row="root_id"))
    group_id: str | None = field(default=None, metadata=header(
        envelope.ident, option=plain(envelope.ident), row="group_id"))
    link: tuple[SignatureDict, ...] = field(default=(), metadata=body(
        envelope.sequence, signatures=True, option=envelope.linked))
    link_error: tuple[SignatureDict, ...] = field(default=(), metadata=body(
        envelope.sequence, signatures=True, option=envelope.linked))
    chord: SignatureDict | None = field(default=None, metadata=body(
        envelope.chord_marker, option=plain(envelope.chord_marker)))
    """The chord this header task counts towards: ``{"group_id", "counts"}`` (issue #4)."""
    headers: dict[str, Any] = field(default_factory=dict, metadata=body(
        envelope.keywords, option=plain(envelope.keywords)))
    """Application headers (``headers=`` option), exposed as ``self.request.headers``."""
    ignore_result: bool = field(default=False, metadata=header(
        envelope.flag, option=plain(envelope.flag), task_default=True,
        setting="task_ignore_result"))
    time_limit: float | None = field(default=None, metadata=header(
        envelope.seconds, option=plain(envelope.seconds), task_default=True))
    soft_time_limit: float | None = field(default=None, metadata=header(
        envelope.seconds, option=plain(envelope.seconds), task_default=True))
    priority: int | None = field(default=None, metadata=prop(
        envelope.priority, option=plain(envelope.priority), task_default=True))
    serializer: str = field(default="json", metadata=prop(
        envelope.serializer_name, option=plain(envelope.serializer_name), task_default=True,
        setting="task_serializer"))
    compression: str | None = field(default=None, metadata=prop(
        envelope.compression_name, option=plain(envelope.compression_name),
        task_default=True, setting="task_compression"))
    origin: str = field(default="", metadata=header(envelope.label_text))
    """``host:pid`` of the sender (hutch.call_options sets it)."""
    notify: str | None = field(default=None, metadata=header(envelope.notice_key))
    """The key the worker sends this task's completion notice under: the sending
    client's (hutch.client.waiter), so only that client gets it. A retry carries it on,
    and so do a worker's follow-ups of the task; a task without it is announced to the
    clients that listen to every notice."""
    sent_at: dt.datetime | None = field(default=None, metadata=header(envelope.timestamp))
    schedule_name: str | None = field(default=None, metadata=header(
        envelope.name_text, option=plain(envelope.name_text), row="schedule_name"))
    """Set by beat for the task runs it sends."""
    stamps: dict[str, Any] = field(default_factory=dict, metadata=header(
        envelope.stamps_header, option=plain(envelope.stamp_values), row="stamps",
        to_row=lambda value: value or None))
    """Labels from ``Signature.stamp`` (hutch.workflows.stamping): a JSON object header."""
    custom_headers: dict[str, Any] = field(default_factory=dict, metadata=custom(
        envelope.custom_table))
    """Headers of the AMQP table that the protocol does not define, each a plain value
    under its own name: what a ``before_task_publish`` receiver adds (trace context such
    as ``traceparent``). A retry carries them on; ``self.request`` shows each as an
    attribute and in ``headers`` (docs/protocol.md, "Custom headers")."""

    def replace(self, **changes: Any) -> TaskMessage:
        return dataclasses.replace(self, **changes)

    def encode(self) -> Wire:
        """Build the broker representation; raises SerializationError for bad arguments."""
        values = vars(self)
        payload = {name: values[name] for name in BODY_FIELDS}
        for name in _LIST_BODY_FIELDS:  # a tuple at the top would be tagged as one
            payload[name] = list(payload[name])
        body, content_type, encoding = serialization.dumps(
            payload, self.serializer, self.compression)
        headers: dict[str, Any] = {VERSION_HEADER: PROTOCOL_VERSION}
        if self.custom_headers:
            headers.update(own_custom_headers(self.custom_headers))
        for name in HEADER_FIELDS:
            value = values[name]
            if value is not None and value is not False:
                headers[name] = value
        for name in _TIME_HEADER_FIELDS:
            if name in headers:
                headers[name] = headers[name].isoformat()
        if self.stamps:
            headers["stamps"] = envelope.stamps_text(self.stamps)
        else:
            headers.pop("stamps", None)
        if "sent_at" not in headers:
            headers["sent_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
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
        headers = envelope.read_headers(wire.headers, wire.message_id, HEADERS, REQUIRED)
        payload = serialization.loads(wire.body, wire.content_type, wire.content_encoding,
                                      accept, max_bytes)
        values = {**envelope.read_body(payload, BODY_SPECS, OPTIONS),
                  **{name: headers[name] for name in HEADER_FIELDS},
                  CUSTOM_FIELD: _received_custom(wire.headers, headers["id"])}
        return cls._checked(
            priority=envelope.read_priority(wire.priority),
            serializer=serialization.serializer_for_content_type(wire.content_type).name,
            compression=wire.content_encoding
            if wire.content_encoding in serialization.COMPRESSIONS else None,
            **{name: value for name, value in values.items() if value is not None})

    @classmethod
    def _checked(cls, **values: Any) -> TaskMessage:
        """``cls(**values)`` for values checked already, without the frozen dataclass's
        ``__init__`` (one ``object.__setattr__`` per field: 13 of the ~50 microseconds a
        worker spent decoding a message): the defaults, then ``values``."""
        if cls is not TaskMessage:
            return cls(**values)
        message = object.__new__(cls)
        fields = message.__dict__
        fields.update(_DEFAULTS)
        for name, factory in _DEFAULT_FACTORIES:
            fields[name] = factory()
        fields.update(values)
        return message


@dataclass(frozen=True)
class Request(TaskMessage):
    """What ``self.request`` shows inside a bound task (``@app.task(bind=True)``): the
    message being run, and where. Celery's other names for its fields (``group``,
    ``callbacks``, ``timelimit``, ``delivery_info``...) are properties below, worked out
    only when read."""

    hostname: str | None = None
    is_eager: bool = False
    """True when the task was called directly rather than run by a worker."""

    delivery: ClassVar[Any] = None
    """The broker delivery being run (hutch.brokers.base.Delivery); None when eager."""
    retry_later: ClassVar[Any] = None
    """A ``self.retry(throw=False)`` made during this run: the worker retries once the
    task returns (hutch.tasks.Task.retry)."""

    if not TYPE_CHECKING:  # for mypy, a request has only the attributes it declares
        def __getattr__(self, name: str) -> Any:
            """A custom header as an attribute (``self.request.traceparent``), as Celery
            shows them; reached only for a name that is no attribute of the request, so a
            header can never hide one."""
            headers = self.__dict__.get("headers") if not name.startswith("_") else None
            if headers is not None and name in headers:
                return headers[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def stamped_headers(self) -> list[str]:
        """Celery's name for the names of the task's stamps."""
        return list(self.stamps)

    @classmethod
    def of(cls, message: TaskMessage, hostname: str | None, delivery: Any = None) -> Request:
        """The request of a worker running ``message`` from ``delivery``: its fields copied
        as they are (the message was checked when it was built or decoded, so __init__ is
        not run again; this is on every task's path)."""
        request = object.__new__(cls)
        request.__dict__.update(vars(message), hostname=hostname, is_eager=False,
                                delivery=delivery)
        if message.custom_headers:  # the wire's custom headers join the headers= option's
            request.__dict__["headers"] = {**message.headers, **message.custom_headers}
        return request

    @property
    def group(self) -> str | None:
        """Celery's name for ``group_id``."""
        return self.group_id

    @property
    def callbacks(self) -> list[SignatureDict] | None:
        """Celery's name for ``link``: the signatures sent with the result."""
        return list(self.link) or None

    @property
    def errbacks(self) -> list[SignatureDict] | None:
        """Celery's name for ``link_error``."""
        return list(self.link_error) or None

    @property
    def timelimit(self) -> tuple[float | None, float | None]:
        """``(time_limit, soft_time_limit)``, hard first, as in Celery."""
        return self.time_limit, self.soft_time_limit

    @property
    def correlation_id(self) -> str:
        """The task id, which Celery's messages carry as their correlation id too."""
        return self.id

    @property
    def reply_to(self) -> None:
        """Always None: results are rows in SQL, never replies on a queue."""
        return None

    @property
    def delivery_info(self) -> dict[str, Any]:
        """``exchange``, ``routing_key`` (as the broker delivered it: a delayed task comes
        from the delay ladder's last exchange), ``priority``, ``redelivered``; an eager
        request has no exchange, its queue as routing key, and ``is_eager``."""
        d = self.delivery
        if d is None:
            return {"exchange": None, "routing_key": self.queue, "priority": self.priority,
                    "redelivered": False, "is_eager": self.is_eager}
        return {"exchange": getattr(d, "exchange", None),
                "routing_key": getattr(d, "routing_key", None) or d.queue,
                "priority": self.priority, "redelivered": bool(d.redelivered)}

    @property
    def properties(self) -> dict[str, Any]:
        """The AMQP properties hutch sends, as Celery's ``request.properties``."""
        wire = getattr(self.delivery, "wire", None)
        return {"content_type": wire.content_type if wire else None,
                "content_encoding": wire.content_encoding if wire else None,
                "message_id": self.id, "correlation_id": self.id, "reply_to": None,
                "priority": self.priority, "delivery_mode": 2}


# -- what follows from the declarations ------------------------------------------------

SPECS: dict[str, FieldSpec] = {f.name: f.metadata[SPEC] for f in dataclasses.fields(TaskMessage)}
"""Every field's declaration, by field name."""
HEADER_FIELDS = tuple(n for n, s in SPECS.items() if s.place == envelope.HEADER)
BODY_FIELDS = tuple(n for n, s in SPECS.items() if s.place == envelope.BODY)
BODY_SPECS = {name: SPECS[name] for name in BODY_FIELDS}
_TIME_HEADER_FIELDS = tuple(f.name for f in dataclasses.fields(TaskMessage)
                            if f.name in HEADER_FIELDS and "datetime" in str(f.type))
_LIST_BODY_FIELDS = tuple(f.name for f in dataclasses.fields(TaskMessage)
                          if f.name in BODY_FIELDS and str(f.type).startswith("tuple"))
REQUIRED = tuple(n for n, s in SPECS.items() if s.required)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TaskMessage)
             if f.default is not dataclasses.MISSING}
_DEFAULT_FACTORIES = tuple((f.name, f.default_factory) for f in dataclasses.fields(TaskMessage)
                           if f.default_factory is not dataclasses.MISSING)

WORKER_HEADER_CHECKS: dict[str, envelope.Check] = {
    "republished": envelope.flag, "continued": envelope.flag, "rate_slot": envelope.timestamp,
    "lost_attempts": envelope.count,
}
"""Headers a worker or a re-sender adds to a message copy (see below), not message fields."""
HEADERS: dict[str, envelope.Check] = {
    **{name: SPECS[name].check for name in HEADER_FIELDS}, **WORKER_HEADER_CHECKS}
"""Every header protocol 1 defines, with its check (docs/protocol.md, "Headers")."""

CALL_ONLY_OPTIONS: dict[str, envelope.Parts] = {
    "task_id": plain(envelope.ident),
    "countdown": plain(envelope.number(-MAX_DELAY_SECONDS, MAX_DELAY_SECONDS)),
    "routing_key": plain(envelope.any_route),
    "retry": plain(envelope.flag), "retry_policy": plain(envelope.retry_policy),
}
"""Call options that are not message fields: the id, a relative eta, the queue's other
name, and the publish retries (hutch.call_options)."""
OPTIONS: dict[str, envelope.Parts] = {
    **{n: s.option for n, s in SPECS.items() if s.option is not None}, **CALL_ONLY_OPTIONS}
"""Every call option a signature may carry, and how a worker checks it."""
CUSTOM_FIELD = next(n for n, s in SPECS.items() if s.place == envelope.CUSTOM)
TASK_DEFAULTS = tuple(n for n, s in SPECS.items() if s.task_default)
"""Fields ``@app.task`` may default (each a TaskOptions field of the same name)."""


def check_signature(data: Any, where: str = "signature") -> SignatureDict:
    """``data`` as a signature in wire form, checked to the bottom (hutch.envelope)."""
    return envelope.check_signature(data, OPTIONS, where)


def peek(headers: Any, name: str) -> Any:
    """One header's value if it is valid, else None, without raising: for what is done
    before a message is decoded (its RECEIVED row, the delay ladder's routing)."""
    return envelope.peek(headers, name, HEADERS[name])


def row_values(m: TaskMessage) -> dict[str, Any]:
    """The hutch_tasks columns a message fills (StateChange keywords), as the row keeps
    them: its id, name, arguments, route and lineage."""
    values = vars(m)
    return {column: to_row(values[name]) if to_row else values[name]
            for name, column, to_row in _ROW_FIELDS}


def header_row_values(headers: Any) -> dict[str, Any]:
    """The columns the valid headers of a message not yet decoded fill (its RECEIVED row),
    the id aside: the caller has it from peek_identity."""
    if not isinstance(headers, Mapping):
        return {}
    values: dict[str, Any] = {}
    for name, column, check in _HEADER_ROW_FIELDS:
        value = headers.get(name)
        if value is not None:
            try:
                values[column] = check(value)
            except (TypeError, ValueError, OverflowError):
                pass  # a bad header leaves its column alone; decoding will refuse it
    return values


_ROW_FIELDS = tuple((name, spec.row, spec.to_row) for name, spec in SPECS.items() if spec.row)
_HEADER_ROW_FIELDS = tuple((name, spec.row, spec.check) for name, spec in SPECS.items()
                           if spec.row and spec.place == envelope.HEADER and name != "id")


def peek_identity(wire: Wire) -> tuple[str | None, str | None]:
    """(task id, task name) from the headers alone, where valid: for recording a message
    that fails to decode."""
    return envelope.peek_identity(wire.headers, wire.message_id)


def delay_ticks(wire: Wire, now: dt.datetime | None = None) -> int:
    """Ticks of DELAY_TICK seconds until the message's eta, rounded up so it never runs
    early; 0 if due."""
    eta = peek(wire.headers, "eta")
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

# -- custom headers (docs/protocol.md, "Custom headers") ---------------------------------

log = get_logger("hutch.messages")

PROTOCOL_HEADERS = frozenset({VERSION_HEADER, *HEADERS, *DEAD_HEADERS})
"""Every header the protocol gives a meaning: never a custom header."""
REQUEST_NAMES = frozenset(
    {f.name for f in dataclasses.fields(Request)} | {
        n for n in dir(Request) if not n.startswith("_")}) - PROTOCOL_HEADERS
"""The attributes ``self.request`` has of its own: a custom header by one of these names
could not be shown as an attribute, so it is never sent nor read."""
_ABSENT = object()


def own_custom_headers(custom: Mapping[str, Any]) -> dict[str, Any]:
    """``custom`` as it goes on the wire: without the names the protocol or
    ``self.request`` use; ConfigurationError naming the field for a value no AMQP header
    should carry (code that sets them by hand: a received message's were checked)."""
    try:
        envelope.custom_table(custom)
    except ValueError as exc:
        raise ConfigurationError(f"custom_headers: {exc}") from None
    return {n: v for n, v in custom.items()
            if n not in PROTOCOL_HEADERS and n not in REQUEST_NAMES}


def _received_custom(headers: Mapping[str, Any], task_id: str | None) -> dict[str, Any]:
    """A received message's custom headers; one that cannot be one (not a plain value,
    named like an attribute of ``self.request``, one too many) is left out with a
    warning, never refused: it carries no instruction hutch must follow."""
    kept, dropped = envelope.split_custom(headers, PROTOCOL_HEADERS, REQUEST_NAMES)
    if dropped:
        log.warning("custom headers left out of the request", task_id=task_id, dropped=dropped)
    return kept


def settled_headers(sent: Mapping[str, Any], changed: Mapping[str, Any]
                    ) -> tuple[dict[str, Any], dict[str, str]]:
    """The AMQP headers a ``before_task_publish`` receiver left (``changed``, from
    ``sent``) as they may go out, and what was refused, with why: hutch's own headers
    keep their values (a receiver cannot change a task's id, eta or retries), custom
    ones must be plain values under names ``self.request`` does not use; RabbitMQ's
    ``x-`` headers pass as they are."""
    custom, refused_ = envelope.split_custom(changed, PROTOCOL_HEADERS, REQUEST_NAMES)
    for name in PROTOCOL_HEADERS:
        if changed.get(name, _ABSENT) != sent.get(name, _ABSENT):
            refused_[name] = "hutch's own header: the change is undone"
    broker = {n: v for n, v in changed.items() if isinstance(n, str) and n.startswith("x-")}
    own = {n: v for n, v in sent.items() if n in PROTOCOL_HEADERS}
    return {**broker, **custom, **own}, refused_


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


__all__ = ["Request", "TaskMessage", "Wire", "peek_identity", "SerializationError"]


# -- control messages (client/revocation.py sends them, worker/revocations.py reads them) --

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

    def arguments(self) -> dict[str, Any]:
        """As the arguments of a ``revoke`` control request (one asking for replies)."""
        return {"ids": list(self.ids), "terminate": self.terminate, "signal": self.signal}

    @classmethod
    def of_arguments(cls, arguments: dict[str, Any]) -> RevokeCommand:
        """From a ``revoke`` control request's arguments; ValueError saying what is wrong."""
        ids = arguments.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ValueError("revoke: 'ids' must be a list of task ids")
        try:
            signal = signal_name(arguments.get("signal") or DEFAULT_SIGNAL)
        except ConfigurationError as exc:
            raise ValueError(f"revoke: {exc}") from None
        return cls(tuple(ids), bool(arguments.get("terminate")), signal)

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


STAMP_REVOKE = "revoke_by_stamped_headers"


def stamp_key(value: Any) -> str:
    """One stamp value as canonical JSON text: how a revoked value is stored
    (``hutch_revoked_stamps.value``) and matched, whatever its type."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class RevokeStampsCommand:
    """The broadcast body of ``revoke_by_stamped_headers``: ``{"command":
    "revoke_by_stamped_headers", "headers": {name: [value, ...]}, "terminate": ...,
    "signal": ...}``; a task carrying any of these values under that name (its own value,
    or one of its list) is refused."""

    headers: dict[str, tuple[Any, ...]]
    terminate: bool = False
    signal: str = DEFAULT_SIGNAL

    @classmethod
    def of(cls, headers: Any, terminate: bool = False,
           signal: str | int | None = None) -> RevokeStampsCommand:
        """From the caller's ``{name: value or [values]}``; ConfigurationError naming
        what is wrong."""
        if not isinstance(headers, Mapping) or not headers:
            raise ConfigurationError(f"headers: expected a non-empty mapping of stamp "
                                     f"names to values, got {headers!r}")
        try:
            checked = envelope.stamp_values(dict(headers))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"headers: {exc}") from None
        return cls({name: tuple(value) if isinstance(value, list) else (value,)
                    for name, value in checked.items()}, bool(terminate), signal_name(signal))

    def keys(self) -> set[tuple[str, str]]:
        """``(name, stamp_key(value))`` of every revoked value."""
        return {(name, stamp_key(v)) for name, values in self.headers.items() for v in values}

    def encode(self) -> bytes:
        return json.dumps({"command": STAMP_REVOKE, "terminate": self.terminate,
                           "headers": {n: list(v) for n, v in self.headers.items()},
                           "signal": self.signal}).encode()

    @classmethod
    def decode(cls, body: bytes) -> RevokeStampsCommand | None:
        """The command in ``body``; None when it is another one (without a word), or a
        malformed one (logged, never raised)."""
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("command") != STAMP_REVOKE:
            return None
        try:
            return cls.of(data.get("headers"), bool(data.get("terminate")), data.get("signal"))
        except ConfigurationError as exc:
            control_log.warning("control message ignored", error=str(exc))
            return None


@dataclass(frozen=True)
class ControlRequest:
    """A request for replies on the control broadcast (``hutch inspect``):
    ``{"command", "arguments", "destination", "reply_to", "ticket"}``. Every worker
    process named by ``destination`` (all when None) answers to the inbox ``reply_to``
    with a :class:`ControlReply` carrying the same ``ticket``."""

    command: str
    reply_to: str
    ticket: str
    arguments: dict[str, Any] = field(default_factory=dict)
    destination: tuple[str, ...] | None = None

    def encode(self) -> bytes:
        return json.dumps({"command": self.command, "arguments": self.arguments,
                           "destination": (list(self.destination)
                                           if self.destination is not None else None),
                           "reply_to": self.reply_to, "ticket": self.ticket}).encode()

    def is_for(self, hostname: str) -> bool:
        return self.destination is None or hostname in self.destination

    @classmethod
    def decode(cls, body: bytes) -> ControlRequest:
        """The request in ``body``; MessageError saying what is wrong otherwise."""
        data = _control_fields(body)
        command, reply_to, ticket = data.get("command"), data.get("reply_to"), data.get("ticket")
        arguments, destination = data.get("arguments", {}), data.get("destination")
        for name, value in (("command", command), ("reply_to", reply_to), ("ticket", ticket)):
            if not isinstance(value, str) or not value:
                raise MessageError(f"control request: {name} must be a non-empty string")
        if not isinstance(arguments, dict):
            raise MessageError("control request: arguments must be an object")
        if destination is not None and not (
                isinstance(destination, list) and all(isinstance(d, str) for d in destination)):
            raise MessageError("control request: destination must be a list of hostnames")
        return cls(str(command), str(reply_to), str(ticket), arguments,
                   tuple(destination) if destination is not None else None)


def _control_fields(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise MessageError(f"control message is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageError("control message is not a JSON object")
    return data


def wants_reply(body: bytes) -> tuple[str, str, tuple[str, ...] | None] | None:
    """``(reply_to, ticket, destination)`` of a control body that asks for replies (with
    a usable ``reply_to``), however malformed the rest, so an error can be answered;
    None for a plain revocation (``{"command": "revoke", "ids": ...}``, no
    ``arguments``: a revoke asking for replies is a request) or a body with nowhere
    to reply."""
    try:
        data = _control_fields(body)
    except MessageError:
        return None
    reply_to, destination = data.get("reply_to"), data.get("destination")
    plain_revoke = data.get("command") == "revoke" and "arguments" not in data
    if plain_revoke or not isinstance(reply_to, str) or not reply_to:
        return None
    if not (isinstance(destination, list) and all(isinstance(d, str) for d in destination)):
        destination = None
    return reply_to, str(data.get("ticket") or ""), (
        tuple(destination) if destination is not None else None)


@dataclass(frozen=True)
class ControlReply:
    """One worker process's answer to a :class:`ControlRequest`: ``{"ticket",
    "hostname", "child", "of", "pid", "ok": reply}`` or ``{..., "error": text}``.
    ``child`` is the prefork child's index (None otherwise) and ``of`` how many
    processes of ``hostname`` answer (the prefork concurrency, else 1), so the
    requester knows when it has heard from all of them."""

    ticket: str
    hostname: str
    child: int | None
    of: int
    pid: int
    ok: Any = None
    error: str | None = None

    def encode(self) -> bytes:
        outcome = {"error": self.error} if self.error is not None else {"ok": self.ok}
        return json.dumps({"ticket": self.ticket, "hostname": self.hostname,
                           "child": self.child, "of": self.of, "pid": self.pid, **outcome},
                          default=str).encode()

    @classmethod
    def decode(cls, body: bytes) -> ControlReply | None:
        """The reply in ``body``, or None for anything else (logged, never raised)."""
        try:
            data = _control_fields(body)
            child = data.get("child")
            error = data.get("error")
            return cls(str(data["ticket"]), str(data["hostname"]),
                       int(child) if child is not None else None, max(int(data["of"]), 1),
                       int(data["pid"]), data.get("ok"),
                       str(error) if error is not None else None)
        except (MessageError, KeyError, TypeError, ValueError) as exc:
            control_log.warning("control reply ignored", error=f"{type(exc).__name__}: {exc}")
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


CARRY_MAX = 4096
"""Bytes of one task's result (the stored JSON's size, or encoded bytes) a completion
notice may carry."""
NOTICE_CARRY_MAX = 65536
"""Bytes of results one notice carries in all: the tasks past it are left to a read."""


@dataclass(frozen=True)
class Carried:
    """A SUCCESS outcome as its row stores it, carried by a completion notice so that
    ``get()`` needs no read: the row's ``result`` (a JSON value), or its
    ``result_encoded`` bytes with their ``content_type``."""

    result: Any = None
    encoded: bytes | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Notice:
    """A decoded completion notice: the ids committed finished, and the outcomes it
    carries (none from a worker older than the field), decoded one at a time by
    :meth:`carried`: a client looks only at the ids it waits for."""

    ids: list[str]
    entries: dict[str, Any] = field(default_factory=dict)

    def carried(self, task_id: str) -> Carried | None:
        """The outcome carried for ``task_id``; None when there is none, or none that
        this version understands."""
        entry = self.entries.get(task_id)
        if not isinstance(entry, dict):
            return None
        if "result" in entry:
            return Carried(result=entry["result"])
        encoded, content_type = entry.get("encoded"), entry.get("content_type")
        if not isinstance(encoded, str) or not isinstance(content_type, str):
            return None
        try:
            return Carried(encoded=base64.b64decode(encoded, validate=True),
                           content_type=content_type)
        except ValueError:
            return None


def encode_notice(task_ids: list[str], carried: Mapping[str, Carried] | None = None) -> bytes:
    """``["<id>", ...]``, followed by ``{"carried": {"<id>": {...}}}`` when outcomes are
    carried: a reader that knows only the list of strings skips the object (a
    rolling upgrade mixes versions). Up to NOTICE_CARRY_MAX bytes of results in one
    notice (the store returns only results of at most CARRY_MAX)."""
    if not carried:
        return json.dumps(task_ids, separators=(",", ":")).encode()
    entries = {task_id: _carried_entry(outcome) for task_id, outcome in carried.items()}
    try:
        body = json.dumps([*task_ids, {"carried": entries}], separators=(",", ":"),
                          allow_nan=False)
    except (TypeError, ValueError):
        body = ""
    if body and len(body) - sum(len(i) + 3 for i in task_ids) <= NOTICE_CARRY_MAX:
        return body.encode()  # the usual notice: small results, measured all at once
    return _within_budget(task_ids, entries).encode()


def _within_budget(task_ids: list[str], entries: dict[str, dict[str, Any]]) -> str:
    """The notice with each entry measured: those that fit in NOTICE_CARRY_MAX, in
    order (an entry JSON cannot encode is left out)."""
    kept, total = [], 0
    for task_id, entry in entries.items():
        try:
            text = json.dumps(entry, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            continue
        if len(text) > CARRY_MAX or total + len(text) > NOTICE_CARRY_MAX:
            continue
        total += len(text)
        kept.append(f"{json.dumps(task_id)}:{text}")
    plain = json.dumps(task_ids, separators=(",", ":"))
    if not kept:
        return plain
    return f'{plain[:-1]}{"," if task_ids else ""}{{"carried":{{{",".join(kept)}}}}}]'


def _carried_entry(outcome: Carried) -> dict[str, Any]:
    """One carried outcome: ``{"result": <value>}`` or ``{"encoded": "<base64>",
    "content_type": "..."}``."""
    if outcome.encoded is not None:
        return {"encoded": base64.b64encode(outcome.encoded).decode("ascii"),
                "content_type": outcome.content_type}
    return {"result": outcome.result}


def read_notice(body: bytes) -> Notice:
    """The ids of a completion notice, and the outcomes it carries; a body that is not
    a list yields no ids, and elements that are not ids are skipped."""
    try:
        items = json.loads(body)
    except ValueError:
        return Notice([])
    if not isinstance(items, list):
        return Notice([])
    entries: dict[str, Any] = {}
    for item in items:
        found = item.get("carried") if isinstance(item, dict) else None
        if isinstance(found, dict):
            entries.update(found)
    return Notice([i for i in items if isinstance(i, str)], entries)


def decode_notice(body: bytes) -> list[str]:
    """The ids of a completion notice (what a reader that ignores the outcomes needs)."""
    return read_notice(body).ids


# -- task events (hutch.events sends them on the task-events channel; ops/events.py reads) --

TASK_EVENT_TYPES = ("task-sent", "task-received", "task-started", "task-succeeded",
                    "task-failed", "task-retried", "task-revoked", "task-rejected")
"""Celery's task event types, in the order a task's life can produce them."""

EVENT_REPR_MAX = 1024
"""Characters kept of an event's ``args``/``kwargs``/``result``/``exception`` repr: an
event is for a live view, never the record, so it stays small whatever the task carries."""

_event_repr = reprlib.Repr()
_event_repr.maxstring = _event_repr.maxother = 256
_event_repr.maxlevel, _event_repr.maxlist, _event_repr.maxdict = 4, 32, 32


_SCALAR_LIMITS: dict[type, int] = {int: _event_repr.maxlong, str: _event_repr.maxstring, float: 256,
                  bool: 256, type(None): 256}
"""Plain values whose ``repr`` ``_event_repr`` returns unchanged up to this length."""
_SEQUENCE_LIMITS: dict[type, int] = {tuple: _event_repr.maxtuple, list: _event_repr.maxlist}


def _plain_repr(value: Any) -> str | None:
    """``_event_repr.repr(value)`` the quick way, for a plain value or a short tuple or
    list of them (most arguments and results), else None: reprlib costs a task's worker
    several microseconds per event field."""
    limit = _SCALAR_LIMITS.get(type(value))
    if limit is not None:
        text = repr(value)
        return text if len(text) <= limit else None
    most = _SEQUENCE_LIMITS.get(type(value))
    if most is None:
        return "{}" if type(value) is dict and not value else None
    if len(value) > most:
        return None
    items = []
    for item in value:
        limit = _SCALAR_LIMITS.get(type(item))
        if limit is None:
            return None
        text = repr(item)
        if len(text) > limit:
            return None
        items.append(text)
    inner = ", ".join(items)
    if type(value) is list:
        return f"[{inner}]"
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def event_repr(value: Any) -> str:
    """A bounded repr for an event field (Celery sends ``argsrepr``-like strings too);
    never raises, since an event must never fail a task."""
    fast = _plain_repr(value)
    if fast is not None:
        return fast if len(fast) <= EVENT_REPR_MAX else fast[:EVENT_REPR_MAX - 3] + "..."
    try:
        text = _event_repr.repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not reach the task
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= EVENT_REPR_MAX else text[:EVENT_REPR_MAX - 3] + "..."


def utcoffset_hours() -> int:
    """Celery's ``utcoffset`` field: hours *west* of UTC (``time.timezone``'s sign)."""
    return (time.altzone if time.daylight and time.localtime().tm_isdst > 0
            else time.timezone) // 3600


def sent_event_fields(m: TaskMessage, exchange: str) -> dict[str, Any]:
    """The fields of ``task-sent`` (Celery: those of ``task-received`` and exchange,
    routing_key)."""
    return {**received_event_fields(m), "exchange": exchange, "routing_key": m.queue}


def received_event_fields(m: TaskMessage) -> dict[str, Any]:
    """The fields of ``task-received`` (Celery: uuid, name, args, kwargs, retries, eta,
    expires, root_id, parent_id; hostname and timestamp come with every event)."""
    return {"uuid": m.id, "name": m.task, "args": event_repr(m.args),
            "kwargs": event_repr(m.kwargs), "retries": m.retries, "eta": _iso(m.eta),
            "expires": _iso(m.expires), "root_id": m.root_id, "parent_id": m.parent_id,
            "queue": m.queue}


_event_encoder = json.JSONEncoder(separators=(",", ":"), default=str)


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One event as the task-events channel carries it: a flat JSON object (a worker
    sends several as a JSON array of them, hutch.events)."""
    return _event_encoder.encode(event).encode()


def encode_events(events: Sequence[Mapping[str, Any]]) -> bytes:
    """Several events as one body: a JSON array (one event alone: the object), the bytes
    of joining each one's :func:`encode_event`, in one encoder call."""
    return encode_event(events[0]) if len(events) == 1 else _event_encoder.encode(
        events).encode()


def decode_events(body: bytes) -> list[dict[str, Any]]:
    """The events in ``body``: one object, or an array of them (a worker's batch). What
    is not an event is skipped, never raised: a stray message on the exchange must not
    stop a live view."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    items = data if isinstance(data, list) else [data]
    return [e for e in items if isinstance(e, dict) and isinstance(e.get("type"), str)]
