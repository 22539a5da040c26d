"""The chord scenario: one chord of N no-op header tasks against N plain tasks.

Both halves build N ``bench.noop`` messages with the same option processing
``submit()`` uses, publish them in one confirmed publish and stop the clock when
the last result is stored: for the plain tasks the N-th SUCCESS row, for the
chord the body's row (``bench.size``, run after the worker that counted the last
header outcome claimed the chord and published the body). The difference is
what a chord costs: planning its messages, per recorder batch the count of its
header outcomes (in the batch's upsert statement) and a read of the counters
after the commit, and reading the N results once at the end.

The two halves alternate for ``ROUNDS`` rounds and the medians are compared: on
two shared cores one half alone swings by 15-30% from run to run (the first
round also pays for cold caches), which would swamp the figure being measured.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Callable

from sqlalchemy import func, select

from ..client.sync import Client
from ..results.models import tasks
from ..results.records import SUCCESS
from ..workflows.canvas import Signature, chord

CHORD_SIZE = 5000
ROUNDS = 5
POLL = 0.01


def bench_chord(client: Client, size: int = CHORD_SIZE, say: Callable[[str], None] = print,
                rounds: int = ROUNDS) -> dict[str, float]:
    """Median seconds for ``size`` plain tasks and for a chord of ``size`` header tasks."""
    plains, chords = [], []
    for _ in range(rounds):
        plains.append(_plain(client, size))
        chords.append(_chord(client, size))
    plain, chorded = statistics.median(plains), statistics.median(chords)
    overhead = chorded / plain - 1
    each = ", ".join(f"{c / p - 1:+.0%}" for p, c in zip(plains, chords, strict=True))
    say(f"chord of {size:,} no-op tasks: {chorded:.2f} s until the body's result is stored; "
        f"{size:,} plain tasks: {plain:.2f} s (medians of {rounds} rounds); chord overhead "
        f"{overhead:+.0%} (rounds: {each})")
    return {"chord_plain_s": plain, "chord_s": chorded, "chord_overhead": overhead}


def _plain(client: Client, size: int) -> float:
    since = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    client.send([client.message("bench.noop", (i,), queue="bench") for i in range(size)])
    while _finished_since(client, since) < size:
        time.sleep(POLL)
    return time.perf_counter() - started


def _finished_since(client: Client, since: dt.datetime) -> int:
    """Successes finished after ``since``: an index range over at most one half's rows
    (counting every SUCCESS row took ~10 ms on a 60,000-row table, which at this
    poll rate kept half a core of PostgreSQL busy and slowed the plain half)."""
    query = select(func.count()).select_from(tasks).where(
        tasks.c.state == SUCCESS, tasks.c.finished_at >= since)
    return int(client.store.read_now("count", lambda conn: conn.execute(query).scalar_one()))


def _chord(client: Client, size: int) -> float:
    header = [Signature("bench.noop", (i,), options={"queue": "bench"}) for i in range(size)]
    body = Signature("bench.size", options={"queue": "bench"})
    started = time.perf_counter()
    result = client.apply_workflow(chord(header, body))
    store = client.store
    while True:
        row = store.get(result.id)
        if row is not None and row.ready:
            break
        time.sleep(POLL)
    elapsed = time.perf_counter() - started
    if row.state != "SUCCESS" or row.result != size:
        raise RuntimeError(f"chord body ended {row.state} with {row.result!r}")
    return elapsed
