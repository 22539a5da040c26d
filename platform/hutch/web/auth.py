"""Who is asking, and may they: authentication and roles of hutch web (issue #14).

Authentication is on when ``web_users`` names a user or ``web_tokens`` is true
(:func:`hutch.web.security.auth_configured`); off, every request is served as the
``open`` principal with the admin role (allowed on loopback only: the bind rule).
On, every request but ``/healthz`` and ``/readyz`` (probes) must carry either

- ``Authorization: Basic``: a user of ``web_users`` and their password, checked
  against its argon2 hash (hutch.web.passwords); or
- ``Authorization: Bearer TOKEN``: a token of ``hutch_web_tokens`` (hutch.web.tokens,
  ``hutch web token create``), when ``web_tokens`` is true.

Without valid credentials: 401, with ``WWW-Authenticate: Basic`` for pages (the
browser asks for a password) and a JSON error for the API (paths under ``/api/``).

Roles: ``read`` sees everything; ``admin`` also acts. :class:`AuthGate` (the
middleware) applies the default rule to every route: a safe request (GET, HEAD,
OPTIONS) needs ``read``, any other (POST, PUT, PATCH, DELETE: state-changing) needs
``admin``; a role that does not suffice gets 403. So a new route is protected
without doing anything. A route that needs more than its method says (a GET that
shows something only admins may see) declares it::

    from hutch.web.auth import ADMIN, needs, principal_of

    @needs(ADMIN)
    async def settings_page(request: Request) -> Response:
        who = principal_of(request)          # Principal(name, role, via)
        ...

``needs`` answers 401/403 itself (JSON under ``/api/``), like the gate. The gate
also sets Starlette's ``request.user`` (the :class:`Principal`) and
``request.auth.scopes`` (``["read"]`` or ``["read", "admin"]``), so
``starlette.authentication.requires("admin")`` works too (its 403 is plain text).

State-changing requests from browsers also pass hutch.web.csrf (after this gate:
requests authenticated by a bearer token are exempt, a browser never sends one on
its own). No answer or log line carries a password, hash or token: a refusal is
logged with the user or token name and the reason only.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.authentication import AuthCredentials
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import HutchError
from ..logs import get_logger
from ..ops.audit import Actor
from .passwords import Users
from .tokens import TokenStore

if TYPE_CHECKING:
    from ..app import Hutch

log = get_logger("hutch.web")

READ, ADMIN = "read", "admin"
ROLES = (READ, ADMIN)
"""Each role includes the ones before it."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: they need ``read``; every other one needs ``admin``."""
OPEN_PATHS = ("/healthz", "/readyz")
"""Served to anyone (under the URL prefix): probes carry no credentials."""
API_PREFIX = "/api/"
"""Paths under it are the JSON API: refusals there are JSON."""
API_KEY = "hutch.api"
"""The scope key :class:`AuthGate` sets: whether the request is for the API."""
BASIC_CHALLENGE = 'Basic realm="hutch", charset="UTF-8"'
BEARER_CHALLENGE = 'Bearer realm="hutch"'

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a user (``via="basic"``), a token (``"token"``, name
    ``token:NAME``) or anyone, authentication being off (``"open"``)."""

    name: str
    role: str
    via: str

    def may(self, role: str) -> bool:
        """Whether this principal's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def scopes(self) -> list[str]:
        return list(ROLES[:ROLES.index(self.role) + 1])

    @property
    def is_authenticated(self) -> bool:  # Starlette's BaseUser protocol
        return self.via != "open"

    @property
    def display_name(self) -> str:
        return self.name


OPEN = Principal("anonymous", ADMIN, "open")


