"""Worker-wide control commands (issue #13) on the real RabbitMQ and PostgreSQL, with
two prefork workers: ``pool_grow`` and ``pool_shrink`` change how many tasks run at
once, ``autoscale`` grows a busy pool and shrinks it when idle, ``heartbeat`` writes
the row at once, ``shutdown`` stops a worker warm; each answered by both workers, or
by one with a destination, and carried out once however many children heard it."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from hutch.ops.workers import list_workers
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def _processes(app, name: str) -> int | None:
    stats = (app.control.inspect([name], timeout=5).stats() or {}).get(name)
    return len(stats["pool"]["processes"]) if stats and "pool" in stats else None


def _running(app, name: str) -> int:
    return len((app.control.inspect([name], timeout=5).active() or {}).get(name) or [])


def _row(app, name: str):
    return next(r for r in list_workers(app.client().store) if r.hostname == name)


def test_pool_grow_shrink_heartbeat_and_shutdown_on_two_prefork_workers(app, env, workers):
    tag = uuid.uuid4().hex[:8]
    alpha, beta = f"alpha-{tag}@test", f"beta-{tag}@test"
    qa, qb = f"qa-{tag}", f"qb-{tag}"
    slow = {**env, "HUTCH_PREFETCH_MULTIPLIER": "1",  # a child holds one task at a time
            "HUTCH_WORKER_HEARTBEAT_INTERVAL": "3600"}  # rows written only when asked
    started = {name: workers(slow, queues=(q,), concurrency=1, extra_args=("-n", name))
               for name, q in ((alpha, qa), (beta, qb))}
    for w in started.values():
        w.wait_ready(count=1)
    sleep = app.tasks["tests.sleep"]

    # one child: the second task waits for the first
    first, second = sleep.apply_async((60,), queue=qa), sleep.apply_async((60,), queue=qa)
    assert eventually(lambda: _running(app, alpha) == 1, 20)
    assert app.AsyncResult(second.id).state == "PENDING"

    # pool_grow to every worker: both answer, each grows once (not once per child); the
    # broadcasts wait for two workers' full answers (limit=2), not for the timeout
    grown = app.control.inspect(timeout=10, limit=2).call("pool_grow", {"n": 1})
    assert grown == {alpha: {"ok": "pool will grow"}, beta: {"ok": "pool will grow"}}
    assert eventually(lambda: _running(app, alpha) == 2, 30), started[alpha].output()[-3000:]
    assert app.AsyncResult(first.id).state == "STARTED"  # the second started beside it
    assert eventually(lambda: _processes(app, beta) == 2, 20)
    assert _processes(app, alpha) == 2
    app.control.revoke([first.id, second.id], terminate=True)  # their children are replaced
    assert eventually(lambda: _processes(app, alpha) == 2 and _running(app, alpha) == 0, 30)

    # heartbeat: the rows are written at once (by each supervisor, after it answered),
    # with the new size
    before = {name: _row(app, name).last_heartbeat_at for name in (alpha, beta)}
    assert app.control.inspect(timeout=10, limit=2).call("heartbeat") == {
        alpha: {"ok": "heartbeat will be written"}, beta: {"ok": "heartbeat will be written"}}
    assert eventually(lambda: all(_row(app, name).last_heartbeat_at > before[name]
                                  for name in (alpha, beta)), 10)
    assert (_row(app, alpha).concurrency, _row(app, beta).concurrency) == (2, 2)

    # pool_shrink to every worker: both answer, each stops one child
    assert app.control.inspect(timeout=10, limit=2).call("pool_shrink", {"n": 1}) == {
        alpha: {"ok": "pool will shrink"}, beta: {"ok": "pool will shrink"}}
    assert eventually(lambda: _processes(app, alpha) == 1 and _processes(app, beta) == 1, 20)

    # SIGTTIN grows by one too (Celery's signal); pool_shrink to one worker only
    started[alpha].signal(signal.SIGTTIN)
    assert eventually(lambda: _processes(app, alpha) == 2, 20)
    shrunk = app.control.inspect([alpha], timeout=10).call("pool_shrink", {"n": 1})
    assert shrunk == {alpha: {"ok": "pool will shrink"}}
    assert eventually(lambda: _processes(app, alpha) == 1, 20)
    assert _processes(app, beta) == 1
    assert eventually(lambda: started[alpha].output().count("the pool shrank") == 2, 20)
    tasks = [sleep.apply_async((3,), queue=qa) for _ in range(2)]
    assert eventually(lambda: _running(app, alpha) == 1, 20)
    assert sum(app.AsyncResult(t.id).state == "PENDING" for t in tasks) == 1  # one child
    assert [t.get(timeout=30) for t in tasks] == [3, 3]

    # a shrink below one child is refused by every child, nothing changes
    refused = app.control.inspect([alpha], timeout=10).call("pool_shrink", {"n": 1})
    assert "keeps at least one" in refused[alpha]["error"]
    assert app.control.inspect([alpha], timeout=10).call("pool_grow", {"n": "many"}) == {
        alpha: {"error": "ValueError: 'n' must be a whole number of at least 1, not 'many'"}}
    assert _processes(app, alpha) == 1

    # autoscale to every worker (bounds that keep both at one child): both answer
    assert app.control.inspect(timeout=10, limit=2).call("autoscale", {"max": 1, "min": 1}) == {
        alpha: {"ok": "autoscale now max=1 min=1"}, beta: {"ok": "autoscale now max=1 min=1"}}

    # shutdown: warm, to one worker; the other goes on
    assert app.control.inspect([alpha], timeout=10).call("shutdown") == {
        alpha: {"ok": "shutting down (warm: running tasks finish first)"}}
    assert started[alpha].proc.wait(30) == 0
    assert app.control.inspect(timeout=2).ping() == {beta: {"ok": "pong"}}
    assert sleep.apply_async((0,), queue=qb).get(timeout=30) == 0


def test_autoscale_follows_the_load(app, env, workers):
    tag = uuid.uuid4().hex[:8]
    name, queue = f"scaled-{tag}@test", f"qs-{tag}"
    w = workers({**env, "HUTCH_PREFETCH_MULTIPLIER": "1", "HUTCH_AUTOSCALE_KEEPALIVE": "1"},
                queues=(queue,), concurrency=1, extra_args=("-n", name, "--autoscale", "2,1"))
    w.wait_ready(count=1)
    assert _processes(app, name) == 1  # starts with MIN children

    answer = app.control.inspect([name], timeout=10).call("autoscale", {"max": 3, "min": 1})
    assert answer == {name: {"ok": "autoscale now max=3 min=1"}}
    tasks = [app.tasks["tests.sleep"].apply_async((8,), queue=queue) for _ in range(3)]
    assert eventually(lambda: _running(app, name) == 3, 40), w.output()[-3000:]
    assert [t.get(timeout=60) for t in tasks] == [8, 8, 8]
    assert eventually(lambda: _processes(app, name) == 1, 30), w.output()[-3000:]
    assert w.stop() == 0


def test_a_replacement_child_makes_the_adjustments_again(app, env, workers):
    """add_consumer and rate_limit, then the only child dies (SIGKILL): the child that
    replaces it consumes the added queue too and keeps the new limit, as Celery's
    children share their main process's consumer; the row lists the queue."""
    tag = uuid.uuid4().hex[:8]
    name, first, added = f"adjusted-{tag}@test", f"q1-{tag}", f"q2-{tag}"
    w = workers({**env, "HUTCH_WORKER_HEARTBEAT_INTERVAL": "0.5"}, queues=(first,),
                concurrency=1, extra_args=("-n", name))
    w.wait_ready(count=1)
    control = app.control
    assert control.add_consumer(added, destination=[name], reply=True, timeout=10) == [
        {name: {"ok": f"add consumer {added}"}}]
    assert control.rate_limit("tests.add", "100/m", destination=[name], reply=True,
                              timeout=10) == [{name: {"ok": "new rate limit set successfully"}}]
    assert eventually(lambda: list(_row(app, name).queues) == [first, added], 10)
    (child,) = app.control.inspect([name], timeout=10).stats()[name]["pool"]["processes"]
    os.kill(child, signal.SIGKILL)
    assert eventually(lambda: w.output().count('"worker ready"') == 2, 30), w.output()[-3000:]
    replayed = [line for line in w.lines if "adjustment made again" in line]
    assert ['"add_consumer"' in replayed[0], '"rate_limit"' in replayed[1]] == [True, True]
    (again,) = app.control.inspect([name], timeout=10).stats()[name]["pool"]["processes"]
    assert again != child
    assert [q["name"] for q in app.control.inspect([name], 10).active_queues()[name]] == [
        first, added]
    assert app.tasks["tests.add"].apply_async((2, 2), queue=added).get(timeout=30) == 4
    assert w.stop() == 0
