"""CSRF protection of hutch web: no other site can make a browser act here.

A browser sends a user's basic credentials (and cookies) with every request to the
dashboard, including one a hostile page makes it send. So every state-changing
request (POST, PUT, PATCH, DELETE) must prove it comes from a page of the dashboard:

- a per-browser token: a random value in the cookie ``hutch_csrf`` (HttpOnly,
  ``SameSite=Lax``, ``Path=/``; over TLS ``Secure`` and named ``__Host-hutch_csrf``,
  which no sibling subdomain can set), set on the first answer that lacks it, must
  come back in the header ``X-CSRF-Token`` or the form field ``csrf_token``
  (double submit: another site can make the browser send the cookie, but can
  neither read it nor put it in the form). Pages put it in their forms from
  ``request.state.csrf_token``; scripts read it from ``GET /api/v1/auth/me``.
- when the browser says where the request comes from (``Origin``), it must be this
  host (the ``Host`` header: a reverse proxy forwards it as the browser sent it).

Refused: 403 (a JSON error under ``/api/``). Exempt: requests authenticated by a
bearer token (hutch.web.auth runs first): a browser never adds one on its own, so
such a request was not forged. TLS is the request's own scheme, or, when
``web_trust_proxy`` is set, ``X-Forwarded-Proto: https`` from the proxy.
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import get_logger
from .auth import SAFE_METHODS, Principal, refusal

log = get_logger("hutch.web")

COOKIE, SECURE_COOKIE = "hutch_csrf", "__Host-hutch_csrf"
HEADER, FIELD = "x-csrf-token", "csrf_token"
FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 1 << 20
"""A form bigger than this is not read for its token (refused unless the header has it)."""
DEFAULT_PORTS = {"http": "80", "https": "443"}


class CSRFProtect:
    """The middleware (module docstring); ``trust_proxy``: ``web_trust_proxy``."""

    def __init__(self, app: ASGIApp, trust_proxy: bool = False) -> None:
        self.app = app
        self.trust_proxy = trust_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        secure = is_tls(scope, headers, self.trust_proxy)
        name = SECURE_COOKIE if secure else COOKIE
        sent = _cookie(headers, name)
        token = sent or secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf_token"] = token
        if scope["method"] not in SAFE_METHODS and not _by_token(scope):
            problem, receive = await _problem(scope, headers, sent, receive)
            if problem is not None:
                log.warning("web csrf refused", reason=problem, method=scope["method"],
                            path=scope["path"])
                await refusal(scope, 403, f"CSRF check failed: {problem}")(scope, receive, send)
                return
        if sent or _by_token(scope):  # a script with a token needs no cookie
            await self.app(scope, receive, send)
            return
        cookie = f"{name}={token}; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def is_tls(scope: Scope, headers: Headers, trust_proxy: bool) -> bool:
    """Whether the browser reached us over TLS (directly, or through a trusted proxy)."""
    if scope.get("scheme") == "https":
        return True
    forwarded = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return trust_proxy and forwarded == "https"


def _by_token(scope: Scope) -> bool:
    user = scope.get("user")
    return isinstance(user, Principal) and user.via == "token"


def _cookie(headers: Headers, name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # noqa: BLE001 - a malformed cookie header is no cookie
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and len(morsel.value) >= 32 else None


async def _problem(scope: Scope, headers: Headers, cookie: str | None,
                   receive: Receive) -> tuple[str | None, Receive]:
    """Why the request is refused (None: it passes), and the receive to go on with (the
    body replayed when it was read for the form field)."""
    origin = headers.get("origin")
    if origin is not None and not same_host(origin, headers.get("host", "")):
        return "the request comes from another site (Origin)", receive
    if cookie is None:
        return "no CSRF cookie (load a page of the dashboard first)", receive
    given = headers.get(HEADER)
    if given is None and headers.get("content-type", "").split(";")[0].strip() == FORM:
        body, receive = await _read_body(receive)
        given = parse_qs(body.decode("latin-1")).get(FIELD, [None])[0]
    if given is None or not hmac.compare_digest(given.encode(), cookie.encode()):
        return f"the {FIELD} does not match", receive
    return None, receive


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    chunks: list[bytes] = []
    size, more = 0, True
    while more and size <= MAX_FORM_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return b"", receive
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": more}

    return (body if not more else b""), replay


def same_host(origin: str, host: str) -> bool:
    """Whether ``origin`` (``https://dash.example.com``) names ``host`` (the Host
    header), default ports aside; ``null`` (a sandboxed or privacy-hidden origin) does not."""
    try:
        parts = urlsplit(origin)
        origin_port = str(parts.port or DEFAULT_PORTS.get(parts.scheme, ""))
    except ValueError:
        return False
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not name:
        name, port = host, ""
    return bool(parts.hostname) and parts.hostname == name.strip("[]").lower() and (
        not port or port == origin_port or (port in DEFAULT_PORTS.values()
                                            and origin_port in DEFAULT_PORTS.values()))
