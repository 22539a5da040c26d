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
from ..messages import DEAD_ID_HEADER, DEAD_REASON_HEADER, Wire, peek_identity
from ..results.records import PENDING, StateChange


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


def list_dead(client: Client, route: str, limit: int = 100) -> list[DeadLetter]:
    return [describe(w, route, client) for w in client.broker.dead_letters(route, limit)]


def replay(client: Client, route: str, task_id: str | None = None) -> list[str]:
    """Replay and return the ids; each row is reset before its message is republished,
    so the worker's new outcome is never overwritten by the reset."""
    def reset_row(wire: Wire) -> None:
        task_id, _ = peek_identity(wire)
        if task_id is not None:  # a message without a usable id has no row
            client.store.write([StateChange(task_id=task_id, state=PENDING, retries=0)],
                               force=True)

    return [w.message_id for w in client.broker.replay_dead(route, task_id, reset_row)]
