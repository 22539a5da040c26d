"""The security headers on every HTTP answer of hutch web (issue #14, "Security").

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which buffers
streamed answers: the live views will stream server-sent events through it). A
route that needs a different value sets the header itself; this only fills in
what the answer lacks.

- ``Content-Security-Policy``: scripts, styles, images and requests from this
  origin only (no inline script or style: templates link files from ``static/``),
  never framed (``frame-ancestors 'none'``: no clickjacking of the actions to come),
  forms posted back here only.
- ``X-Frame-Options: DENY``: the same for browsers older than CSP level 2.
- ``X-Content-Type-Options: nosniff``: a JSON answer is never run as a script.
- ``Referrer-Policy: same-origin``: task ids in URLs do not leak to other sites.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'self'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """Adds :data:`HEADERS` to every HTTP answer that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
