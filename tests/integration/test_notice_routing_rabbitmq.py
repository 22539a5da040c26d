"""Completion notices go to the client that sent the task, on real workers (RabbitMQ +
PostgreSQL): a client waiting on its own tasks is not sent every other client's."""

from __future__ import annotations

import asyncio
import queue
import uuid

import pytest

from hutch import AsyncClient, Client, chain, chord, group
from hutch.brokers.base import EVERY_KEY, NOTICE_UNADDRESSED
from hutch.client import aio, waiter
from hutch.messages import TaskMessage, decode_notice
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


class Heard:
    """The ids announced under the keys one subscription takes."""

    def __init__(self, broker, keys) -> None:
        self.ids: queue.Queue[str] = queue.Queue()
        self.so_far: set[str] = set()
        self.handle = broker.subscribe_notices(self._on_notice, keys)

    def _on_notice(self, body: bytes) -> None:
        for task_id in decode_notice(body):
            self.ids.put(task_id)

    def all(self) -> set[str]:
        found = set()
        while not self.ids.empty():
            found.add(self.ids.get_nowait())
        return found

    def heard(self) -> set[str]:
        """Every id announced so far (all() takes them off)."""
        self.so_far |= self.all()
        return self.so_far


def test_a_worker_announces_each_task_under_the_key_of_the_client_that_sent_it(
        app, env, workers, broker):
    client = app.client()
    mine = Heard(broker, (client.notice_key,))
    others = Heard(broker, ("client.someone-else",))
    unaddressed = Heard(broker, (NOTICE_UNADDRESSED,))
    everything = Heard(broker, (EVERY_KEY,))
    try:
        workers(env, pool="threads", concurrency=2).wait_ready()
        sent = app.tasks["tests.add"].delay(1, 2)
        steps = chain(app.tasks["tests.add"].s(1, 1), app.tasks["tests.add"].s(5)).delay()
        nameless = TaskMessage(task="tests.add", id=str(uuid.uuid4()), args=(2, 2),
                               queue=app.conf.task_default_queue)  # names no client
        client.send([nameless])
        assert sent.get(timeout=30) == 3 and steps.get(timeout=30) == 7
        assert client.AsyncResult(nameless.id).get(timeout=30) == 4
        first_step = steps.parent.id
        eventually(lambda: len(everything.ids.queue) >= 4, 10)
        assert {sent.id, first_step, steps.id, nameless.id} <= everything.all()
        # the chain's second step was sent by the worker that ran the first: it carries
        # the client's key on
        assert mine.all() == {sent.id, first_step, steps.id}
        assert unaddressed.all() == {nameless.id}
        assert others.all() == set()
    finally:
        for heard in (mine, others, unaddressed, everything):
            heard.handle.close()


def test_a_retried_task_is_still_announced_to_its_sender(app, env, workers, broker):
    client = app.client()
    mine = Heard(broker, (client.notice_key,))
    try:
        workers(env, pool="threads", concurrency=1).wait_ready()
        flaky = app.tasks["tests.flaky"].delay(1)
        assert flaky.get(timeout=30) == 1  # the second attempt's outcome
        assert eventually(lambda: flaky.id in mine.all(), 10)
    finally:
        mine.handle.close()


def announced(client) -> set[str]:
    """The ids a sync client's waiter has heard announced."""
    return set(client.waiter._announced)


def test_a_client_waiting_on_its_own_tasks_hears_only_its_own(app, env, workers):
    workers(env, pool="threads", concurrency=2).wait_ready()
    with Client(tasks=app.tasks, conf=app.conf) as mine, \
            Client(tasks=app.tasks, conf=app.conf) as other:
        for client in (mine, other):  # each listens from its first get() on
            assert client.submit("tests.add", 1, 1).get(timeout=30) == 2
        theirs = [other.submit("tests.add", i, i) for i in range(20)]
        assert [r.get(timeout=30) for r in theirs] == [2 * i for i in range(20)]
        last = mine.submit("tests.add", 2, 2)  # in order behind the others' notices
        assert last.get(timeout=30) == 4
        assert last.id in announced(mine)
        assert not announced(mine) & {r.id for r in theirs}
        assert {r.id for r in theirs} <= announced(other)


def test_a_wait_on_a_bare_id_hears_every_notice_until_the_linger_ends(
        app, env, workers, monkeypatch):
    monkeypatch.setattr(waiter, "WIDE_LINGER", 0.3)
    workers(env, pool="threads", concurrency=2).wait_ready()
    with Client(tasks=app.tasks, conf=app.conf) as mine, \
            Client(tasks=app.tasks, conf=app.conf) as other:
        theirs = other.submit("tests.sleep", 0.5)
        assert mine.AsyncResult(theirs.id).get(timeout=30) == 0.5
        assert theirs.id in announced(mine)  # woken by the notice, not the fallback read
        assert eventually(lambda: mine.waiter._wide._handle is None, 10)
        later = other.submit("tests.add", 3, 3)
        assert later.get(timeout=30) == 6
        mine_too = mine.submit("tests.add", 4, 4)  # its notice comes after later's
        assert mine_too.get(timeout=30) == 8
        assert later.id not in announced(mine)


