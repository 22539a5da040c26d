"""Tasks shared by the unit and integration suites. ``make_app`` builds a fresh app."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from hutch import Hutch
from hutch.errors import SoftTimeLimitExceeded


class CustomError(Exception):
    """An exception type a test can import, to check get() re-raises the same type."""


class NeedsTwo(Exception):
    """Its constructor requires two arguments, and keeps them as ``args``."""

    def __init__(self, code, detail):
        super().__init__(code, detail)
        self.code = code


class Formatted(Exception):
    """Its constructor formats its arguments into one message, so it cannot be called
    with its own ``args`` back."""

    def __init__(self, status, url):
        super().__init__(f"{status} at {url}")
        self.status = status


class Opaque:
    """A value no serializer's JSON can hold."""

    def __repr__(self):
        return "<opaque>"


RAISABLE = {cls.__name__: cls for cls in (ValueError, KeyError, CustomError, NeedsTwo, Formatted)}


def register(app: Hutch) -> Hutch:
    @app.task(name="tests.add")
    def add(x, y):
        return x + y

    @app.task(name="tests.mul")
    def mul(x, y):
        return x * y

    @app.task(name="tests.echo")
    def echo(value):
        return value

    @app.task(name="tests.fail")
    def fail(message="boom"):
        raise CustomError(message)

    @app.task(name="tests.whoami", bind=True)
    def whoami(self):
        r = self.request
        return {"id": r.id, "task": r.task, "retries": r.retries, "headers": r.headers,
                "queue": r.queue, "hostname": r.hostname, "parent_id": r.parent_id}

    @app.task(name="tests.errback", bind=True)
    def errback(self, uuid):
        failed = self.app.AsyncResult(uuid)
        return f"{uuid}: {failed.result!r}"

    @app.task(name="tests.sleep")
    def sleep(seconds, marker=None):
        """Sleeps, then appends a line to ``marker`` (counts executions across processes)."""
        time.sleep(seconds)
        if marker:
            with Path(marker).open("a") as fh:
                fh.write(f"{os.getpid()}\n")
        return seconds

    @app.task(name="tests.sleep_early_ack", acks_late=False)
    def sleep_early_ack(seconds, marker=None):
        """As tests.sleep, but acknowledged before it runs (at most once)."""
        return sleep(seconds, marker)

    @app.task(name="tests.log_something")
    def log_something(text):
        logging.getLogger("tests.tasks").warning("task says %s", text)
        return text

    @app.task(name="tests.flaky", bind=True, max_retries=3)
    def flaky(self, failures):
        """Fails ``failures`` times (asking for a retry each time), then succeeds."""
        if self.request.retries < failures:
            raise self.retry(exc=CustomError(f"attempt {self.request.retries}"), countdown=0.2)
        return self.request.retries

    @app.task(name="tests.always_retry", bind=True, max_retries=1)
    def always_retry(self):
        raise self.retry(countdown=0.1)

    @app.task(name="tests.autoretry", autoretry_for=(CustomError,), retry_backoff=True,
              retry_jitter=False, max_retries=1)
    def autoretry():
        raise CustomError("still broken")

    @app.task(name="tests.spawn", bind=True)
    def spawn(self, x):
        """Sends a subtask from inside a task: it must record this task as its parent."""
        return self.app.tasks["tests.add"].delay(x, x).id

    @app.task(name="tests.asleep")
    async def asleep(seconds):
        await asyncio.sleep(seconds)
        return seconds

    @app.task(name="tests.unpicklable_result")
    def unpicklable_result():
        return object()

    @app.task(name="tests.noop", ignore_result=True)
    def noop():
        return None

    @app.task(name="tests.cleanup_on_soft_limit")
    def cleanup_on_soft_limit(seconds):
        try:
            time.sleep(seconds)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "finished"

    @app.task(name="tests.hard_limited", time_limit=1)
    def hard_limited(seconds, marker=None):
        """Declares a one-second hard limit; asked to sleep longer, it is killed."""
        return sleep(seconds, marker)

    @app.task(name="tests.limited", rate_limit="2/s")
    def limited(i):
        return i

    @app.task(name="tests.limited_slow", rate_limit="6/m")
    def limited_slow(i):
        return i

    @app.task(name="tests.append")
    def append(path, label):
        """Appends ``label`` as a line to ``path``: the order tasks ran in, across processes."""
        with Path(path).open("a") as fh:
            fh.write(f"{label}\n")
        return label

    @app.task(name="tests.kill_own_process")
    def kill_own_process(marker):
        """A poison task: appends a line to ``marker`` (counts runs), then SIGKILLs the
        process running it. Only for worker subprocesses."""
        with Path(marker).open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    @app.task(name="tests.xsum")
    def xsum(numbers):
        return sum(numbers)

    @app.task(name="tests.count_call")
    def count_call(value, marker):
        """Appends a line to ``marker`` (counts executions across processes), returns value."""
        with Path(marker).open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        return value

    @app.task(name="tests.record_run", bind=True)
    def record_run(self, path, seconds=0.0):
        """Appends ``task_id pid start-time`` to ``path`` as it STARTS (a run a killed
        worker never finished is still counted), then sleeps ``seconds``."""
        with Path(path).open("a") as fh:
            fh.write(f"{self.request.id} {os.getpid()} {time.time():.6f}\n")
        time.sleep(seconds)
        return self.request.id

    @app.task(name="tests.raise_args")
    def raise_args(kind, *args, opaque=False):
        """Raises ``RAISABLE[kind](*args)``; ``opaque`` adds an argument JSON cannot hold."""
        raise RAISABLE[kind](*args, *([Opaque()] if opaque else []))

    @app.task(name="tests.retry_once", bind=True)
    def retry_once(self, countdown):
        """The first attempt fails with CustomError('not yet', 0) and asks for a retry in
        ``countdown`` seconds; the second returns its retry count."""
        if self.request.retries == 0:
            raise self.retry(exc=CustomError("not yet", 0), countdown=countdown)
        return self.request.retries

    @app.task(name="tests.as_set")
    def as_set(*values):
        """A result JSON cannot hold as such (the CLI prints it tagged)."""
        return {"set": set(values), "tuple": tuple(values)}

    @app.task(name="tests.pid")
    def pid(hoard_kib=0):
        """The pid of the process that ran it; ``hoard_kib``: keep that much more memory
        for the rest of the process's life (a leak, for worker_max_memory_per_child)."""
        if hoard_kib:
            HOARD.append(os.urandom(hoard_kib * 1024))
        return os.getpid()

    return app


HOARD: list[bytes] = []
"""What tests.pid keeps alive."""


def runs_of(path) -> list[tuple[str, int, float]]:
    """The ``(task_id, pid, started)`` lines tests.record_run wrote."""
    if not Path(path).exists():
        return []
    return [(i, int(p), float(t)) for i, p, t in
            (line.split() for line in Path(path).read_text().splitlines())]


def make_app(broker: str, backend: str, **settings) -> Hutch:
    return register(Hutch("tests", broker=broker, backend=backend, **settings))


def app_from_env() -> Hutch:
    """For worker subprocesses: everything comes from HUTCH_* variables."""
    return register(Hutch("tests"))
