"""How every page is rendered: the templates shipped in the package, and the context
the layout (``base.html``) needs on every page."""

from __future__ import annotations

from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ... import __version__
from ..auth import ADMIN, principal_of

NAV = (
    ("Overview", "index"),
    ("Tasks", "tasks"),
    ("Workers", "workers"),
    ("Queues", "queues"),
    ("Dead letters", "deadletters"),
    ("Schedules", "schedules"),
)
"""The navigation bar: (label, route name); an entry shows once its page exists."""


def templates() -> Jinja2Templates:
    """The templates shipped in the package, HTML escaped (a task's arguments are
    untrusted text), with undefined names an error rather than an empty string."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("hutch.web", "templates"),
                             autoescape=jinja2.select_autoescape(), undefined=jinja2.StrictUndefined)
    return Jinja2Templates(env=env)


class Pages:
    """Renders a page with the layout's context: ``app_name``, ``version``, ``user``
    (the principal's name, None when the dashboard runs open), ``can_act`` (admin role:
    show action buttons), ``csrf_token`` (put it in every form as ``csrf_token``)."""

    def __init__(self, app_name: str, engine: Jinja2Templates | None = None) -> None:
        self.app_name = app_name
        self.templates = engine or templates()

    @property
    def env(self) -> jinja2.Environment:
        return self.templates.env

    def render(self, request: Request, template: str, context: dict[str, Any] | None = None,
               *, status_code: int = 200) -> Response:
        principal = principal_of(request)
        layout = {
            "app_name": self.app_name,
            "version": __version__,
            "user": principal.name if principal and principal.is_authenticated else None,
            "can_act": principal is None or principal.may(ADMIN),
            "csrf_token": getattr(request.state, "csrf_token", ""),
            "title": "hutch web",
        }
        return self.templates.TemplateResponse(request, template, {**layout, **(context or {})},
                                               status_code=status_code)
