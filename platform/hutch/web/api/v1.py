"""``/api/v1``: hutch's own read endpoints (tasks, one task, workers, queues, stats).

Each handler is blocking (SQLAlchemy, pika): Starlette runs it in its thread pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ...errors import NotFound
from ...ops import tasks as ops
from ...ops.queues import delayed_messages, known_routes, queue_infos
from ...ops.workers import list_workers, state_counts
from . import shapes
from .params import PAGING, TASK_FILTERS, WORKER_FILTERS, parse, path_id, task_filters

if TYPE_CHECKING:
    from ...app import Hutch
    from ...client.sync import Client


class Handlers:
    """Handlers bound to the app whose store, broker and tasks they use."""

    def __init__(self, hutch_app: Hutch) -> None:
        self.app = hutch_app

    @property
    def client(self) -> Client:
        """The app's shared client, opened on first use (thread-safe)."""
        return self.app.client()


class V1(Handlers):
    """``/api/v1``'s handlers."""

    def tasks(self, request: Request) -> dict[str, Any]:
        """Tasks matching the filters, one page at a time (keyset: follow ``next_cursor``)."""
        values = parse(request.query_params, TASK_FILTERS + PAGING)
        page = ops.list_tasks(self.client.store, task_filters(values),
                              after=values.get("cursor"),
                              limit=values.get("limit", ops.DEFAULT_LIMIT),
                              sort=values.get("sort", ops.DEFAULT_SORT))
        return {"items": [shapes.task(r) for r in page.items], "next_cursor": page.next_cursor,
                "sort": page.sort, "limit": values.get("limit", ops.DEFAULT_LIMIT)}

    def task(self, request: Request) -> dict[str, Any]:
        """One task: its whole row (traceback included), its retried attempts (the row
        keeps only the last attempt's times) and the ids of its children."""
        parse(request.query_params, ())
        task_id = path_id(request, "task_id")
        record = ops.task_detail(self.client.store, task_id)
        if record is None:
            raise NotFound(f"no task {task_id!r} in the result database", "task_id")
        return {**shapes.task(record, detail=True),
                "attempts": [shapes.attempt(a) for a in ops.attempts_of(self.client.store,
                                                                        task_id)],
                "children": ops.children_of(self.client.store, task_id)}

    def workers(self, request: Request) -> dict[str, Any]:
        """Every worker of ``hutch_workers`` with its effective state, and counts by state."""
        values = parse(request.query_params, WORKER_FILTERS)
        everyone = list_workers(self.client.store)
        chosen = [w for w in everyone if values.get("state") in (None, w.state)]
        return {"items": [w.as_dict() for w in chosen], "counts": state_counts(everyone)}

    def queues(self, request: Request) -> dict[str, Any]:
        """Every route hutch knows, asked of the broker now: ready, unacked, consumers,
        dead letters; and the messages waiting for their eta (all routes')."""
        parse(request.query_params, ())
        routes = known_routes(self.app.conf, list_workers(self.client.store))
        broker = self.client.broker
        return {"items": [shapes.queue(q) for q in queue_infos(broker, routes)],
                "delayed": delayed_messages(broker)}

    def stats(self, request: Request) -> dict[str, Any]:
        """Tasks by state (with the task list's filters), workers by state."""
        values = parse(request.query_params, TASK_FILTERS)
        return {"tasks": ops.state_counts(self.client.store, task_filters(values)),
                "workers": state_counts(list_workers(self.client.store))}
