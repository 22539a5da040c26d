"""The beat tables on each database: claims and the lease under real concurrency,
the batched result cleanup, and the migration that added ``catch_up``."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from sqlalchemy import insert, inspect, select, text, update

from apps.tasks import make_app
from hutch.beat.cleanup import MAX_BATCHES, Cleanup
from hutch.beat.models import schedules
from hutch.beat.service import Beat
from hutch.beat.store import BeatStore, Claim, Lease
from hutch.config import Settings
from hutch.errors import NotLeader
from hutch.results import migrate
from hutch.results.models import group_counts, groups, make_engine
from hutch.results.models import workers as workers_table
from hutch.results.records import PENDING, RETRY, SUCCESS, StateChange
from hutch.results.store import ResultStore
from hutch.results.workers import WorkerBeat, WorkerStore
from hutch.schedules.entry import build
from support.logs import capture_logs

pytestmark = pytest.mark.postgres

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@pytest.fixture
def stores(store_url):
    """Several stores on one database, each with its own engine (its own connections)."""
    opened = [BeatStore(ResultStore(store_url)) for _ in range(6)]
    opened[0].all()  # migrates a SQLite file once, before the race
    yield opened
    for store in opened:
        store.results.close()


def race(stores, work):
    """Run ``work(store)`` in one thread per store, all released at once."""
    barrier = threading.Barrier(len(stores))
    results = [None] * len(stores)

    def run(i, store):
        barrier.wait()
        results[i] = work(store)

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_one_due_run_is_claimed_once_however_many_race(stores):
    entry = build("tick", "tests.add", 60)
    entry.next_run_at = NOW
    stores[0].insert(entry, NOW)
    won = race(stores, lambda s: s.claim(
        s.get("tick"), NOW, NOW + dt.timedelta(seconds=60), f"id-{id(s)}", NOW, "racer", None))
    assert won.count(Claim.CLAIMED) == 1
    assert len(stores[0].runs("tick")) == 1


def test_one_holder_wins_the_lease(stores):
    won = race(stores, lambda s: Lease(s, 5).acquire(f"beat-{id(s)}", NOW).held)
    assert won.count(True) == 1
    winner = Lease(stores[0], 5).holder()["holder"]
    seen = Lease(stores[0], 5).acquire("late", NOW + dt.timedelta(seconds=4))
    # a standby learns until when the holder's lease runs: it wakes then, not a poll later
    assert (seen.held, seen.holder, seen.expires_at) == (
        False, winner, NOW + dt.timedelta(seconds=5))
    assert Lease(stores[0], 5).acquire("late", NOW + dt.timedelta(seconds=5)).held
    assert Lease(stores[0], 5).holder()["holder"] == "late" != winner


def test_a_run_is_reclaimed_for_publishing_again_once_and_only_with_the_lease(stores):
    store = stores[0]
    entry = build("tick", "tests.add", 60)
    entry.next_run_at = NOW
    store.insert(entry, NOW)
    dead, live = Lease(store, 5), Lease(store, 5)
    assert dead.acquire("dead", NOW).held
    assert store.claim(store.get("tick"), NOW, None, "id-1", NOW, "dead", dead) \
        is Claim.CLAIMED
    later = NOW + dt.timedelta(seconds=6)
    assert live.acquire("live", later).held
    [run] = store.unsent(later)
    with pytest.raises(NotLeader):  # the beat that lost the lease cannot take it back
        store.reclaim(run, later, "dead", dead)
    won = race(stores, lambda s: s.reclaim(run, later, "live", Lease(s, 5)))
    assert won.count(True) == 1  # two rounds of the live beat, or two beats: one publish
    [again] = store.unsent(later)
    assert (again.task_id, again.claimed_at) == ("id-1", later)


def test_claim_advances_the_schedule_only_while_the_lease_is_held(stores):
    store = stores[0]
    lease = Lease(store, 5)
    entry = build("tick", "tests.add", 60)
    entry.next_run_at = NOW
    store.insert(entry, NOW)
    assert lease.acquire("me", NOW).held
    later = NOW + dt.timedelta(seconds=60)
    assert store.claim(store.get("tick"), NOW, later, "id-1", NOW, "me", lease) \
        is Claim.CLAIMED
    assert store.get("tick").next_run_at == later and store.get("tick").total_run_count == 1
    # the same due run again (a stale read of the row): nothing is claimed
    assert store.claim(entry, NOW, later, "id-2", NOW, "me", lease) is Claim.LOST
    assert [r.task_id for r in store.runs("tick")] == ["id-1"]
    # next_run_at moved back by hand onto that run: not claimed again, but moved past it
    with store.engine.begin() as conn:
        conn.execute(update(schedules).values(next_run_at=NOW))
    even_later = later + dt.timedelta(seconds=60)
    assert store.claim(store.get("tick"), NOW, even_later, "id-3", NOW, "me", lease) \
        is Claim.TAKEN
    assert store.get("tick").next_run_at == even_later and store.get("tick").total_run_count == 1
    assert [r.task_id for r in store.runs("tick")] == ["id-1"]


def test_cleanup_deletes_expired_results_in_bounded_batches(stores):
    store = stores[0]
    old, recent = NOW - dt.timedelta(days=2), NOW - dt.timedelta(minutes=5)
    store.results.write(
        [StateChange(task_id=f"old-{i}", state=SUCCESS, finished_at=old) for i in range(25)]
        + [StateChange(task_id=f"new-{i}", state=SUCCESS, finished_at=recent) for i in range(5)]
        + [StateChange(task_id=f"waiting-{i}", state=PENDING) for i in range(3)]
        + [StateChange(task_id="retrying", state=RETRY, finished_at=old)])
    assert Cleanup(store, Settings(result_expires=None)).maybe_run(NOW) == 0
    assert store.results.count() == 34  # None keeps them
    # one statement deletes at most result_cleanup_batch rows
    assert store.delete_batch("tasks", NOW - dt.timedelta(days=1), 2) == 2
    # a round is MAX_BATCHES statements at most, and says a backlog remains
    conf = Settings(result_expires=86400.0, result_cleanup_batch=2)
    assert Cleanup(store, conf).run(NOW) == (2 * MAX_BATCHES, True)
    assert Cleanup(store, conf).run(NOW) == (3, False)
    assert store.results.count() == 9  # recent, unfinished and retrying rows stay
    assert store.results.get("retrying").state == RETRY


def test_cleanup_deletes_the_rows_of_workers_gone_longer_than_the_retention(stores):
    """Whatever result_expires says; a worker still writing, or gone for less than the
    retention, keeps its row; a round deletes in bounded batches like the results."""
    store = stores[0]
    workers = WorkerStore(store.results)
    for i in range(25):
        workers.beat(WorkerBeat(
            hostname=f"w{i}@h", pid=i, version="1", pool="prefork", concurrency=1,
            processes=1, queues=["celery"], prefetch=64, state="offline",
            heartbeat_interval=5.0, started_at=NOW))

    def age(conn):  # w0..w20 last wrote 8 days ago, w21..w23 2 days ago; w24 is live
        for i, days in [*((i, 8) for i in range(21)), *((i, 2) for i in range(21, 24))]:
            conn.execute(update(workers_table).where(workers_table.c.hostname == f"w{i}@h")
                         .values(last_heartbeat_at=NOW - dt.timedelta(days=days)))

    store.results.transaction("age", age)
    conf = Settings(result_expires=None, result_cleanup_batch=2)
    assert Cleanup(store, conf).run(NOW) == (2 * MAX_BATCHES, True)
    assert Cleanup(store, conf).maybe_run(NOW) == 1
    assert sorted(w.hostname for w in workers.workers()) == [
        "w21@h", "w22@h", "w23@h", "w24@h"]
    conf.worker_heartbeat_retention = dt.timedelta(days=1)
    assert Cleanup(store, conf).run(NOW) == (3, False)
    assert [w.hostname for w in workers.workers()] == ["w24@h"]


def test_cleanup_deletes_expired_groups_and_their_chord_counters(stores):
    store = stores[0]
    old, recent = NOW - dt.timedelta(days=2), NOW - dt.timedelta(minutes=5)
    rows = {  # group id: (state, created_at, finished_at)
        "plain-old": (None, old, None), "plain-new": (None, recent, None),
        "chord-done-old": ("COMPLETE", old, old), "chord-failed-old": ("FAILED", old, old),
        "chord-done-new": ("COMPLETE", old, recent), "chord-open-old": ("OPEN", old, None)}

    def fill(conn):
        conn.execute(insert(groups), [
            {"group_id": gid, "member_ids": ["m"], "size": 1, "state": state,
             "created_at": created, "finished_at": finished}
            for gid, (state, created, finished) in rows.items()])
        conn.execute(insert(group_counts), [
            {"group_id": gid, "shard": shard, "completed": 1, "failed": 0}
            for gid in rows if gid.startswith("chord") for shard in ("w1", "w2")])

    store.results.transaction("fill", fill)
    assert Cleanup(store, Settings(result_expires=86400.0)).run(NOW) == (3 + 2 * 2, False)  # 3 groups, 2 shards of 2 chords

    def left(conn):
        return (sorted(conn.execute(select(groups.c.group_id)).scalars()),
                sorted(set(conn.execute(select(group_counts.c.group_id)).scalars())))

    assert store.results.transaction("read", left) == (
        ["chord-done-new", "chord-open-old", "plain-new"], ["chord-done-new", "chord-open-old"])


def test_beats_starting_together_sync_the_config_once(stores):
    entries = [build("a", "tests.add", 10, source="config"),
               build("b", "tests.add", 20, source="config")]
    reports = race(stores, lambda s: s.sync_config(entries, NOW))
    assert sorted(name for r in reports for name in r.added) == ["a", "b"]
    assert [e.name for e in stores[0].all()] == ["a", "b"]


def test_config_sync_adds_updates_keeps_runtime_and_disables_removed(stores):
    store = stores[0]
    a, b = build("a", "tests.add", 10, source="config"), build("b", "tests.add", 20,
                                                                source="config")
    store.sync_config([a, b], NOW)
    store.insert(build("runtime", "tests.add", 30), NOW)
    report = store.sync_config([build("a", "tests.mul", 10, source="config")],
                               NOW + dt.timedelta(seconds=1))
    assert (report.added, report.updated, report.disabled) == ([], ["a"], ["b"])
    rows = {e.name: e for e in store.all()}
    assert rows["a"].task == "tests.mul" and rows["a"].next_run_at == NOW + dt.timedelta(
        seconds=10)  # the timing did not change: its next run is kept
    assert (rows["b"].enabled, rows["b"].source, rows["b"].next_run_at) == (
        False, "config-removed", None)
    assert rows["runtime"].enabled and rows["runtime"].source == "runtime"
    report = store.sync_config([build("a", "tests.mul", 10, source="config"), b], NOW)
    assert report.restored == ["b"] and store.get("b").enabled
    assert store.get("b").next_run_at == NOW + dt.timedelta(seconds=20)


def test_a_next_run_set_by_hand_is_claimed(stores, store_url):
    """``next_run_at`` written with the database's own clock function (PostgreSQL: now();
    SQLite: datetime('now'), no microseconds) is still the due time beat claims."""
    store = stores[0]
    store.insert(build("tick", "tests.add", 3600), NOW)
    clock = "now()" if store.dialect == "postgresql" else "datetime('now')"
    with store.engine.begin() as conn:
        conn.execute(text(f"UPDATE hutch_schedules SET next_run_at = {clock}"))
    entry = store.get("tick")
    lease = Lease(store, 5)
    assert lease.acquire("me", NOW).held
    assert store.claim(entry, entry.next_run_at, NOW + dt.timedelta(hours=1), "id-1", NOW,
                       "me", lease) is Claim.CLAIMED
    assert store.get("tick").next_run_at == NOW + dt.timedelta(hours=1)
    assert [r.task_id for r in store.runs("tick")] == ["id-1"]


def test_migration_0005_adds_catch_up_to_existing_rows_and_goes_back(empty_database_url):
    """Up from 0004 with a schedule in the table (it gets the defaults: one, 100), down
    again (the columns go, the row and the table's index stay), and up once more."""
    url = empty_database_url
    migrate.upgrade(url, "0004")
    engine = make_engine(url)

    def query(sql):
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return result.all() if result.returns_rows else None

    def columns():
        with engine.connect() as conn:
            inspector = inspect(conn)
            return ({c["name"] for c in inspector.get_columns("hutch_schedules")},
                    {i["name"] for i in inspector.get_indexes("hutch_schedules")})

    try:
        query("INSERT INTO hutch_schedules (name, task, kind, interval_seconds, args) "
              "VALUES ('old', 'tests.add', 'interval', 60, '[1, 2]')")
        assert "catch_up" not in columns()[0]
        migrate.upgrade(url, "0005")
        assert migrate.current(url) == "0005"
        assert query("SELECT catch_up, catch_up_limit FROM hutch_schedules") == [("one", 100)]
        query("UPDATE hutch_schedules SET catch_up = 'all', catch_up_limit = 500")
        migrate.upgrade(url)  # a store refuses a schema behind its hutch
        with ResultStore(url) as results:
            old = BeatStore(results).get("old")
        assert (old.catch_up, old.catch_up_limit, old.args) == ("all", 500, [1, 2])

        migrate.downgrade(url, "0004")
        names, indexes = columns()
        assert migrate.current(url) == "0004"
        assert not {"catch_up", "catch_up_limit"} & names and "next_run_at" in names
        assert "ix_hutch_schedules_next_run_at" in indexes
        assert query("SELECT name, task, interval_seconds FROM hutch_schedules") == [
            ("old", "tests.add", 60.0)]
        migrate.upgrade(url)
        assert query("SELECT catch_up, catch_up_limit FROM hutch_schedules") == [("one", 100)]
    finally:
        engine.dispose()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_beat_whose_clock_is_off_from_postgresqls_warns(store_url):
    app = make_app(f"memory://{uuid.uuid4().hex}", store_url)
    try:
        with capture_logs() as logs:
            honest = Beat(app.conf, app.client).check_clock()
            ahead = Beat(app.conf, app.client, clock=lambda: dt.datetime.now(dt.timezone.utc)
                         + dt.timedelta(seconds=3)).check_clock()
        assert abs(honest) < 0.5 and 2.5 < ahead < 3.5
        warned = [e for e in logs if "clock differs" in e["event"]]
        assert len(warned) == 1 and warned[0]["warn_above"] == 1.0  # (lease 5 - poll 1) / 4
    finally:
        app.close()


def test_the_lease_row_records_the_broker_node_at_each_renewal(stores):
    node = ["rabbit1:5672"]
    lease = Lease(stores[0], 5, node=lambda: node[0])
    assert lease.acquire("beat-a", NOW).held
    assert lease.holder()["broker_node"] == "rabbit1:5672"
    node[0] = "rabbit2:5672"  # its publisher moved to another node
    entry = build("tick", "tests.add", 60)
    entry.next_run_at = NOW
    stores[0].insert(entry, NOW)
    later = NOW + dt.timedelta(seconds=1)
    assert stores[0].claim(stores[0].get("tick"), NOW, NOW + dt.timedelta(seconds=60), "id-1",
                           later, "beat-a", lease) == Claim.CLAIMED  # renews in the claim
    assert lease.holder()["broker_node"] == "rabbit2:5672"
    # a beat that has not published yet takes over: the node is not known
    taken = Lease(stores[1], 5).acquire("beat-b", NOW + dt.timedelta(seconds=10))
    assert taken.held and Lease(stores[1], 5).holder()["broker_node"] is None


def test_migration_0013_adds_the_broker_node_and_goes_back(empty_database_url):
    url = empty_database_url
    migrate.upgrade(url, "0012")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO hutch_beat_lease (name, holder, acquired_at, "
                              "renewed_at, expires_at) VALUES ('beat', 'b', :t, :t, :t)"),
                         {"t": NOW})
        migrate.upgrade(url, "0013")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT broker_node FROM hutch_beat_lease")).all() == [
                (None,)]
        migrate.downgrade(url, "0012")
        assert "broker_node" not in {c["name"] for c in inspect(engine).get_columns(
            "hutch_beat_lease")}
    finally:
        engine.dispose()
