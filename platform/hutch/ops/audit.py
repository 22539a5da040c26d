"""The audit trail of hutch web's actions (``hutch_audit``): who did what to which
target, when, and how it ended.

Every action (revoke, retry, replay, purge, schedule edits, worker control) is
written after it is tried, whether it worked or not, so a DBA can answer "who
purged this queue" from SQL alone. Rows are only ever inserted; the dashboard
reads the newest first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from ..errors import BackendError
from ..logs import get_logger
from ..results.models import audit
from ..results.store import ResultStore

log = get_logger("hutch.ops")

OK, FAILED = "ok", "failed"
"""The two outcomes: the action did what was asked, or it did not (``detail`` says why)."""
MAX_ENTRIES = 500


@dataclass(frozen=True)
class Actor:
    """Who acts: the user or token name (``anonymous`` when the dashboard runs open on
    loopback), their role, and the address the request came from."""

    name: str
    role: str
    client: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    actor: str
    """The user or token name; ``anonymous`` when the dashboard runs open on loopback."""
    role: str
    action: str
    """What was done, e.g. ``task.revoke``, ``deadletter.replay``, ``schedule.update``."""
    target: str
    """What it was done to: a task id, a queue, a schedule or worker name."""
    outcome: str
    detail: dict[str, Any] | None = None
    client: str | None = None
    """The address the request came from (the proxy's own when behind one)."""


class AuditLog:
    """``hutch_audit`` on a result store's database (its retry and one-line errors)."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store

    def record(self, entry: AuditEntry) -> bool:
        """Write ``entry``; False if the database refused it. The action it records has
        happened by then and stands: a failed write is logged, never raised."""
        row = {**asdict(entry), "action": entry.action[:64], "target": entry.target[:255],
               "actor": entry.actor[:255]}
        try:
            self.store.transaction("write the audit trail",
                                   lambda conn: conn.execute(insert(audit).values(**row)))
        except BackendError as exc:
            log.error("action not written to hutch_audit", action=entry.action,
                      target=entry.target, actor=entry.actor, error=str(exc))
            return False
        return True

    def entries(self, *, target: str | None = None, action: str | None = None,
                limit: int = 100) -> list[AuditEntry]:
        """The newest entries first, ``limit`` at most (capped at MAX_ENTRIES)."""
        query = select(audit).order_by(audit.c.at.desc(), audit.c.id.desc())
        if target is not None:
            query = query.where(audit.c.target == target)
        if action is not None:
            query = query.where(audit.c.action == action)
        query = query.limit(max(1, min(limit, MAX_ENTRIES)))
        return self.store.read_now("read the audit trail", lambda conn: _entries(conn, query))


def entry(actor: Actor, action: str, target: str, *, ok: bool,
          detail: dict[str, Any] | None = None) -> AuditEntry:
    """An entry by ``actor``, stamped now."""
    return AuditEntry(at=dt.datetime.now(dt.timezone.utc), actor=actor.name, role=actor.role,
                      action=action, target=target, outcome=OK if ok else FAILED,
                      detail=detail, client=actor.client)


def _entries(conn: Connection, query: Any) -> list[AuditEntry]:
    return [AuditEntry(**{k: v for k, v in row.items() if k != "id"})
            for row in conn.execute(query).mappings()]
