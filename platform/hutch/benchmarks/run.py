"""Run every scenario in one go on one RabbitMQ and print the figures.

Scenarios (N no-op tasks each):
- raw: the raw pika pipeline of :mod:`hutch.benchmarks.raw`;
- submit: ``client.submit()`` from one thread, and from 8 threads sharing a client
  (each call waits for its own confirm, so threads share the confirm window);
- end to end: N tasks published in batches while a ``-P prefork -c 2`` worker
  subprocess runs them; the clock stops when the last result row is committed; on
  PostgreSQL also the bytes of WAL the server wrote meanwhile, a task;
- round trip: one ``delay().get()`` at a time, p50/p99 latency; on PostgreSQL again on
  a worker with ``worker_claim_synchronous_commit`` off;
- delayed: N tasks with random countdowns of 1-10 s through the classic delay ladder,
  then N more through the quorum one (``delay_queue_type=quorum``):
  how many ran early (must be none) and the lateness p50/p99/max;
- chord: one chord of 5,000 no-op header tasks against 5,000 plain tasks, time
  until the body's (and the last plain task's) result is stored (benchmarks/chord.py);
- events: end to end with task events off (``--without-events``, no task-sent;
  first and last), on with nobody listening, and on with a live reader bound
  (``hutch events``' receiver), to show what they cost;
- delay loop: ``client.submit("bench.noop", i, queue="bench")`` called N times in a
  loop (PENDING rows, task-sent events and confirms as the defaults say) from 1 and
  from 8 threads while the ``-P prefork -c 2`` worker runs them, as an application
  calls ``delay()``: calls/s, and tasks/s end to end (until the last SUCCESS row);
  printed beside the raw pipeline of the same run (measured for it if not asked for);
  then from 1 thread with ``ignore_result=True`` (confirms on, no row written: the
  peers' loop without a result backend): calls/s; then from 1 thread with
  ``broker_confirm_wait=False`` (``submit()`` returns before the confirm): calls/s,
  submits/s until the last confirm, and tasks/s end to end;
- drain: N tasks published in batches with no worker running, then a ``-P prefork -c 2``
  worker started; tasks/s from its start to the last SUCCESS row (beside raw);
- async loop: the delay loop from an asyncio app, ``await AsyncClient.submit(...)`` in
  one coroutine, then in 8 concurrent ones, while the worker runs (beside raw); then
  from 1 coroutine with ``broker_confirm_wait=False``: calls/s, submits/s until the
  last confirm, and tasks/s end to end;
- memory: max(N, 100,000) tasks through a ``-P prefork -c 2`` worker, then a ``-P threads
  -c 8`` one, in ten batches (10,000 tasks each by default); the RSS of the worker and of
  each child after each batch's SUCCESS rows, and its growth from the 20% mark to the end
  (benchmarks/memory.py);
- web: N rows COPYed into ``hutch_tasks`` of a database of its own on the same server
  (PostgreSQL only), then p50/p95 of each read of the dashboard's task list and stats
  (benchmarks/web.py); run last.
``hutch bench --only delayed`` (repeatable) runs a subset.
All figures use publisher confirms and results committed in the backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from sqlalchemy import create_engine, text

from ..client.aio import AsyncClient
from ..client.sync import Client
from ..config import Settings, normalize_backend_url
from ..ops.events import EventReceiver
from ..results import migrate
from .chord import CHORD_SIZE, bench_chord
from .memory import MEMORY_TASKS, bench_memory, report
from .raw import confirm_each, raw_pipeline
from .web import bench_web

Say = Callable[[str], None]


def _settings(broker: str, backend: str, prefix: str) -> Settings:
    conf = Settings()
    conf.update(broker_url=broker, result_backend=backend, topology_prefix=prefix,
                task_default_queue="bench")
    return conf


def _process_env(broker: str, backend: str, prefix: str,
                 settings: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process the bench starts: its HUTCH_* settings alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
    env.update(HUTCH_BROKER_URL=broker, HUTCH_BACKEND_URL=backend, HUTCH_TOPOLOGY_PREFIX=prefix,
               HUTCH_LOG_LEVEL="WARNING", HUTCH_LOG_FORMAT="json", **(settings or {}))
    return env


def _start_worker(broker: str, backend: str, prefix: str, pool: str,
                  concurrency: int, *extra: str,
                  settings: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``settings``: HUTCH_* variables for this worker beyond the bench's own."""
    env = _process_env(broker, backend, prefix, settings)
    return subprocess.Popen(
        [sys.executable, "-m", "hutch", "-A", "hutch.benchmarks.tasks", "worker", "-Q", "bench",
         "-P", pool, "-c", str(concurrency), *extra], env=env)


