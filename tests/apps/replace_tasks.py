"""Tasks that replace themselves (``self.replace``), on top of the shared test tasks
(apps.tasks), for tests/unit/test_replace.py and the RabbitMQ tests.

``hutch -A apps.replace_tasks worker`` loads ``app``, configured by HUTCH_*
variables; it is made on first use, so importing this module makes no app."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from apps.tasks import app_from_env
from apps.tasks import make_app as make_tasks_app
from hutch import Hutch, signature

GATE_TIMEOUT = 60.0
"""Longest ``replace.gated`` waits for its file: a test that never opens it fails, not hangs."""


def register_replace(app: Hutch) -> Hutch:
    @app.task(name="replace.into", bind=True)
    def into(self, *args, sig):
        """Replaces itself with ``sig`` (a signature's dict), this task's own arguments
        (a chain's previous result, a chord's header results) put in front of it."""
        return self.replace(signature(sig, app=self.app).clone(tuple(args)))

    @app.task(name="replace.into_autoretry", bind=True, autoretry_for=(Exception,))
    def into_autoretry(self, sig):
        """As replace.into, for a task that retries on any exception."""
        return self.replace(signature(sig, app=self.app))

    @app.task(name="replace.async_into", bind=True)
    async def async_into(self, *args, sig):
        """As replace.into, as a coroutine (the asyncio pool awaits it)."""
        return self.replace(signature(sig, app=self.app).clone(tuple(args)))

    @app.task(name="replace.again", bind=True)
    def again(self, depth):
        """Replaces itself with itself ``depth`` times, then returns ``"done"``."""
        if depth == 0:
            return "done"
        return self.replace(again.s(depth - 1))

    @app.task(name="replace.tsum")
    def tsum(values):
        return sum(values)

    @app.task(name="replace.gated")
    def gated(path, value):
        """Returns ``value`` once file ``path`` exists: keeps a replacement running
        while a test looks at the rows."""
        deadline = time.monotonic() + GATE_TIMEOUT
        while not Path(path).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} never appeared")
            time.sleep(0.02)
        return value

    @app.task(name="replace.lineage", bind=True)
    def lineage(self, *args):
        r = self.request
        return {"id": r.id, "parent_id": r.parent_id, "root_id": r.root_id,
                "group_id": r.group_id}

    return app


def make_app(broker: str, backend: str, **settings: Any) -> Hutch:
    return register_replace(make_tasks_app(broker, backend, **settings))


def __getattr__(name: str) -> Hutch:
    if name == "app":
        global app
        app = register_replace(app_from_env())
        return app
    raise AttributeError(name)
