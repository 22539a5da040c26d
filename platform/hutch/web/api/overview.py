"""``GET /api/v1/overview``: the overview page's figures as JSON (hutch.ops.overview),
for scripts and the page's live refresh alike."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request

from ...ops.overview import WINDOWS, Overview, overview, window_of
from . import shapes
from .params import STRING, Param, parse
from .v1 import Handlers

OVERVIEW_PARAMS = (
    Param("window", STRING, "The span: `hour` (per minute, the default) or `day` "
          "(per 15 minutes).", tuple(WINDOWS)),
)


class OverviewHandler(Handlers):
    """The overview endpoint, bound to its app."""

    def overview(self, request: Request) -> dict[str, Any]:
        """Tasks finished per bucket, throughput, failure rate, run time percentiles,
        workers by state and the queues."""
        values = parse(request.query_params, OVERVIEW_PARAMS)
        now = dt.datetime.now(dt.timezone.utc)
        found = overview(self.client.store, self.client.broker, self.app.conf,
                         window_of(values.get("window")), now)
        return as_json(found)


def as_json(found: Overview) -> dict[str, Any]:
    """The JSON shape of an :class:`Overview` (times in ISO 8601, seconds as floats)."""
    figures = found.tasks
    return {
        "window": figures.window.name,
        "bucket_seconds": figures.window.bucket,
        "since": figures.since.isoformat(),
        "until": figures.until.isoformat(),
        "buckets": [{"start": b.start.isoformat(), "succeeded": b.succeeded,
                     "failed": b.failed, "retried": b.retried, "finished": b.finished}
                    for b in figures.buckets],
        "totals": {what: figures.total(what)
                   for what in ("succeeded", "failed", "retried", "finished")},
        "throughput_per_minute": round(figures.throughput, 3),
        "failure_rate": figures.failure_rate,
        "runtime_seconds": {f"p{p}": value for p, value in figures.runtime.items()},
        "runtime_sampled": figures.sampled,
        "workers": found.workers,
        "queues": None if found.queues is None else [shapes.queue(q) for q in found.queues],
        "delayed": found.delayed,
        "errors": found.errors,
    }
