"""The overview's reads (hutch.ops.overview) on SQLite and PostgreSQL alike: the same
buckets (aligned on whole minutes and quarter hours, by ``strftime`` on one and
``extract(epoch)`` on the other) and the same run time percentiles (interpolated in
Python on one, ``percentile_cont`` on the other), from rows written through the store."""

from __future__ import annotations

import datetime as dt

import pytest

from hutch.ops.overview import WINDOWS, percentiles, task_figures
from hutch.results.records import StateChange
from hutch.results.store import ResultStore

NOW = dt.datetime(2026, 3, 1, 12, 30, 20, 500_000, tzinfo=dt.timezone.utc)
RUNS = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]


def _rows() -> list[StateChange]:
    rows = []
    for n, run in enumerate(RUNS):  # one a minute back from 12:30:19.5
        end = NOW - dt.timedelta(minutes=n, seconds=1)
        rows.append(StateChange(task_id=f"r{n}", state="FAILURE" if n == 3 else "SUCCESS",
                                name="tests.add", retries=n % 2, created_at=end,
                                started_at=end - dt.timedelta(seconds=run), finished_at=end))
    rows.append(StateChange(task_id="late", state="SUCCESS", created_at=NOW,
                            started_at=NOW, finished_at=NOW + dt.timedelta(seconds=1)))
    rows.append(StateChange(task_id="old", state="SUCCESS", created_at=NOW,
                            finished_at=NOW - dt.timedelta(hours=3)))
    rows.append(StateChange(task_id="gone", state="REVOKED", created_at=NOW,
                            finished_at=NOW - dt.timedelta(minutes=20)))
    return rows


@pytest.fixture
def store(store_url):
    with ResultStore(store_url) as opened:
        opened.write(_rows())
        yield opened


def test_buckets_and_percentiles_are_the_same_on_both_databases(store):
    hour = task_figures(store, WINDOWS["hour"], NOW)
    assert hour.since == dt.datetime(2026, 3, 1, 11, 31, tzinfo=dt.timezone.utc)
    filled = {b.start.strftime("%H:%M"): (b.succeeded, b.failed, b.retried, b.finished)
              for b in hour.buckets if b.finished}
    assert filled == {"12:30": (1, 0, 0, 1), "12:29": (1, 0, 1, 1), "12:28": (1, 0, 0, 1),
                      "12:27": (0, 1, 1, 1), "12:26": (1, 0, 0, 1), "12:25": (1, 0, 1, 1),
                      "12:24": (1, 0, 0, 1), "12:10": (0, 0, 0, 1)}, "not after now, not old"
    assert hour.sampled == len(RUNS)
    expected = percentiles(RUNS, (50, 95, 99))
    assert hour.runtime == pytest.approx(expected) and hour.runtime[50] == pytest.approx(1.0)
    day = task_figures(store, WINDOWS["day"], NOW)
    quarters = {b.start.strftime("%H:%M"): b.finished for b in day.buckets if b.finished}
    assert quarters == {"12:30": 1, "12:15": 6, "12:00": 1, "09:30": 1}