def test_an_async_client_hears_its_own_tasks_and_a_bare_id_for_the_linger(
        app, env, workers, monkeypatch):
    monkeypatch.setattr(aio, "WIDE_LINGER", 0.3)
    workers(env, pool="threads", concurrency=2).wait_ready()
    heard: list[str] = []

    async def scenario() -> None:
        async with AsyncClient(conf=app.conf, app=app) as mine, \
                AsyncClient(conf=app.conf, app=app) as other:
            real = mine._on_notice
            mine._on_notice = lambda body: (heard.extend(decode_notice(body)), real(body))
            own = await mine.submit("tests.add", 1, 1)
            assert await own.get(timeout=30) == 2
            theirs = await other.submit("tests.add", 2, 2)
            assert await other.AsyncResult(theirs.id).get(timeout=30) == 4
            assert theirs.id not in heard  # mine waited on nothing of theirs
            bare = await other.submit("tests.sleep", 0.5)
            assert await mine.AsyncResult(bare.id).get(timeout=30) == 0.5
            assert bare.id in heard and mine._wide is not None
            for _ in range(100):
                if mine._wide is None:
                    break
                await asyncio.sleep(0.05)
            assert mine._wide is None, "the subscription to every notice outlived its linger"
            later = await other.submit("tests.add", 3, 3)
            assert await later.get(timeout=30) == 6
            last = await mine.submit("tests.add", 4, 4)
            assert await last.get(timeout=30) == 8
            for _ in range(100):  # get() may read the committed row before the notice lands
                if last.id in heard:
                    break
                await asyncio.sleep(0.05)
            assert last.id in heard and later.id not in heard

    asyncio.run(scenario())


def test_waiting_on_any_workflow_a_client_sent_needs_only_its_own_notices(
        app, env, workers, broker):
    """Chains, groups, chords (the body is sent by a worker, from the chord's
    ``hutch_groups`` row) and workflows nested in each other all tell their sender."""
    workers(env, pool="threads", concurrency=2).wait_ready()
    add, xsum, client = app.tasks["tests.add"], app.tasks["tests.xsum"], app.client()
    mine = Heard(broker, (client.notice_key,))
    try:
        steps = chain(add.s(1, 1), add.s(2), add.s(3)).delay()
        members = group(add.s(i, i) for i in range(3)).delay()
        joined = chord([add.s(1, 1), add.s(2, 2)], xsum.s()).delay()
        nested = chain(add.s(1, 1), chord([add.s(1), add.s(2)], xsum.s()), add.s(10)).delay()
        inner = group(chord([add.s(1, 1)], xsum.s()), add.s(3, 3)).delay()
        assert steps.get(timeout=30) == 7 and members.get(timeout=30) == [0, 2, 4]
        assert joined.get(timeout=30) == 6 and nested.get(timeout=30) == 17
        assert inner.get(timeout=30) == [2, 6]
        assert client.waiter._wide._handle is None  # never listened to every notice
        bodies = {joined.id, nested.parent.id, inner.results[0].id}
        assert eventually(lambda: bodies <= mine.heard(), 10), mine.heard()
        chords = client.store.get_groups([joined.parent.id])
        assert chords[joined.parent.id].notify == client.notice_key
    finally:
        mine.handle.close()


def test_a_failed_chords_body_is_announced_to_the_chords_sender(app, env, workers, broker):
    workers(env, pool="threads", concurrency=2).wait_ready()
    client = app.client()
    mine = Heard(broker, (client.notice_key,))
    try:
        failed = chord([app.tasks["tests.add"].s(1, 1), app.tasks["tests.fail"].s("no")],
                       app.tasks["tests.xsum"].s()).delay()
        with pytest.raises(Exception, match="no"):
            failed.get(timeout=30)
        assert client.waiter._wide._handle is None
        assert eventually(lambda: failed.id in mine.heard(), 10)
    finally:
        mine.handle.close()


def test_a_replacement_and_an_errback_tell_the_sender_of_the_task_they_follow(
        app, env, workers, broker):
    """The messages a worker sends on a task's behalf carry its key on: a ``replace()``ment
    (which takes over the task's id) and an errback (a task of its own)."""
    client = app.client()
    mine = Heard(broker, (client.notice_key,))
    try:
        workers(env, pool="threads", concurrency=2, app="apps.replace_tasks").wait_ready()
        replaced = client.submit("replace.into", 1, kwargs={
            "sig": app.tasks["tests.add"].s(2).to_dict()})
        assert replaced.get(timeout=30) == 3
        errback = app.tasks["tests.errback"].s()
        failed = app.tasks["tests.fail"].apply_async(("no",), link_error=errback)
        with pytest.raises(Exception, match="no"):
            failed.get(timeout=30)
        (errback_id,) = client.store.children(failed.id)
        assert eventually(lambda: client.store.get(errback_id).state == "SUCCESS", 30)
        heard: set[str] = set()

        def every_one_heard() -> bool:
            heard.update(mine.all())
            return {replaced.id, failed.id, errback_id} <= heard

        assert eventually(every_one_heard, 10), heard
    finally:
        mine.handle.close()
