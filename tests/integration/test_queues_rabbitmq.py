"""Queue features on the real RabbitMQ: priorities, quorum routes, argument conflicts,
and poison tasks that kill their worker process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pika
import pytest

from apps.tasks import make_app
from hutch.brokers.amqp.params import pika_parameters
from hutch.errors import QueueMismatchError
from support.processes import worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

QUEUES = {"prio": {"max_priority": 9}, "qq": {"queue_type": "quorum"},
          "qq2": {"queue_type": "quorum", "delivery_limit": 2}}


@pytest.fixture
def app(amqp_url, postgres_url, topology_prefix):
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix, task_queues=QUEUES)
    yield app
    app.close()


@pytest.fixture
def env(amqp_url, postgres_url, topology_prefix):
    return worker_env(amqp_url, postgres_url, topology_prefix,
                      HUTCH_TASK_QUEUES=json.dumps(QUEUES), HUTCH_PREFETCH_MULTIPLIER="1")


def test_priority_route_runs_the_highest_priority_first(app, env, workers, tmp_path):
    order = tmp_path / "order.txt"
    append = app.tasks["tests.append"]
    results = [append.apply_async((str(order), f"p{p}"), queue="prio", priority=p)
               for p in (1, 5, 0, 9, 3, 7, 5)]
    results.append(append.apply_async((str(order), "none"), queue="prio"))  # counts as 0
    # all are queued before any worker consumes; one slot with a prefetch of 1
    workers(env, queues=["prio"], pool="solo", concurrency=1).wait_ready()
    for r in results:
        r.get(timeout=30)
    assert order.read_text().split() == ["p9", "p7", "p5", "p5", "p3", "p1", "p0", "none"]


def test_quorum_route_end_to_end_with_delays_and_dead_letters(app, env, workers,
                                                              topology_prefix):
    workers(env, queues=["qq"], pool="threads", concurrency=2).wait_ready()
    add = app.tasks["tests.add"]
    assert add.apply_async((2, 2), queue="qq").get(timeout=20) == 4
    assert add.apply_async((3, 3), queue="qq", countdown=1).get(timeout=20) == 6  # via the ladder
    types = _queue_types(topology_prefix)
    assert types[f"{topology_prefix}.qq"] == "quorum"
    assert types[f"{topology_prefix}.qq.dead"] == "quorum"

    client = app.client()
    lost = client.submit("tests.not_registered_here", 1, queue="qq")
    lost.get(timeout=20, propagate=False)
    assert eventually(lambda: client.broker.dead_letter_count("qq") == 1)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", *args],
                              capture_output=True, text=True, timeout=60, env=env)

    listed = cli("dlq", "list", "qq")
    assert listed.returncode == 0, listed.stderr
    assert lost.id in listed.stdout and "rejected" in listed.stdout
    shown = json.loads(cli("dlq", "show", lost.id, "--queue", "qq").stdout)
    # the refusing worker put a copy carrying the reason into qq's dead-letter queue
    assert shown["route"] == "qq" and shown["headers"]["queue"] == "qq"
    assert shown["headers"]["dead_reason"].startswith("hutch.errors.NotRegistered: ")
    replayed = cli("dlq", "replay", lost.id, "--queue", "qq")
    assert replayed.returncode == 0 and "replayed 1" in replayed.stdout, replayed.stderr
    # still unknown on its route: it dead-letters again, and the row follows
    assert eventually(lambda: client.broker.dead_letter_count("qq") == 1
                      and client.store.get(lost.id).state == "FAILURE", timeout=20)


def test_a_queue_with_other_arguments_is_a_clear_error(amqp_url, postgres_url, app, env,
                                                        topology_prefix):
    plain = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix)
    plain.client().broker.declare(["prio"])  # a classic queue without priorities
    plain.close()
    with pytest.raises(QueueMismatchError) as info:
        app.tasks["tests.add"].apply_async((1, 1), queue="prio", priority=1)
    assert f"queue '{topology_prefix}.prio' already exists with x-max-priority = none" \
        in str(info.value)
    assert f"rabbitmqctl delete_queue {topology_prefix}.prio" in str(info.value)
    assert app.tasks["tests.add"].delay(1, 1).id  # the publisher's other routes go on

    out = subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", "worker",
                          "-Q", "prio", "-P", "prefork", "-c", "1"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: queue ") and "x-max-priority = none" in last


@pytest.mark.parametrize("route", ["celery", "qq"])
def test_a_task_that_kills_its_process_is_dead_lettered_after_the_limit(app, env, workers,
                                                                         tmp_path, route):
    env = {**env, "HUTCH_MAX_LOST_ATTEMPTS": "2"}
    w = workers(env, queues=[route], pool="prefork", concurrency=1)
    w.wait_ready()
    marker = tmp_path / "runs.txt"
    r = app.tasks["tests.kill_own_process"].apply_async((str(marker),), queue=route)
    store, broker = app.client().store, app.client().broker
    assert eventually(lambda: _state(store, r.id) == "FAILURE", timeout=60), w.output()
    row = store.get(r.id)
    assert row.exception_type == "hutch.errors.WorkerLostError"
    assert "died at least 2 times" in row.exception_message
    assert eventually(lambda: broker.dead_letter_count(route) == 1)
    runs = len(marker.read_text().splitlines())
    # 2 lost attempts, plus the first run if it died before its STARTED state was committed
    assert 2 <= runs <= 3, w.output()
    # the replaced child works on, and the poison task does not come back
    assert app.tasks["tests.add"].apply_async((1, 1), queue=route).get(timeout=30) == 2
    time.sleep(0.5)
    assert len(marker.read_text().splitlines()) == runs
    assert broker.queue_depths([route])[route][0] == 0


def test_the_quorum_delivery_limit_is_decided_by_the_worker(app, env, workers, topology_prefix):
    r = app.client().submit("tests.add", 1, 1, queue="qq2")
    queue = f"{topology_prefix}.qq2"
    conn = pika.BlockingConnection(pika_parameters(app.conf.broker_url, app.conf, "test"))
    channel = conn.channel()
    for _ in range(2):  # two deliveries given back unfinished: x-delivery-count reaches 2
        method, _props, _body = _get(channel, queue)
        channel.basic_reject(method.delivery_tag, requeue=True)
    conn.close()
    workers(env, queues=["qq2"], pool="threads", concurrency=1).wait_ready()
    store, broker = app.client().store, app.client().broker
    assert eventually(lambda: _state(store, r.id) == "FAILURE", timeout=20)
    row = store.get(r.id)
    assert row.exception_type == "hutch.errors.DeliveryLimitExceeded"
    assert "delivered 3 times" in row.exception_message
    assert eventually(lambda: broker.dead_letter_count("qq2") == 1)


def _state(store, task_id):
    row = store.get(task_id)  # None until the client's PENDING row is written
    return row.state if row is not None else None


def _get(channel, queue):
    def one():
        method, props, body = channel.basic_get(queue)
        return (method, props, body) if method is not None else None

    got = eventually(one)
    assert got, f"nothing arrived in {queue}"
    return got


def _queue_types(prefix: str) -> dict[str, str]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "type",
                          "--no-table-headers"], capture_output=True, text=True, timeout=60)
    pairs = (line.split() for line in out.stdout.splitlines() if line.startswith(prefix + "."))
    return {name: kind for name, kind in pairs}
