"""The dashboard's pages, rendered on the server from ``templates/`` (Jinja2).

Pages read without JavaScript; links are paths made by ``path_for`` (a template
global: the route's path under the URL prefix), so they stay right behind a
reverse proxy whatever host name it is reached by. Each page (or family of pages)
is a module of this package with a ``routes(hutch_app, pages)`` function; :data:`SECTIONS`
lists them, and the navigation bar shows the entries of :data:`NAV` whose route exists.
Every page renders through :class:`~.render.Pages`, which adds what the layout needs
(who is signed in, whether they may act, the CSRF token for forms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

from . import actions, deadletters, overview, queues, schedules, tasks, workers
from .render import NAV, Pages, templates

if TYPE_CHECKING:
    from ...app import Hutch

__all__ = ["NAV", "Pages", "routes", "templates"]

SECTIONS = (overview, tasks, queues, schedules, workers, deadletters, actions)
"""The page modules, in the order their routes are tried."""


def routes(hutch_app: Hutch, pages: Pages) -> list[Route]:
    return [route for section in SECTIONS for route in section.routes(hutch_app, pages)]
