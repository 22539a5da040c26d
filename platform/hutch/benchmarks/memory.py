"""The memory scenario: a worker's RSS over 100,000 no-op tasks.

A worker that leaks a few hundred bytes per task (an id kept in a set that is
never pruned, a cache keyed by something unique per task) looks healthy in every
throughput scenario and dies of it after a week. Here one worker subprocess runs
``MEMORY_TASKS`` tasks in ``SAMPLES`` equal batches, each published (500 messages per
confirmed publish) and waited for (every task has its SUCCESS row) before the next
one, and before the first batch and after each one the
resident set (``VmRSS`` in ``/proc/<pid>/status``) of the worker process and of
each of its children is read. The worker is quiet at every sample (the queue is
empty), so the samples compare like with like.

The first ``WARM`` of the tasks (20,000 of 100,000) fill caches that are meant to be
filled (SQLAlchemy's compiled statements, pymalloc arenas, the allocator's
high-water mark), so the growth reported runs from that sample to the last one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..client.sync import Client

MEMORY_TASKS = 100_000
SAMPLES = 10
WARM = 0.2
SUPERVISOR = "worker"

Say = Callable[[str], None]


def vm_rss_kib(status: str) -> int:
    """The ``VmRSS`` line of a ``/proc/<pid>/status`` text, in KiB."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value)
    raise ValueError("no VmRSS line (a kernel thread, or not Linux)")


def rss_kib(pid: int) -> int:
    """The resident set of process ``pid`` now, in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return vm_rss_kib(status.read())


def children_of(pid: int) -> list[int]:
    """The pool children of ``pid``: its direct children (those forked by its main
    thread, which is how the prefork supervisor forks) that run its own command line.
    A helper it started with a command of its own (one the standard library spawns,
    or a short-lived command) is not a worker process and is left out."""
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as listing:
        children = [int(child) for child in listing.read().split()]
    own = _cmdline(pid)
    return [child for child in children if _cmdline(child) == own]


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except OSError:  # gone meanwhile
        return None


@dataclass
class Series:
    """RSS samples of one process: (tasks done, KiB) pairs."""

    label: str
    samples: list[tuple[int, int]] = field(default_factory=list)

    def growth(self, since: int) -> tuple[int, float] | None:
        """(KiB, fraction) from the first sample at or after ``since`` tasks to the
        last sample; None unless the process ran from before ``since`` to after it
        (a child that was replaced, or that replaced another)."""
        start = next((kib for done, kib in self.samples if done >= since), None)
        if start is None or self.samples[0][0] > since or self.samples[-1][0] <= since:
            return None
        end = self.samples[-1][1]
        return end - start, (end - start) / start


class Sampler:
    """The RSS of a worker process and of each of its children, sample after sample.
    Children are labelled in the order they are first seen; one that replaces another
    gets a new label, so a series never mixes two processes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.series: dict[int, Series] = {pid: Series(SUPERVISOR)}

    def sample(self, done: int) -> None:
        """Read every process's RSS now, ``done`` tasks into the run."""
        for pid in [self.pid, *children_of(self.pid)]:
            series = self.series.setdefault(pid, Series(f"child {len(self.series)}"))
            series.samples.append((done, rss_kib(pid)))


def bench_memory(client: Client, worker_pid: int, total: int = MEMORY_TASKS,
                 batch: int = 500) -> tuple[list[Series], float]:
    """Run ``total`` no-op tasks through the running worker ``worker_pid`` in
    ``SAMPLES`` batches, sampling RSS before the first and after each; also how many
    seconds that took."""
    every = max(1, total // SAMPLES)
    sampler = Sampler(worker_pid)
    before = client.store.count("SUCCESS")
    sampler.sample(0)
    started = time.perf_counter()
    done = 0
    while done < total:
        size = min(every, total - done)
        messages = [client.message("bench.noop", (i,), queue="bench") for i in range(size)]
        for i in range(0, size, batch):
            client.send(messages[i:i + batch])
        done += size
        _wait_count(client, before + done)
        sampler.sample(done)
    return list(sampler.series.values()), time.perf_counter() - started


def _wait_count(client: Client, successes: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while client.store.count("SUCCESS") < successes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the memory scenario's worker stalled short of {successes:,}")
        time.sleep(0.05)


def report(name: str, series: Sequence[Series], seconds: float, say: Say) -> dict[str, float]:
    """Print each process's samples (MiB) and its growth from the ``WARM`` share of
    the tasks to the end; return the growths as figures
    (``memory_<pool>_<label>_growth_kib`` and ``_pct``)."""
    since = round(series[0].samples[-1][0] * WARM)
    marks = "/".join(_thousands(done) for done, _ in series[0].samples)
    say(f"memory, worker -P {name} ({series[0].samples[-1][0]:,} tasks in {seconds:.0f} s): "
        f"RSS in MiB at {marks} tasks; growth from {_thousands(since)} to the end")
    figures: dict[str, float] = {}
    for one in series:
        values = " ".join(f"{kib / 1024:.1f}" for _, kib in one.samples)
        growth = one.growth(since)
        if growth is None:
            say(f"  {one.label:<8} {values}  (not there throughout)")
            continue
        kib, fraction = growth
        key = f"memory_{name.split()[0]}_{one.label.replace(' ', '')}_growth"
        figures[f"{key}_kib"], figures[f"{key}_pct"] = float(kib), fraction * 100
        say(f"  {one.label:<8} {values}  {kib:+,} KiB ({fraction:+.1%})")
    return figures


def _thousands(count: int) -> str:
    return f"{count // 1000}k" if count and count % 1000 == 0 else f"{count:,}"
