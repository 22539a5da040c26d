"""The dashboard's pages, rendered on the server from ``templates/`` (Jinja2).

Pages read without JavaScript; links are paths made by ``path_for`` (a template
global: the route's path under the URL prefix), so they stay right behind a
reverse proxy whatever host name it is reached by. For now one page: ``/`` says
what runs and links the health endpoints; the overview, tasks, workers, queues,
dead letters and schedules come with the next slices (docs/dashboard.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from .. import __version__

if TYPE_CHECKING:
    from ..app import Hutch


def templates() -> Jinja2Templates:
    """The templates shipped in the package, HTML escaped (a task's arguments are
    untrusted text)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("hutch.web", "templates"),
                             autoescape=jinja2.select_autoescape(), undefined=jinja2.StrictUndefined)
    return Jinja2Templates(env=env)


def routes(hutch_app: Hutch, pages: Jinja2Templates) -> list[Route]:
    async def index(request: Request) -> Response:
        return pages.TemplateResponse(request, "index.html", {
            "title": "hutch web", "version": __version__, "app_name": hutch_app.main or ""})

    return [Route("/", index, name="index")]
