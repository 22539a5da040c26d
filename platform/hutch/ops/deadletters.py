"""Dead-letter operations behind ``hutch dlq``: list, show, replay, purge.

A worker that refuses a message puts a copy carrying the reason into the
dead-letter queue itself (hutch.worker.executor), so the reason is read from the
message, even for one without a task id or row; other dead letters (retries
exhausted, expired, delivery limits) are explained by RabbitMQ's ``x-death`` and
the task's row. Replay puts each message back on its original route with its
retry count reset and sets the task's row back to PENDING (forced past the
precedence rule, since a FAILURE row is otherwise final), so the row follows the
message again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..client.sync import Client
from ..errors import HutchError
from ..messages import DEAD_ID_HEADER, DEAD_REASON_HEADER, TaskMessage, Wire, peek_identity
from ..results.records import PENDING, StateChange
from ..serialization import encode_args_for_row


@dataclass(frozen=True)
class DeadLetter:
    task_id: str
    """The message's id (``message_id``), empty if it has none."""
    task: str | None
    route: str
    reason: str
    """Why it is here: ``rejected: <the refusing worker's dead_reason header>`` when it
    carries one (messages.refused), else RabbitMQ's first-death reason (``rejected``,
    ``expired``, ...) plus the error on the task's row."""
    headers: dict[str, Any]
    key: str = ""
    """What ``hutch dlq show`` takes: the task id, or for a refused message without a
    usable one, the ``dead_id`` its worker gave it."""


def describe(wire: Wire, route: str, client: Client) -> DeadLetter:
    task_id, name = peek_identity(wire)
    given = wire.headers.get(DEAD_REASON_HEADER)
    if isinstance(given, str) and given:
        reason = f"rejected: {given}"
    else:
        deaths = wire.headers.get("x-death") or [{}]
        first = deaths[0] if isinstance(deaths, list) and deaths else {}
        first = first if isinstance(first, dict) else {}
        reason = str(wire.headers.get("x-first-death-reason") or first.get("reason")
                     or "unknown")
        row = client.store.get(task_id) if task_id else None
        if row is not None and (row.exception_type or row.exception_message):
            reason += f": {row.exception_type or ''} {row.exception_message or ''}".rstrip()
    dead_id = wire.headers.get(DEAD_ID_HEADER)
    return DeadLetter(task_id=wire.message_id, task=name, route=route, reason=reason,
                      headers=dict(wire.headers),
                      key=task_id or (dead_id if isinstance(dead_id, str) else ""))


def list_dead(client: Client, route: str, limit: int = 100,
              reason: str | None = None) -> list[DeadLetter]:
    """The route's first ``limit`` dead letters, oldest first; ``reason``: only those
    whose reason holds this text, in any case (the dashboard's filter)."""
    letters = [describe(w, route, client) for w in client.broker.dead_letters(route, limit)]
    wanted = (reason or "").lower()
    return [d for d in letters if wanted in d.reason.lower()]


def replay(client: Client, route: str, task_id: str | None = None) -> list[str]:
    """Replay and return the ids; each row is reset before its message is republished,
    so the worker's new outcome is never overwritten by the reset."""
    def reset_row(wire: Wire) -> None:
        task_id, _ = peek_identity(wire)
        if task_id is not None:  # a message without a usable id has no row
            client.store.write([StateChange(task_id=task_id, state=PENDING, retries=0)],
                               force=True)

    return [w.message_id for w in client.broker.replay_dead(route, task_id, reset_row)]


SEARCHED = 10_000
"""How many dead letters :func:`find` looks through for one."""


def find(client: Client, route: str, key: str,
         limit: int = SEARCHED) -> tuple[DeadLetter, Wire] | None:
    """The dead letter whose ``key`` is ``key`` (``hutch dlq show``), with its message."""
    for wire in client.broker.dead_letters(route, limit):
        letter = describe(wire, route, client)
        if letter.key == key:
            return letter, wire
    return None


SHOWN_BYTES = 1_000_000
"""The largest body :func:`decoded` unpacks (a dead letter may be a compression bomb)."""


def decoded(wire: Wire, accept: tuple[str, ...]) -> dict[str, Any]:
    """The message's body as its task would get it (JSON-ready); a body that cannot be
    read (the reason it may be here): ``{"error": why, "raw": its start as text}``.
    Never unpickles (``accept`` without pickle: a dead letter is anyone's message)."""
    try:
        message = TaskMessage.decode(wire, tuple(a for a in accept if a != "pickle"),
                                     SHOWN_BYTES)
    except HutchError as exc:
        return {"error": str(exc), "raw": wire.body[:2000].decode("utf-8", "replace")}
    return {"task": message.task, "args": encode_args_for_row(list(message.args)),
            "kwargs": encode_args_for_row(message.kwargs), "queue": message.queue,
            "eta": message.eta.isoformat() if message.eta else None,
            "retries": message.retries, "parent_id": message.parent_id,
            "root_id": message.root_id, "group_id": message.group_id}
