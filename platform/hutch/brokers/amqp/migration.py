"""Moving a route's queues to another queue type (``hutch queues migrate``).

RabbitMQ never changes a queue's arguments (docs/ops.md, "Changing a queue's
arguments"), so a route changes type by emptying, deleting and declaring its work
queue ``P.R`` and its dead-letter queue ``P.R.dead`` again. Messages still in them
are moved out to holding queues (``P.R.migrating``, ``P.R.dead.migrating``) and back
afterwards, each copy confirmed before the original is acknowledged: a crash at any
point leaves every message in one of the two queues (twice at worst, never lost; a
task id runs once), and a run again finishes the move.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from ...errors import QueueInUse, QueueMismatchError
from .topology import Topology, declare_blocking


@dataclass(frozen=True)
class Migration:
    """What a migration did: the route, its new type, the messages moved through the
    holding queues (work, dead letters), the consumers it cancelled."""

    route: str
    queue_type: str
    moved: int
    dead_moved: int
    consumers: int
    changed: bool
    """False when the queues already had the settings' arguments (nothing done)."""


def migrate_route(conn: pika.BlockingConnection, topology: Topology, route: str,
                  force: bool) -> Migration:
    """Declare ``route`` with the arguments ``topology`` gives it, moving its queues'
    messages through holding queues when the existing ones differ. QueueInUse when
    messages or consumers remain and not ``force``."""
    names = topology.names(route)
    wanted = topology.options(route).queue_type
    ready, consumers = _passive(conn, names.queue)
    dead_ready, _ = _passive(conn, names.dead_letter_queue)
    if _declares_cleanly(conn, topology, route):  # absent queues are declared here too
        _finish_interrupted(conn, [names.queue, names.dead_letter_queue])
        return Migration(route, wanted, 0, 0, 0, changed=False)
    if (ready or dead_ready or consumers) and not force:
        raise QueueInUse(
            f"queue {names.queue!r} holds {ready or 0} message(s) and {dead_ready or 0} dead "
            f"letter(s), with {consumers} consumer(s): stop its workers (and producers) "
            "first, or give --force to move the messages through a holding queue and "
            "cancel the consumers")
    queues = [queue for queue, count in ((names.queue, ready),
                                         (names.dead_letter_queue, dead_ready))
              if count is not None]  # the ones that exist
    channel = conn.channel()
    channel.confirm_delivery()
    moved = {queue: _move(channel, queue, f"{queue}.migrating", declare=True)
             for queue in queues}
    for queue in queues:
        channel.queue_delete(queue)
    declare_blocking(conn.channel(), topology.route_steps(route))
    # a fresh channel: one that published to the old queue keeps its type (RabbitMQ
    # 3.10 closes the connection on a publish to the new queue of another type)
    back = conn.channel()
    back.confirm_delivery()
    for queue in queues:
        _move(back, f"{queue}.migrating", queue)
        back.queue_delete(f"{queue}.migrating", if_empty=True)
    return Migration(route, wanted, moved.get(names.queue, 0),
                     moved.get(names.dead_letter_queue, 0), consumers, changed=True)


def _finish_interrupted(conn: pika.BlockingConnection, queues: list[str]) -> None:
    """Move back what an interrupted migration left in holding queues."""
    for queue in queues:
        if _passive(conn, f"{queue}.migrating")[0] is not None:
            channel = conn.channel()
            channel.confirm_delivery()
            _move(channel, f"{queue}.migrating", queue)
            channel.queue_delete(f"{queue}.migrating", if_empty=True)


def _passive(conn: pika.BlockingConnection, queue: str) -> tuple[int | None, int]:
    """(ready, consumers) of ``queue``; (None, 0) if it does not exist."""
    try:
        ok = conn.channel().queue_declare(queue, passive=True).method
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return None, 0
        raise
    return ok.message_count, ok.consumer_count


def _declares_cleanly(conn: pika.BlockingConnection, topology: Topology, route: str) -> bool:
    """Whether the route's queues accept the settings' arguments as they stand (AMQP
    cannot read a queue's arguments; a declare that is not refused says they match)."""
    try:
        declare_blocking(conn.channel(), topology.route_steps(route))
    except QueueMismatchError:
        return False
    return True


def _move(channel: Any, source: str, target: str, declare: bool = False) -> int:
    """Move every message of ``source`` into ``target`` (declared first, durable and
    classic, when ``declare``), one at a time: published with a confirm, then
    acknowledged; the number moved."""
    if declare:
        channel.queue_declare(target, durable=True)
    count = 0
    while True:
        method, properties, body = channel.basic_get(source, auto_ack=False)
        if method is None:
            return count
        channel.basic_publish("", target, body, properties, mandatory=True)
        channel.basic_ack(method.delivery_tag)
        count += 1
