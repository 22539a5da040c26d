"""The whole task path on memory:// + SQLite: what tasks and results see, without RabbitMQ."""

import threading
import time
import uuid

import pytest

from apps.tasks import CustomError, make_app, register
from hutch import Client
from hutch.client.handles import rebuild_exception
from hutch.errors import (
    ConfigurationError,
    MaxRetriesExceededError,
    TaskFailure,
    TaskRevokedError,
    TimeoutError,
)
from hutch.ops.deadletters import replay
from hutch.results.records import TaskRecord
from support.waiting import eventually
from support.workers import running_worker


@pytest.fixture
def app(tmp_path):
    broker = f"memory://{uuid.uuid4().hex}"
    app = make_app(broker, f"sqlite:///{tmp_path / 'r.sqlite'}", worker_concurrency=2)
    yield app
    app.close()


def test_delay_and_get(hutch_app, hutch_worker):
    """With hutch.testing's fixtures: a private memory:// app, a worker thread."""
    register(hutch_app)
    r = hutch_app.tasks["tests.add"].delay(4, 4)
    assert r.get(timeout=10) == 8
    assert r.state == "SUCCESS" and r.ready() and r.successful() and not r.failed()
    row = hutch_app.client().store.get(r.id)
    assert row.name == "tests.add" and row.args == [4, 4] and row.queue == "celery"
    assert row.started_at <= row.finished_at and row.worker.startswith("hutch@")


def test_unknown_id_is_pending(app):
    assert app.AsyncResult(str(uuid.uuid4())).state == "PENDING"


def test_submitted_task_is_pending_with_its_arguments_until_a_worker_runs_it(app):
    r = app.tasks["tests.add"].delay(1, 2)
    assert app.client().flush()
    row = app.client().store.get(r.id)
    assert row.state == "PENDING" and row.args == [1, 2] and row.created_at is not None
    with running_worker(app):
        assert r.get(timeout=10) == 3


def test_get_timeout(app):
    r = app.tasks["tests.add"].delay(1, 1)
    with pytest.raises(TimeoutError, match="not ready"):
        r.get(timeout=0.2)


def test_failure_reraises_the_task_exception_type(app):
    with running_worker(app):
        r = app.tasks["tests.fail"].delay("it broke")
        with pytest.raises(CustomError, match="it broke"):
            r.get(timeout=10)
        assert r.failed() and "CustomError" in r.traceback
        assert isinstance(r.get(propagate=False), CustomError)


def test_link_callback_gets_the_result_and_is_a_child(app):
    add = app.tasks["tests.add"]
    with running_worker(app):
        r = add.apply_async((2, 2), link=add.s(16))
        assert r.get(timeout=10) == 4
        child = _wait_children(r)[0]
        assert child.get(timeout=10) == 20
        assert child.parent == r


def test_link_error_gets_the_failed_task_id(app):
    with running_worker(app):
        r = app.tasks["tests.fail"].apply_async(("x",), link_error=app.tasks["tests.errback"].s())
        child = _wait_children(r)[0]
        assert child.get(timeout=10) == f"{r.id}: CustomError('x')"


def test_immutable_link_ignores_the_parent_result(app):
    add = app.tasks["tests.add"]
    with running_worker(app):
        r = add.apply_async((1, 1), link=add.si(10, 10))
        assert _wait_children(r)[0].get(timeout=10) == 20


def test_bound_request_and_options(app):
    with running_worker(app, queues=["celery", "priority.high"]):
        r = app.tasks["tests.whoami"].apply_async(
            queue="priority.high", headers={"tenant": "acme"}, task_id="my-id-1")
        info = r.get(timeout=10)
        assert r.id == "my-id-1"
        assert info["id"] == "my-id-1" and info["queue"] == "priority.high"
        assert info["headers"] == {"tenant": "acme"} and info["task"] == "tests.whoami"


def test_task_sent_from_a_task_records_its_parent(app):
    with running_worker(app):
        r = app.tasks["tests.spawn"].delay(3)
        child = app.AsyncResult(r.get(timeout=10))
        assert child.get(timeout=10) == 6
        assert child.parent == r and r.children == [child]


@pytest.mark.parametrize("serializer", ["json", "msgpack", "yaml"])
@pytest.mark.parametrize("compression", [None, "zlib", "bzip2"])
def test_serializers_and_compression(app, serializer, compression):
    value = {"pair": (1, 2), "tags": {"a"}}
    with running_worker(app):
        r = app.tasks["tests.echo"].apply_async((value,), serializer=serializer,
                                               compression=compression)
        assert r.get(timeout=10) == value


def test_pickle_refused_by_default_fails_and_dead_letters(app):
    with running_worker(app):
        r = app.tasks["tests.echo"].apply_async((1,), serializer="pickle")
        with pytest.raises(Exception, match="refused content of type pickle"):
            r.get(timeout=10)
    dead = app.client().broker.dead_letters("celery")
    assert [w.message_id for w in dead] == [r.id]


def test_pickle_accepted_when_configured(app):
    app.conf.accept_content = ("json", "pickle")
    with running_worker(app):
        r = app.tasks["tests.echo"].apply_async(({"a": 1},), serializer="pickle")
        assert r.get(timeout=10) == {"a": 1}


