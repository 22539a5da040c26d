"""``/``: the overview. Tasks succeeded, failed and retried over the last hour (per
minute) or day (per 15 minutes) as a chart drawn on the server, throughput, failure
rate, run time percentiles, workers online and the queues (hutch.ops.overview), with
links to the health endpoints. ``?window=day`` for the day."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...ops.overview import WINDOWS, overview, window_of
from ..api.overview import OVERVIEW_PARAMS
from ..api.params import parse
from .chart import chart
from .common import endpoint, install_filters
from .render import Pages

if TYPE_CHECKING:
    from ...app import Hutch

LIVE_SECONDS = 5
"""How often hutch-live.js refreshes the figures (the page opts in with ``data-live``)."""


def routes(hutch_app: Hutch, pages: Pages) -> list[Route]:
    install_filters(pages.env)

    def index(request: Request) -> Response:
        window = window_of(parse(request.query_params, OVERVIEW_PARAMS).get("window"))
        client = hutch_app.client()
        found = overview(client.store, client.broker, hutch_app.conf, window,
                         dt.datetime.now(dt.timezone.utc))
        return pages.render(request, "overview.html", {
            "title": "Overview · hutch web", "found": found, "figures": found.tasks,
            "chart": chart(found.tasks.buckets, window.bucket), "windows": WINDOWS.values(),
            "live_seconds": LIVE_SECONDS})

    return [Route("/", endpoint(pages, index), name="index")]
