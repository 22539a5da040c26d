"""``before_task_publish`` and ``after_task_publish`` around a publish of task messages,
for every sender: the clients (a submit, a workflow, a beat run) and the worker (a
retry's next attempt, a chain's next step, callbacks, chord bodies, replacements), so a
receiver (a tracer injecting ``traceparent``) sees every message, as in Celery.

A receiver may change the ``headers`` and ``properties`` it gets, and what it adds goes
out on the wire: a custom header, read back by the worker as ``self.request.<name>``
(docs/protocol.md, "Custom headers"). hutch's own headers are not the receiver's to
change: such a change is undone, and a custom header that is not a plain value or is
named like an attribute of ``self.request`` is dropped, each with an ERROR line on the
``hutch.signals`` logger naming the header; the publish goes on. With no receiver
connected nothing is copied or built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from . import signals
from .logs import get_logger
from .messages import Wire, settled_headers

log = get_logger("hutch.signals")

Routed = list[tuple[str, Wire]]

WIRE_PROPERTIES = ("content_type", "content_encoding", "message_id", "priority", "expiration")
"""The AMQP properties of a message a before_task_publish receiver may change."""


def exchange(prefix: str, queue: str) -> str:
    """The exchange a task message for ``queue`` is published to (docs/topology.md)."""
    return f"{prefix}.{queue}"


def before(routed: Sequence[tuple[str, Wire]], prefix: str,
           retry_policy: dict[str, Any] | None) -> Routed:
    """``routed`` as it goes out once before_task_publish was sent for each message (when
    a receiver is connected). ``prefix``: the topology prefix; ``retry_policy``: the
    publish retry policy as a dict, None when the publish is not retried by policy."""
    if not signals.before_task_publish.receivers:
        return list(routed)
    return [(queue, _before(queue, wire, prefix, retry_policy)) for queue, wire in routed]


def _before(queue: str, wire: Wire, prefix: str, retry_policy: dict[str, Any] | None) -> Wire:
    headers = dict(wire.headers)
    properties = {name: getattr(wire, name) for name in WIRE_PROPERTIES}
    signals.before_task_publish.send(
        wire.headers.get("task"), body=wire.body, exchange=exchange(prefix, queue),
        routing_key=queue, headers=headers, properties=properties, declare=None,
        retry_policy=retry_policy)
    kept, refused = settled_headers(wire.headers, headers)
    if refused:
        log.error("before_task_publish: header changes refused", task_id=wire.headers.get("id"),
                  refused=refused)
    return dataclasses.replace(wire, headers=kept, **{
        name: value for name, value in properties.items() if name in WIRE_PROPERTIES})


def after(routed: Sequence[tuple[str, Wire]], prefix: str) -> None:
    """after_task_publish for each message, once RabbitMQ confirmed it (when a receiver
    is connected)."""
    if signals.after_task_publish.receivers:
        for queue, wire in routed:
            signals.after_task_publish.send(
                wire.headers.get("task"), headers=wire.headers, body=wire.body,
                exchange=exchange(prefix, queue), routing_key=queue)
