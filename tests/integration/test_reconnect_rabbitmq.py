"""Recovery that does not slow down with each outage (issue #10, item 7).

A prefork worker consumes from this session's private RabbitMQ node; the node goes
down and comes back twice in a row. After each outage both children consume again
within 2 s of the node accepting connections (plus slack for a loaded machine), the
workers' control subscriptions hear a revocation broadcast, and the client's
completion-notice subscription wakes ``get()`` again. Before the fix the reconnect
delay kept growing across outages (0.5, 1, 2, 4, 8, 10 s, never reset), so the
second outage began with an 8 s wait.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable

import pytest

from apps.tasks import make_app
from hutch import AsyncClient
from support.processes import WorkerProc, worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

BOUND = 2.0  # seconds from "the node accepts connections" to "consuming again"
SLACK = 1.0  # a loaded two-core machine
SUBSCRIPTION_BOUND = BOUND + SLACK + 1.0  # plus a probe's own round trip
# Seconds the node stays down before it is brought back, first and second outage. A long
# first outage grew the old delay to 8 s; a short second one then showed the wait.
OUTAGES = {"stop_app": (3.0, 0.5), "kill": (1.0, 0.0)}
POLICY = {"max_retries": 200, "interval_start": 0.1, "interval_step": 0.1, "interval_max": 0.5}


def log_times(worker: WorkerProc, since: int, event: str, text: str = "") -> list[float]:
    """Wall-clock times of the worker's ``event`` log lines after line ``since``."""
    times = []
    for line in worker.lines[since:]:
        if f'"event": "{event}"' in line and text in line:
            stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
            times.append(dt.datetime.fromisoformat(stamp).timestamp())
    return times


def recovered(probes: dict[str, Callable[[], bool]], timeout: float = 30.0,
              every: float = 0.25) -> dict[str, float]:
    """Call each probe every ``every`` seconds until it has returned True once; the
    ``time.time()`` of each one's first success (missing: never within ``timeout``)."""
    deadline, times = time.monotonic() + timeout, {}
    while time.monotonic() < deadline and len(times) < len(probes):
        for name, probe in probes.items():
            if name not in times and probe():
                times[name] = time.time()
        time.sleep(every)
    return times


def consuming_again(worker: WorkerProc, since: int, children: int) -> list[float]:
    def every_child() -> list[float] | None:
        times = log_times(worker, since, "consuming")
        return times if len(times) >= children else None

    times = eventually(every_child, 30)
    assert times, "the worker never consumed again:\n" + worker.output()[-4000:]
    return times


def notice_probe(app) -> Callable[[], bool]:
    """Submits a task per call; True once a completion notice for one of them reached the
    client's existing subscription (the waiter's events are set by notices only)."""
    add, waiter, events = app.tasks["tests.add"], app.client().waiter, []

    def probe() -> bool:
        task_id = str(uuid.uuid4())
        # before submitting: no notice slips past; sent by this client, so its own key
        events.append(waiter.watch_many([task_id], own=True))
        add.apply_async((1, 2), task_id=task_id, retry=True, retry_policy=POLICY)
        return any(e.is_set() for e in events)

    return probe


def control_probe(app, worker: WorkerProc, since: int, children: int) -> Callable[[], bool]:
    """Revokes an unknown id per call; True once one broadcast reached every child's
    control subscription (each child logs it)."""
    sent: list[str] = []

    def probe() -> bool:
        sent.append(f"reconnect-probe-{uuid.uuid4()}")
        app.control.revoke(sent[-1])
        return any(len(log_times(worker, since, "revocation received", i)) >= children
                   for i in sent)

    return probe


@pytest.mark.parametrize("how", ["stop_app", "kill"])
def test_workers_consume_again_within_two_seconds_after_each_of_two_outages(
        how, private_rabbit, postgres_url, private_topology_prefix):
    url, prefix, children = private_rabbit.url, private_topology_prefix, 2
    app = make_app(url, postgres_url, topology_prefix=prefix)
    worker = WorkerProc(worker_env(url, postgres_url, prefix), pool="prefork",
                        concurrency=children).start()
    try:
        worker.wait_ready(count=children)
        assert app.tasks["tests.add"].delay(1, 1).get(timeout=30) == 2  # notices subscribed
        for outage, seconds in enumerate(OUTAGES[how], 1):
            since = len(worker.lines)
            accepted = private_rabbit.outage(how, seconds)
            lags = [round(t - accepted, 2) for t in consuming_again(worker, since, children)]
            assert max(lags) <= BOUND + SLACK, (
                f"outage {outage} ({how}): children consumed again {lags} s after the node "
                f"accepted connections; the bound is {BOUND} s")
            back = recovered({"control": control_probe(app, worker, since, children),
                              "notices": notice_probe(app)})
            delays = {name: round(back[name] - accepted, 2) if name in back else None
                      for name in ("control", "notices")}
            assert all(d is not None and d <= SUBSCRIPTION_BOUND for d in delays.values()), (
                f"outage {outage} ({how}): subscriptions back after {delays} s")
        assert worker.proc.poll() is None, worker.output()[-3000:]
    finally:
        worker.stop(timeout=60)
        app.close()


def test_async_client_notices_return_quickly_after_each_of_two_outages(
        private_rabbit, postgres_url, private_topology_prefix):
    """The AsyncClient's notice subscription (subscribing again after a drop, on the next
    node when there are several) is back within the same bound: aio-pika's robust
    connection, used before, retried only every 5 s."""
    url, prefix = private_rabbit.url, private_topology_prefix
    worker = WorkerProc(worker_env(url, postgres_url, prefix), pool="threads",
                        concurrency=2).start()

    async def notice_delays() -> list[float]:
        async with AsyncClient(broker=url, backend=postgres_url,
                               topology_prefix=prefix) as client:
            assert await (await client.submit("tests.add", 1, 1)).get(timeout=30) == 2
            delays = []
            for seconds in (0.0, 0.0):  # aio-pika's old 5 s period showed after short ones
                accepted = await asyncio.to_thread(private_rabbit.outage, "stop_app", seconds)
                delays.append(await first_async_notice(client, worker) - accepted)
            return delays

    try:
        worker.wait_ready()
        delays = asyncio.run(notice_delays())
        assert max(delays) <= BOUND + SLACK, f"notices back after {delays} s"
    finally:
        worker.stop(timeout=60)


async def first_async_notice(client: AsyncClient, worker: WorkerProc,
                             timeout: float = 30.0) -> float:
    """Submit a task every 0.25 s until a completion notice for one of them arrives
    (``_watch_many`` events are set by notices only): ``time.time()`` then. If none does,
    the failure says which side stalled: the probes' row states (SUCCESS rows mean
    the notice subscription is the one that did not come back) and the worker's log."""
    deadline, events, ids = time.monotonic() + timeout, [], []
    while time.monotonic() < deadline:
        task_id = str(uuid.uuid4())
        events.append(await client._watch_many([task_id], own=True))
        await client.submit("tests.add", 1, 2, task_id=task_id, retry_policy=POLICY)
        ids.append(task_id)
        if any(e.is_set() for e in events):
            return time.time()
        await asyncio.sleep(0.25)
    states = [await client.AsyncResult(task_id).state() for task_id in ids[:3] + ids[-3:]]
    raise AssertionError(f"no completion notice reached the async client; first and last "
                         f"probes' states {states}; worker log tail:\n{worker.output()[-4000:]}")
