"""hutch.signals: the Signal class (connect, sender filtering, weak references,
dispatch_uid, raising receivers), and each signal sent at its place with Celery's
arguments, on memory:// + SQLite."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from apps.tasks import CustomError
from hutch import AsyncClient, signals
from hutch.beat.service import Beat
from hutch.cli import loader
from hutch.errors import ConfigurationError, MessageError, NotRegistered
from hutch.messages import Request, TaskMessage
from hutch.signals import Signal
from hutch.worker.executor import Executor
from support.deliveries import FakeDelivery, executor_world
from support.waiting import eventually
from support.workers import running_worker

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def listen():
    """``listen(signal, **connect_options)``: a list that fills with ``(sender, named)``
    for each send; every receiver is disconnected after the test."""
    connected = []

    def start(signal: Signal, **options):
        calls: list[tuple[object, dict]] = []
        lock = threading.Lock()

        def receiver(sender, **named):
            with lock:
                calls.append((sender, named))

        signal.connect(receiver, weak=False, **options)
        connected.append((signal, receiver, options.get("sender")))
        return calls

    yield start
    for signal, receiver, sender in connected:
        signal.disconnect(receiver, sender=sender)


# -- the Signal class --------------------------------------------------------------------
def test_connect_as_a_decorator_with_and_without_arguments_and_send_returns_responses():
    sig = Signal("test_signal", ("value",))

    @sig.connect
    def plain(sender, value, **kwargs):
        return ("plain", sender, value, kwargs["signal"] is sig)

    @sig.connect(sender="proj.add")
    def filtered(sender, **kwargs):
        return "filtered"

    assert sig.send("proj.mul", value=1) == [(plain, ("plain", "proj.mul", 1, True))]
    assert sig.send("proj.add", value=2) == [(plain, ("plain", "proj.add", 2, True)),
                                             (filtered, "filtered")]
    assert repr(sig) == "<Signal: test_signal providing_args=['value']>"


def test_sender_filters_by_object_by_task_name_and_by_a_tasks_name(memory_app):
    add, mul = memory_app.tasks["tests.add"], memory_app.tasks["tests.mul"]
    sig, seen = Signal("s"), []
    sig.connect(lambda sender, **_: seen.append(("by name", sender)), sender="tests.add",
                weak=False)
    sig.connect(lambda sender, **_: seen.append(("by task", sender)), sender=add, weak=False)
    for sender in (add, mul, "tests.add", "tests.mul", None):
        sig.send(sender)
    assert seen == [("by name", add), ("by task", add),
                    ("by name", "tests.add"), ("by task", "tests.add")]


def test_receivers_are_weak_by_default_and_strong_with_weak_false():
    sig, seen = Signal("s"), []

    def make(label):
        def receiver(**_):
            seen.append(label)
        return receiver

    weak, strong = make("weak"), make("strong")
    sig.connect(weak)
    sig.connect(strong, weak=False)
    sig.send(None)
    del weak, strong
    gc.collect()
    sig.send(None)
    assert seen == ["weak", "strong", "strong"]
    assert len(sig.receivers) == 1


def test_a_bound_method_is_held_weakly_with_its_object():
    sig, seen = Signal("s"), []

    class Listener:
        def on(self, **_):
            seen.append(self)

    listener = Listener()
    sig.connect(listener.on)  # a new bound method object: still found while listener lives
    sig.send(None)
    assert seen == [listener] and sig.disconnect(listener.on)
    sig.connect(listener.on)
    seen.clear()
    del listener
    gc.collect()
    sig.send(None)
    assert seen == [] and sig.receivers == ()


def test_dispatch_uid_connects_once_and_disconnects():
    sig, seen = Signal("s"), []

    def first(**_):
        seen.append(1)

    def second(**_):
        seen.append(2)

    sig.connect(first, dispatch_uid="metrics")
    sig.connect(second, dispatch_uid="metrics")  # same uid: not added
    sig.connect(first)
    sig.connect(first)  # same receiver and sender: not added again
    sig.connect(first, "proj.add")  # as Celery, the sender may be given by position
    sig.send(None)
    assert seen == [1, 1]
    seen.clear()
    sig.send("proj.add")
    assert seen == [1, 1, 1]
    assert sig.disconnect(first, "proj.add")
    assert sig.disconnect(dispatch_uid="metrics") and not sig.disconnect(dispatch_uid="metrics")
    assert sig.disconnect(first) and not sig.disconnect(first)
    assert sig.receivers == () and sig.send(None) == []


class Unreferable:
    """A callable no weak reference can point to (slots, without ``__weakref__``)."""

    __slots__ = ()

    def __call__(self, **kwargs):
        return None


def test_bad_receivers_are_refused_with_a_clear_error():
    sig = Signal("task_prerun")
    with pytest.raises(ConfigurationError, match=r"task_prerun.connect: .*\*\*kwargs"):
        sig.connect(lambda sender: None, weak=False)
    with pytest.raises(ConfigurationError, match="must be callable"):
        sig.connect(42)
    with pytest.raises(ConfigurationError, match="weak=False"):
        sig.connect(Unreferable())
    with pytest.raises(ConfigurationError, match="receiver or its dispatch_uid"):
        sig.disconnect()


def test_a_raising_receiver_is_logged_and_the_others_still_run(caplog):
    sig, seen = Signal("task_success"), []

    def broken(**_):
        raise ValueError("receiver bug")

    def fine(**_):
        seen.append("fine")
        return "ok"

    sig.connect(broken)
    sig.connect(fine)
    with caplog.at_level(logging.ERROR, logger="hutch.signals"):
        responses = sig.send("tests.add")
    assert seen == ["fine"]
    assert isinstance(responses[0][1], ValueError) and responses[1] == (fine, "ok")
    [record] = caplog.records
    assert record.name == "hutch.signals" and record.exc_info[0] is ValueError
    assert "signal receiver raised" in record.getMessage()
    assert "task_success" in record.getMessage() and "broken" in record.getMessage()


def test_every_celery_signal_is_there_with_its_name():
    names = ["before_task_publish", "after_task_publish", "task_received", "task_prerun",
             "task_postrun", "task_success", "task_failure", "task_retry", "task_revoked",
             "task_rejected", "task_unknown", "worker_init", "worker_process_init",
             "worker_ready", "worker_shutting_down", "worker_process_shutdown",
             "worker_shutdown", "beat_init", "setup_logging", "after_setup_logger",
             "import_modules"]
    assert all(getattr(signals, name).name == name for name in names)
    assert set(names) <= set(signals.__all__)


# -- publishing ----------------------------------------------------------------------------
def test_publish_signals_carry_the_message_and_receivers_may_change_properties(memory_app,
                                                                              listen):
    before = listen(signals.before_task_publish, sender="tests.add")
    after = listen(signals.after_task_publish)
    received = listen(signals.task_received)

    @signals.before_task_publish.connect
    def urgent(headers, properties, **_):
        properties["priority"] = 7
        headers["traceparent"] = "00-trace-span-01"  # unknown to hutch: carried, ignored

    try:
        r = memory_app.tasks["tests.add"].delay(2, 3)
    finally:
        signals.before_task_publish.disconnect(urgent)
    [(sender, named)] = before
    exchange = f"{memory_app.conf.topology_prefix}.celery"
    assert sender == "tests.add" and named["headers"]["id"] == r.id
    assert named["routing_key"] == "celery" and named["exchange"] == exchange
    assert isinstance(named["body"], bytes) and named["declare"] is None
    assert named["retry_policy"]["max_retries"] == 3
    [(sender, named)] = after
    assert sender == "tests.add" and named["headers"]["task"] == "tests.add"
    assert named["headers"]["traceparent"] == "00-trace-span-01"
    assert named["routing_key"] == "celery" and named["exchange"] == exchange
    with running_worker(memory_app):
        assert r.get(timeout=10) == 5
    assert [named["request"].priority for _, named in received] == [7]


def test_a_raising_publish_receiver_does_not_stop_the_publish(memory_app):
    def broken(**_):
        raise RuntimeError("tracing is down")

    signals.before_task_publish.connect(broken)
    signals.after_task_publish.connect(broken)
    try:
        r = memory_app.tasks["tests.add"].delay(1, 1)
    finally:
        signals.before_task_publish.disconnect(broken)
        signals.after_task_publish.disconnect(broken)
    with running_worker(memory_app):
        assert r.get(timeout=10) == 2


def test_the_asyncio_client_sends_the_publish_signals(memory_app, listen):
    before, after = listen(signals.before_task_publish), listen(signals.after_task_publish)

    async def submit():
        async with AsyncClient(conf=memory_app.conf) as client:
            return await client.submit("tests.add", 1, 2)

    r = asyncio.run(submit())
    assert [n["headers"]["id"] for _, n in before] == [n["headers"]["id"] for _, n in after] \
        == [r.id]


# -- running tasks ------------------------------------------------------------------------
TASK_SIGNALS = ("task_received", "task_prerun", "task_success", "task_failure", "task_retry",
                "task_revoked", "task_postrun")


@pytest.fixture
def task_signals(listen):
    """Every task signal's calls, by signal name."""
    return {name: listen(getattr(signals, name)) for name in TASK_SIGNALS}


