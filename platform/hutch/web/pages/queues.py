"""``/queues``: every route hutch knows (the default queue, ``task_queues``, the
queues workers consume) with its messages ready and unacked, consumers and dead
letters, and the messages waiting in the delay ladder, asked of the broker now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops import queues
from ...ops.workers import list_workers
from ..api.params import parse
from .common import endpoint, install_filters
from .render import Pages

if TYPE_CHECKING:
    from ...app import Hutch


def routes(hutch_app: Hutch, pages: Pages) -> list[Route]:
    install_filters(pages.env)

    def queue_list(request: Request) -> Response:
        parse(request.query_params, ())
        client = hutch_app.client()
        routes_known = queues.known_routes(hutch_app.conf, list_workers(client.store))
        return pages.render(request, "queues.html", {
            "title": "Queues · hutch web",
            "queues": queues.queue_infos(client.broker, routes_known),
            "delayed": queues.delayed_messages(client.broker)})

    return [Route("/queues", endpoint(pages, queue_list), name="queues")]
