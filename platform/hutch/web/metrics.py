"""``/metrics``: Prometheus text format, computed at each scrape from the SQL tables and
the broker (docs/dashboard.md, "Metrics", lists every metric).

A custom collector on a registry of the app's own (never prometheus_client's global
one, so nothing else a process registers leaks in, and two apps in one process do
not collide) reads every part at scrape time: no background thread polls, and an
idle dashboard costs nothing. The names follow celery-exporter's where they mean
the same (``*_queue_length``, ``*_active_consumer_count``, ``*_worker_up``,
``*_task_runtime``, ``*_task_queue_wait_time``), with the prefix ``hutch_``.

A scrape never fails as a whole: the parts (:data:`PARTS`) run at once, each in a
daemon thread, and all within one deadline (``broker_connection_timeout``). A part
whose source is down or too slow is left out, and ``hutch_scrape_error{part=...}``
says 1 for it; why goes to the log, once when it starts failing and once when it
answers again (masked: no secret in the answer or the log). A part still stuck from
an earlier scrape is waited for again rather than started twice.

Access: as every page (hutch.web.auth): open on an open loopback dashboard; once
authentication is on, a scrape needs the read role, e.g. a bearer token from
``hutch web token create prometheus --role read`` in Prometheus' ``authorization``
block.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import mask_secrets
from ..errors import HutchError
from ..logs import get_logger
from ..ops import metrics as reads
from ..ops.workers import list_workers, state_counts
from ..results.workers import ONLINE, WorkerRecord

if TYPE_CHECKING:
    from ..app import Hutch
    from ..client.sync import Client
    from ..tasks import TaskRegistry

log = get_logger("hutch.web")

PARTS = ("tasks", "timings", "workers", "beat", "queues", "delayed")
"""What a scrape reads, each on its own: the first four from the database, the last
two from the broker."""
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                   7.5, 10.0)
"""prometheus_client's (and celery-exporter's) default buckets, seconds; +Inf added."""
QUEUE_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                      600.0, 1800.0)
"""celery-exporter's queue wait buckets, seconds; +Inf added."""
NO_STORE = {"Cache-Control": "no-store"}


@dataclass
class _Run:
    """One part's read in its daemon thread; ``done`` is set when it ends either way."""

    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class HutchCollector(Collector):
    """Every metric of ``client``'s tables and broker, read when collected."""

    def __init__(self, client: Client, tasks: TaskRegistry | None, timeout: float) -> None:
        self.client = client
        self.tasks = tasks
        self.timeout = timeout
        self._runs: dict[str, _Run] = {}
        self._failing: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        deadline = time.monotonic() + self.timeout
        now = dt.datetime.now(dt.timezone.utc)
        client, timeout = self.client, self.timeout
        started = {
            "tasks": self._start("tasks", lambda: reads.task_counts(client.store, timeout)),
            "timings": self._start("timings", lambda: reads.recent_timings(
                client.store, timeout, now)),
            "workers": self._start("workers", lambda: list_workers(client.store)),
            "beat": self._start("beat", lambda: reads.beat_holder(client.store, now)),
            "delayed": self._start("delayed", lambda: client.broker.delayed_count()),
        }
        # The workers' routes join the queues part if they come in half the time;
        # a slow database must not cost the broker's numbers.
        workers = started["workers"]
        listed = workers.value if workers.done.wait(timeout / 2) and workers.error is None \
            else []
        routes = self.routes(listed)
        started["queues"] = self._start("queues", lambda: reads.route_depths(
            client.broker, routes))
        outcomes = {name: self._wait(name, run, deadline) for name, run in started.items()}
        yield from self._families(outcomes)

    def routes(self, workers: Sequence[WorkerRecord]) -> set[str]:
        """The default queue, ``task_queues``' routes, the registered tasks' ``queue``
        options, and every route a worker row says it consumes."""
        conf = self.client.conf
        routes = {conf.task_default_queue, *conf.task_queues}
        if self.tasks is not None:
            routes.update(t.options.queue for t in self.tasks.values() if t.options.queue)
        for worker in workers:
            routes.update(worker.queues)
        return routes

    def _start(self, name: str, call: Callable[[], object]) -> _Run:
        running = self._runs.get(name)
        if running is not None and not running.done.is_set():
            return running
        run = self._runs[name] = _Run()

        def work() -> None:
            try:
                run.value = call()
            except BaseException as exc:  # noqa: BLE001 - reported by _wait, never raised
                run.error = exc
            finally:
                run.done.set()

        threading.Thread(target=work, name=f"hutch-metrics-{name}", daemon=True).start()
        return run

    def _wait(self, name: str, run: _Run, deadline: float) -> object:
        """The part's value, or :data:`_FAILED` (logged when it starts failing)."""
        if not run.done.wait(max(0.0, deadline - time.monotonic())):
            return self._failed(name, f"no answer within {self.timeout:g} s")
        if run.error is not None:
            error = run.error
            why = str(error) if isinstance(error, HutchError) else \
                f"{type(error).__name__}: {error}"
            return self._failed(name, why)
        if name in self._failing:
            self._failing.discard(name)
            log.info("web metrics: part answers again", part=name)
        return run.value

    def _failed(self, name: str, why: str) -> object:
        if name not in self._failing:
            self._failing.add(name)
            log.warning("web metrics: part left out", part=name, error=mask_secrets(why))
        return _FAILED

    def _families(self, outcomes: Mapping[str, object]) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "hutch_scrape_error", "1 when this part of the scrape was left out: its "
            "source (database or broker) failed or did not answer in time.",
            labels=["part"])
        for part in PARTS:
            value = outcomes[part]
            errors.add_metric([part], 1.0 if value is _FAILED else 0.0)
            if value is not _FAILED:
                yield from _BUILDERS[part](value)
        yield errors


