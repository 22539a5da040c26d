"""``broker_confirm_wait=False`` on the real RabbitMQ and PostgreSQL (issue #16): submits
return before their confirm, every one is confirmed, queued, run and gets its PENDING
row; a lost connection's messages are published again; an unroutable one fails loudly
on its handle; the default waits as before."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from apps.tasks import make_app
from hutch import chain, group
from hutch.errors import UnroutableError
from hutch.results.records import PENDING, SUCCESS
from hutch.testing import running_worker
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def app(later_app):
    return later_app  # integration/conftest.py


def publisher_connections() -> list[str]:
    """RabbitMQ's pids of this process's publisher connections."""
    name = f"hutch publisher {os.uname().nodename}:{os.getpid()}"
    out = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "client_properties",
                          "--no-table-headers"], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return [line.split("\t")[0] for line in out.splitlines() if name in line]


def test_every_handed_over_submit_is_confirmed_queued_and_run(app):
    add = app.tasks["tests.add"]
    handles = [add.delay(i, i) for i in range(300)]
    assert all(h.confirmed(30) for h in handles)
    assert app.client().flush(30), "confirms and PENDING rows written"
    rows = app.client().store.get_many([h.id for h in handles])
    assert {r.state for r in rows.values()} == {PENDING} and len(rows) == 300
    with running_worker(app, queues=["celery"]):
        assert [h.get(timeout=30) for h in handles] == [2 * i for i in range(300)]
    rows = app.client().store.get_many([h.id for h in handles])
    assert {r.state for r in rows.values()} == {SUCCESS} and len(rows) == 300


def test_messages_of_a_dropped_connection_are_published_again(app):
    """The publisher's connection is closed under a stream of submits: whatever was not
    confirmed on it goes out again on the next one; every task runs (a copy that did
    reach RabbitMQ runs once)."""
    add = app.tasks["tests.add"]
    handles = [add.delay(0, 1)]
    closed = threading.Event()

    def submit_until_closed() -> None:
        while not closed.is_set() or len(handles) < 600:
            handles.append(add.delay(len(handles), 1))
            time.sleep(0.002)  # a steady stream, not thousands of tasks to run after

    submitter = threading.Thread(target=submit_until_closed)
    submitter.start()
    confirms = app.client().confirms
    try:
        for _ in range(5):  # until a close finds messages in flight (confirms are quick)
            connections = publisher_connections()
            assert connections, "publisher connection not found"
            for pid in connections:
                subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "test"],
                               check=True, capture_output=True, timeout=60)
            if eventually(lambda: confirms.republished > 0, 3):
                break
    finally:
        closed.set()
        submitter.join(120)
    assert all(h.confirmed(60) for h in handles)
    assert confirms.republished > 0, "some were in flight when it dropped"
    with running_worker(app, queues=["celery"]):
        assert [h.get(timeout=60) for h in handles] == [i + 1 for i in range(len(handles))]


def test_an_unroutable_submit_fails_on_its_handle_and_in_the_log(app, topology_prefix, caplog):
    client = app.client()
    client.broker.declare(["gone"])
    assert client.submit("tests.add", 1, 1, queue="gone").confirmed(30)
    client.broker.purge("gone")
    with client.broker._admin_channel() as channel:
        channel.queue_delete(f"{topology_prefix}.gone")  # the exchange stays, bound to nothing
    lost = client.submit("tests.add", 2, 2, queue="gone")
    with pytest.raises(UnroutableError, match="NO_ROUTE"):
        lost.confirmed(30)
    with pytest.raises(UnroutableError):
        lost.get(timeout=5)
    assert client.flush(10)
    assert client.store.get(lost.id) is None, "no PENDING row for a task never queued"
    assert eventually(lambda: "not accepted by the broker" in caplog.text, 5)
    assert client.submit("tests.add", 3, 3).confirmed(30), "the client goes on"


def test_the_default_waits_for_the_confirm(amqp_url, postgres_url, topology_prefix):
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix)
    try:
        handle = app.tasks["tests.add"].delay(1, 2)
        assert handle._unconfirmed is None and handle.confirmed(0) is True
        assert app.client().broker.queue_depths(["celery"])["celery"][0] == 1
    finally:
        app.close()


def test_workflows_and_prebuilt_sends_still_wait_for_their_confirms(app):
    """Only submit()/delay()/apply_async() of one task hand over: a chain's and a group's
    messages (and beat's sends, through client.send) are confirmed when the call returns."""
    add = app.tasks["tests.add"]
    client = app.client()
    chain(add.s(1, 1), add.s(2)).apply_async()
    group(add.s(i, i) for i in range(3)).apply_async()
    client.send([client.message("tests.add", (5, 5))])
    assert client._confirms is None, "nothing was handed over"
    assert client.broker.queue_depths(["celery"])["celery"][0] == 5
