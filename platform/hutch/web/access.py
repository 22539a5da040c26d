"""The access log of hutch web: one line per request, through hutch's own logger.

uvicorn's access log is off (hutch.web.server): its lines would bypass hutch's
output (JSON lines under systemd) and could not say who asked. This middleware
runs inside the auth gate's view of the request, so each line carries the user
(or token) next to method, path, status and duration. The query string is left
out: it may hold search text from a task's arguments. Health probes are logged at
debug level only (a load balancer asks every few seconds).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import get_logger

log = get_logger("hutch.web.access")

QUIET_PATHS = ("/healthz", "/readyz")


class AccessLog:
    def __init__(self, app: ASGIApp, prefix: str = "") -> None:
        self.app = app
        self.quiet = tuple(prefix + path for path in QUIET_PATHS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # if the app fails before it answers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._line(scope, status, time.perf_counter() - began)

    def _line(self, scope: Scope, status: int, seconds: float) -> None:
        user = scope.get("user")
        client = scope.get("client")
        write = log.debug if scope["path"].startswith(self.quiet) else log.info
        write("web request", method=scope["method"], path=scope["path"], status=status,
              ms=round(seconds * 1000, 1), user=getattr(user, "name", None),
              client=client[0] if client else None)