def test_unknown_task_name_fails_and_dead_letters(app):
    client = Client(conf=app.conf)
    with running_worker(app):
        r = client.submit("tests.no_such_task", 1)
        with pytest.raises(Exception, match="no task named 'tests.no_such_task'"):
            r.get(timeout=10)
    assert app.client().broker.dead_letters("celery")[0].message_id == r.id
    client.close()


def test_result_json_cannot_hold_is_a_clear_failure(app):
    with running_worker(app):
        r = app.tasks["tests.unpicklable_result"].delay()
        with pytest.raises(Exception, match="cannot serialize"):
            r.get(timeout=10)


def test_expired_task_never_runs(app):
    r = app.tasks["tests.add"].apply_async((1, 1), expires=0.01)
    time.sleep(0.05)
    with running_worker(app):
        with pytest.raises(TaskRevokedError, match="expired"):
            r.get(timeout=10)
    assert r.state == "REVOKED"


def test_forget_deletes_the_row(app):
    with running_worker(app):
        r = app.tasks["tests.add"].delay(1, 1)
        r.get(timeout=10)
    r.forget()
    assert r.state == "PENDING"


@pytest.mark.parametrize("pool", ["solo", "threads", "asyncio"])
def test_pools(app, pool):
    with running_worker(app, pool=pool, concurrency=3):
        results = [app.tasks["tests.asleep"].delay(0.05) for _ in range(6)]
        results += [app.tasks["tests.add"].delay(i, i) for i in range(6)]
        assert [r.get(timeout=10) for r in results] == [0.05] * 6 + [i * 2 for i in range(6)]


def test_unknown_option_and_bad_values_are_refused(app):
    add = app.tasks["tests.add"]
    with pytest.raises(ConfigurationError, match="unknown call option"):
        add.apply_async((1, 1), qeue="x")
    with pytest.raises(ConfigurationError, match="serializer"):
        add.apply_async((1, 1), serializer="xml")
    with pytest.raises(ConfigurationError, match="compression"):
        add.apply_async((1, 1), compression="zip")
    with pytest.raises(ConfigurationError, match="link"):
        add.apply_async((1, 1), link="tests.add")


def test_remote_exception_type_not_importable_becomes_task_failure(app):
    fields = dict.fromkeys(TaskRecord.__dataclass_fields__)
    fields.update(task_id="x", state="FAILURE", retries=0, exception_type="nowhere.Oops",
                  exception_message="gone")
    exc = rebuild_exception(TaskRecord(**fields))
    assert isinstance(exc, TaskFailure) and exc.exc_type == "nowhere.Oops"


def _wait_children(result, timeout=10):
    children = eventually(lambda: result.children, timeout)
    assert children, f"no children recorded for {result.id}"
    return children


def test_countdown_never_runs_early_on_memory(app):
    with running_worker(app):
        sent = time.monotonic()
        r = app.tasks["tests.add"].apply_async((2, 3), countdown=1)
        assert r.get(timeout=10) == 5
        assert time.monotonic() - sent >= 1.0


def test_delay_beyond_the_ladder_is_refused(app):
    with pytest.raises(ConfigurationError, match="8.5 years"):
        app.tasks["tests.add"].apply_async((1, 1), countdown=2**28)


def test_self_retry_keeps_the_id_and_counts_retries(app):
    with running_worker(app):
        r = app.tasks["tests.flaky"].delay(2)
        assert r.get(timeout=20) == 2
        row = app.client().store.get(r.id)
        assert row.state == "SUCCESS" and row.retries == 2 and row.exception_type is None


def test_retries_exhausted_fail_with_the_last_error_and_dead_letter(app):
    with running_worker(app):
        r = app.tasks["tests.autoretry"].delay()
        with pytest.raises(CustomError, match="still broken"):
            r.get(timeout=20)
        assert app.client().store.get(r.id).retries == 1
    assert [w.message_id for w in app.client().broker.dead_letters("celery")] == [r.id]


def test_retry_without_exception_beyond_max_retries(app):
    with running_worker(app):
        r = app.tasks["tests.always_retry"].delay()
        with pytest.raises(MaxRetriesExceededError, match="gave up after 1 retries"):
            r.get(timeout=20)


def test_dlq_replay_runs_the_task_again_and_the_row_follows(app):
    with running_worker(app):
        r = Client(conf=app.conf).submit("tests.late_comer", 20)
        r.get(timeout=10, propagate=False)
        assert r.state == "FAILURE"

    @app.task(name="tests.late_comer")
    def late_comer(x):
        return x + 1

    assert replay(app.client(), "celery") == [r.id]
    assert r.state == "PENDING"
    with running_worker(app):
        assert r.get(timeout=10) == 21
    assert app.client().broker.dead_letters("celery") == []
    assert app.client().store.get(r.id).retries == 0


def test_cold_stop_of_an_embedded_worker_returns_instead_of_exiting(app):
    from hutch.worker.process import WorkerProcess
    from hutch.worker.wiring import Wiring

    worker = WorkerProcess(Wiring(app.conf, app.tasks, app.main), pool="threads", concurrency=1)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run(install_signals=False)),
                              daemon=True)
    thread.start()
    assert worker.wait_started(10)
    r = app.tasks["tests.sleep"].delay(3)
    eventually(lambda: r.state == "STARTED")
    started = time.monotonic()
    worker.stop(cold=True)
    thread.join(10)
    assert codes == [1]  # returned (the test process is still here), without waiting
    assert time.monotonic() - started < 2.5
