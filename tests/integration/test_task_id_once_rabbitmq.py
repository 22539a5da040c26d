"""A task id runs once (issue #10, item 5), on the real RabbitMQ and PostgreSQL.

A message that carries the id of a task that already finished is acknowledged
without running, whether it is redelivered or not: published again with raw pika
exactly as a client that lost a confirm would re-send it.
"""

from __future__ import annotations

import datetime as dt
import json

import pika
import pytest

from apps.tasks import runs_of
from hutch.brokers.amqp.params import pika_parameters
from hutch.brokers.amqp.publisher import properties_for
from hutch.brokers.routes import topology_for
from hutch.call_options import build_message
from hutch.config import Settings
from support.rabbit import queue_counts
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def publish_raw(app, amqp_url, wire, route="celery"):
    """Publish ``wire`` with plain pika (confirmed), not through hutch's publisher."""
    exchange = topology_for(app.conf).names(route).exchange
    conn = pika.BlockingConnection(pika_parameters(amqp_url, Settings(), "test raw publisher"))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, route, wire.body, properties_for(wire), mandatory=True)
    finally:
        conn.close()


def skipped_lines(worker, why="acknowledged without running"):
    return [json.loads(line) for line in worker.lines if why in line and line.startswith("{")]


@pytest.mark.parametrize("outcome", ["SUCCESS", "FAILURE", "REVOKED"])
def test_a_delivery_of_a_finished_task_id_does_not_run_again(app, env, workers, amqp_url,
                                                             broker, tmp_path, outcome):
    runs = tmp_path / "runs"
    w = workers(env, pool="prefork", concurrency=2)
    w.wait_ready(count=2)
    options = {}
    if outcome == "REVOKED":  # finished without running: expired before a worker took it
        options["expires"] = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    args = (str(runs), "not a number") if outcome == "FAILURE" else (str(runs),)
    message = build_message("tests.record_run", args, {}, options, app.conf)
    publish_raw(app, amqp_url, message.encode())
    store = app.client().store
    assert eventually(lambda: (store.get(message.id) or None) is not None
                      and store.get(message.id).state == outcome, timeout=20)
    first = store.get(message.id)
    ran = len(runs_of(runs))
    assert ran == (0 if outcome == "REVOKED" else 1)

    # The same message again, no expiry this time: a copy of a finished id.
    publish_raw(app, amqp_url, build_message(
        "tests.record_run", args, {}, {"task_id": message.id}, app.conf).encode())
    assert eventually(lambda: len(skipped_lines(w, "already finished")) == 1, timeout=20), \
        w.output()[-2000:]
    line = skipped_lines(w)[0]
    assert line["task_id"] == message.id and line["state"] == outcome
    assert line["duplicates_skipped"] == 1
    probe = app.tasks["tests.record_run"].delay(str(runs))
    assert probe.get(timeout=20) == probe.id  # the worker goes on
    assert [r[0] for r in runs_of(runs)].count(message.id) == ran  # not run again
    again = store.get(message.id)
    assert (again.state, again.result, again.exception_type, again.finished_at) == \
        (first.state, first.result, first.exception_type, first.finished_at)
    queue = topology_for(app.conf).names("celery").queue
    assert eventually(lambda: queue_counts(app.conf.topology_prefix)[queue] == (0, 0))
    dead = 1 if outcome == "REVOKED" else 0  # expiry dead-letters the first message only
    assert broker.dead_letter_count("celery") == dead
    assert w.stop() == 0


@pytest.mark.parametrize("claims", ["synchronous", "quick"])
def test_a_copy_arriving_right_after_the_original_finished_is_skipped(app, env, workers,
                                                                      amqp_url, tmp_path,
                                                                      claims):
    """The lost-confirm case: the same message twice in the queue, back to back; the
    first runs, the second finds it received (or finished) and does not run, although
    the solo worker only gets to it after the first one finished. The same with claims
    that do not wait for PostgreSQL's WAL flush (worker_claim_synchronous_commit off:
    only a database crash tells them apart)."""
    runs = tmp_path / "runs"
    quick = {"HUTCH_CLAIM_SYNCHRONOUS_COMMIT": "false"} if claims == "quick" else {}
    w = workers({**env, **quick}, pool="solo")
    w.wait_ready()
    messages = [build_message("tests.record_run", (str(runs),), {}, {}, app.conf)
                for _ in range(20)]
    for message in messages:
        publish_raw(app, amqp_url, message.encode())
        publish_raw(app, amqp_url, message.encode())
    results = [app.AsyncResult(m.id) for m in messages]
    assert [r.get(timeout=30) for r in results] == [m.id for m in messages]
    assert eventually(lambda: len(skipped_lines(w)) == 20, timeout=20), w.output()[-2000:]
    ran = [r[0] for r in runs_of(runs)]
    assert sorted(ran) == sorted(m.id for m in messages)  # each id exactly once
    assert w.stop() == 0
