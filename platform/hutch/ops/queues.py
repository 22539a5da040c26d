"""Queues as the dashboard, its JSON API and ``/metrics`` read them: each known route's
depth, consumers and dead letters, asked of the broker's admin interface now.

A count whose queue lives on a cluster node that is down is unknown, not zero: the
helpers here say so (None, or ``QueueInfo.node_down``) rather than raise, so one down
node never takes a page down with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import QueueNodeDown

if TYPE_CHECKING:
    from ..brokers.base import Admin
    from ..config import Settings
    from ..results.workers import WorkerRecord


@dataclass(frozen=True)
class QueueInfo:
    """One route's queues now: ``unacked`` None where the broker cannot tell (AMQP)."""

    name: str
    ready: int
    unacked: int | None
    consumers: int
    dead_letters: int | None
    """None when the dead-letter queue's node is down (its count is unknown)."""
    sources: list[str] = field(default_factory=list)
    """Why the route is listed: ``default``, ``task_queues``, ``worker``."""
    node_down: str | None = None
    """The cluster node the work queue lives on, when it is down: the counts read 0
    but are unknown (hutch.brokers.base.QueueStats)."""


def known_routes(conf: Settings, workers: Sequence[WorkerRecord]) -> dict[str, list[str]]:
    """Every route hutch knows of, each with where it was learnt: the default queue,
    ``task_queues``, and the queues the workers in ``hutch_workers`` consume."""
    routes: dict[str, list[str]] = {conf.task_default_queue: ["default"]}
    for name in conf.task_queues:
        routes.setdefault(name, []).append("task_queues")
    for worker in workers:
        for name in worker.queues:
            sources = routes.setdefault(name, [])
            if "worker" not in sources:
                sources.append("worker")
    return dict(sorted(routes.items()))


def queue_infos(admin: Admin, routes: dict[str, list[str]]) -> list[QueueInfo]:
    """Depth, consumers and dead letters of each route, asked of the broker now; a
    route whose queue's cluster node is down is listed as such."""
    out = []
    for name, sources in routes.items():
        stats = admin.queue_stats(name)
        out.append(QueueInfo(name, stats.ready, stats.unacked, stats.consumers,
                             dead_letter_count(admin, name), sources, stats.node_down))
    return out


def delayed_messages(admin: Admin) -> int | None:
    """Messages waiting in the delay ladder; None while a ladder queue's node is down."""
    try:
        return admin.delayed_count()
    except QueueNodeDown:
        return None


def dead_letter_count(admin: Admin, route: str) -> int | None:
    """The route's dead letters; None while its dead-letter queue's node is down."""
    try:
        return admin.dead_letter_count(route)
    except QueueNodeDown:
        return None