def _wait_consumers(client: Client, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.broker.queue_depths(["bench"])["bench"][1] >= count:
            return
        time.sleep(0.05)
    raise RuntimeError("benchmark worker did not start consuming")


def bench_submit(client: Client, count: int, threads: int) -> float:
    per_thread = max(1, count // threads)

    def work(_: int) -> None:
        for i in range(per_thread):
            client.submit("bench.noop", i, ignore_result=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return per_thread * threads / (time.perf_counter() - started)


def bench_delay_loop(client: Client, count: int, threads: int) -> tuple[float, float]:
    """(submit calls/s, tasks/s end to end): ``threads`` threads each call ``submit()``
    in a loop, one call at a time, while the worker consumes; the second clock stops
    when the last SUCCESS row is committed."""
    per_thread = max(1, count // threads)
    total = per_thread * threads
    before = client.store.count("SUCCESS")

    def work(_: int) -> None:
        for i in range(per_thread):
            client.submit("bench.noop", i, queue="bench")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    submitted = time.perf_counter() - started
    _wait_successes(client, before + total)
    return total / submitted, total / (time.perf_counter() - started)


def bench_delay_loop_no_results(client: Client, count: int) -> float:
    """Calls/s of one thread calling ``submit(..., ignore_result=True)`` in a loop while
    the worker consumes: confirms on, but no PENDING row, claim or outcome written,
    which is what Celery's and Dramatiq's loops with confirms and no result backend do.
    Waits for the queue to empty, so the next scenario starts with nothing queued."""
    started = time.perf_counter()
    for i in range(count):
        client.submit("bench.noop", i, queue="bench", ignore_result=True)
    calls = count / (time.perf_counter() - started)
    _drain(client)
    return calls


LISTENERS = 4
"""Other client processes listening beside the listened delay() loop (say, the
processes of a web application, each waiting on tasks of its own)."""


def bench_delay_loop_listened(client: Client, count: int) -> tuple[float, float]:
    """(calls/s of one thread's delay() loop while LISTENERS other client processes are
    subscribed to their own completion notices; the CPU in microseconds each of them
    used per task of the loop, median of the LISTENERS: what other clients' tasks cost
    a listening client)."""
    conf = client.conf
    env = _process_env(conf.broker_url, conf.result_backend, conf.topology_prefix)
    listeners = [subprocess.Popen([sys.executable, "-m", "hutch.benchmarks.listener"], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                 for _ in range(LISTENERS)]
    try:
        for listener in listeners:
            _answer(listener, "ready")
        calls, _ = bench_delay_loop(client, count, 1)
        used = [float(_answer(listener, "report")) for listener in listeners]
        return calls, statistics.median(used) / count * 1e6
    finally:
        for listener in listeners:
            listener.kill()
            listener.wait(10)


def _answer(listener: subprocess.Popen[bytes], request: str) -> str:
    """Its next line (after sending ``request``, unless it is the first line it prints);
    RuntimeError if it ended instead."""
    if request != "ready":
        assert listener.stdin is not None
        listener.stdin.write(f"{request}\n".encode())
        listener.stdin.flush()
    assert listener.stdout is not None
    line = listener.stdout.readline().decode().strip()
    if not line:
        raise RuntimeError(f"a listening client exited (code {listener.wait(10)}) before "
                           f"answering {request!r}")
    return line


def bench_delay_loop_later(client: Client, count: int) -> tuple[float, float, float]:
    """(calls/s, submits/s until every confirm arrived, tasks/s end to end) of one
    thread calling ``submit()`` on a client with ``broker_confirm_wait`` off."""
    before = client.store.count("SUCCESS")
    client.submit("bench.noop", -1, queue="bench").confirmed(30)  # connect off the clock
    started = time.perf_counter()
    for i in range(count):
        client.submit("bench.noop", i, queue="bench")
    called = time.perf_counter() - started
    client.flush(300)
    confirmed = time.perf_counter() - started
    _wait_successes(client, before + count + 1)
    return count / called, count / confirmed, count / (time.perf_counter() - started)


def bench_async_loop(client: Client, count: int, coroutines: int) -> tuple[float, float]:
    """(submit calls/s, tasks/s end to end) of ``coroutines`` coroutines each awaiting
    ``AsyncClient.submit()`` in a loop on one event loop while the worker consumes."""
    per_coroutine = max(1, count // coroutines)
    total = per_coroutine * coroutines
    before = client.store.count("SUCCESS")

    async def submit_all() -> float:
        async with AsyncClient(conf=client.conf) as aio:
            async def work() -> None:
                for i in range(per_coroutine):
                    await aio.submit("bench.noop", i, queue="bench")

            await aio.submit("bench.noop", -1, queue="bench")  # connect outside the clock
            begun = time.perf_counter()
            await asyncio.gather(*(work() for _ in range(coroutines)))
            return begun

    begun = asyncio.run(submit_all())
    submitted = time.perf_counter() - begun
    _wait_successes(client, before + total + 1)
    return total / submitted, total / (time.perf_counter() - begun)


def bench_async_loop_later(client: Client, count: int) -> tuple[float, float, float]:
    """(calls/s, submits/s until every confirm arrived, tasks/s end to end) of one
    coroutine awaiting ``AsyncClient.submit()`` with ``broker_confirm_wait`` off."""
    before = client.store.count("SUCCESS")
    conf = dataclasses.replace(client.conf, broker_confirm_wait=False)

    async def submit_all() -> tuple[float, float, float]:
        async with AsyncClient(conf=conf) as aio:
            first = await aio.submit("bench.noop", -1, queue="bench")
            await first.confirmed(30)  # connect off the clock
            begun = time.perf_counter()
            for i in range(count):
                await aio.submit("bench.noop", i, queue="bench")
            called = time.perf_counter()
            await aio.flush(300)
            return begun, called, time.perf_counter()

    begun, called, confirmed = asyncio.run(submit_all())
    _wait_successes(client, before + count + 1)
    return (count / (called - begun), count / (confirmed - begun),
            count / (time.perf_counter() - begun))


def bench_drain(client: Client, count: int, start: Callable[[], subprocess.Popen[bytes]],
                batch: int = 500) -> tuple[float, float]:
    """Tasks/s of a worker started on a queue pre-filled with N tasks until the last
    SUCCESS row: from its start (start-up included, as a restart on a backlog sees it),
    and from when its first consumer shows on the queue (polled every 50 ms)."""
    before = client.store.count("SUCCESS")
    messages = [client.message("bench.noop", (i,), queue="bench") for i in range(count)]
    for i in range(0, count, batch):
        client.send(messages[i:i + batch])
    started = time.perf_counter()
    worker = start()
    try:
        _wait_consumers(client, 1)
        consuming = time.perf_counter()
        _wait_successes(client, before + count)
        done = time.perf_counter()
        return count / (done - started), count / (done - consuming)
    finally:
        worker.terminate()
        worker.wait(60)


def _wait_successes(client: Client, total: int, timeout: float = 300) -> None:
    """Until ``total`` SUCCESS rows exist; a run that does not get there stops with an
    error rather than report a figure for tasks that never finished."""
    deadline = time.monotonic() + timeout
    while (done := client.store.count("SUCCESS")) < total:
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{done:,} of {total:,} tasks succeeded in {timeout:.0f} s")
        time.sleep(0.01)


def _wal_position(client: Client) -> int | None:
    """PostgreSQL's WAL position in bytes (the whole server's), None on SQLite."""
    if client.store.dialect != "postgresql":
        return None
    return int(client.store.read_now("read the WAL position", lambda conn: conn.execute(
        text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")).scalar_one()))


def bench_end_to_end(client: Client, count: int, batch: int = 500) -> tuple[float, float]:
    """(tasks/s end to end, submit/s of the batched producer)."""
    messages = [client.message("bench.noop", (i,), queue="bench") for i in range(count)]
    ids = [m.id for m in messages]
    store = client.store
    before = store.count("SUCCESS")
    started = time.perf_counter()
    for i in range(0, count, batch):
        client.send(messages[i:i + batch])
    submitted = time.perf_counter() - started
    _wait_successes(client, before + count)
    elapsed = time.perf_counter() - started
    if len(store.get_many(ids[-10:])) != 10:
        raise RuntimeError("the last tasks published have no rows")
    return count / elapsed, count / submitted


DELAYED_COUNTDOWNS = (1.0, 10.0)
"""The delayed scenario's countdowns are drawn uniformly from this range (seconds)."""


def bench_delayed(client: Client, count: int, batch: int = 500) -> dict[str, float]:
    """N tasks with random countdowns of 1-10 s: how late they start (never early).

    Each batch's etas are taken just before it is sent, as ``countdown=`` does, so the
    producer's own pace is not counted as lateness; lateness is the row's ``started_at``
    minus the eta the message carried. Completion is polled with a count, not by reading
    every row, so the bench does not load the machine it is measuring.
    """
    rand = random.Random(7)
    before = client.store.count("SUCCESS")
    etas: dict[str, dt.datetime] = {}
    started = time.perf_counter()
    for i in range(0, count, batch):
        now = dt.datetime.now(dt.timezone.utc)
        messages = [client.message("bench.noop", (j,), queue="bench",
                                   eta=now + dt.timedelta(seconds=rand.uniform(*DELAYED_COUNTDOWNS)))
                    for j in range(i, min(count, i + batch))]
        client.send(messages)
        etas.update((m.id, m.eta) for m in messages if m.eta is not None)
    submit_rate = count / (time.perf_counter() - started)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and client.store.count("SUCCESS") - before < count:
        time.sleep(0.5)
    rows = client.store.get_many(list(etas))
    lateness = sorted((r.started_at - etas[r.task_id]).total_seconds()
                      for r in rows.values() if r.state == "SUCCESS" and r.started_at)
    return {"delayed_done": float(len(lateness)),
            "delayed_early": float(sum(x < 0 for x in lateness)),
            "delayed_submit_per_s": submit_rate,
            "delayed_lateness_p50_s": statistics.median(lateness),
            "delayed_lateness_p99_s": statistics.quantiles(lateness, n=100)[98],
            "delayed_lateness_max_s": lateness[-1]}


def bench_round_trip(client: Client, count: int) -> list[float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        client.submit("bench.noop", i).get(timeout=30)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def bench_events(client: Client, count: int, start: Callable[[str], subprocess.Popen[bytes]],
                 workers: int, say: Say) -> dict[str, float]:
    """End to end with task events off, on with nobody listening (RabbitMQ drops them at
    the exchange), and on with a reader bound, the receiver ``hutch events`` uses,
    running in this process on the same cores. Off runs first and last and counts as
    their mean: each run adds N rows, and a larger table is slower to write to."""
    first, _ = _end_to_end_events(client, count, start, workers, False, False)
    unread, _ = _end_to_end_events(client, count, start, workers, True, False)
    read, received = _end_to_end_events(client, count, start, workers, True, True)
    last, _ = _end_to_end_events(client, count, start, workers, False, False)
    off = (first + last) / 2
    say(f"end to end, task events off: {off:,.0f} tasks/s (mean of {first:,.0f} before and "
        f"{last:,.0f} after); on, no reader: {unread:,.0f} "
        f"tasks/s ({unread / off - 1:+.0%}); on, one reader: {read:,.0f} tasks/s "
        f"({read / off - 1:+.0%}; it had {received:,} events when the last row committed)")
    return {"end_to_end_events_off_per_s": off, "end_to_end_events_unread_per_s": unread,
            "end_to_end_events_read_per_s": read, "events_received": float(received)}


def _end_to_end_events(client: Client, count: int,
                       start: Callable[[str], subprocess.Popen[bytes]], workers: int,
                       on: bool, read: bool) -> tuple[float, int]:
    """(tasks/s end to end, events the reader had by then) with events ``on`` or off."""
    received: list[object] = []
    client.conf.task_send_sent_event = on
    reader = EventReceiver(client.broker, on_event=received.append)
    worker = start("--events" if on else "--without-events")
    try:
        _wait_consumers(client, workers)
        if read:
            reader.start()
        rate, _ = bench_end_to_end(client, count)
        return rate, len(received)
    finally:
        reader.close()
        worker.terminate()
        worker.wait(60)
        client.conf.task_send_sent_event = True


SCENARIOS = ("raw", "submit", "end-to-end", "round-trip", "delayed", "chord", "events", "web",
             "delay-loop", "drain", "async-loop", "memory")
BESIDE_RAW = ("raw", "delay-loop", "drain", "async-loop")


def run_bench(broker: str, backend: str, count: int, pool: str, concurrency: int,
              say: Say = print, scenarios: Collection[str] = SCENARIOS) -> dict[str, float]:
    prefix = f"hutchbench.{uuid.uuid4().hex[:8]}"
    conf = _settings(broker, backend, prefix)
    client = Client(conf=conf)
    figures: dict[str, float] = {}
    say(f"hutch bench: N={count}, worker -P {pool} -c {concurrency}, "
        f"broker {conf.broker_url.split('@')[-1]}, backend {backend.split('://')[0]}, "
        f"load average {os.getloadavg()[0]:.2f}")
    try:
        if set(scenarios) & set(BESIDE_RAW):
            figures["raw_pipeline_per_s"] = raw_pipeline(broker, f"{prefix}.raw", count)
            say(f"raw pika pipeline (confirmed publish + manual-ack consume): "
                f"{figures['raw_pipeline_per_s']:,.0f} msg/s")
        client.broker.declare(["bench"])
        if "drain" in scenarios:  # first: the submit scenario leaves tasks in the queue
            _drain_backlog(client, count, lambda: _start_worker(
                broker, backend, prefix, pool, concurrency), figures, say)
        if "submit" in scenarios:
            figures["submit_1_thread_per_s"] = bench_submit(client, min(count, 3000), 1)
            figures["submit_8_threads_per_s"] = bench_submit(client, count, 8)
            say(f"hutch submit(): {figures['submit_1_thread_per_s']:,.0f}/s from 1 thread, "
                f"{figures['submit_8_threads_per_s']:,.0f}/s from 8 threads")
        if scenarios and set(scenarios) - {"raw", "submit", "events", "drain"}:
            _with_worker(client, broker, backend, prefix, pool, concurrency, count, scenarios,
                         figures, say)
        if "round-trip" in scenarios and backend.startswith("postgresql"):
            _round_trip_quick_claims(client, lambda: _start_worker(
                broker, backend, prefix, pool, concurrency,
                settings={"HUTCH_CLAIM_SYNCHRONOUS_COMMIT": "false"}),
                concurrency if pool == "prefork" else 1, figures, say)
        if "events" in scenarios:
            figures.update(bench_events(
                client, count, lambda *extra: _start_worker(
                    broker, backend, prefix, pool, concurrency, *extra),
                concurrency if pool == "prefork" else 1, say))
        if "memory" in scenarios:
            _memory(client, broker, backend, prefix, max(count, MEMORY_TASKS), figures, say)
        if "web" in scenarios:
            _web(backend, count, figures, say)
        if "raw_pipeline_per_s" in figures and "end_to_end_per_s" in figures:
            figures["ratio_to_raw"] = figures["end_to_end_per_s"] / figures["raw_pipeline_per_s"]
            say(f"hutch end to end / raw pipeline: {figures['ratio_to_raw']:.0%}")
    finally:
        client.broker.delete_topology(["bench"], shared=True)
        client.close()
    return figures


def _with_worker(client: Client, broker: str, backend: str, prefix: str, pool: str,
                 concurrency: int, count: int, scenarios: Collection[str],
                 figures: dict[str, float], say: Say) -> None:
    """The scenarios that need a worker subprocess running."""
    worker = _start_worker(broker, backend, prefix, pool, concurrency)
    try:
        _wait_consumers(client, concurrency if pool == "prefork" else 1)
        _drain(client)
        if "end-to-end" in scenarios:
            _end_to_end(client, count, figures, say)
        if "round-trip" in scenarios:
            samples = bench_round_trip(client, 300)
            figures["round_trip_p50_ms"] = statistics.median(samples)
            figures["round_trip_p99_ms"] = statistics.quantiles(samples, n=100)[98]
            say(f"round trip delay().get(): p50 {figures['round_trip_p50_ms']:.2f} ms, "
                f"p99 {figures['round_trip_p99_ms']:.2f} ms")
        if "delayed" in scenarios:
            _delayed(client, count, figures, say)
        if "chord" in scenarios:
            figures.update(bench_chord(client, CHORD_SIZE, say))
        if "delay-loop" in scenarios:
            _delay_loop(client, count, figures, say)
        if "async-loop" in scenarios:
            _async_loop(client, count, figures, say)
    finally:
        worker.terminate()
        worker.wait(60)


def _end_to_end(client: Client, count: int, figures: dict[str, float], say: Say) -> None:
    """The end to end scenario; on PostgreSQL with the WAL it wrote a task (the
    server's whole WAL over the scenario: run it on a server nothing else writes to)."""
    wal_before = _wal_position(client)
    e2e, batched_submit = bench_end_to_end(client, count)
    wal_after = _wal_position(client)
    figures["end_to_end_per_s"], figures["submit_batched_per_s"] = e2e, batched_submit
    wal = ""
    if wal_before is not None and wal_after is not None:
        per_task = figures["end_to_end_wal_bytes_per_task"] = (wal_after - wal_before) / count
        wal = f", {per_task:,.0f} bytes of PostgreSQL WAL a task"
    say(f"hutch end to end (published in batches of 500, results committed): "
        f"{e2e:,.0f} tasks/s  (producer {batched_submit:,.0f}/s{wal})")


def _round_trip_quick_claims(client: Client, start: Callable[[], subprocess.Popen[bytes]],
                             consumers: int, figures: dict[str, float], say: Say) -> None:
    """The round trip again, on a worker of its own with
    ``worker_claim_synchronous_commit`` off (PostgreSQL only)."""
    worker = start()
    try:
        _wait_consumers(client, consumers)
        samples = bench_round_trip(client, 300)
    finally:
        worker.terminate()
        worker.wait(60)
    figures["round_trip_quick_claims_p50_ms"] = statistics.median(samples)
    figures["round_trip_quick_claims_p99_ms"] = statistics.quantiles(samples, n=100)[98]
    say(f"round trip delay().get(), worker_claim_synchronous_commit=False: p50 "
        f"{figures['round_trip_quick_claims_p50_ms']:.2f} ms, p99 "
        f"{figures['round_trip_quick_claims_p99_ms']:.2f} ms")


def _delayed(client: Client, count: int, figures: dict[str, float], say: Say) -> None:
    """The delayed scenario through the classic ladder, then through the quorum one
    (``delay_queue_type=quorum``, replicated for clusters), one after the other."""
    for ladder_type in ("classic", "quorum"):
        conf = dataclasses.replace(client.conf, delay_queue_type=ladder_type)
        with Client(conf=conf) as each:
            found = bench_delayed(each, count)
        key = "delayed" if ladder_type == "classic" else "delayed_quorum"
        figures.update({name.replace("delayed", key, 1): value for name, value in found.items()})
        say(f"delayed, {ladder_type} ladder (random countdown 1-10 s, sent at "
            f"{found['delayed_submit_per_s']:,.0f}/s): {found['delayed_done']:,.0f} of "
            f"{count:,} ran, {found['delayed_early']:.0f} early, lateness p50 "
            f"{found['delayed_lateness_p50_s']:.2f} s, p99 "
            f"{found['delayed_lateness_p99_s']:.2f} s, max "
            f"{found['delayed_lateness_max_s']:.2f} s")


def _delay_loop(client: Client, count: int, figures: dict[str, float], say: Say) -> None:
    """The delay loop from 1 and 8 threads, each beside the raw pipeline of this run;
    then from 1 thread of a client that does not wait for each confirm."""
    _confirm_each_ceiling(client, min(count, 3000), figures, say)
    _loops(figures, say, "delay() loop", "delay_loop", "thread",
           lambda threads: bench_delay_loop(client, count, threads))
    calls = figures["delay_loop_no_results_per_s"] = bench_delay_loop_no_results(client, count)
    say(f"delay() loop, 1 thread, ignore_result=True (confirms, nothing written in SQL), "
        f"worker running: {calls:,.0f} calls/s ({calls / figures['raw_pipeline_per_s']:.0%} "
        "of raw)")
    calls, used = bench_delay_loop_listened(client, min(count, 3000))
    figures["delay_loop_listened_per_s"], figures["listener_cpu_us_per_task"] = calls, used
    say(f"delay() loop, 1 thread, {LISTENERS} other clients listening (each to its own "
        f"notices, using {used:,.1f} µs of CPU a task of the loop), worker running: "
        f"{calls:,.0f} calls/s ({calls / figures['raw_pipeline_per_s']:.0%} of raw)")
    with Client(conf=dataclasses.replace(client.conf, broker_confirm_wait=False)) as later:
        _later(figures, say, "delay() loop, 1 thread", "delay_loop_later",
               bench_delay_loop_later(later, count))


def _confirm_each_ceiling(client: Client, count: int, figures: dict[str, float],
                          say: Say) -> None:
    """What one thread waiting for each confirm can do on this host at all: the
    ceiling of a default ``delay()`` loop, beside the hutch worker left idle."""
    url, queue = client.conf.broker_url, f"{client.conf.topology_prefix}.confirm-each"
    alone = figures["raw_confirm_each_per_s"] = confirm_each(url, queue, count, False)
    beside = figures["raw_confirm_each_consumed_per_s"] = confirm_each(url, queue, count, True)
    say(f"raw pika, 1 thread waiting for each confirm: {alone:,.0f}/s alone, "
        f"{beside:,.0f}/s with a raw consumer process acking each (the delay() loop's "
        "ceiling here)")


def _loops(figures: dict[str, float], say: Say, label: str, key: str, unit: str,
           bench: Callable[[int], tuple[float, float]]) -> None:
    """A submit loop from 1 and 8 callers (threads or coroutines), beside raw."""
    raw = figures["raw_pipeline_per_s"]
    for callers in (1, 8):
        calls, e2e = bench(callers)
        units = f"{unit}{'s' if callers > 1 else ''}"
        figures[f"{key}_{callers}_{units}_per_s"] = calls
        figures[f"{key}_{callers}_{units}_end_to_end_per_s"] = e2e
        say(f"{label}, {callers} {units} (confirms, PENDING rows, task-sent), worker running: "
            f"{calls:,.0f} calls/s, {e2e:,.0f} tasks/s end to end "
            f"({calls / raw:.0%} and {e2e / raw:.0%} of raw)")


def _drain_backlog(client: Client, count: int, start: Callable[[], subprocess.Popen[bytes]],
                   figures: dict[str, float], say: Say) -> None:
    """The drain scenario, beside the raw pipeline of this run."""
    rate, consuming = bench_drain(client, count, start)
    figures["drain_per_s"], figures["drain_consuming_per_s"] = rate, consuming
    raw = figures["raw_pipeline_per_s"]
    say(f"drain ({count:,} queued before the worker starts): {rate:,.0f} tasks/s start-up "
        f"included, {consuming:,.0f} tasks/s from its first consumer "
        f"({rate / raw:.0%} and {consuming / raw:.0%} of raw)")


def _async_loop(client: Client, count: int, figures: dict[str, float], say: Say) -> None:
    """The asyncio delay loop from 1 and 8 coroutines, each beside the raw pipeline;
    then from 1 coroutine of a client that does not await each confirm."""
    _loops(figures, say, "AsyncClient.submit() loop", "async_loop", "coroutine",
           lambda coroutines: bench_async_loop(client, count, coroutines))
    _later(figures, say, "AsyncClient.submit() loop, 1 coroutine", "async_loop_later",
           bench_async_loop_later(client, count))


def _later(figures: dict[str, float], say: Say, label: str, key: str,
           rates: tuple[float, float, float]) -> None:
    """A confirm-later loop's line: calls/s, until all confirmed, end to end, beside raw."""
    calls, confirmed, e2e = rates
    raw = figures["raw_pipeline_per_s"]
    figures.update({f"{key}_per_s": calls, f"{key}_confirmed_per_s": confirmed,
                    f"{key}_end_to_end_per_s": e2e})
    say(f"{label}, broker_confirm_wait=False (returns before the confirm), "
        f"worker running: {calls:,.0f} calls/s, {confirmed:,.0f}/s until all confirmed, "
        f"{e2e:,.0f} tasks/s end to end ({calls / raw:.0%}, {confirmed / raw:.0%} and "
        f"{e2e / raw:.0%} of raw)")


MEMORY_POOLS = (("prefork", 2), ("threads", 8))


def _memory(client: Client, broker: str, backend: str, prefix: str, count: int,
            figures: dict[str, float], say: Say) -> None:
    """The memory scenario (benchmarks/memory.py) on each pool of ``MEMORY_POOLS``."""
    for pool, concurrency in MEMORY_POOLS:
        worker = _start_worker(broker, backend, prefix, pool, concurrency)
        try:
            _wait_consumers(client, concurrency if pool == "prefork" else 1)
            series, seconds = bench_memory(client, worker.pid, count)
        finally:
            worker.terminate()
            worker.wait(60)
        figures.update(report(f"{pool} -c {concurrency}", series, seconds, say))


def _web(backend: str, count: int, figures: dict[str, float], say: Say) -> None:
    """The web scenario (benchmarks/web.py): N rows in a database of its own on the same
    server (the other scenarios' rows, all written in the last minutes, would make
    every "last hour" read read them all), then the dashboard's reads."""
    if not backend.startswith("postgresql"):
        say("web: PostgreSQL only (it fills the table by COPY); skipped on SQLite")
        return
    with scratch_postgres(backend) as own:
        figures.update(bench_web(own, count, say))


def _drain(client: Client, timeout: float = 120) -> None:
    """Wait until the ignore_result submissions (of the submit scenario, or of the loop
    without results) have been consumed; a worker that does not consume them stops the
    run rather than skewing the next scenario."""
    deadline = time.monotonic() + timeout
    while client.broker.queue_depths(["bench"])["bench"][0]:
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the benchmark worker left tasks queued after {timeout:.0f} s")
        time.sleep(0.1)
    threading.Event().wait(0.5)


@contextmanager
def scratch_postgres(server_url: str) -> Iterator[str]:
    """A fresh, migrated database on ``server_url`` for one run, dropped afterwards."""
    name = f"hutchbench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(normalize_backend_url(server_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
