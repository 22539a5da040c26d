"""``/actions/{action}``: every action of the pages, confirmed without JavaScript.

An action button on a page is a GET form to this page (the target, the page to go
back to, and any values the user typed); it asks "Revoke task X?" with the inputs
still editable, and its form POSTs (with the CSRF token) here. The POST runs the
action (hutch.web.actions: checked, run, written to ``hutch_audit``) and redirects
(303) to its result page, ``/actions/{action}/result``: what happened (``done=``) or
why not (``failed=``), with the way back to the page it came from and, after a retry,
to the new task. (A result page, not a line on the page it came from: a page may
refuse query parameters it does not know, as the task pages do.) Input refused
before anything is done shows the form again, the error beside the field.
A read-only user sees no buttons, this page says they cannot act, and their POST
is refused by the auth gate (403) before it reaches here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import NoMatchFound, Route

from ...config import mask_secrets
from ...errors import HutchError, InvalidQuery, NotFound
from ..actions import ACTIONS, Action, Actions, action_named, check_target
from ..auth import ADMIN, principal_of
from .common import problem
from .render import Pages

if TYPE_CHECKING:
    from ...app import Hutch

SKIPPED = ("target", "next", "csrf_token")


def safe_next(raw: str | None, fallback: str) -> str:
    """A path on this site to go back to; anything else (another host, or a control
    character or space, which browsers drop: ``/\t/evil``) is the fallback."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return fallback
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in raw):
        return fallback
    return raw


def result_url(request: Request, name: str, next_path: str, **flash: str) -> str:
    """The result page of action ``name``: what happened, and the way back."""
    url = URL(str(request.app.url_path_for("action-result", action=name)))
    given = {k: v for k, v in flash.items() if v}
    return str(url.include_query_params(next=next_path, **given))


def routes(hutch_app: Hutch, pages: Pages) -> list[Route]:
    actions = Actions(hutch_app)
    _task_href(pages)

    def context(request: Request, action: Action, target: str, values: dict[str, Any],
                problem: InvalidQuery | None = None) -> dict[str, Any]:
        principal = principal_of(request)
        home = str(request.app.url_path_for("index"))
        return {"action": action, "target": target, "values": values,
                "question": action.question.format(target=target),
                "next": safe_next(values.get("next"), home),
                "error": str(problem) if problem else None,
                "error_field": problem.field if problem else None,
                "allowed": principal is None or principal.may(ADMIN),
                "title": f"{action.verb} · hutch web"}

    async def confirm(request: Request) -> Response:
        try:
            action = action_named(request.path_params["action"])
        except NotFound as exc:
            return problem(pages, request, 404, "No such action", str(exc))
        raw = dict(request.query_params)
        target = raw.get("target", "")
        try:
            check_target(action, target)
            action.parse({k: v for k, v in raw.items() if k not in SKIPPED}, strict=False)
        except InvalidQuery as exc:
            refused: InvalidQuery | None = exc
        else:
            refused = None
        ctx = context(request, action, target, raw, refused)
        return pages.render(request, "actions/confirm.html", ctx,
                            status_code=200 if ctx["allowed"] else 403)

    async def perform(request: Request) -> Response:
        form = dict(await request.form())
        raw = {k: v for k, v in form.items() if isinstance(v, str)}
        name, target = request.path_params["action"], raw.get("target", "")
        home = str(request.app.url_path_for("index"))
        next_path = safe_next(raw.get("next"), home)
        try:
            action = action_named(name)
            check_target(action, target)
            action.parse({k: v for k, v in raw.items() if k not in SKIPPED}, strict=False)
        except (InvalidQuery, NotFound) as exc:
            if name not in ACTIONS:
                return problem(pages, request, 404, "No such action", str(exc))
            assert isinstance(exc, InvalidQuery)
            return pages.render(request, "actions/confirm.html",
                                context(request, ACTIONS[name], target, raw, exc),
                                status_code=400)
        values = {k: v for k, v in raw.items() if k not in SKIPPED}
        try:
            outcome = await actions.perform(request, name, target, values, strict=False)
        except HutchError as exc:
            failed = mask_secrets(str(exc))
            return RedirectResponse(result_url(request, name, next_path, failed=failed), 303)
        new = outcome.data.get("new_task_id")
        return RedirectResponse(result_url(request, name, next_path, done=outcome.message,
                                           new_task=new if isinstance(new, str) else ""), 303)

    async def result(request: Request) -> Response:
        try:
            action = action_named(request.path_params["action"])
        except NotFound as exc:
            return problem(pages, request, 404, "No such action", str(exc))
        query = request.query_params
        home = str(request.app.url_path_for("index"))
        failed = bool(query.get("failed"))
        return pages.render(request, "actions/result.html", {
            "action": action, "next": safe_next(query.get("next"), home),
            "done": query.get("done", ""), "failed": query.get("failed", ""),
            "new_task": query.get("new_task", ""),
            "title": f"{action.verb}: {'failed' if failed else 'done'} · hutch web"})

    return [Route("/actions/{action}", confirm, methods=["GET"], name="action"),
            Route("/actions/{action}", perform, methods=["POST"], name="action-perform"),
            Route("/actions/{action}/result", result, name="action-result")]


def _task_href(pages: Pages) -> None:
    """``task_href(id)`` in templates: the task's page when the dashboard has one, else
    its JSON (the task pages come from another module)."""
    def task_href(task_id: str) -> str:
        path_for: Callable[..., object] = pages.env.globals["path_for"]  # type: ignore[assignment]
        try:
            return str(path_for("task", task_id=task_id))
        except NoMatchFound:
            return str(path_for("api", path=f"/v1/tasks/{task_id}"))

    pages.env.globals["task_href"] = task_href
