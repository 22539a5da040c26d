"""``/metrics`` of hutch web (issue #14) with Starlette's TestClient on memory:// and
SQLite, rows written through the stores: every family present and parsed by
prometheus_client's own parser, the values right, task names capped with an
``other`` bucket, and a part whose source fails (or hangs) left out and named in
``hutch_scrape_error``, never a failed page. On RabbitMQ and PostgreSQL:
tests/integration/test_web_metrics_rabbitmq.py."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from apps.tasks import make_app
from hutch.beat.store import BeatStore, Lease
from hutch.errors import BackendError
from hutch.messages import Wire
from hutch.ops import metrics as reads
from hutch.results.records import StateChange
from hutch.results.workers import WorkerBeat, WorkerStore
from hutch.web.app import create_app
from hutch.web.metrics import PARTS

NOW = dt.datetime.now(dt.timezone.utc)
"""Reset before each test (the window and the lease are counted from the real clock: a
time taken when the module was imported is minutes old in a long run)."""
FAMILIES = {"hutch_tasks": "gauge", "hutch_task_runtime": "gaugehistogram",
            "hutch_task_queue_wait_time": "gaugehistogram", "hutch_worker_up": "gauge",
            "hutch_workers": "gauge", "hutch_beat_lease_held": "gauge",
            "hutch_beat_lease_holder": "gauge", "hutch_beat_broker_node": "gauge",
            "hutch_queue_length": "gauge",
            "hutch_active_consumer_count": "gauge", "hutch_dead_letter_queue_length": "gauge",
            "hutch_delayed_messages": "gauge", "hutch_scrape_error": "gauge"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def _now() -> None:
    global NOW
    NOW = dt.datetime.now(dt.timezone.utc)


def _ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def _finished(name: str, *, queue: str = "celery", state: str = "SUCCESS", wait: float = 1.0,
              run: float = 0.2, retries: int = 0, eta: dt.datetime | None = None) -> StateChange:
    """A task that waited ``wait`` s, ran ``run`` s and finished one second ago."""
    finished = _ago(1)
    started = finished - dt.timedelta(seconds=run)
    created = started - dt.timedelta(seconds=wait)
    return StateChange(task_id=uuid.uuid4().hex, state=state, name=name, queue=queue,
                       retries=retries, eta=eta, created_at=created, received_at=created,
                       started_at=started, finished_at=finished)


def _wire(task_id: str) -> Wire:
    return Wire(body=b"[[], {}, {}]", content_type="application/json", content_encoding="utf-8",
                headers={"task": "tests.add", "id": task_id}, message_id=task_id)


def _scrape(http: TestClient) -> tuple[dict[str, str], Samples]:
    """(family -> type, samples by (name, labels)), through prometheus_client's parser."""
    answer = http.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["cache-control"] == "no-store"
    types, samples = {}, {}
    for family in text_string_to_metric_families(answer.text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return types, samples


def _value(samples: Samples, metric: str, **labels: str) -> float:
    return samples[metric, frozenset(labels.items())]


def _errors(samples: Samples) -> dict[str, float]:
    return {part: _value(samples, "hutch_scrape_error", part=part) for part in PARTS}


@pytest.fixture
def app(memory_app):
    return memory_app


@pytest.fixture
def http(app):
    with TestClient(create_app(app)) as http:
        yield http


def test_every_family_is_present_and_parses_on_an_empty_system(http):
    types, samples = _scrape(http)
    # The text format has no gauge histogram: it is sent as a histogram with _gsum/_gcount.
    assert {name: kind for name, kind in types.items() if name in FAMILIES} == {
        **FAMILIES, "hutch_task_runtime": "histogram", "hutch_task_queue_wait_time": "histogram"}
    assert _errors(samples) == dict.fromkeys(PARTS, 0.0)
    assert _value(samples, "hutch_queue_length", queue_name="celery") == 0
    assert _value(samples, "hutch_beat_lease_held") == 0
    assert not any(name in ("hutch_beat_lease_holder", "hutch_beat_broker_node")
                   for name, _ in samples)


def test_openmetrics_when_asked_for_it(http):
    answer = http.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    types = {f.name: f.type for f in openmetrics_families(answer.text)}
    assert {name: kind for name, kind in types.items() if name in FAMILIES} == FAMILIES


def test_the_values_come_from_the_tables_and_the_broker(app, http):
    store = app.client().store
    store.write([_finished("tests.add"), _finished("tests.add", wait=20.0, run=3.0),
                 _finished("tests.mul", queue="slow", state="FAILURE"),
                 _finished("tests.mul", queue="slow", retries=1, wait=500.0),
                 _finished("tests.add", eta=_ago(2), wait=400.0),  # waited for its eta
                 StateChange(task_id=uuid.uuid4().hex, state="PENDING", name="tests.add")])
    WorkerStore(store).beat(WorkerBeat(
        hostname="w1@h", pid=1, version="1", pool="prefork", concurrency=2, processes=2,
        queues=["celery", "extra"], prefetch=4, state="online", heartbeat_interval=60.0,
        started_at=NOW))
    assert Lease(BeatStore(store), 30.0, node=lambda: "rabbit2:5672").acquire("beat@h", NOW).held
    broker = app.client().broker
    broker.publish([("celery", _wire("a")), ("celery", _wire("b"))])
    broker.publish_dead("extra", _wire("c"))

    _, samples = _scrape(http)

    assert _errors(samples) == dict.fromkeys(PARTS, 0.0)
    assert _value(samples, "hutch_tasks", name="tests.add", state="SUCCESS") == 3
    assert _value(samples, "hutch_tasks", name="tests.add", state="PENDING") == 1
    assert _value(samples, "hutch_tasks", name="tests.mul", state="FAILURE") == 1
    add = {"name": "tests.add", "queue_name": "celery"}
    assert _value(samples, "hutch_task_runtime_gcount", **add) == 3
    assert _value(samples, "hutch_task_runtime_bucket", le="0.25", **add) == 2
    assert _value(samples, "hutch_task_runtime_bucket", le="2.5", **add) == 2
    assert _value(samples, "hutch_task_runtime_gsum", **add) == pytest.approx(3.4)
    # Waits: 1 s, 20 s, and 0.8 s since its eta (not 400 s since submit); the retried
    # mul is left out.
    assert _value(samples, "hutch_task_queue_wait_time_bucket", le="0.5", **add) == 0
    assert _value(samples, "hutch_task_queue_wait_time_bucket", le="1.0", **add) == 2
    assert _value(samples, "hutch_task_queue_wait_time_bucket", le="10.0", **add) == 2
    assert _value(samples, "hutch_task_queue_wait_time_gcount", **add) == 3
    assert _value(samples, "hutch_task_queue_wait_time_gsum", **add) == pytest.approx(21.8)
    mul = {"name": "tests.mul", "queue_name": "slow"}
    assert _value(samples, "hutch_task_runtime_gcount", **mul) == 2
    assert _value(samples, "hutch_task_queue_wait_time_gcount", **mul) == 1
    assert _value(samples, "hutch_worker_up", hostname="w1@h") == 1
    assert _value(samples, "hutch_workers", state="online") == 1
    assert _value(samples, "hutch_beat_lease_held") == 1
    assert _value(samples, "hutch_beat_lease_holder", holder="beat@h") == 1
    assert _value(samples, "hutch_beat_broker_node", broker_node="rabbit2:5672") == 1
    assert _value(samples, "hutch_queue_length", queue_name="celery") == 2
    # "extra" is known from the worker's row only.
    assert _value(samples, "hutch_dead_letter_queue_length", queue_name="extra") == 1
    assert _value(samples, "hutch_queue_length", queue_name="extra") == 0
    assert _value(samples, "hutch_delayed_messages") == 0
    assert not any("task_id" in dict(labels) for _, labels in samples)


def test_old_finished_tasks_leave_the_histograms_but_stay_counted(app, http):
    old = _finished("tests.add")
    old = StateChange(**{**old.__dict__, "started_at": _ago(3600),
                         "finished_at": _ago(reads.WINDOW_SECONDS + 60)})
    app.client().store.write([old])
    _, samples = _scrape(http)
    assert _value(samples, "hutch_tasks", name="tests.add", state="SUCCESS") == 1
    assert not any(name.startswith("hutch_task_runtime") for name, _ in samples)


def test_task_names_beyond_the_cap_are_summed_under_other(app, http):
    cap = reads.TASK_NAMES_CAP
    # One frequent name, then cap + 4 names of one task each: 5 of them fall into "other".
    changes = [_finished("busy") for _ in range(3)]
    changes += [_finished(f"rare.{i:03d}") for i in range(cap + 4)]
    app.client().store.write(changes)
    _, samples = _scrape(http)
    counted = {dict(labels)["name"]: value for name, labels in samples if name == "hutch_tasks"
               for value in [samples[name, labels]]}
    assert len(counted) == cap + 1 and counted["busy"] == 3 and counted[reads.OTHER] == 5
    assert sum(counted.values()) == len(changes)
    runtime_names = {dict(labels)["name"] for name, labels in samples
                     if name == "hutch_task_runtime_gcount"}
    assert len(runtime_names) == cap + 1 and reads.OTHER in runtime_names


def test_a_failing_part_is_left_out_and_named_not_raised(app, http, monkeypatch, caplog):
    broker = app.client().broker

    def down(*_: object) -> int:
        raise BackendError("broker amqp://guest:s3cret@h//: connection refused")

    monkeypatch.setattr(broker, "delayed_count", down)
    monkeypatch.setattr(reads, "task_counts", down)
    app.client().store.write([_finished("tests.add")])
    _, samples = _scrape(http)
    assert _errors(samples) == {**dict.fromkeys(PARTS, 0.0), "delayed": 1.0, "tasks": 1.0}
    assert not any(name in ("hutch_tasks", "hutch_delayed_messages") for name, _ in samples)
    assert _value(samples, "hutch_task_runtime_gcount", name="tests.add",
                  queue_name="celery") == 1
    assert "s3cret" not in caplog.text
    _scrape(http)  # logged once while it keeps failing
    assert sum("part left out" in r.getMessage() for r in caplog.records) == 2
    monkeypatch.undo()
    _, samples = _scrape(http)
    assert _errors(samples) == dict.fromkeys(PARTS, 0.0)


def test_a_hanging_part_is_left_out_in_time_and_not_started_twice(tmp_path, monkeypatch):
    release, calls = threading.Event(), []

    def stuck(*_: object) -> int:
        calls.append(1)
        release.wait(30)
        return 7

    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}",
                   broker_connection_timeout=4.0)  # the stuck read hangs for 30 s
    try:
        with TestClient(create_app(app)) as http:
            # A first scrape with nothing stuck opens the database and makes its tables,
            # so the parts below answer well within the deadline on a loaded machine.
            _, samples = _scrape(http)
            assert _value(samples, "hutch_scrape_error", part="tasks") == 0
            monkeypatch.setattr(app.client().broker, "delayed_count", stuck)
            for _ in range(2):
                _, samples = _scrape(http)
                assert _value(samples, "hutch_scrape_error", part="delayed") == 1
                assert _value(samples, "hutch_scrape_error", part="tasks") == 0
            assert len(calls) == 1
            release.set()
            _, samples = _scrape(http)  # the stuck read's answer, now in
            assert _value(samples, "hutch_delayed_messages") == 7
    finally:
        release.set()
        app.close()
