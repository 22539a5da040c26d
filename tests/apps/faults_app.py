"""``hutch -A apps.faults_app worker``: the shared test tasks plus the fault suite's
accounting task, configured by HUTCH_* variables (tests/faults/)."""

from __future__ import annotations

import os
import time

from apps.tasks import app_from_env
from hutch import Hutch


def register_fault_tasks(app: Hutch) -> Hutch:
    @app.task(name="faults.record", bind=True)
    def record(self, run_log: str, seconds: float = 0.0) -> str:
        """Appends one line per run of its body to ``run_log`` before doing anything else:
        ``<task id> <pid> <start time> <its row's state then>``. One ``O_APPEND`` write
        per line, so lines from many processes never interleave and every line written
        survives a SIGKILL of the process a moment later. The row's state as this run
        starts tells whether the id had already finished (committed) before it ran."""
        started = time.time()
        line = f"{self.request.id} {os.getpid()} {started:.6f} {_row_state(self)}\n"
        fd = os.open(run_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        if seconds:
            time.sleep(seconds)
        return self.request.id

    return app


def _row_state(task) -> str:
    """The task's committed state, ``NONE`` without a row, ``?`` if the database does
    not answer (the PostgreSQL-crash scenario)."""
    try:
        row = task.app.client().store.get(task.request.id)
    except Exception:  # noqa: BLE001 - an unreachable database must not stop the run
        return "?"
    return row.state if row is not None else "NONE"


app = register_fault_tasks(app_from_env())
