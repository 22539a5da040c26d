"""Tasks that return signatures and result handles, or take them as arguments
(issue #15's results as values), on top of the shared test tasks.

``hutch -A apps.result_tasks worker`` runs them, configured by HUTCH_* variables.
"""

from __future__ import annotations

from apps.tasks import register as register_shared
from hutch import Hutch, group


def register(app: Hutch) -> Hutch:
    register_shared(app)
    add = app.tasks["tests.add"]

    @app.task(name="results.make_sig")
    def make_sig(x):
        """Returns a signature (frozen, so it has an id) for the caller to send."""
        sig = add.s(x, 1)
        sig.freeze()
        return sig

    @app.task(name="results.make_sigs")
    def make_sigs(n):
        """Returns a list of signatures: plain, immutable, a chain and a group."""
        return [add.s(n, 1), add.si(n, 2), add.s(n, 3) | add.s(4),
                group(add.s(i, i) for i in range(n))]

    @app.task(name="results.send_child")
    def send_child(x):
        """Sends a task and returns its handle: stored as the child's id."""
        return add.delay(x, x)

    @app.task(name="results.send_group")
    def send_group(n):
        """Sends a group and returns its GroupResult: stored as the group's id."""
        return group(add.s(i, i) for i in range(n)).delay()

    @app.task(name="results.spawn_many")
    def spawn_many(n):
        """Sends ``n`` children (for collect()); returns n."""
        for i in range(n):
            add.delay(i, 100)
        return n

    @app.task(name="results.describe")
    def describe(value):
        """What an argument arrived as: its type name and the value."""
        return [type(value).__name__, value]

    return app


def make_app(broker: str, backend: str, **settings) -> Hutch:
    return register(Hutch("tests", broker=broker, backend=backend, **settings))


def __getattr__(name: str) -> Hutch:
    """``-A apps.result_tasks`` asks for ``app``: made then, from HUTCH_* variables, so
    importing this module (as the unit tests do) makes no app current."""
    if name != "app":
        raise AttributeError(name)
    return register(Hutch("tests"))
