"""What the read pages share: running a blocking page handler (SQLAlchemy, pika) in
Starlette's thread pool with its failures shown as pages (a bad filter 400, an unknown
id 404, a database or broker down 503: never a 500 or a traceback), the template
filters that format times, durations and stored values, and query strings for links."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ...config import mask_secrets
from ...errors import BackendError, BrokerError, InvalidQuery, NotFound
from ...logs import get_logger
from .render import Pages

log = get_logger("hutch.web")

PageHandler = Callable[[Request], Response]


def endpoint(pages: Pages, handler: PageHandler) -> Callable[[Request], Any]:
    """``handler`` as an async endpoint, run in the thread pool, its failures as pages."""
    async def run(request: Request) -> Response:
        try:
            return await run_in_threadpool(handler, request)
        except InvalidQuery as exc:
            return problem(pages, request, 400, "Bad request", str(exc))
        except NotFound as exc:
            return problem(pages, request, 404, "Not found", str(exc))
        except BackendError as exc:
            log.warning("web page: the result database failed", error=mask_secrets(str(exc)))
            return problem(pages, request, 503, "Unavailable", "the result database is unavailable")
        except BrokerError as exc:
            log.warning("web page: the broker failed", error=mask_secrets(str(exc)))
            return problem(pages, request, 503, "Unavailable", "the broker is unavailable")

    return run


def problem(pages: Pages, request: Request, status: int, title: str, message: str) -> Response:
    """The error page: its status, a title and the one-line reason."""
    return pages.render(request, "problem.html",
                        {"title": f"{title} · hutch web", "heading": title, "message": message,
                         "status": status}, status_code=status)


def install_filters(env: jinja2.Environment) -> None:
    """The filters the read pages' templates use (idempotent)."""
    env.filters.update(when=when, duration=duration, pretty=pretty, percent=percent)


def when(value: dt.datetime | None) -> str:
    """A time in UTC to the millisecond, or an empty string."""
    if value is None:
        return ""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def duration(seconds: float | None) -> str:
    """Seconds for people: ``850 ms``, ``2.31 s``, ``4 min 05 s``."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def runtime(started: dt.datetime | None, finished: dt.datetime | None) -> float | None:
    """Seconds from start to end, when both are known."""
    if started is None or finished is None:
        return None
    return max(0.0, (finished - started).total_seconds())


def pretty(value: Any) -> str:
    """A stored JSON value, indented (its text as it is stored, escaped by the template)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)


def percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f} %"


def query(values: Mapping[str, Any], **changes: Any) -> str:
    """``?a=1&b=2`` of ``values`` with ``changes`` applied; empty and None values left out."""
    merged = {**values, **changes}
    kept = {k: v for k, v in merged.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else "?"