_FAILED = object()
"""A part left out of this scrape."""


def _tasks(counts: dict[tuple[str, str], int]) -> Iterable[Metric]:
    family = GaugeMetricFamily(
        "hutch_tasks", "Rows of hutch_tasks by task name and state now (a gauge: rows "
        "expire, so the count can fall).", labels=["name", "state"])
    for (name, state), count in sorted(counts.items()):
        family.add_metric([name, state], count)
    return [family]


def _timings(timings: reads.Timings) -> Iterable[Metric]:
    window = f"finished in the last {reads.WINDOW_SECONDS:g} s"
    runtime = GaugeHistogramMetricFamily(
        "hutch_task_runtime", f"Run time of the tasks {window}, seconds.",
        labels=["name", "queue_name"])
    wait = GaugeHistogramMetricFamily(
        "hutch_task_queue_wait_time", f"Queue wait of the tasks {window} (first "
        "attempts; from submit or eta to start), seconds.", labels=["name", "queue_name"])
    for family, observed, bounds in ((runtime, timings.runtime, RUNTIME_BUCKETS),
                                     (wait, timings.queue_wait, QUEUE_WAIT_BUCKETS)):
        for key, seconds in sorted(observed.items()):
            family.add_metric(list(key), _buckets(seconds, bounds), sum(seconds))
    return [runtime, wait]


def _buckets(seconds: Sequence[float], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Cumulative bucket counts, +Inf last."""
    ordered = sorted(seconds)
    counts = [(repr(float(b)), float(bisect.bisect_right(ordered, b))) for b in bounds]
    return [*counts, ("+Inf", float(len(ordered)))]


def _workers(records: list[WorkerRecord]) -> Iterable[Metric]:
    up = GaugeMetricFamily("hutch_worker_up", "1 if the worker's effective state is online "
                           "(it heartbeats), 0 if stopping or offline.", labels=["hostname"])
    for record in records:
        up.add_metric([record.hostname], 1.0 if record.state == ONLINE else 0.0)
    states = GaugeMetricFamily("hutch_workers", "Workers in hutch_workers by effective state.",
                               labels=["state"])
    for state, count in state_counts(records).items():
        states.add_metric([state], count)
    return [up, states]


def _beat(lease: reads.BeatHolder | None) -> Iterable[Metric]:
    held = GaugeMetricFamily("hutch_beat_lease_held",
                             "1 if a beat holds the leader lease now (an unexpired row).")
    held.add_metric([], 1.0 if lease is not None else 0.0)
    holders = GaugeMetricFamily("hutch_beat_lease_holder", "1 for the beat that holds the "
                                "leader lease now; no sample when none does.",
                                labels=["holder"])
    nodes = GaugeMetricFamily("hutch_beat_broker_node", "1 for the broker node the active "
                              "beat publishes through; no sample when unknown.",
                              labels=["broker_node"])
    if lease is not None:
        holders.add_metric([lease.holder], 1.0)
        if lease.broker_node is not None:
            nodes.add_metric([lease.broker_node], 1.0)
    return [held, holders, nodes]


def queue_families(depths: dict[str, reads.RouteDepth]) -> Iterable[Metric]:
    """The route gauges; a route whose queue's node is down has no depth samples and a
    ``hutch_queue_node_down`` one (an absent sample is unknown, never 0)."""
    families = (
        ("hutch_queue_length", "Messages ready in the route's work queue.", "ready"),
        ("hutch_active_consumer_count", "Consumers of the route's work queue.", "consumers"),
        ("hutch_dead_letter_queue_length", "Messages in the route's dead-letter queue.",
         "dead"),
    )
    for name, doc, attribute in families:
        family = GaugeMetricFamily(name, doc, labels=["queue_name"])
        for route, depth in sorted(depths.items()):
            value = getattr(depth, attribute)
            if value is not None:  # unknown while the queue's node is down
                family.add_metric([route], value)
        yield family
    down = GaugeMetricFamily("hutch_queue_node_down", "1 for a route whose work queue's "
                             "cluster node is down (its counts are then left out).",
                             labels=["queue_name", "node"])
    for route, depth in sorted(depths.items()):
        if depth.node_down is not None:
            down.add_metric([route, depth.node_down], 1.0)
    yield down


def _delayed(count: int) -> Iterable[Metric]:
    family = GaugeMetricFamily("hutch_delayed_messages", "Messages waiting for their eta "
                               "(the delay ladder: countdowns, retries, rate-limit waits).")
    family.add_metric([], count)
    return [family]


_BUILDERS: dict[str, Callable[[Any], Iterable[Metric]]] = {
    "tasks": _tasks, "timings": _timings, "workers": _workers, "beat": _beat,
    "queues": queue_families, "delayed": _delayed}


def metrics_registry(client: Client, tasks: TaskRegistry | None,
                     timeout: float) -> CollectorRegistry:
    """A registry of its own holding :class:`HutchCollector` only."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HutchCollector(client, tasks, timeout))
    return registry


def routes(hutch_app: Hutch) -> list[Route]:
    """``/metrics`` of ``hutch_app``'s tables and broker, each scrape within
    ``broker_connection_timeout``."""
    registry = metrics_registry(hutch_app.client(), hutch_app.tasks,
                                hutch_app.conf.broker_connection_timeout)

    async def metrics(request: Request) -> Response:
        # OpenMetrics when asked for (Prometheus does; it has a gauge histogram type),
        # the classic text format otherwise.
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        # The reads block (SQLAlchemy, pika): off the loop, bounded by the deadline.
        body = await asyncio.to_thread(encode, registry)
        return Response(body, headers={"Content-Type": content_type, **NO_STORE})

    return [Route("/metrics", metrics, name="metrics")]