@pytest.mark.parametrize("pool", ["threads", "asyncio", "solo"])
def test_a_successful_run_sends_received_prerun_success_postrun(memory_app, task_signals,
                                                                pool):
    add = memory_app.tasks["tests.add"]
    with running_worker(memory_app, pool=pool):
        r = add.delay(2, 2)
        assert r.get(timeout=10) == 4
        assert eventually(lambda: task_signals["task_postrun"], timeout=10)
    calls = {name: calls for name, calls in task_signals.items() if calls}
    assert set(calls) == {"task_received", "task_prerun", "task_success", "task_postrun"}
    [(sender, named)] = calls["task_received"]
    assert isinstance(sender, Executor) and isinstance(named["request"], Request)
    assert named["request"].id == r.id and named["request"].args == (2, 2)
    [(sender, named)] = calls["task_prerun"]
    assert sender is add and named == {"signal": signals.task_prerun, "task_id": r.id,
                                       "task": add, "args": (2, 2), "kwargs": {}}
    assert calls["task_success"] == [(add, {"signal": signals.task_success, "result": 4})]
    [(sender, named)] = calls["task_postrun"]
    assert sender is add and named["retval"] == 4 and named["state"] == "SUCCESS"
    assert named["task_id"] == r.id and named["args"] == (2, 2)


