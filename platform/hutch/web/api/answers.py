"""How the API answers: JSON always, errors as ``{"error": "...", "field": ...}``.

Bad input is a 4xx naming the parameter at fault, an unknown id a 404, a database
or broker that does not answer a 503; nothing a caller sends can make a 500, and
no answer carries a traceback, a URL or a host (the details go to the log).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...config import mask_secrets
from ...errors import BackendError, BrokerError, InvalidQuery, NotFound, UnstorableValue
from ...logs import get_logger

log = get_logger("hutch.web")

Handler = Callable[[Request], Any]


class Json(JSONResponse):
    """JSON that never fails to encode: a stored NaN or odd value becomes a string
    rather than a 500 (Starlette's refuses NaN, as JSON does)."""

    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":"))
        except (ValueError, TypeError):
            loose = json.dumps(content, allow_nan=True, default=str)
            text = json.dumps(json.loads(loose, parse_constant=str), ensure_ascii=False,
                              separators=(",", ":"))
        return text.encode("utf-8")


def error(status: int, message: str, field: str | None = None) -> Json:
    return Json({"error": message, "field": field}, status_code=status)


def answer(handler: Handler) -> Callable[[Request], Any]:
    """``handler(request)`` as an endpoint: its value as JSON, its failures as JSON
    errors. A blocking handler (SQLAlchemy, pika) stays blocking: Starlette runs it in
    its thread pool; a coroutine one (it reads the body) is awaited."""
    if inspect.iscoroutinefunction(handler):
        async def endpoint_async(request: Request) -> Response:
            try:
                value = await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure is answered as JSON
                return failure(request, exc)
            return value if isinstance(value, Response) else Json(value)

        return functools.wraps(handler)(endpoint_async)

    def endpoint(request: Request) -> Response:
        try:
            value = handler(request)
        except Exception as exc:  # noqa: BLE001 - every failure is answered as JSON
            return failure(request, exc)
        return value if isinstance(value, Response) else Json(value)

    return functools.wraps(handler)(endpoint)


def failure(request: Request, exc: Exception) -> Json:
    """The JSON error for what a handler raised (the module's docstring)."""
    if isinstance(exc, InvalidQuery):
        return error(400, str(exc), exc.field)
    if isinstance(exc, NotFound):
        return error(404, str(exc), exc.field)
    if isinstance(exc, UnstorableValue):  # the database refused a value the request gave
        return error(400, "a value the result database refuses")
    if isinstance(exc, BackendError):
        log.warning("web api: the result database failed", error=mask_secrets(str(exc)))
        return error(503, "the result database is unavailable")
    if isinstance(exc, BrokerError):
        log.warning("web api: the broker failed", error=mask_secrets(str(exc)))
        return error(503, "the broker is unavailable")
    log.error("web api: request failed", path=request.url.path,
              error=f"{type(exc).__name__}: {mask_secrets(str(exc))}", exc_info=exc)
    return error(500, "internal error (logged)")


async def http_error(_: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, wrong method) in the API's shape."""
    assert isinstance(exc, HTTPException)
    message = {404: "no such endpoint", 405: "method not allowed"}.get(
        exc.status_code, str(exc.detail))
    return error(exc.status_code, message)
