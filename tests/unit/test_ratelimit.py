"""Rate limits: Celery's syntax, the token bucket on an injected clock, the hold timer."""

import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest

from apps.tasks import make_app
from hutch import Hutch
from hutch.config import Settings
from hutch.errors import ConfigurationError
from hutch.messages import Wire
from hutch.tasks import parse_rate
from hutch.worker.ratelimit import HeldDelivery, Holder, RateLimits, TokenBucket
from support.waiting import eventually
from support.workers import running_worker


@pytest.mark.parametrize("value, per_second", [
    ("100/s", 100.0), ("10/m", 10 / 60), ("1/h", 1 / 3600), ("5", 5.0), (5, 5.0), (0.5, 0.5),
    ("2.5/sec", 2.5), ("30/minute", 0.5), (" 7 / H ", 7 / 3600),
    (None, None), (0, None), ("0", None), ("0/m", None), ("", None),
])
def test_parse_rate(value, per_second):
    got = parse_rate(value, "t")
    assert got is None if per_second is None else got == pytest.approx(per_second)


@pytest.mark.parametrize("value", ["10/d", "fast", "-1/s", "1/", "/s", "10/mn", -3, True,
                                   float("inf"), [10]])
def test_bad_rates_are_refused_naming_task_and_value(value):
    with pytest.raises(ConfigurationError, match=r"task proj.send: rate_limit .* is not a rate"):
        parse_rate(value, "proj.send")


def test_a_typo_fails_when_the_task_is_declared():
    app = Hutch("proj", broker="memory://")
    with pytest.raises(ConfigurationError, match=r"proj.send: rate_limit '10/mins'"):
        @app.task(name="proj.send", rate_limit="10/mins")
        def send():
            pass
    assert "proj.send" not in app.tasks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_spaces_a_burst_by_reserving_future_tokens():
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock)
    assert [bucket.reserve() for _ in range(4)] == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_bucket_refills_at_its_rate_and_holds_no_more_than_its_capacity():
    clock = Clock()
    bucket = TokenBucket(1 / 60, clock=clock)          # "1/m"
    assert bucket.reserve() == 0.0
    clock.now += 30
    assert bucket.reserve() == pytest.approx(30.0)     # half a token refilled
    clock.now += 30 + 60                               # the reserved token is used
    assert bucket.reserve() == 0.0
    clock.now += 3600                                  # idle for long: still one token
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(60.0)


def test_bucket_with_a_capacity_allows_that_burst():
    clock = Clock()
    bucket = TokenBucket(10.0, capacity=3, clock=clock)
    assert [bucket.reserve() for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_bucket_is_thread_safe():
    clock = Clock()
    bucket = TokenBucket(1.0, clock=clock)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(100):
            wait = bucket.reserve()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([float(i) for i in range(800)])


def test_holder_releases_in_due_order_and_stops_when_idle():
    released: list[str] = []
    done = threading.Event()

    def release(item: str) -> None:
        released.append(item)
        if len(released) == 3:
            done.set()

    holder = Holder(release)
    holder.hold(0.06, "c")
    holder.hold(0.02, "a")
    holder.hold(0.04, "b")
    assert done.wait(5)
    assert released == ["a", "b", "c"] and len(holder) == 0


def test_disable_rate_limits_setting_from_environment():
    conf = Settings()
    assert conf.worker_disable_rate_limits is False
    conf.apply_environment({"HUTCH_DISABLE_RATE_LIMITS": "true"})
    assert conf.worker_disable_rate_limits is True


@dataclass
class Arrival:
    """What admit() reads of a delivery; settling it is not part of these tests."""

    wire: Wire = field(default_factory=lambda: Wire(b"{}", "application/json", "utf-8", {}, "m"))
    queue: str = "celery"
    redelivered: bool = False


def test_admit_holds_a_short_wait_and_runs_it_unasked_when_handed_back():
    app = Hutch("proj", broker="memory://")
    task = app.task(name="proj.limited", rate_limit="2/s")(lambda: None)
    clock = Clock()
    limits = RateLimits(app.conf, recorder=None, clock=clock)
    handed_back: list[HeldDelivery] = []
    limits.attach(handed_back.append)
    assert limits.admit(Arrival(), task, "a") is True
    assert limits.admit(Arrival(), task, "b") is False        # waits 0.5 s, held here
    clock.now += 0.5
    assert eventually(lambda: len(handed_back) == 1)
    assert limits.admit(handed_back[0], task, "b") is True    # its token is already taken
    app.conf.worker_disable_rate_limits = True
    assert all(limits.admit(Arrival(), task, str(i)) for i in range(5))


def test_admit_divides_the_rate_between_prefork_children_as_many_as_there_are_now():
    app = Hutch("proj", broker="memory://")
    task = app.task(name="proj.limited", rate_limit="10/s")(lambda: None)
    limits = RateLimits(app.conf, recorder=None, clock=Clock())
    children = [4]
    limits.attach(lambda d: None, split=lambda: children[0])
    assert limits.bucket(task).rate == pytest.approx(2.5)
    assert limits.bucket(app.task(name="proj.free")(lambda: None)) is None
    children[0] = 5  # pool_grow: each child's share shrinks
    assert limits.bucket(task).rate == pytest.approx(2.0)
    limits.change("proj.limited", "20/s")  # hutch control rate_limit: kept over a resize
    children[0] = 4
    assert limits.bucket(task).rate == pytest.approx(5.0)


def test_held_and_laddered_waits_on_the_asyncio_pool(tmp_path):
    """memory:// end to end: four "2/s" tasks, two held here, one through the ladder."""
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}")
    try:
        with running_worker(app, pool="asyncio", concurrency=2):
            sent = time.time()
            results = [app.tasks["tests.limited"].delay(i) for i in range(4)]
            assert [r.get(timeout=20) for r in results] == [0, 1, 2, 3]
        rows = app.client().store.get_many([r.id for r in results])
        starts = sorted(row.started_at.timestamp() for row in rows.values())
        # The k-th start waits for the k-th token: at least k half-seconds after the
        # sending. (Gaps between starts can be shorter: a start delayed by a loaded
        # machine leaves the next token's time unchanged.)
        assert all(start - sent >= 0.5 * k - 0.05 for k, start in enumerate(starts)), \
            [round(start - sent, 3) for start in starts]
    finally:
        app.close()