def test_a_failure_sends_task_failure_with_the_exception_and_einfo(memory_app, task_signals):
    with running_worker(memory_app):
        r = memory_app.tasks["tests.fail"].delay("broken on purpose")
        with pytest.raises(CustomError):
            r.get(timeout=10)
        assert eventually(lambda: task_signals["task_postrun"], timeout=10)
    [(sender, named)] = task_signals["task_failure"]
    assert sender is memory_app.tasks["tests.fail"] and named["task_id"] == r.id
    exc = named["exception"]
    assert isinstance(exc, CustomError) and named["args"] == ("broken on purpose",)
    assert named["traceback"] is exc.__traceback__ and named["einfo"].exception is exc
    assert "CustomError: broken on purpose" in str(named["einfo"])
    [(_, named)] = task_signals["task_postrun"]
    assert named["state"] == "FAILURE" and named["retval"] is exc
    assert task_signals["task_success"] == []


def test_a_retry_sends_task_retry_then_the_next_attempt_succeeds(memory_app, task_signals):
    with running_worker(memory_app):
        r = memory_app.tasks["tests.retry_once"].delay(0.1)
        assert r.get(timeout=10) == 1
        assert eventually(lambda: len(task_signals["task_postrun"]) == 2, timeout=10)
    [(sender, named)] = task_signals["task_retry"]
    assert sender is memory_app.tasks["tests.retry_once"]
    assert named["request"].id == r.id and named["request"].retries == 0
    assert isinstance(named["reason"], CustomError) and named["einfo"].exception is named["reason"]
    assert [n["state"] for _, n in task_signals["task_postrun"]] == ["RETRY", "SUCCESS"]
    assert len(task_signals["task_received"]) == 2