class Authenticator:
    """Checks credentials against ``users`` and, when given, ``tokens``."""

    def __init__(self, users: Users, tokens: Callable[[], TokenStore] | None) -> None:
        self.users = users
        self.tokens = tokens
        self.enabled = bool(users) or tokens is not None

    @classmethod
    def of(cls, hutch_app: Hutch) -> Authenticator:
        """From the app's settings; the token store opens with the app's result store."""
        conf = hutch_app.conf
        tokens = (lambda: TokenStore(hutch_app.client().store)) if conf.web_tokens else None
        return cls(Users(conf.web_users), tokens)

    async def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal an ``Authorization`` header proves, or None."""
        scheme, _, credentials = (authorization or "").partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if scheme == "basic" and self.users:
            user, password = _basic(credentials)
            role = await run_in_threadpool(self.users.check, user, password) if user else None
            if role is None:  # an unknown name is not logged: it may be a mistyped password
                log.warning("web auth refused: wrong user or password",
                            user=user if user in self.users.users else "(unknown)")
                return None
            return Principal(user, role, "basic")
        if scheme == "bearer" and self.tokens is not None and credentials:
            record = await run_in_threadpool(self.tokens().find, credentials)
            if record is None:
                log.warning("web auth refused: unknown or revoked token")
                return None
            return Principal(f"token:{record.name}", record.role, "token")
        return None


def _basic(credentials: str) -> tuple[str, str]:
    try:
        user, colon, password = base64.b64decode(credentials, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    return (user, password) if colon else ("", "")


class AuthGate:
    """The middleware: authenticates each request and applies the default role rule
    (module docstring). ``prefix``: the URL prefix the routes are mounted under."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, prefix: str = "") -> None:
        self.app = app
        self.authenticator = authenticator
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"][len(self.prefix):] if scope["path"].startswith(self.prefix) else ""
        if path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        scope[API_KEY] = path.startswith(API_PREFIX)
        principal = OPEN
        if self.authenticator.enabled:
            try:
                found = await self.authenticator.authenticate(
                    Headers(scope=scope).get("authorization"))
            except HutchError as exc:  # the token table did not answer: its error is logged
                log.warning("web auth: cannot check the token", error=str(exc))
                await refusal(scope, 503, "cannot check credentials now")(scope, receive, send)
                return
            if found is None:
                await self._unauthenticated(scope)(scope, receive, send)
                return
            principal = found
        scope["user"], scope["auth"] = principal, AuthCredentials(principal.scopes)
        needed = READ if scope["method"] in SAFE_METHODS else ADMIN
        if not principal.may(needed):
            await forbidden(scope, principal, needed)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _unauthenticated(self, scope: Scope) -> Response:
        bearer = not self.authenticator.users or (
            is_api(scope) and self.authenticator.tokens is not None)
        challenge = BEARER_CHALLENGE if bearer else BASIC_CHALLENGE
        return refusal(scope, 401, "authentication required", {"WWW-Authenticate": challenge})


def is_api(scope: Scope) -> bool:
    """Whether the request is for the JSON API (a path under ``/api/``, past the prefix:
    :class:`AuthGate` marks each request)."""
    return bool(scope.get(API_KEY, scope["path"].startswith(API_PREFIX)))


def refusal(scope: Scope, status: int, message: str,
            headers: dict[str, str] | None = None) -> Response:
    """A refusal: the API's error shape, ``{"error": message, "field": null}``
    (hutch.web.api.answers), or the message as text for pages."""
    headers = {"Cache-Control": "no-store", **(headers or {})}
    if is_api(scope):
        return JSONResponse({"error": message, "field": None}, status_code=status,
                            headers=headers)
    return PlainTextResponse(message + "\n", status_code=status, headers=headers)


def forbidden(scope: Scope, principal: Principal, needed: str) -> Response:
    log.warning("web auth refused: role too low", user=principal.name, role=principal.role,
                needed=needed, method=scope["method"], path=scope["path"])
    return refusal(scope, 403, f"this needs the {needed} role; {principal.name} has "
                               f"{principal.role}")


def principal_of(request: Request) -> Principal | None:
    """Who the request comes from, as :class:`AuthGate` found; None without the gate."""
    user = request.scope.get("user")
    return user if isinstance(user, Principal) else None


def actor_of(request: Request) -> Actor:
    """Who the request comes from, as the audit trail records them (open: anonymous)."""
    principal = principal_of(request) or OPEN
    return Actor(principal.name, principal.role,
                 request.client.host if request.client else None)


def needs(role: str) -> Callable[[Endpoint], Endpoint]:
    """Decorate an endpoint so it runs only for a principal with ``role`` (401 without
    one, 403 when the role is lower), whatever its method."""
    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            principal = principal_of(request)
            if principal is None:
                return refusal(request.scope, 401, "authentication required")
            if not principal.may(role):
                return forbidden(request.scope, principal, role)
            return await endpoint(request)
        return checked
    return wrap


def routes() -> list[Route]:
    """``/api/v1/auth/me`` (GET: who am I, and the CSRF token for scripts that post
    with a cookie) and ``/api/v1/auth/check`` (POST: admin only, changes nothing: lets
    a script or a test check that its credentials may act)."""
    async def me(request: Request) -> JSONResponse:
        principal = principal_of(request) or OPEN
        return JSONResponse({"user": principal.name, "role": principal.role,
                             "via": principal.via,
                             "csrf_token": request.scope.get("state", {}).get("csrf_token")},
                            headers={"Cache-Control": "no-store"})

    @needs(ADMIN)
    async def check(request: Request) -> Response:
        principal = principal_of(request) or OPEN
        return JSONResponse({"ok": True, "user": principal.name, "role": principal.role})

    return [Route("/api/v1/auth/me", me, name="auth_me"),
            Route("/api/v1/auth/check", check, methods=["POST"], name="auth_check")]
