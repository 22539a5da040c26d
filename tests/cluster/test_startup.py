"""Starting, and going on, while one node of the cluster is down (issue #17), on this
session's private 3-node cluster.

A classic queue lives on one node (its home); while that node is down every other
node refuses to declare it (404 NOT_FOUND "home node ... is down or inaccessible"),
whatever the arguments asked for. What an older deployment left there (a route as a
classic queue, a classic delay ladder) must not stop a worker, a producer or beat
from starting on the healthy nodes: the process says once which queue and which
node, goes on with the rest, and declares the missing queue again until its node is
back. Then a route the settings want quorum meets RabbitMQ's 406 (the queue is
classic), whose message names ``hutch queues migrate``; once migrated, the waiting
worker consumes it.

The second test SIGKILLs the node the asyncio client's completion subscription and
beat's publisher use: the subscription moves to the next node, and the lease row's
``broker_node`` follows beat's publisher.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import httpx
import pytest

from apps.faults_app import register_fault_tasks
from apps.tasks import make_app
from hutch import AsyncClient
from hutch.beat.service import Beat
from hutch.beat.store import BeatStore, Lease
from hutch.config import mask_url
from hutch.errors import QueueNodeDown, UnroutableError
from hutch.ops.metrics import route_depths
from hutch.ops.queues import queue_infos
from hutch.web.metrics import queue_families
from support.logs import capture_logs
from support.processes import WorkerProc, worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

NODE_DOWN = "queue's node is down"


def host_port(url: str) -> str:
    """``127.0.0.1:PORT`` of a private node's URL."""
    return url.split("@", 1)[1].split("/", 1)[0]


def errors_about(lines: list[str], route_queue: str) -> list[str]:
    """Error lines saying the node of the route's queue (or of its dead-letter queue,
    declared first) is down."""
    return [line for line in lines if NODE_DOWN in line and '"level": "error"' in line
            and f'"queue": "{route_queue}' in line]


