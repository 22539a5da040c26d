"""The Starlette application of hutch web: its routes, middleware and templates.

:func:`create_app` builds it from a Hutch app; hutch.web.server runs it, and tests
drive it with Starlette's ``TestClient``. Each part of the dashboard brings its
routes from its own module (``health``, ``pages``, ``auth``; the JSON API under
``/api/v1``, ``/metrics`` and actions will join them the same way), and everything
is mounted under the URL prefix (``web_url_prefix``), health endpoints included: a
reverse proxy forwards one path.

Middleware, outermost first: the access log (hutch.web.access: one line per
request, with who asked, when ``web_access_log``), the security headers (every answer, refusals too),
the auth gate (hutch.web.auth: who asks, and the default role rule: safe methods
need ``read``, state-changing ones ``admin``; ``@needs(ADMIN)`` for more), CSRF
(hutch.web.csrf: state-changing requests from browsers carry the token).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, NoMatchFound
from starlette.staticfiles import StaticFiles

from . import api, auth, health, metrics, pages
from .access import AccessLog
from .auth import Authenticator, AuthGate
from .csrf import CSRFProtect
from .headers import SecurityHeaders

if TYPE_CHECKING:
    from ..app import Hutch


def create_app(hutch_app: Hutch, *, url_prefix: str | None = None,
               readiness: health.Readiness | None = None,
               routes: list[BaseRoute] | None = None) -> Starlette:
    """The dashboard of ``hutch_app``, under ``url_prefix`` (default: the setting
    ``web_url_prefix``). ``readiness``: what ``/readyz`` checks (default: the app's
    result store and broker, each within ``broker_connection_timeout``). ``routes``:
    more routes, mounted like the others (tests)."""
    conf = hutch_app.conf
    prefix = conf.web_url_prefix if url_prefix is None else url_prefix.rstrip("/")
    if readiness is None:
        readiness = health.Readiness(health.probes_of(hutch_app.client()),
                                     conf.broker_connection_timeout)
    rendering = pages.Pages(hutch_app.main or "")
    mounted: list[BaseRoute] = [
        *health.routes(readiness),
        *auth.routes(),  # /api/v1/auth/*: ahead of the API's own mount of /api
        *(routes or []),
        *pages.routes(hutch_app, rendering),
        *metrics.routes(hutch_app),
        *api.routes(hutch_app),
        Mount("/static", StaticFiles(packages=[("hutch.web", "static")]), name="static"),
    ]
    web = Starlette(routes=[Mount(prefix, routes=mounted)] if prefix else mounted,
                    middleware=[*([Middleware(AccessLog, prefix)] if conf.web_access_log else []),
                                Middleware(SecurityHeaders),
                                Middleware(AuthGate, Authenticator.of(hutch_app), prefix),
                                Middleware(CSRFProtect, conf.web_trust_proxy)])
    _globals(rendering, web)
    return web


def _globals(rendering: pages.Pages, web: Starlette) -> None:
    """``path_for`` (a route's path under the prefix) and ``nav`` (the navigation bar's
    (label, path) pairs, for the pages that exist) in every template."""
    def path_for(name: str, **params: object) -> str:
        return str(web.url_path_for(name, **params))

    def exists(name: str) -> bool:
        try:
            path_for(name)
        except NoMatchFound:
            return False
        return True

    rendering.env.globals["path_for"] = path_for
    rendering.env.globals["nav"] = [(label, path_for(name)) for label, name in pages.NAV
                                    if exists(name)]
