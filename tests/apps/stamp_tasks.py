"""Tasks for the stamping tests (tests/unit/test_stamping.py and
tests/integration/test_stamping_rabbitmq.py): each returns what its request shows."""

from __future__ import annotations

import os
import time

from hutch import Hutch

from .tasks import app_from_env


def register(app: Hutch) -> Hutch:
    @app.task(name="stamps.seen", bind=True)
    def seen(self, *args):
        """The task's own stamps, after the results it was given (a chain's, a chord's)."""
        return [*args, {"stamps": self.request.stamps,
                        "stamped_headers": sorted(self.request.stamped_headers)}]

    @app.task(name="stamps.stamps", bind=True)
    def stamps(self, *args):
        return self.request.stamps

    @app.task(name="stamps.fail")
    def fail():
        raise ValueError("stamped failure")

    @app.task(name="stamps.wait", bind=True)
    def wait(self, path):
        """Writes its pid to ``path``, then runs until terminated (60 s at most)."""
        with open(path, "w") as out:
            out.write(str(os.getpid()))
        time.sleep(60)
        return self.request.stamps

    return app


def __getattr__(name: str) -> Hutch:
    """``hutch -A apps.stamp_tasks:env_app worker``: the shared test tasks and these,
    configured by HUTCH_* variables (built on first use, so importing this is free)."""
    if name == "env_app":
        return register(app_from_env())
    raise AttributeError(name)
