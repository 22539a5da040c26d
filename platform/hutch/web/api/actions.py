"""``/api/v1``'s actions and what they act on: revoke and retry a task, browse, replay
and purge dead letters, steer a worker, read the audit trail.

Every POST here is an admin action (the auth gate asks the admin role, and a
browser the CSRF token) run by hutch.web.actions, which writes it to
``hutch_audit``. A done action answers ``{"ok": true, "action", "target",
"message", ...details}``; input refused is a 400/404 ``{"error", "field"}`` (nothing
done, nothing written); an action tried that did not work is 409 (its target
refused: a finished task to retry, a worker that refused the command) or 504 (the
worker did not answer in time), written to the audit trail as failed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...config import mask_secrets
from ...envelope import route
from ...errors import ActionFailed, InvalidQuery, NotFound
from ...ops import deadletters as dead
from ...ops.audit import AuditLog
from ..actions import ACTIONS, Actions
from .answers import Json, answer, error, failure
from .openapi import Operation
from .params import INTEGER, STRING, Param, parse, path_id
from .v1 import Handlers

if TYPE_CHECKING:
    from ...app import Hutch

WORKER_COMMANDS = tuple(name.removeprefix("worker.") for name in ACTIONS
                        if name.startswith("worker."))
LETTERS_LIMIT = 100
MAX_BODY = 64 * 1024
"""The largest JSON body an action takes (none needs more than a few names)."""
DEADLETTER_FILTERS = (
    Param("queue", STRING, "The route whose dead letters to list (default: the default "
          "queue)."),
    Param("reason", STRING, "Dead letters whose reason holds this text (case-insensitive)."),
    Param("limit", INTEGER, f"At most this many, oldest first (1 to 1000, default "
          f"{LETTERS_LIMIT})."),
)
AUDIT_FILTERS = (
    Param("action", STRING, "Entries of this action (`task.revoke`, `deadletter.purge`...)."),
    Param("target", STRING, "Entries about this target (task id, queue, worker)."),
    Param("limit", INTEGER, "At most this many, newest first (1 to 500, default 100)."),
)


def _body_schema(*names: str) -> dict[str, Any]:
    """A JSON body holding the named fields of the actions (by name: one schema)."""
    fields = {f.name: f for a in ACTIONS.values() for f in a.fields}
    extra = {"terminate": {"type": "boolean"}}
    return {"type": "object", "additionalProperties": False,
            "properties": {n: extra[n] if n in extra else fields[n].schema() for n in names}}


def _worker_schema() -> dict[str, Any]:
    names = sorted({f.name for n in WORKER_COMMANDS for f in ACTIONS[f"worker.{n}"].fields})
    return _body_schema(*names)


REFUSED = ("409", "The action was tried and its target refused it (audited as failed).")
SILENT = ("504", "The worker did not answer within 2 s (audited as failed).")

OPERATIONS = (
    Operation("/api/v1/tasks/{task_id}/revoke", "post", "Revoke a task (Celery's revoke); "
              "`terminate: true` also stops it if running, with `signal` (default SIGTERM).",
              path_params=("task_id",), admin=True,
              body=True, request=_body_schema("terminate", "signal")),
    Operation("/api/v1/tasks/{task_id}/retry", "post", "Send a FAILURE or REVOKED task again: "
              "a new task with the same name, arguments and queue; answers its "
              "`new_task_id` (its parent_id is the old id).", path_params=("task_id",),
              admin=True, found=True, body=True, request=_body_schema(), failures=(REFUSED,)),
    Operation("/api/v1/deadletters", "get", "Dead letters of a queue, oldest first: key, "
              "task, reason.", DEADLETTER_FILTERS),
    Operation("/api/v1/deadletters/{queue}/{key}", "get", "One dead letter: its headers "
              "and its body decoded.", path_params=("queue", "key"), found=True),
    Operation("/api/v1/deadletters/{queue}/replay", "post", "Replay one dead letter "
              "(`key`) or every one of the queue (`all: true`).", path_params=("queue",),
              admin=True, found=True, body=True, request=_body_schema("key", "all")),
    Operation("/api/v1/deadletters/{queue}/purge", "post", "Delete every dead letter of the "
              "queue.", path_params=("queue",), admin=True, body=True, request=_body_schema()),
    Operation("/api/v1/workers/{hostname}/{command}", "post", "Send a worker a command "
              f"({', '.join(WORKER_COMMANDS)}) and answer its reply: `n` for the pool, "
              "`queue` for consumers, `task_name` and `rate_limit` for a rate.",
              path_params=("hostname", "command"), admin=True, found=True,
              body=True, request=_worker_schema(), failures=(REFUSED, SILENT)),
    Operation("/api/v1/audit", "get", "The audit trail (hutch_audit), newest first.",
              AUDIT_FILTERS),
)
ADMIN_ACTIONS = frozenset({"api-task-revoke", "api-task-retry", "api-deadletters-replay",
                           "api-deadletters-purge", "api-worker-command"})


def acting(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """:func:`.answers.answer`, with an action that did not work answered as such."""
    async def endpoint(request: Request) -> Response:
        try:
            value = await handler(request)
        except ActionFailed as exc:
            return error(exc.status, mask_secrets(str(exc)), exc.field)
        except Exception as exc:  # noqa: BLE001 - every failure is answered as JSON
            return failure(request, exc)
        return Json(value)

    return functools.wraps(handler)(endpoint)


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON object of the body (empty: ``{}``), or a 400."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidQuery(f"the body is over {MAX_BODY // 1024} KiB", "body")
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise InvalidQuery("the body is not JSON", "body") from None
    if not isinstance(body, dict):
        raise InvalidQuery("the body must be a JSON object", "body")
    return body


class ActionApi(Handlers):
    """The handlers, bound to one app."""

    def __init__(self, hutch_app: Hutch) -> None:
        super().__init__(hutch_app)
        self.actions = Actions(hutch_app)

    async def act(self, request: Request, name: str, target: str,
                  body: dict[str, Any]) -> dict[str, Any]:
        outcome = await self.actions.perform(request, name, target, body)
        return {"ok": True, "action": name, "target": target, "message": outcome.message,
                **outcome.data}

    async def revoke(self, request: Request) -> dict[str, Any]:
        body = await json_body(request)
        terminate = body.pop("terminate", False)
        if not isinstance(terminate, bool):
            raise InvalidQuery("terminate must be true or false", "terminate")
        if not terminate and "signal" in body:
            raise InvalidQuery("signal is for terminate: true", "signal")
        name = "task.terminate" if terminate else "task.revoke"
        return await self.act(request, name, path_id(request, "task_id"), body)

    async def retry(self, request: Request) -> dict[str, Any]:
        body = await json_body(request)
        return await self.act(request, "task.retry", path_id(request, "task_id"), body)

    async def replay(self, request: Request) -> dict[str, Any]:
        body = await json_body(request)
        return await self.act(request, "deadletter.replay", path_id(request, "queue"), body)

    async def purge(self, request: Request) -> dict[str, Any]:
        body = await json_body(request)
        return await self.act(request, "deadletter.purge", path_id(request, "queue"), body)

    async def worker(self, request: Request) -> dict[str, Any]:
        command = path_id(request, "command")
        if command not in WORKER_COMMANDS:
            raise NotFound(f"no worker command {command!r}; there are "
                           f"{', '.join(WORKER_COMMANDS)}", "command")
        body = await json_body(request)
        return await self.act(request, f"worker.{command}", path_id(request, "hostname"),
                              body)

    def deadletters(self, request: Request) -> dict[str, Any]:
        """A queue's dead letters (oldest first), with the reason filter."""
        values = parse(request.query_params, DEADLETTER_FILTERS)
        queue = checked_queue(values.get("queue") or self.app.conf.task_default_queue)
        limit = values.get("limit", LETTERS_LIMIT)
        if not 1 <= limit <= 1000:
            raise InvalidQuery("limit must be between 1 and 1000", "limit")
        letters = dead.list_dead(self.client, queue, limit, values.get("reason"))
        return {"queue": queue, "items": [letter_shape(d) for d in letters]}

    def deadletter(self, request: Request) -> dict[str, Any]:
        """One dead letter: its reason, headers and decoded body."""
        parse(request.query_params, ())
        queue, key = checked_queue(path_id(request, "queue")), path_id(request, "key")
        found = dead.find(self.client, queue, key)
        if found is None:
            raise NotFound(f"no dead letter {key!r} in queue {queue!r}", "key")
        letter, wire = found
        return {**letter_shape(letter), "headers": letter.headers,
                "body": dead.decoded(wire, self.app.conf.accept_content)}

    def audit(self, request: Request) -> dict[str, Any]:
        values = parse(request.query_params, AUDIT_FILTERS)
        limit = values.get("limit", 100)
        if not 1 <= limit <= 500:
            raise InvalidQuery("limit must be between 1 and 500", "limit")
        entries = AuditLog(self.client.store).entries(
            target=values.get("target"), action=values.get("action"), limit=limit)
        return {"items": [{**e.__dict__, "at": e.at.isoformat()} for e in entries]}


