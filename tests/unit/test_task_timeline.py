"""The task page's timeline (hutch.web.pages.tasks.timeline) with retried attempts:
the row's own times are the last attempt's, each retried one comes from
hutch_task_attempts. On a real worker: tests/integration/test_task_attempts_rabbitmq.py."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hutch.ops.tasks import Attempt
from hutch.results.records import RETRY, REVOKED, STARTED, SUCCESS, TaskRecord
from hutch.web.pages.tasks import timeline

T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def record(state: str, retries: int, **fields) -> TaskRecord:
    names = [f.name for f in dataclasses.fields(TaskRecord)]
    values = dict.fromkeys(names)
    values.update(task_id="t", state=state, retries=retries, created_at=at(0), **fields)
    return TaskRecord(**values)


def attempt(n: int) -> Attempt:
    return Attempt(n, "w@h:1", at(10 * n + 1), at(10 * n + 2), at(10 * n + 10),
                   "ValueError", f"try {n}")


def events(items) -> list[str]:
    return [event for event, _, _ in items]


def test_each_retried_attempt_comes_between_sent_and_the_last_attempt():
    done = record(SUCCESS, 2, received_at=at(20), started_at=at(21), finished_at=at(22))
    found = timeline(done, [attempt(0), attempt(1)])
    assert events(found) == ["sent", "attempt 1 started", "attempt 1 failed",
                             "attempt 2 started", "attempt 2 failed", "received", "started",
                             "finished"]
    assert found[2] == ("attempt 1 failed", at(2),
                        "with ValueError: try 0, retried (next due at 2024-03-01 12:00:10.000)")
    assert found[5] == ("received", at(20), "by a worker (attempt 3)")


def test_a_task_waiting_in_retry_says_when_its_next_attempt_is_due():
    waiting = record(RETRY, 1, eta=at(20), started_at=at(11), finished_at=at(12))
    found = timeline(waiting, [attempt(0), attempt(1)])
    assert events(found)[-1] == "next due" and found[-1][1] == at(20)
    assert "due" not in events(found)  # the last attempt's note has it already
    revoked = dataclasses.replace(waiting, state=REVOKED, finished_at=at(15))
    assert timeline(revoked, [attempt(0), attempt(1)])[-1] == ("finished", at(15), REVOKED)


def test_attempts_retried_before_their_table_existed_are_counted():
    running = record(STARTED, 2, started_at=at(30))
    found = timeline(running, [])
    assert ("retried", None, "2 earlier attempts: times not recorded") in found
    assert found[-1] == ("not finished", None, "now STARTED")
