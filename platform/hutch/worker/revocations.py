"""The task ids a worker refuses to run, and who tells it.

Three sources, in this order at start: the ``P.control`` broadcast (subscribed
first; the same subscription hands the requests that want replies, ``hutch
inspect``, to worker/remote.py), so nothing revoked from now on is missed), the database's
``hutch_revoked`` table (everything revoked before), and, with ``--statedb``,
a worker-local SQLite file that keeps its own copy. Checking an id is a set
lookup: no query per task.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import closing
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from ..logs import get_logger
from ..messages import RevokeCommand, RevokeStampsCommand, TaskMessage, stamp_key

if TYPE_CHECKING:
    from ..brokers.base import Broker, SubscriptionHandle
    from ..results.store import ResultStore

log = get_logger("hutch.worker")

OnTerminate = Callable[[str, str], None]
"""``(task_id, signal name)``: stop the task if this process is running it."""
Running = Callable[[], Iterable[TaskMessage]]
"""The messages of the tasks this process runs now (to terminate by stamps)."""
OnRequest = Callable[[bytes], bool]
"""A control body that may ask for a reply (worker/remote.py): True once handled."""


class StateFile:
    """``--statedb FILE``: revocations kept on the worker's own disk (a SQLite file, safe
    for the several prefork children that share it)."""

    def __init__(self, path: str, retention: float) -> None:
        self.path, self.retention = path, retention
        try:
            with closing(self._connect()) as db, db:
                db.execute("CREATE TABLE IF NOT EXISTS revoked "
                           "(task_id TEXT PRIMARY KEY, honour_until REAL NOT NULL)")
        except sqlite3.Error as exc:
            raise ConfigurationError(f"statedb: cannot use {path!r}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def load(self) -> set[str]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT task_id FROM revoked WHERE honour_until > ?",
                              (time.time(),))
            return {task_id for (task_id,) in rows}

    def add(self, ids: Iterable[str]) -> None:
        until = time.time() + self.retention
        try:
            with closing(self._connect()) as db, db:
                db.executemany("INSERT OR REPLACE INTO revoked VALUES (?, ?)",
                               [(i, until) for i in ids])
        except sqlite3.Error as exc:  # the database copy is the one that counts
            log.warning("statedb not updated", path=self.path, error=str(exc))


class Revocations:
    """A thread-safe set of revoked ids, kept current while the worker runs."""

    def __init__(self, store: ResultStore, statedb: str | None = None,
                 retention: float = 7 * 86400.0,
                 on_terminate: OnTerminate | None = None,
                 on_request: OnRequest | None = None, running: Running | None = None) -> None:
        """``on_request`` gets every control body first (the requests with replies,
        worker/remote.py); what it does not handle is read as a revocation. ``running``
        lists the tasks running here, for a revocation by stamps that terminates."""
        self._stamps: set[tuple[str, str]] = set()
        self._running = running
        self._store = store
        self._on_request = on_request
        self._file = StateFile(statedb, retention) if statedb else None
        self._on_terminate = on_terminate
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._subscription: SubscriptionHandle | None = None

    def start(self, broker: Broker) -> None:
        self._subscription = broker.subscribe_control(self._on_command)
        known = self._store.revoked_ids()
        if self._file is not None:
            self._file.add(known)
            known |= self._file.load()
        self._add(known)
        stamps = self._store.revoked_stamps()
        with self._lock:
            self._stamps |= stamps
        log.info("revocations loaded", count=len(known), stamps=len(stamps) or None)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        """A snapshot of the ids (``inspect revoked``), taken while none is added."""
        with self._lock:
            return iter(list(self._ids))

    def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _add(self, ids: Iterable[str]) -> None:
        with self._lock:
            self._ids.update(ids)

    def refuses(self, stamps: dict[str, object]) -> bool:
        """Whether a task carrying ``stamps`` is revoked by one of them (a value, or one
        of the values of a list stamp)."""
        revoked = self._stamps
        return bool(revoked) and any(
            (name, stamp_key(v)) in revoked
            for name, value in stamps.items() for v in (value if isinstance(value, list)
                                                          else [value]))

    def apply_stamps(self, command: RevokeStampsCommand) -> None:
        """Refuse tasks with these stamps from now on, and terminate those running here
        if asked."""
        with self._lock:
            self._stamps |= command.keys()
        log.info("revocation by stamps received",
                 headers={n: list(v) for n, v in command.headers.items()},
                 terminate=command.terminate or None)
        if command.terminate and self._on_terminate is not None and self._running is not None:
            for message in list(self._running()):
                if message.stamps and self.refuses(message.stamps):
                    self._on_terminate(message.id, command.signal)

    def _on_command(self, body: bytes) -> None:
        if self._on_request is not None and self._on_request(body):
            return
        by_stamps = RevokeStampsCommand.decode(body)
        if by_stamps is not None:
            self.apply_stamps(by_stamps)
            return
        command = RevokeCommand.decode(body)
        if command is not None:
            self.apply(command)

    def apply(self, command: RevokeCommand) -> None:
        """Refuse these ids from now on, and terminate them if asked and running here
        (the broadcast revocation, or ``revoke`` asked with a reply, worker/remote.py)."""
        self._add(command.ids)
        if self._file is not None:
            self._file.add(command.ids)
        log.info("revocation received", ids=list(command.ids),
                 terminate=command.terminate or None)
        if command.terminate and self._on_terminate is not None:
            for task_id in command.ids:
                self._on_terminate(task_id, command.signal)


def revoked_by_stamps(revoked: Container[str], message: TaskMessage) -> bool:
    """Whether ``message`` carries a stamp revoked by ``revoke_by_stamped_headers``."""
    return bool(message.stamps) and isinstance(revoked, Revocations) \
        and revoked.refuses(message.stamps)
