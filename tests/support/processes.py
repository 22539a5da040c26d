"""Worker and beat subprocesses for integration tests: ``hutch -A apps.env_app worker ...``
and ``hutch -A apps.beat_app beat``."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from support.waiting import eventually

TESTS_DIR = Path(__file__).resolve().parent.parent


class WorkerProc:
    """A worker subprocess whose stderr is collected for assertions and debugging."""

    def __init__(self, env: dict[str, str], queues: Sequence[str] = ("celery",),
                 pool: str = "prefork", concurrency: int = 2,
                 extra_args: Sequence[str] = (), app: str = "apps.env_app") -> None:
        self.env = env
        self.args = [sys.executable, "-m", "hutch", "-A", app, "--log-format", "json",
                     "worker", "-Q", ",".join(queues), "-P", pool, "-c", str(concurrency),
                     *extra_args]
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def start(self) -> WorkerProc:
        """In a session (and process group) of its own, as under systemd or in a terminal
        of its own: :meth:`signal_group` reaches the worker and its children, never pytest."""
        self.proc = subprocess.Popen(self.args, env=self.env, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True, cwd=TESTS_DIR.parent,
                                     start_new_session=True)
        threading.Thread(target=self._collect, daemon=True).start()
        return self

    def _collect(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_ready(self, count: int = 1, timeout: float = 30) -> None:
        """Wait until ``count`` processes logged 'worker ready'."""
        def ready() -> bool:
            return sum('"worker ready"' in line for line in self.lines) >= count

        def exited() -> bool:
            return self.proc is not None and self.proc.poll() is not None

        eventually(lambda: ready() or exited(), timeout)
        assert ready(), "worker not ready:\n" + "".join(self.lines[-30:])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """``kill -SIG -- -PGID``: one signal to every process of the worker's group, as
        systemd sends without ``KillMode=mixed`` and a terminal sends on Ctrl-C."""
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def ready_lines(self) -> list[dict]:
        """The 'worker ready' log lines so far, one per worker process."""
        return [json.loads(line) for line in self.lines if '"worker ready"' in line]

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("worker ignored SIGTERM:\n" + "".join(self.lines[-30:])) from None

    def output(self) -> str:
        return "".join(self.lines)


class BeatProc(WorkerProc):
    """``hutch -A apps.beat_app beat`` (or a worker with -B: pass its arguments), whose
    schedule comes from HUTCH_TEST_BEAT_SCHEDULE in ``env``."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        super().__init__(env)
        self.args = [sys.executable, "-m", "hutch", "-A", "apps.beat_app", "--log-format",
                     "json", *(args or ("beat",))]

    def active(self) -> bool:
        return any('"beat active' in line for line in self.lines)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        if not eventually(lambda: any(f'"{event}' in line for line in self.lines), timeout):
            raise AssertionError(f"no {event!r} in:\n" + self.output()[-3000:])

    def logged_at(self, event: str) -> dt.datetime:
        """The timestamp of the first JSON log line of ``event``."""
        for line in self.lines:
            if f'"{event}' in line:
                return as_datetime(json.loads(line)["timestamp"])
        raise AssertionError(f"no {event!r} in:\n" + self.output()[-3000:])

    def kill(self) -> None:
        """SIGKILL, if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def as_datetime(value: object) -> dt.datetime:
    """A datetime column as read by plain SQL: aware on PostgreSQL, UTC text on SQLite."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def worker_env(broker: str, backend: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
    env.update(HUTCH_BROKER_URL=broker, HUTCH_BACKEND_URL=backend, HUTCH_TOPOLOGY_PREFIX=prefix,
               PYTHONPATH=str(TESTS_DIR), **extra)
    return env