def test_reject_and_ignore_end_with_task_postrun_rejected_and_ignored(tmp_path, task_signals):
    """As in Celery, a task that raises Reject or Ignore still sends task_postrun, with
    REJECTED or IGNORED and the exception as retval; no success or failure signal."""
    from apps.request_tasks import make_app
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}")
    try:
        with running_worker(app):
            rejected = app.tasks["tests.request.reject"].delay("no thanks")
            ignored = app.tasks["tests.request.ignore"].delay()
            assert eventually(lambda: len(task_signals["task_postrun"]) == 2, timeout=15)
    finally:
        app.close()
    ended = {named["task_id"]: named for _, named in task_signals["task_postrun"]}
    assert ended[rejected.id]["state"] == "REJECTED"
    assert type(ended[rejected.id]["retval"]).__name__ == "Reject"
    assert ended[ignored.id]["state"] == "IGNORED"
    assert task_signals["task_success"] == task_signals["task_failure"] == []


def test_a_revoked_or_expired_task_sends_task_revoked(memory_app, task_signals):
    expired = memory_app.tasks["tests.add"].apply_async((1, 1), expires=0.01)
    revoked = memory_app.tasks["tests.add"].delay(1, 2)
    revoked.revoke()
    time.sleep(0.05)
    with running_worker(memory_app):
        assert eventually(lambda: len(task_signals["task_revoked"]) == 2, timeout=10)
    by_id = {n["request"].id: (s, n) for s, n in task_signals["task_revoked"]}
    add = memory_app.tasks["tests.add"]
    assert by_id[expired.id][0] is add and by_id[revoked.id][0] is add
    assert (by_id[expired.id][1]["expired"], by_id[expired.id][1]["terminated"]) == (True, False)
    assert (by_id[revoked.id][1]["expired"], by_id[revoked.id][1]["terminated"]) == (False, False)
    assert by_id[revoked.id][1]["signum"] is None
    assert task_signals["task_received"] == task_signals["task_prerun"] == []


def test_terminating_an_asyncio_task_sends_task_revoked_and_postrun_revoked(memory_app,
                                                                             task_signals):
    with running_worker(memory_app, pool="asyncio"):
        r = memory_app.tasks["tests.asleep"].delay(30)
        assert eventually(lambda: task_signals["task_prerun"], timeout=10)
        r.revoke(terminate=True)
        assert eventually(lambda: task_signals["task_postrun"], timeout=10)
    [(sender, named)] = task_signals["task_revoked"]
    assert sender is memory_app.tasks["tests.asleep"] and named["request"].id == r.id
    assert (named["terminated"], named["expired"]) == (True, False)
    [(_, named)] = task_signals["task_postrun"]
    assert named["state"] == "REVOKED" and named["task_id"] == r.id


def test_an_unknown_task_sends_task_unknown(memory_app, listen):
    unknown = listen(signals.task_unknown)
    r = memory_app.client().submit("no.such.task", 1)
    with running_worker(memory_app):
        assert eventually(lambda: unknown, timeout=10)
    [(sender, named)] = unknown
    assert isinstance(sender, Executor)
    assert named["name"] == "no.such.task" and named["id"] == r.id
    assert isinstance(named["exc"], NotRegistered) and named["message"].wire.message_id == r.id


def test_an_invalid_message_sends_task_rejected(tmp_path, listen):
    rejected = listen(signals.task_rejected)
    wire = TaskMessage(task="tests.add", id=str(uuid.uuid4()), args=(1, 2)).encode()
    delivery = FakeDelivery(dataclasses.replace(wire, headers={**wire.headers, "hutch": 99}))
    with executor_world(tmp_path) as (_, _, _, executor):
        assert executor.prepare(delivery) is None
    [(sender, named)] = rejected
    assert sender is executor and named["message"] is delivery
    assert isinstance(named["exc"], MessageError)


