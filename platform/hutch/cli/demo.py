"""``hutch demo``: the seed's walkthrough on the embedded default (memory:// + SQLite).

It builds its own app inside :func:`run_demo` (nothing happens on import), runs
a thread-pool worker in this process, and prints every call with its result.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from ..app import Hutch
from ..client.handles import AsyncResult
from ..client.sync import Client
from ..config import normalize_backend_url
from ..logs import configure as configure_logging
from ..tasks import Task
from ..worker.process import WorkerProcess
from ..worker.wiring import Wiring
from ..workflows.canvas import chain, chord, group


def build_demo_app(backend: str) -> Hutch:
    app = Hutch("tasks", broker="memory://demo", backend=backend,
                task_default_queue="celery", worker_concurrency=4)
    app.conf.timezone = "Asia/Shanghai"

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="tasks.div")
    def div(x: float, y: float) -> float:
        return x / y

    @app.task(name="tasks.echo")
    def echo(value: Any) -> Any:
        return value

    @app.task(name="tasks.xsum")
    def xsum(numbers: list[int]) -> int:
        return sum(numbers)

    @app.task(bind=True, name="tasks.error_handler")
    def error_handler(self: Task, uuid: str) -> str:
        result = self.app.AsyncResult(uuid)
        return f"task {uuid} raised {result.result!r}"

    return app


def run_demo(say: Callable[[str], None] = print, backend: str | None = None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hutch-demo-"))
    backend = backend or f"sqlite:///{workdir / 'results.sqlite'}"
    app = build_demo_app(backend)
    configure_logging("CRITICAL", "console")
    worker = WorkerProcess(Wiring(app.conf, app.tasks, app.main), ["celery", "priority.high"],
                           pool="threads", concurrency=4)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    worker.wait_started(30)
    say(f"hutch demo: broker memory://demo, results in {backend}")
    say("worker: -Q celery,priority.high -P threads -c 4\n")
    try:
        _walkthrough(app, say)
        _sql_summary(backend, say)
    finally:
        worker.stop()
        thread.join(30)
        app.close()


def _walkthrough(app: Hutch, say: Callable[[str], None]) -> None:
    add, div, echo = app.tasks["tasks.add"], app.tasks["tasks.div"], app.tasks["tasks.echo"]
    handler = app.tasks["tasks.error_handler"]

    r = add.delay(4, 4)
    say(f">>> r = add.delay(4, 4)              # id {r.id}")
    say(f">>> r.get(timeout=10)               -> {r.get(timeout=10)!r}")
    say(f">>> r.state, r.ready()              -> {r.state!r}, {r.ready()!r}")

    r = add.apply_async((2, 2), link=add.s(16))
    r.get(timeout=10)
    child = _first_child(r)
    say(">>> add.apply_async((2, 2), link=add.s(16))")
    say(f"    parent -> {r.get()!r}, callback child -> {child.get(timeout=10)!r}")

    r = div.apply_async((1, 0), link_error=handler.s())
    say(">>> div.apply_async((1, 0), link_error=error_handler.s())")
    say(f"    r.get(propagate=False) -> {r.get(timeout=10, propagate=False)!r}")
    say(f"    errback -> {_first_child(r).get(timeout=10)!r}")

    value = {"when": dt.datetime(2026, 12, 1, 7, 30, tzinfo=dt.timezone.utc),
             "amount": Decimal("12.50"), "pair": (1, 2), "tags": {"a"}}
    for serializer in ("json", "msgpack", "yaml"):
        r = echo.apply_async((value,), serializer=serializer, compression="zlib")
        say(f">>> echo.apply_async((value,), serializer={serializer!r}, compression='zlib')")
        say(f"    -> {r.get(timeout=10)!r}")

    r = add.apply_async((10, 10), queue="priority.high")
    say(">>> add.apply_async((10, 10), queue='priority.high')")
    answer = r.get(timeout=10)
    record = r.client.store.get(r.id)
    assert record is not None  # the worker wrote it before the result was ready
    say(f"    -> {answer!r}  (ran from route {record.queue})")

    started = time.monotonic()
    r = add.apply_async((3, 3), countdown=1)
    say(">>> add.apply_async((3, 3), countdown=1)   # waits in the broker, not in the worker")
    say(f"    -> {r.get(timeout=10)!r} after {time.monotonic() - started:.1f} s")

    _workflows(app, say)

    client = Client(conf=app.conf)
    r = client.submit("tasks.add", 2, 2, queue="priority.high")
    say(">>> Client(...).submit('tasks.add', 2, 2, queue='priority.high')")
    say(f"    -> {r.get(timeout=10)!r}")
    r = client.submit("tasks.nosuchtask", 1)
    say(">>> client.submit('tasks.nosuchtask', 1)")
    say(f"    -> {r.get(timeout=10, propagate=False)!r}  (dead-lettered, FAILURE row)")
    client.close()


def _workflows(app: Hutch, say: Callable[[str], None]) -> None:
    """The seed's canvas examples, each printed with what it returned."""
    add, mul, xsum = app.tasks["tasks.add"], app.tasks["tasks.mul"], app.tasks["tasks.xsum"]
    examples: list[tuple[str, Callable[[], object]]] = [
        ("group(add.s(i, i) for i in range(10))().get(timeout=10)",
         lambda: group(add.s(i, i) for i in range(10))().get(timeout=10)),
        ("chain(add.s(2, 2), add.s(4), add.s(8))().get()",
         lambda: chain(add.s(2, 2), add.s(4), add.s(8))().get(timeout=10)),
        ("(add.s(4, 16) | mul.s(2) | (add.s(4) | mul.s(8)))().get()",
         lambda: (add.s(4, 16) | mul.s(2) | (add.s(4) | mul.s(8)))().get(timeout=10)),
        ("chord((add.s(i, i) for i in range(10)), xsum.s())().get()",
         lambda: chord((add.s(i, i) for i in range(10)), xsum.s())().get(timeout=10)),
        ("~xsum.map([range(10), range(100)])", lambda: ~xsum.map([range(10), range(100)])),
        ("~add.starmap(zip(range(10), range(10)))",
         lambda: ~add.starmap(zip(range(10), range(10), strict=True))),
        ("add.chunks(zip(range(100), range(100)), 10)().get()",
         lambda: add.chunks(zip(range(100), range(100), strict=True), 10)().get(timeout=10)),
    ]
    for text_, run in examples:
        value = repr(run())
        say(f">>> {text_}")
        say(f"    -> {value if len(value) <= 70 else value[:67] + '...'}")


def _first_child(result: AsyncResult) -> AsyncResult:
    for _ in range(100):
        children = result.children
        if children:
            return children[0]
        threading.Event().wait(0.05)
    raise RuntimeError(f"no child recorded for {result.id}")


def _sql_summary(backend: str, say: Callable[[str], None]) -> None:
    engine = create_engine(normalize_backend_url(backend))
    query = "SELECT state, count(*) FROM hutch_tasks GROUP BY state ORDER BY state"
    with engine.connect() as conn:
        rows = conn.execute(text(query)).all()
    engine.dispose()
    say(f"\nSQL> {query};")
    for state, count in rows:
        say(f"     {state:<8} {count}")
