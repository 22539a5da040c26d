"""``/workers`` and ``/workers/{hostname}``: the workers of ``hutch_workers`` (their
layout and numbers as the last heartbeat wrote them) with what they answer now over
the broker (alive, their running tasks), and the worker actions (shutdown, pool
grow/shrink, add/cancel consumer, rate limit) for the admin role.

The live part asks only workers whose row is not offline, and stops waiting once
they all answered (hutch.ops.inspect, ``expected``), else after :data:`LIVE_TIMEOUT`;
a broker that does not answer leaves the page with the table's data alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import BrokerError
from ...ops.inspect import Inspect, Replies
from ...ops.workers import list_workers, state_counts
from ...results.workers import OFFLINE, WorkerRecord
from ..actions import ACTIONS
from .common import problem
from .render import Pages

if TYPE_CHECKING:
    from ...app import Hutch

LIVE_TIMEOUT = 1.0
"""Seconds the pages wait for the workers' answers."""


@dataclass
class Live:
    """What the workers answered now: None for a question nobody could be asked (the
    broker is down: ``error``)."""

    active: Replies = field(default_factory=dict)
    stats: Replies = field(default_factory=dict)
    queues: Replies = field(default_factory=dict)
    registered: Replies = field(default_factory=dict)
    error: str | None = None


def ask(hutch_app: Hutch, hostnames: list[str], questions: tuple[str, ...]) -> Live:
    """Ask ``hostnames`` each question (``active``, ``stats``...), one broadcast each."""
    live = Live()
    if not hostnames:
        return live
    asking = Inspect(hutch_app.client().broker, hostnames if len(hostnames) == 1 else None,
                     LIVE_TIMEOUT, expected=hostnames)
    try:
        for question in questions:
            answers = asking.call(question) or {}
            setattr(live, question if question != "active_queues" else "queues", answers)
            if not answers:  # nobody there: the next questions would wait in vain
                break
    except BrokerError as exc:
        live.error = f"the broker does not answer ({type(exc).__name__})"
    return live


def workers_view(hutch_app: Hutch) -> dict[str, Any]:
    records = list_workers(hutch_app.client().store)
    live = ask(hutch_app, [r.hostname for r in records if r.state != OFFLINE], ("active",))
    return {"workers": records, "counts": state_counts(records), "live": live}


def worker_view(hutch_app: Hutch, hostname: str) -> dict[str, Any] | None:
    found = [r for r in list_workers(hutch_app.client().store) if r.hostname == hostname]
    if not found:
        return None
    record: WorkerRecord = found[0]
    asked = [] if record.state == OFFLINE else [hostname]
    live = ask(hutch_app, asked, ("active", "stats", "active_queues", "registered"))
    return {"worker": record, "live": live, "answered": hostname in live.active,
            "stats": live.stats.get(hostname) or {},
            "running": live.active.get(hostname) or [],
            "registered": live.registered.get(hostname) or []}


def routes(hutch_app: Hutch, pages: Pages) -> list[Route]:
    async def workers(request: Request) -> Response:
        view = await run_in_threadpool(workers_view, hutch_app)
        return pages.render(request, "workers.html",
                            {**view, "actions": ACTIONS, "title": "Workers · hutch web"})

    async def worker(request: Request) -> Response:
        hostname = request.path_params["hostname"]
        view = await run_in_threadpool(worker_view, hutch_app, hostname)
        if view is None:
            return problem(pages, request, 404, "Not found",
                           f"no worker {hostname!r} in hutch_workers")
        return pages.render(request, "worker.html",
                            {**view, "actions": ACTIONS, "title": f"{hostname} · hutch web"})

    return [Route("/workers", workers, name="workers"),
            Route("/workers/{hostname}", worker, name="worker")]