def checked_queue(queue: str) -> str:
    """A queue name a route can have, or a 400 naming ``queue``."""
    try:
        return route(queue)
    except ValueError as exc:
        raise InvalidQuery(f"queue: {exc}", "queue") from None


def letter_shape(letter: dead.DeadLetter) -> dict[str, Any]:
    return {"key": letter.key, "message_id": letter.task_id, "task": letter.task,
            "queue": letter.route, "reason": letter.reason}


def routes(hutch_app: Hutch) -> list[BaseRoute]:
    """The endpoints, paths relative to ``/api`` (ahead of ``/v1/tasks/{id:path}``)."""
    api = ActionApi(hutch_app)
    return [
        Route("/v1/tasks/{task_id:path}/revoke", acting(api.revoke), methods=["POST"],
              name="api-task-revoke"),
        Route("/v1/tasks/{task_id:path}/retry", acting(api.retry), methods=["POST"],
              name="api-task-retry"),
        Route("/v1/deadletters", answer(api.deadletters), name="api-deadletters"),
        Route("/v1/deadletters/{queue}/replay", acting(api.replay), methods=["POST"],
              name="api-deadletters-replay"),
        Route("/v1/deadletters/{queue}/purge", acting(api.purge), methods=["POST"],
              name="api-deadletters-purge"),
        Route("/v1/deadletters/{queue}/{key}", answer(api.deadletter), name="api-deadletter"),
        Route("/v1/workers/{hostname}/{command}", acting(api.worker), methods=["POST"],
              name="api-worker-command"),
        Route("/v1/audit", answer(api.audit), name="api-audit"),
    ]