def test_raising_task_receivers_are_logged_and_the_task_still_succeeds(memory_app, caplog):
    def broken(**_):
        raise RuntimeError("metrics backend down")

    hooked = [signals.task_received, signals.task_prerun, signals.task_success,
              signals.task_postrun]
    for signal in hooked:
        signal.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="hutch.signals"), running_worker(memory_app):
            r = memory_app.tasks["tests.add"].delay(3, 3)
            assert r.get(timeout=10) == 6
            assert eventually(lambda: len(raised(caplog)) == 4, timeout=10)
    finally:
        for signal in hooked:
            signal.disconnect(broken)
    assert r.state == "SUCCESS"
    assert {record.msg["signal"] for record in raised(caplog)} == {s.name for s in hooked}
    assert all(record.exc_info[0] is RuntimeError for record in raised(caplog))


def raised(caplog):
    return [r for r in caplog.records if r.name == "hutch.signals"]


# -- worker, beat and the hutch command ---------------------------------------------------------
WORKER_SIGNALS = ("worker_init", "worker_process_init", "worker_ready", "worker_shutting_down",
                  "worker_process_shutdown", "worker_shutdown")


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_a_worker_sends_its_lifecycle_signals_in_order(memory_app, listen, pool):
    order: list[str] = []
    calls = {}
    for name in WORKER_SIGNALS:
        calls[name] = listen(getattr(signals, name))
        getattr(signals, name).connect(lambda signal, **_: order.append(signal.name),
                                       dispatch_uid=f"order-{name}", weak=False)
    try:
        with running_worker(memory_app, pool=pool) as worker:
            assert order[-1] == "worker_ready"
    finally:
        for name in WORKER_SIGNALS:
            getattr(signals, name).disconnect(dispatch_uid=f"order-{name}")
    # Celery's solo pool sends worker_process_init too; a prefork child's own signals are
    # in tests/integration/test_signals_rabbitmq.py
    process_init = ["worker_process_init"] if pool == "solo" else []
    assert order == ["worker_init", *process_init, "worker_ready", "worker_shutting_down",
                     "worker_shutdown"]
    assert calls["worker_init"][0][0] is worker and calls["worker_ready"][0][0] is worker
    [(sender, named)] = calls["worker_shutting_down"]
    assert sender == worker.nodename
    assert named == {"signal": signals.worker_shutting_down, "sig": None, "how": "Warm",
                     "exitcode": 0}


def test_beat_sends_beat_init(memory_app, listen):
    inits = listen(signals.beat_init)
    beat = Beat(memory_app.conf, memory_app.client).start()
    try:
        assert eventually(lambda: inits, timeout=10)
    finally:
        beat.stop()
    assert inits[0][0] is beat


def test_hutch_configures_logging_then_sends_after_setup_logger(listen, monkeypatch):
    configured = []
    monkeypatch.setattr(loader.logs, "configure", lambda *a: configured.append(a))
    after = listen(signals.after_setup_logger)
    loader.set_up_logging("INFO", "json")
    assert configured == [("INFO", "json")]
    [(sender, named)] = after
    assert sender is None and named["logger"] is logging.getLogger()
    assert (named["loglevel"], named["logfile"], named["format"], named["colorize"]) == \
        (logging.INFO, None, "json", False)


def test_a_setup_logging_receiver_takes_logging_over(listen, monkeypatch):
    configured = []
    monkeypatch.setattr(loader.logs, "configure", lambda *a: configured.append(a))
    setup, after = listen(signals.setup_logging), listen(signals.after_setup_logger)
    loader.set_up_logging("WARNING", "console")
    assert configured == [] and after == []
    [(sender, named)] = setup
    assert sender is None and named["loglevel"] == logging.WARNING
    assert named["format"] == "console" and named["colorize"] is True


@pytest.mark.parametrize("own_logging", [False, True])
def test_the_hutch_command_sends_import_modules_and_the_logging_signals(tmp_path, own_logging):
    """In a process of its own: signal_app's receivers must not stay connected here."""
    log = tmp_path / "signals.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
    env.update(PYTHONPATH=TESTS, SIGNAL_APP_LOG=str(log), HUTCH_BROKER_URL="memory://",
               SIGNAL_APP_OWN_LOGGING="1" if own_logging else "0")
    done = subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.signal_app", "config",
                           "show"], capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["signal"] for line in lines] == [
        "import_modules", "setup_logging" if own_logging else "after_setup_logger"]
    assert lines[0]["sender"] == "Hutch"