def beat_thread(app, holder: str) -> tuple[Beat, threading.Thread]:
    beat = Beat(app.conf, app.client, holder=holder)
    thread = threading.Thread(target=beat.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    return beat, thread


def sent_runs(app, name: str) -> int:
    return sum(run.sent_at is not None for run in BeatStore(app.client().store).runs(name))


def shows_the_node_down(admin, node: str) -> None:
    """What shows queues (``hutch purge``, the dashboard, its API and /metrics) says a
    queue on the dead node has its node down, instead of counting it empty."""
    assert admin.queue_stats("stuck").node_down == node
    assert admin.queue_stats("fine").node_down is None
    down, fine = queue_infos(admin, {"stuck": ["test"], "fine": ["test"]})
    assert (down.node_down, down.dead_letters) == (node, None)  # stuck.dead is there too
    assert (fine.node_down, fine.dead_letters) == (None, 0)
    families = {f.name: f for f in queue_families(route_depths(admin, ["stuck", "fine"]))}
    assert [s.labels for s in families["hutch_queue_length"].samples] == [{"queue_name": "fine"}]
    assert [(s.labels, s.value) for s in families["hutch_queue_node_down"].samples] == \
        [({"queue_name": "stuck", "node": node}, 1.0)]
    with pytest.raises(QueueNodeDown):
        admin.purge("stuck")  # never "purged 0"


def the_management_api_cannot_count_it_either(urls: str, db: str, prefix: str, api_url: str,
                                              node: str) -> None:
    """With ``broker_management_url`` set (the API of a live node), queue stats ask the
    API first. It has no counts for the dead node's classic queue (RabbitMQ 3.10 answers
    404 "Object Not Found"; others list it as ``state: down``): hutch still names the
    node, by the passive declare, instead of counting the queue empty, and does not
    take the API for broken. The live queue is counted by the API, unacked included."""
    app = make_app(urls, db, topology_prefix=prefix, broker_management_url=api_url)
    try:
        broker = app.client().broker
        api = broker._management
        listed = httpx.get(api.queue_url(f"{prefix}.stuck"), auth=api.auth, timeout=10).json()
        assert listed.get("error") == "Object Not Found" or listed.get("state") == "down", \
            listed
        with capture_logs() as logs:
            shows_the_node_down(broker, node)
            assert eventually(lambda: broker.queue_stats("fine").unacked == 0, 15)
        assert not [e for e in logs if "management API not usable" in e["event"]], logs
    finally:
        app.close()


def test_a_classic_queue_on_a_dead_node_stops_nothing_else(private_cluster, fresh_postgres_url,
                                                            fault_workers):
    nodes, urls = private_cluster.nodes, ";".join(private_cluster.urls)
    prefix = f"hutchtest.start{uuid.uuid4().hex[:8]}"
    stuck = f"{prefix}.stuck"
    # What an older deployment left on node 1: route "stuck" as a classic queue, and the
    # classic delay ladder.
    old = make_app(nodes[1].url, fresh_postgres_url, topology_prefix=prefix)
    old.client().broker.declare_blocking(["stuck"])
    old.close()
    nodes[1].kill()

    quorum = register_fault_tasks(make_app(urls, fresh_postgres_url, topology_prefix=prefix,
                                           task_queue_type="quorum"))
    classic = make_app(urls, fresh_postgres_url, topology_prefix=prefix, beat_lease_seconds=3,
                       beat_poll_interval=0.5, beat_schedule={
                           "tick": {"task": "tests.add", "schedule": 0.5, "args": [1, 1],
                                    "options": {"queue": "plain"}},
                           "stuck": {"task": "tests.add", "schedule": 0.5, "args": [1, 1],
                                     "options": {"queue": "stuck"}}})
    env = worker_env(urls, fresh_postgres_url, prefix, HUTCH_QUEUE_TYPE="quorum")
    beat = None
    try:
        # a worker starts, consumes "fine", and says once what it waits for
        worker = fault_workers(env, pool="threads", concurrency=1, queues=["stuck", "fine"])
        worker.wait_ready(timeout=60)
        add = quorum.tasks["tests.add"]
        assert add.apply_async((1, 2), queue="fine").get(timeout=30) == 3
        # a producer is told which queue and which node, at once with retry=False
        with pytest.raises(QueueNodeDown) as refused:
            add.apply_async((1, 2), queue="stuck", retry=False)
        assert refused.value.queue in (stuck, f"{stuck}.dead")  # .dead is declared first
        assert refused.value.node == nodes[1].node
        assert nodes[1].node in str(refused.value) and stuck in str(refused.value)
        shows_the_node_down(quorum.client().broker, nodes[1].node)
        the_management_api_cannot_count_it_either(urls, fresh_postgres_url, prefix,
                                                  nodes[0].management_url, nodes[1].node)
        time.sleep(3)  # several retries of the waiting route
        told = errors_about(worker.lines, stuck)
        assert len(told) == 1, worker.output()[-3000:]
        assert nodes[1].node in told[0] and "Traceback" not in worker.output()

        # the classic ladder is on the dead node: a classic producer and beat still start
        # and send immediate tasks (the ladder told once); a countdown is refused. Beat's
        # schedule to "stuck" fails run after run, and its unsent runs, published again
        # once older than the lease, hold up none of the others.
        with capture_logs() as logs:
            classic.tasks["tests.add"].apply_async((2, 2), queue="plain")
            beat, _ = beat_thread(classic, "beat@startup")
            assert eventually(lambda: sent_runs(classic, "tick") >= 10, 30)  # 5 s > lease
            with pytest.raises(UnroutableError):
                classic.tasks["tests.add"].apply_async((2, 2), queue="plain", countdown=1,
                                                       retry=False)
        assert sent_runs(classic, "stuck") == 0
        errors = [e for e in logs if e["log_level"] == "error"]
        assert len(errors) == 1, errors  # the ladder; "stuck" was told (above) already
        assert errors[0]["event"].startswith(NODE_DOWN) and errors[0]["node"] == nodes[1].node
        assert errors[0]["queue"].startswith(f"{prefix}.delay.")
        assert beat.active
        beat.stop()  # it would fill "stuck" (classic, as it asks) once node 1 is back
        late = [e["late_seconds"] for e in logs if e["event"].startswith("schedule caught up")]
        print(f"beat with a dead-node queue: tick runs {sent_runs(classic, 'tick')}, "
              f"caught up late {late}")

        # node 1 back: "stuck" is classic where the settings say quorum
        since = len(worker.lines)
        private_cluster.revive(1)
        migrate = "hutch queues migrate stuck --to quorum"
        assert eventually(lambda: any(migrate in line for line in worker.lines[since:]), 30), \
            worker.output()[-3000:]
        migration = quorum.client().broker.migrate_route("stuck")
        assert migration.changed
        started = time.monotonic()
        assert add.apply_async((3, 4), queue="stuck").get(timeout=30) == 7  # consumed again
        assert time.monotonic() - started < 15  # REFUSED_RETRY (10 s) + a round trip
        assert worker.proc.poll() is None
    finally:
        if beat is not None:
            beat.stop()
        quorum.close()
        classic.close()


def test_the_async_subscription_and_beat_move_off_a_killed_node(private_cluster,
                                                                fresh_postgres_url):
    nodes, urls = private_cluster.nodes, ";".join(private_cluster.urls)
    prefix = f"hutchtest.aio{uuid.uuid4().hex[:8]}"
    # The worker uses nodes 2 and 1 only: the kill is the client's and beat's problem.
    worker_urls = ";".join([nodes[2].url, nodes[1].url])
    worker = WorkerProc(worker_env(worker_urls, fresh_postgres_url, prefix,
                                   HUTCH_QUEUE_TYPE="quorum"),
                        pool="threads", concurrency=2, app="apps.faults_app").start()
    app = make_app(urls, fresh_postgres_url, topology_prefix=prefix, task_queue_type="quorum",
                   beat_lease_seconds=3, beat_poll_interval=0.5, beat_schedule={"tick": {
                       "task": "tests.add", "schedule": 0.5, "args": [1, 1]}})
    lease = Lease(BeatStore(app.client().store), 3)
    beat = None

    def lease_node() -> str | None:
        row = lease.holder()
        return row["broker_node"] if row else None

    async def scenario() -> dict[str, float]:
        async with AsyncClient(broker=urls, backend=fresh_postgres_url, topology_prefix=prefix,
                               task_queue_type="quorum") as client:
            assert await (await client.submit("tests.add", 1, 1)).get(timeout=30) == 2
            assert client._events.node == mask_url(nodes[0].url)
            killed = time.time()
            await asyncio.to_thread(nodes[0].kill)
            notice = await first_notice(client, worker)
            started = time.monotonic()
            assert await (await client.submit("tests.add", 2, 3)).get(timeout=10) == 5
            return {"first_notice_after_kill": notice - killed,
                    "get_after": time.monotonic() - started, "node": client._events.node}

    try:
        worker.wait_ready(timeout=60)
        beat, _ = beat_thread(app, "beat@aio")
        assert eventually(lambda: lease_node() == host_port(nodes[0].url), 30), lease.holder()
        figures = asyncio.run(scenario())
        print(f"async client after its node was killed: {figures}")
        assert figures["node"] != mask_url(nodes[0].url)
        assert figures["first_notice_after_kill"] <= 5.0, figures
        assert figures["get_after"] <= 3.0, figures
        moved = eventually(lambda: lease_node() not in (None, host_port(nodes[0].url)), 30)
        assert moved and lease_node() == host_port(nodes[1].url), lease.holder()
        assert worker.proc.poll() is None
    finally:
        if beat is not None:
            beat.stop()
        worker.stop(timeout=60)
        app.close()


async def first_notice(client: AsyncClient, worker: WorkerProc, timeout: float = 30.0) -> float:
    """Submit a task every 0.25 s until a completion notice for one of them reaches the
    client (``_watch_many`` events are set by notices only, never by reading rows):
    ``time.time()`` then."""
    deadline, events = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        task_id = str(uuid.uuid4())
        events.append(await client._watch_many([task_id], own=True))
        await client.submit("tests.add", 1, 2, task_id=task_id,
                            retry_policy={"max_retries": 100, "interval_start": 0.1,
                                          "interval_step": 0.1, "interval_max": 0.5})
        if any(e.is_set() for e in events):
            return time.time()
        await asyncio.sleep(0.25)
    raise AssertionError("no completion notice reached the async client; worker log "
                         f"tail:\n{worker.output()[-3000:]}")
