"""Recycling prefork children: ``worker_max_tasks_per_child`` and ``worker_max_memory_per_child``.

Celery's remedy for tasks that leak (memory, file handles, C-level state): a child
that has run N tasks, or whose resident memory is above a limit once a task ends,
exits and the supervisor forks a fresh one. Here the child finishes the task, its
row is written and its message acknowledged by the ordinary warm stop, and it exits
with :data:`RETIRED`, which tells the supervisor that this was planned: the
replacement starts at once and is not counted as a crash (worker/respawns.py).
Messages the child had prefetched go back to the queue unstarted.

The threads, asyncio and solo pools have no child to replace; as in Celery, the
settings apply to prefork only (worker/runner.py warns when they are set for another
pool).
"""

from __future__ import annotations

import os
import resource
import sys

from ..config import Settings
from ..logs import get_logger

log = get_logger("hutch.worker")

RETIRED = 75
"""A prefork child's exit code when it retires on purpose (75 is EX_TEMPFAIL: it is
not an error, and nothing else in hutch exits with it)."""


def resident_kib() -> int:
    """This process's resident memory now, in KiB (Linux's /proc; elsewhere the peak,
    which is what getrusage offers)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS


def child_prefetch(conf: Settings) -> int:
    """A prefork child's prefetch: no more than the tasks it may still run, so that a
    child retiring after N tasks gives few messages back."""
    limit = conf.worker_max_tasks_per_child
    return min(conf.worker_prefetch_multiplier, limit) if limit else \
        conf.worker_prefetch_multiplier


class Recycler:
    """Counts a child's tasks and says when it should retire."""

    def __init__(self, max_tasks: int | None, max_memory_kib: int | None) -> None:
        self.max_tasks = max_tasks
        self.max_memory_kib = max_memory_kib
        self.done = 0
        if max_memory_kib is not None and (start := resident_kib()) > max_memory_kib:
            log.warning("worker_max_memory_per_child is below a new child's memory: each "
                        "child runs one task and is replaced", rss_kib=start,
                        max_memory_kib=max_memory_kib)

    @classmethod
    def from_settings(cls, conf: Settings) -> Recycler | None:
        if conf.worker_max_tasks_per_child is None and conf.worker_max_memory_per_child is None:
            return None
        return cls(conf.worker_max_tasks_per_child, conf.worker_max_memory_per_child)

    def task_done(self) -> str | None:
        """Count a task that ended; the reason to retire now, if there is one."""
        self.done += 1
        if self.max_tasks is not None and self.done >= self.max_tasks:
            return f"ran {self.done} tasks (worker_max_tasks_per_child)"
        if self.max_memory_kib is not None:
            rss = resident_kib()
            if rss > self.max_memory_kib:
                return (f"resident memory {rss} KiB is above {self.max_memory_kib} KiB "
                        f"(worker_max_memory_per_child)")
        return None
