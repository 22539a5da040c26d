import datetime as dt
import random

from hutch.errors import MaxRetriesExceededError, Retry
from hutch.messages import TaskMessage
from hutch.retries import RetryPlan, backoff, plan_retry
from hutch.tasks import TaskOptions

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
UTC = dt.timezone.utc


def test_backoff_is_exponential_capped_and_jittered():
    opts = TaskOptions(name="t", retry_backoff=True, retry_jitter=False, retry_backoff_max=10)
    assert [backoff(opts, n) for n in range(5)] == [1, 2, 4, 8, 10]
    assert backoff(TaskOptions(name="t", retry_backoff=3, retry_jitter=False), 2) == 12
    jittered = TaskOptions(name="t", retry_backoff=True, retry_jitter=True)
    values = {backoff(jittered, 4, random.Random(n)) for n in range(20)}
    assert all(0 <= v <= 16 for v in values) and len(values) > 1
    assert backoff(TaskOptions(name="t"), 3) == 180.0


def test_plan_keeps_the_id_and_adds_a_retry():
    m = TaskMessage(task="t", id="x", retries=1)
    plan = plan_retry(TaskOptions(name="t"), m, Retry(ValueError("v"), countdown=5), NOW, UTC)
    assert isinstance(plan, RetryPlan)
    assert plan.message.id == "x" and plan.message.retries == 2
    assert plan.message.eta == NOW + dt.timedelta(seconds=5)
    assert isinstance(plan.reason, ValueError)


def test_naive_retry_eta_is_read_in_the_app_zone():
    zone = dt.timezone(dt.timedelta(hours=8))
    plan = plan_retry(TaskOptions(name="t"), TaskMessage(task="t", id="x"),
                      Retry(eta=dt.datetime(2026, 12, 1, 8, 0)), NOW, zone)
    assert plan.message.eta == NOW


def test_exhausted_and_not_retryable():
    m = TaskMessage(task="t", id="x", retries=3)
    assert isinstance(plan_retry(TaskOptions(name="t"), m, Retry(), NOW, UTC),
                      MaxRetriesExceededError)
    err = KeyError("k")
    assert plan_retry(TaskOptions(name="t"), m, Retry(err), NOW, UTC) is err
    assert plan_retry(TaskOptions(name="t"), m, ValueError(), NOW, UTC) is None
    auto = TaskOptions(name="t", autoretry_for=(ValueError,), max_retries=None)
    assert isinstance(plan_retry(auto, m, ValueError(), NOW, UTC), RetryPlan)
