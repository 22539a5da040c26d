"""Dead-letter operations behind ``hutch dlq``: list, show, replay, purge.

Replay puts each message back on its original route with its retry count reset
and sets the task's row back to PENDING (forced past the precedence rule, since
a FAILURE row is otherwise final), so the row follows the message again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .client import Client
from .messages import Wire
from .results.records import PENDING, StateChange


@dataclass(frozen=True)
class DeadLetter:
    task_id: str
    task: str | None
    route: str
    reason: str
    """RabbitMQ's first-death reason (``rejected``, ``expired``, ...), plus the row's error."""
    headers: dict[str, Any]


def describe(wire: Wire, route: str, client: Client) -> DeadLetter:
    deaths = wire.headers.get("x-death") or [{}]
    first = deaths[0] if isinstance(deaths, list) and deaths else {}
    reason = str(wire.headers.get("x-first-death-reason") or first.get("reason") or "unknown")
    row = client.store.get(wire.message_id) if wire.message_id else None
    if row is not None and (row.exception_type or row.exception_message):
        reason += f": {row.exception_type or ''} {row.exception_message or ''}".rstrip()
    return DeadLetter(task_id=wire.message_id, task=wire.headers.get("task"), route=route,
                      reason=reason, headers=dict(wire.headers))


def list_dead(client: Client, route: str, limit: int = 100) -> list[DeadLetter]:
    return [describe(w, route, client) for w in client.broker.dead_letters(route, limit)]


def replay(client: Client, route: str, task_id: str | None = None) -> list[str]:
    """Replay and return the ids; each row is reset before its message is republished,
    so the worker's new outcome is never overwritten by the reset."""
    def reset_row(wire: Wire) -> None:
        client.store.write([StateChange(task_id=wire.message_id, state=PENDING, retries=0)],
                           force=True)

    return [w.message_id for w in client.broker.replay_dead(route, task_id, reset_row)]
