"""``hutch -A apps.faults_app worker``: the shared test tasks plus the fault suite's
accounting task, configured by HUTCH_* variables (tests/faults/)."""

from __future__ import annotations

import os
import time

import sqlalchemy as sa

from apps.tasks import app_from_env
from hutch import Hutch
from hutch.config import normalize_backend_url


def register_fault_tasks(app: Hutch) -> Hutch:
    @app.task(name="faults.record", bind=True)
    def record(self, run_log: str, seconds: float = 0.0, until: str = "") -> str:
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
        while until and not os.path.exists(until) and time.time() < started + 120:
            time.sleep(0.02)  # held until the test creates the file ``until``
        return self.request.id

    return app


_engines: dict[str, sa.Engine] = {}


def _row_state(task) -> str:
    """The task's committed state, ``NONE`` without a row, ``?`` if the database does
    not answer (the PostgreSQL-crash scenario). One plain query, no retry, so that an
    outage does not slow the body down and change what the scenario measures."""
    url = task.app.conf.result_backend
    if url not in _engines:
        _engines[url] = sa.create_engine(normalize_backend_url(url), pool_size=1,
                                         pool_pre_ping=True)
    try:
        with _engines[url].connect() as conn:
            state = conn.execute(sa.text("SELECT state FROM hutch_tasks WHERE task_id = :i"),
                                 {"i": task.request.id}).scalar()
    except sa.exc.SQLAlchemyError:
        return "?"
    return state or "NONE"


app = register_fault_tasks(app_from_env())
