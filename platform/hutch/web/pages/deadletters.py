"""``/deadletters``: each route's dead-letter queue, its letters filtered by reason,
and one letter (``/deadletters/{queue}/{key}``: headers, body decoded); with replay
(one, or all of a queue) and purge for the admin role.

Looking leaves the messages in place (hutch.ops.deadletters, the broker's peek).
The routes listed are every route hutch knows (hutch.ops.queues.known_routes), each
with its dead-letter count; the queue shown is the one asked for, else the first
with dead letters, else the default queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...envelope import route
from ...errors import BrokerError
from ...ops import deadletters as dead
from ...ops.queues import known_routes
from ...ops.workers import list_workers
from .common import problem
from .render import Pages

if TYPE_CHECKING:
    from ...app import Hutch

SHOWN = 100
"""Dead letters listed on the page (the oldest)."""


def letters_view(hutch_app: Hutch, queue: str | None, reason: str | None) -> dict[str, Any]:
    client = hutch_app.client()
    routes = known_routes(hutch_app.conf, list_workers(client.store))
    if queue:
        routes.setdefault(route(queue), [])
    counts = {name: client.broker.dead_letter_count(name) for name in routes}
    chosen = queue or next((n for n, c in counts.items() if c), hutch_app.conf.task_default_queue)
    return {"counts": counts, "queue": chosen, "reason": reason or "",
            "letters": dead.list_dead(client, chosen, SHOWN, reason)}


def letter_view(hutch_app: Hutch, queue: str, key: str) -> dict[str, Any] | None:
    found = dead.find(hutch_app.client(), route(queue), key)
    if found is None:
        return None
    letter, wire = found
    return {"letter": letter, "queue": queue,
            "body": dead.decoded(wire, hutch_app.conf.accept_content)}


def routes(hutch_app: Hutch, pages: Pages) -> list[Route]:
    async def deadletters(request: Request) -> Response:
        queue = request.query_params.get("queue") or None
        reason = request.query_params.get("reason") or None
        try:
            view = await run_in_threadpool(letters_view, hutch_app, queue, reason)
        except (BrokerError, ValueError) as exc:
            return unavailable(request, exc)
        return pages.render(request, "deadletters.html",
                            {**view, "title": "Dead letters · hutch web"})

    async def deadletter(request: Request) -> Response:
        queue, key = request.path_params["queue"], request.path_params["key"]
        try:
            view = await run_in_threadpool(letter_view, hutch_app, queue, key)
        except (BrokerError, ValueError) as exc:
            return unavailable(request, exc)
        if view is None:
            return problem(pages, request, 404, "Not found",
                           f"no dead letter {key!r} in queue {queue!r}")
        return pages.render(request, "deadletter.html",
                            {**view, "title": f"Dead letter {key} · hutch web"})

    def unavailable(request: Request, exc: Exception) -> Response:
        if isinstance(exc, BrokerError):
            return problem(pages, request, 503, "Broker unavailable",
                           "the broker does not answer: dead letters cannot be read now")
        return problem(pages, request, 400, "Bad queue", f"queue: {exc}")

    return [Route("/deadletters", deadletters, name="deadletters"),
            Route("/deadletters/{queue}/{key}", deadletter, name="deadletter")]
