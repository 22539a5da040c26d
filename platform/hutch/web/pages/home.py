"""``/``: the landing page (what runs, and the health endpoints)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .render import Pages

if TYPE_CHECKING:
    from ...app import Hutch


def routes(hutch_app: Hutch, pages: Pages) -> list[Route]:
    async def index(request: Request) -> Response:
        return pages.render(request, "index.html")

    return [Route("/", index, name="index")]
