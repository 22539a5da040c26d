"""Soft and hard time limits, per pool.

Python cannot interrupt a thread, so limits are enforced where a process can:

- A task running in a process's main thread (a ``solo`` worker, every prefork
  child) gets ``SoftTimeLimitExceeded`` raised inside it by ``SIGALRM`` at its
  soft limit. Its hard limit is watched by the prefork supervisor through a
  :class:`Slot` in shared memory: past the deadline the supervisor records
  FAILURE with ``TimeLimitExceeded``, kills the child and starts a new one.
- ``async def`` tasks on the asyncio pool are cancelled (see executor.py).
- The threads pool cannot enforce either; it says so once per task name.

``hutch control time_limit`` changes a task's limits in a running worker
(:class:`Overrides`): they replace what its messages carry from then on.
"""

from __future__ import annotations

import ctypes
import multiprocessing.sharedctypes as shared
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from ..call_options import check_time_limits, time_limit
from ..envelope import ID_LENGTH
from ..errors import SoftTimeLimitExceeded
from ..logs import get_logger

if TYPE_CHECKING:
    from ..messages import TaskMessage

log = get_logger("hutch.worker")


class Guard(Protocol):
    """How a pool applies a message's limits around the task's run."""

    def watch(self, message: TaskMessage) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class Running:
    """What a slot says its child is running: enough to write the FAILURE row."""

    task_id: str
    deadline: float
    retries: int
    record: bool


class Slot:
    """One prefork child's running task, shared with its supervisor through memory.

    Written only by the child, read by the supervisor, without a lock (a lock held
    by a child that is then killed would never be released): a sequence number,
    odd while a write is in progress, tells the reader to try again.
    """

    def __init__(self) -> None:
        self._seq = shared.RawValue(ctypes.c_uint64, 0)
        self._task_id = shared.RawArray(ctypes.c_char, ID_LENGTH + 1)
        self._deadline = shared.RawValue(ctypes.c_double, 0.0)
        self._retries = shared.RawValue(ctypes.c_int, 0)
        self._record = shared.RawValue(ctypes.c_bool, False)
        self._busy = shared.RawValue(ctypes.c_bool, False)

    def occupied(self, busy: bool) -> None:
        """The child runs a task (any task, limited or not), or no longer: for the
        supervisor's autoscaler and for the choice of which child a shrink stops."""
        self._busy.value = busy

    @property
    def busy(self) -> bool:
        return bool(self._busy.value)

    def begin(self, task_id: str, deadline: float, retries: int, record: bool) -> None:
        self._seq.value += 1
        self._task_id.value = task_id.encode()[:ID_LENGTH]
        self._deadline.value, self._retries.value, self._record.value = deadline, retries, record
        self._seq.value += 1

    def end(self) -> None:
        self._seq.value += 1
        self._task_id.value, self._deadline.value = b"", 0.0
        self._seq.value += 1

    def read(self) -> Running | None:
        while True:
            before = self._seq.value
            if before % 2:
                time.sleep(0)
                continue
            running = Running(self._task_id.value.decode(errors="replace"),
                              self._deadline.value, self._retries.value, self._record.value)
            if self._seq.value == before:
                return running if running.task_id else None

    def overdue(self, now: float) -> Running | None:
        running = self.read()
        return running if running and running.deadline and now >= running.deadline else None


class Unenforced:
    """Threads: no way to stop a thread, so limits are logged once per task, not applied."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self._warned: set[str] = set()

    @contextmanager
    def watch(self, message: TaskMessage) -> Iterator[None]:
        if (message.time_limit or message.soft_time_limit) and message.task not in self._warned:
            self._warned.add(message.task)
            log.warning("time limits are not enforced on this pool; use -P prefork",
                        pool=self.pool, task_name=message.task)
        yield


class MainThreadLimits:
    """The process runs tasks in its main thread: ``SIGALRM`` raises the soft limit in
    the task; the hard limit goes into ``slot`` for the supervisor (prefork) or is
    logged as unenforced (a standalone solo worker has nobody to kill it)."""

    def __init__(self, slot: Slot | None = None) -> None:
        self.slot = slot
        self._armed: TaskMessage | None = None
        self._unenforced = Unenforced("solo")
        signal.signal(signal.SIGALRM, self._alarm)

    @contextmanager
    def watch(self, message: TaskMessage) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("MainThreadLimits.watch must run in the main thread")
        hard, soft = message.time_limit, message.soft_time_limit
        if self.slot is not None:
            self.slot.occupied(True)
        if hard and self.slot is not None:
            self.slot.begin(message.id, time.monotonic() + hard, message.retries,
                            not message.ignore_result)
        elif hard:
            with self._unenforced.watch(message):
                pass
        if soft:
            self._armed = message
            signal.setitimer(signal.ITIMER_REAL, soft)
        try:
            yield
        finally:
            self._armed = None
            if soft:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if hard and self.slot is not None:
                self.slot.end()
            if self.slot is not None:
                self.slot.occupied(False)

    def _alarm(self, _signum: int, _frame: object) -> None:
        message, self._armed = self._armed, None
        if message is not None:
            raise SoftTimeLimitExceeded(
                f"{message.task}[{message.id}] passed its soft time limit of "
                f"{message.soft_time_limit:g} s")


class Overrides:
    """Time limits set by ``hutch control time_limit`` in this process, by task name.
    A message carries its task's limits from the sender (the task's defaults or the
    call's), so an override replaces both of them, for the tasks started after it."""

    def __init__(self) -> None:
        self._limits: dict[str, tuple[float | None, float | None]] = {}

    def set(self, task_name: str, soft: object, hard: object) -> None:
        """``soft``/``hard`` in seconds (None or 0: no limit, as in Celery);
        ConfigurationError for a value that is not a number of seconds, InvalidTimeLimits
        when soft is not below hard."""
        soft_s = time_limit("soft", None if soft == 0 else soft)
        hard_s = time_limit("hard", None if hard == 0 else hard)
        check_time_limits(f"time_limit {task_name}", soft_s, hard_s)
        self._limits = {**self._limits, task_name: (soft_s, hard_s)}  # readers see old or new

    def apply(self, message: TaskMessage) -> TaskMessage:
        """``message`` with its task's overridden limits, if any."""
        limits = self._limits.get(message.task)
        if limits is None:
            return message
        soft, hard = limits
        return replace(message, soft_time_limit=soft, time_limit=hard)
