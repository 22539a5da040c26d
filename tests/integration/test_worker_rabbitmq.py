"""The core platform end to end on the real RabbitMQ and PostgreSQL (and SQLite)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pika
import pytest

from apps.tasks import CustomError, make_app
from hutch import Client
from hutch.brokers.amqp.params import pika_parameters
from hutch.config import Settings
from hutch.errors import BrokerUnavailable
from support.processes import worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_prefork_round_trip_with_results_in_postgres(app, env, workers):
    w = workers(env, pool="prefork", concurrency=2)
    w.wait_ready(count=2)
    results = [app.tasks["tests.add"].delay(i, i) for i in range(100)]
    assert [r.get(timeout=30) for r in results] == [2 * i for i in range(100)]
    store = app.client().store
    rows = store.get_many([r.id for r in results])
    assert {row.state for row in rows.values()} == {"SUCCESS"}
    assert len({row.worker for row in rows.values()}) == 2  # both children took work
    assert w.stop() == 0


def test_call_options_over_rabbitmq(app, env, workers):
    workers(env, queues=["celery", "priority.high"], pool="threads", concurrency=4).wait_ready()
    add, echo = app.tasks["tests.add"], app.tasks["tests.echo"]
    # link and link_error
    r = add.apply_async((2, 2), link=add.s(16))
    assert r.get(timeout=20) == 4
    child = _children(r)[0]
    assert child.get(timeout=20) == 20
    r = app.tasks["tests.fail"].apply_async(("bad",), link_error=app.tasks["tests.errback"].s())
    with pytest.raises(CustomError, match="bad"):
        r.get(timeout=20)
    assert _children(r)[0].get(timeout=20) == f"{r.id}: CustomError('bad')"
    # routing, headers, task_id
    info = app.tasks["tests.whoami"].apply_async(
        queue="priority.high", headers={"tenant": "acme"}, task_id=f"fixed-{uuid.uuid4()}")
    got = info.get(timeout=20)
    assert got["queue"] == "priority.high" and got["headers"] == {"tenant": "acme"}
    assert got["id"] == info.id and info.id.startswith("fixed-")
    r = add.apply_async((1, 1), routing_key="priority.high")
    assert r.get(timeout=20) == 2 and app.client().store.get(r.id).queue == "priority.high"
    # serializers and compression
    value = {"pair": (1, 2), "set": {3}, "text": "héllo"}
    for serializer in ("json", "msgpack", "yaml"):
        for compression in (None, "zlib", "gzip", "bzip2", "lzma"):
            r = echo.apply_async((value,), serializer=serializer, compression=compression)
            assert r.get(timeout=20) == value, (serializer, compression)
    # ignore_result: runs, leaves no row
    r = app.tasks["tests.noop"].delay()
    marker = add.delay(0, 0)
    marker.get(timeout=20)
    assert app.client().store.get(r.id) is None
    # retry policy on a reachable broker is a no-op
    r = add.apply_async((3, 4), retry=True, retry_policy={"max_retries": 2, "interval_start": 0,
                                                        "interval_step": 0.1, "interval_max": 0.2})
    assert r.get(timeout=20) == 7


def test_retry_policy_gives_up_on_an_unreachable_broker(postgres_url):
    client = Client(broker="amqp://guest:guest@127.0.0.1:5999//", backend=postgres_url,
                    broker_connection_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        client.submit("tests.add", 1, 1, retry=True,
                      retry_policy={"max_retries": 2, "interval_start": 0.2,
                                    "interval_step": 0.2, "interval_max": 0.5})
    assert time.monotonic() - started >= 0.6  # slept 0.2 + 0.4 between three attempts
    with pytest.raises(BrokerUnavailable):
        client.submit("tests.add", 1, 1, retry=False)
    client.close()


@pytest.mark.parametrize("pool", ["threads", "asyncio", "solo"])
def test_other_pools(app, env, workers, pool):
    workers(env, pool=pool, concurrency=3).wait_ready()
    results = [app.tasks["tests.asleep"].delay(0.1) for _ in range(6)]
    results += [app.tasks["tests.add"].delay(i, 1) for i in range(20)]
    assert [r.get(timeout=30) for r in results] == [0.1] * 6 + [i + 1 for i in range(20)]


def test_sigkill_mid_task_runs_again_and_succeeds_once(app, env, workers, tmp_path):
    w = workers(env, pool="prefork", concurrency=2)
    w.wait_ready(count=2)
    marker = tmp_path / "ran.txt"
    r = app.tasks["tests.sleep"].delay(3, str(marker))
    row = _wait_state(app, r.id, "STARTED")
    child_pid = int(row.worker.rsplit(":", 1)[1])
    os.kill(child_pid, signal.SIGKILL)
    assert r.get(timeout=60) == 3
    assert marker.read_text().splitlines() != [str(child_pid)]
    assert len(marker.read_text().splitlines()) == 1  # the killed run never finished
    row = app.client().store.get(r.id)
    assert row.state == "SUCCESS" and row.worker.rsplit(":", 1)[1] != str(child_pid)


def test_workers_stopped_while_tasks_are_submitted_lose_nothing(app, env, workers):
    first = workers(env, pool="prefork", concurrency=2)
    first.wait_ready(count=2)
    sent: list = []

    def submit_steadily():
        for i in range(300):
            sent.append(app.tasks["tests.add"].delay(i, 0))
            time.sleep(0.005)

    producer = threading.Thread(target=submit_steadily)
    producer.start()
    assert eventually(lambda: len(sent) >= 50)  # stopped mid-stream, not before it
    assert first.stop() == 0  # warm shutdown mid-stream
    second = workers(env, pool="threads", concurrency=4)
    second.wait_ready()
    producer.join()
    assert [r.get(timeout=60) for r in sent] == list(range(300))
    assert app.client().store.count("SUCCESS") >= 300


def test_malformed_and_refused_messages_are_dead_lettered(app, env, workers, amqp_url,
                                                          topology_prefix):
    w = workers(env, pool="threads", concurrency=2)
    w.wait_ready()
    exchange = f"{topology_prefix}.celery"
    conn = pika.BlockingConnection(pika_parameters(amqp_url, Settings(), "test raw publisher"))
    ch = conn.channel()
    ch.confirm_delivery()
    bad_json, pickled, unknown = (str(uuid.uuid4()) for _ in range(3))
    publish = [
        (pika.BasicProperties(content_type="application/json", delivery_mode=2), b"not json"),
        (pika.BasicProperties(content_type="application/json", delivery_mode=2,
                              message_id=bad_json, headers={"hutch": 1, "task": "tests.add",
                                                            "id": bad_json, "queue": "celery"}),
         b"{nope"),
        (pika.BasicProperties(content_type="application/x-python-serialize", delivery_mode=2,
                              message_id=pickled, headers={"hutch": 1, "task": "tests.add",
                                                           "id": pickled, "queue": "celery"}),
         b"\x80\x04K\x01."),
        (pika.BasicProperties(content_type="application/json", delivery_mode=2,
                              message_id=unknown, headers={"hutch": 1, "task": "tests.nope",
                                                           "id": unknown, "queue": "celery"}),
         b'{"args": [], "kwargs": {}}'),
    ]
    for props, body in publish:
        ch.basic_publish(exchange, "celery", body, props, mandatory=True)
    conn.close()
    client = app.client()
    failures = {i: client.AsyncResult(i) for i in (bad_json, pickled, unknown)}
    for task_id, result in failures.items():
        result.get(timeout=20, propagate=False)
        assert result.state == "FAILURE", task_id
    store = client.store
    assert "not valid json" in store.get(bad_json).exception_message
    assert "refused content of type pickle" in store.get(pickled).exception_message
    assert "no task named 'tests.nope'" in store.get(unknown).exception_message
    # the worker survived and still works
    assert app.tasks["tests.add"].delay(20, 22).get(timeout=20) == 42
    depths = client.broker.queue_depths(["celery"])
    assert depths["celery"][0] == 0
    assert client.broker.dead_letter_count("celery") == 4
    assert w.proc.poll() is None


def test_sqlite_backend_with_rabbitmq(amqp_url, sqlite_url, topology_prefix, workers):
    app = make_app(amqp_url, sqlite_url, topology_prefix=topology_prefix)
    workers(worker_env(amqp_url, sqlite_url, topology_prefix), pool="prefork",
            concurrency=2).wait_ready(count=2)
    results = [app.tasks["tests.mul"].delay(i, 3) for i in range(50)]
    assert [r.get(timeout=30) for r in results] == [i * 3 for i in range(50)]
    app.close()


def _children(result, timeout=20):
    children = eventually(lambda: result.children, timeout)
    assert children, f"no children for {result.id}"
    return children


def _wait_state(app, task_id, state, timeout=30):
    store = app.client().store

    def reached():
        row = store.get(task_id)
        return row if row is not None and row.state == state else None

    row = eventually(reached, timeout)
    assert row is not None, f"{task_id} never reached {state}"
    return row


def test_acks_late_false_is_acknowledged_before_running(app, env, workers, tmp_path):
    w = workers(env, pool="prefork", concurrency=2)
    w.wait_ready(count=2)
    marker = tmp_path / "ran.txt"
    r = app.tasks["tests.sleep_early_ack"].delay(2, str(marker))
    row = _wait_state(app, r.id, "STARTED")
    os.kill(int(row.worker.rsplit(":", 1)[1]), signal.SIGKILL)
    time.sleep(4)  # a redelivery would have run and finished by now
    assert app.client().store.get(r.id).state == "STARTED"
    assert not marker.exists()
    assert app.client().broker.queue_depths(["celery"])["celery"][0] == 0


def test_warm_shutdown_finishes_the_running_task(app, env, workers, tmp_path):
    w = workers(env, pool="threads", concurrency=2)
    w.wait_ready()
    r = app.tasks["tests.sleep"].delay(1.5, str(tmp_path / "m"))
    _wait_state(app, r.id, "STARTED")
    assert w.stop() == 0
    assert app.client().store.get(r.id).state == "SUCCESS"


def test_second_sigterm_is_a_cold_shutdown_and_the_task_runs_elsewhere(app, env, workers,
                                                                       tmp_path):
    marker = tmp_path / "ran.txt"
    first = workers(env, pool="threads", concurrency=2)
    first.wait_ready()
    r = app.tasks["tests.sleep"].delay(5, str(marker))
    _wait_state(app, r.id, "STARTED")
    started = time.monotonic()
    first.signal(signal.SIGTERM)
    assert eventually(lambda: "warm shutdown" in first.output())
    first.signal(signal.SIGTERM)
    assert first.proc.wait(10) != 0
    assert time.monotonic() - started < 4  # did not wait for the 5 s task
    workers(env, pool="threads", concurrency=2).wait_ready()
    assert r.get(timeout=30) == 5
    assert len(marker.read_text().splitlines()) == 1


def test_log_lines_of_a_running_task_carry_its_id_and_name(app, env, workers):
    w = workers(env, pool="prefork", concurrency=1)
    w.wait_ready()
    r = app.tasks["tests.log_something"].delay("hello")
    assert r.get(timeout=20) == "hello"
    eventually(lambda: "task says hello" in w.output(), 5)
    line = next(json.loads(x) for x in w.lines if "task says hello" in x)
    assert line["task_id"] == r.id and line["task_name"] == "tests.log_something"


def test_dlq_list_show_replay_purge(app, env, workers):
    w = workers(env, pool="threads", concurrency=2)
    w.wait_ready()
    client = app.client()
    first = client.submit("tests.not_yet_registered", 1)
    second = client.submit("tests.not_yet_registered", 2)
    for r in (first, second):
        r.get(timeout=20, propagate=False)
    eventually(lambda: client.broker.dead_letter_count("celery") >= 2)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", *args],
                              capture_output=True, text=True, timeout=60, env=env)

    listed = cli("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert first.id in listed.stdout and "rejected" in listed.stdout
    assert "NotRegistered" in listed.stdout
    shown = json.loads(cli("dlq", "show", first.id).stdout)
    assert shown["reason"].startswith("rejected: hutch.errors.NotRegistered: no task named")
    assert shown["headers"]["dead_reason"] == shown["reason"].removeprefix("rejected: ")
    assert client.broker.dead_letter_count("celery") == 2  # looking leaves them in place
    # replay one: the row goes back to PENDING and the message to its route (still unknown
    # there, so it dead-letters again with a fresh FAILURE; the count proves the round trip)
    out = cli("dlq", "replay", first.id)
    assert out.returncode == 0 and "replayed 1" in out.stdout, out.stderr
    _wait_state(app, first.id, "FAILURE")
    assert cli("dlq", "purge").returncode != 0  # refuses without --yes
    eventually(lambda: client.broker.dead_letter_count("celery") >= 2)
    purged = cli("dlq", "purge", "--yes")
    assert "purged 2" in purged.stdout
    assert client.broker.dead_letter_count("celery") == 0


def test_prefork_children_do_not_outlive_a_killed_supervisor(env, workers):
    w = workers(env, pool="prefork", concurrency=2)
    w.wait_ready(count=2)
    children = [int(line["worker"].rsplit(":", 1)[1]) for line in w.ready_lines()]
    assert len(children) == 2
    w.signal(signal.SIGKILL)
    w.proc.wait(10)

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert eventually(lambda: all(gone(pid) for pid in children))
