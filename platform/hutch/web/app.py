"""The Starlette application of hutch web: its routes, middleware and templates.

:func:`create_app` builds it from a Hutch app; hutch.web.server runs it, and tests
drive it with Starlette's ``TestClient``. Each part of the dashboard brings its
routes from its own module (``health``, ``pages``; the JSON API under ``/api/v1``,
``/metrics``, auth and actions will join them the same way), and everything is
mounted under the URL prefix (``web_url_prefix``), health endpoints included: a
reverse proxy forwards one path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from . import api, health, pages
from .headers import SecurityHeaders

if TYPE_CHECKING:
    from ..app import Hutch


def create_app(hutch_app: Hutch, *, url_prefix: str | None = None,
               readiness: health.Readiness | None = None) -> Starlette:
    """The dashboard of ``hutch_app``, under ``url_prefix`` (default: the setting
    ``web_url_prefix``). ``readiness``: what ``/readyz`` checks (default: the app's
    result store and broker, each within ``broker_connection_timeout``)."""
    conf = hutch_app.conf
    prefix = conf.web_url_prefix if url_prefix is None else url_prefix.rstrip("/")
    if readiness is None:
        readiness = health.Readiness(health.probes_of(hutch_app.client()),
                                     conf.broker_connection_timeout)
    templates = pages.templates()
    routes: list[BaseRoute] = [
        *health.routes(readiness),
        *pages.routes(hutch_app, templates),
        *api.routes(hutch_app),
        Mount("/static", StaticFiles(packages=[("hutch.web", "static")]), name="static"),
    ]
    web = Starlette(routes=[Mount(prefix, routes=routes)] if prefix else routes,
                    middleware=[Middleware(SecurityHeaders)])
    templates.env.globals["path_for"] = lambda name, **params: str(
        web.url_path_for(name, **params))
    return web
