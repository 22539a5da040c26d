"""RabbitMQ's refusals to declare a queue, told as what to do.

Declaring an existing queue with different arguments (another type, maximum
priority or delivery limit: a changed ``task_queues`` entry) closes the channel
with ``406 PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue ...``.
RabbitMQ never changes an existing queue's arguments, so retrying cannot help:
the publisher, the consumer and the asyncio client all turn that reply into one
:class:`~hutch.errors.QueueMismatchError` that names the queue, the argument,
both values and the way out (docs/ops.md, "Changing a queue's arguments"); a
classic queue the settings want quorum is pointed at ``hutch queues migrate``.

On a cluster, a durable classic queue lives on one node (its home). While that
node is down, every declare of the queue, passive or not, whatever the arguments,
and every bind to it, is refused with ``404 NOT_FOUND - home node 'rabbit@h2' of
durable queue 'hutch.R' in vhost '/' is down or inaccessible`` by every other node:
moving to another node does not help, waiting for that one does. That reply
becomes :class:`~hutch.errors.QueueNodeDown`, naming the queue and the node; it is
a BrokerUnavailable, so whoever retries those retries it. Every connection of a
process that meets it reports it through :func:`tell_down`: one error line per
queue and process while its node is down, not one per connection and attempt.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from ...errors import BrokerError, QueueMismatchError, QueueNodeDown
from ...logs import get_logger

log = get_logger("hutch.amqp")

_told: set[str] = set()
"""The queues whose node this process has said is down (and not yet back)."""
_told_lock = threading.Lock()

_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for queue '(?P<queue>[^']+)' in vhost '[^']*': "
    r"received (?P<wanted>.+?) but current is (?P<current>.+)$")
_VALUE = re.compile(r"^(?:the value )?'(?P<value>[^']*)'(?: of type '[^']*')?$")
_HOME_DOWN = re.compile(
    r"home node '(?P<node>[^']+)' of durable queue '(?P<queue>[^']+)' in vhost '[^']*' "
    r"is down or inaccessible")


def queue_refusal(reply_text: str, prefix: str = "") -> BrokerError | None:
    """The error for a refused queue declare (a 406 inequivalent argument or a 404 home
    node down); None for any other reply. ``prefix``: the topology prefix, to name the
    route in ``hutch queues migrate``."""
    return queue_mismatch(reply_text, prefix) or queue_node_down(reply_text)


def queue_node_down(reply_text: str) -> QueueNodeDown | None:
    """The error for a 404 "home node ... is down" reply; None for any other reply."""
    found = _HOME_DOWN.search(reply_text)
    if found is None:
        return None
    queue, node = found["queue"], found["node"]
    return QueueNodeDown(
        f"queue {queue!r} cannot be declared: it is a classic queue and its node {node!r} "
        "is down or cut off from this one (a classic queue lives on one node; no other "
        "node can serve it). Retrying until that node is back; on a cluster, quorum "
        "queues avoid this (docs/ops.md, \"Running on a RabbitMQ cluster\")", queue=queue,
        node=node)


def queue_mismatch(reply_text: str, prefix: str = "") -> QueueMismatchError | None:
    """The error for a 406 inequivalent-argument reply; None for any other reply."""
    found = _INEQUIVALENT.search(reply_text.strip())
    if found is None:
        return None
    queue, arg = found["queue"], found["arg"]
    current, wanted = _value(found["current"]), _value(found["wanted"])
    way_out = ("migrate it: stop the route's producers and workers, let it drain, delete "
               f"it (rabbitmqctl delete_queue {queue}) and start them again with the new "
               "settings (docs/ops.md, \"Changing a queue's arguments\")")
    if arg == "x-queue-type":  # a queue declared without a type is classic
        current, wanted = (v if v != "none" else "classic" for v in (current, wanted))
        way_out = (f"migrate it: `hutch queues migrate {_route(queue, prefix)} --to {wanted}` "
                   "moves the route's messages into a new queue of that type (docs/ops.md, "
                   "\"Changing a queue's arguments\")")
    return QueueMismatchError(
        f"queue {queue!r} already exists with {arg} = {current}, but these settings "
        f"declare it with {wanted}; RabbitMQ never changes an existing queue's arguments. "
        "Either set task_queues (or task_queue_type / task_queue_max_priority) back to "
        f"match the queue, or {way_out}")


def _route(queue: str, prefix: str) -> str:
    """The route a queue belongs to (``P.R`` and ``P.R.dead`` are R's), or ``ROUTE``
    when the prefix is not known."""
    if not prefix or not queue.startswith(f"{prefix}."):
        return "ROUTE"
    route = queue[len(prefix) + 1:]
    return route.removesuffix(".dead") or route


def _value(text: str) -> str:
    """``the value '9' of type 'signedint'`` -> ``9``; ``none`` -> ``none``."""
    found = _VALUE.match(text.strip())
    return found["value"] if found else text.strip()


def tell_down(down: QueueNodeDown, what: str, key: str = "", **context: Any) -> None:
    """Log that ``down.queue`` cannot be declared, as an error the first time this
    process meets it, at debug level after (until :func:`tell_up` says it is back);
    ``what``: what this process does meanwhile. ``key`` (default: the queue) groups
    queues told as one: a classic delay ladder's 71 queues live on one node, and its
    loss is one error line, not 71."""
    with _told_lock:
        first = (key or down.queue) not in _told
        _told.add(key or down.queue)
    say = log.error if first else log.debug
    say(f"queue's node is down: {what}", queue=down.queue, node=down.node, **context)


def tell_up(keys: Iterable[str]) -> None:
    """These queues (or ``tell_down`` keys) were declared: the next time one of them is
    down is told again, and the first declare after an error says so at info level."""
    with _told_lock:
        back = _told.intersection(keys)
        _told.difference_update(back)
    for key in sorted(back):
        log.info("queue declared again: its node is back", queue=key)
