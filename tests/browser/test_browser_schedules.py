"""A schedule edited on the page is honoured by a running beat within its poll interval
(issue #14, "Proof"): a real ``hutch beat`` (poll 0.5 s) on RabbitMQ and PostgreSQL,
Chromium on a live ``hutch web``. The schedule runs hourly; its interval is set to 1 s
in the form, and beat sends every second from then on; disabled from its confirm page,
it stops. Screenshots: schedules, schedule-edit."""

from __future__ import annotations

import datetime as dt
import time
from contextlib import closing

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from apps.tasks import make_app
from hutch.results.models import make_engine
from support.processes import BeatProc, worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.browser, pytest.mark.rabbitmq, pytest.mark.postgres]

POLL = 0.5
"""beat_poll_interval of the beat under test: a change applies within it."""


@pytest.fixture
def beat_app(amqp_url, fresh_postgres_url, topology_prefix):
    with closing(make_app(amqp_url, fresh_postgres_url, topology_prefix=topology_prefix)) as app:
        yield app


@pytest.fixture
def beat(amqp_url, fresh_postgres_url, topology_prefix):
    proc = BeatProc(worker_env(amqp_url, fresh_postgres_url, topology_prefix,
                               HUTCH_BEAT_POLL_INTERVAL=str(POLL), HUTCH_BEAT_LEASE_SECONDS="3",
                               HUTCH_TEST_BEAT_SCHEDULE="{}")).start()
    yield proc
    proc.stop(10)


def claimed(url, name):
    """(due_at, claimed_at) of each run of ``name`` beat claimed, oldest first."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT due_at, claimed_at FROM hutch_schedule_runs WHERE schedule_name = :n "
                "AND NOT manual ORDER BY due_at"), {"n": name}).all()
    finally:
        engine.dispose()


def test_an_interval_edited_on_the_page_is_honoured_by_a_running_beat(
        beat_app, beat, fresh_postgres_url, live_web, browser_page, screenshot):
    beat_app.schedules.add("tick", "tests.add", every="1h", args=[1, 1],
                           timezone="Europe/Berlin")
    assert eventually(lambda: any('"beat active' in line for line in beat.lines), 20), \
        "".join(beat.lines[-20:])
    web = live_web(beat_app)
    errors: list[str] = []
    browser_page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    browser_page.goto(web.url + "/schedules")
    row = browser_page.locator("tr", has_text="tick")
    assert "every 1h" in row.inner_text() and "Europe/Berlin" in row.inner_text()
    screenshot(browser_page, "schedules")
    row.get_by_role("link", name="Edit").click()
    expect(browser_page.locator("fieldset[data-kind=crontab]")).to_be_hidden()  # the script ran
    browser_page.fill("#f-every", "1s")
    screenshot(browser_page, "schedule-edit")
    browser_page.get_by_role("button", name="Save").click()
    edited_at = dt.datetime.now(dt.timezone.utc)
    assert browser_page.locator(".result").inner_text() == "Schedule saved."
    assert "every 1s" in browser_page.locator("dl.schedule").inner_text()

    runs = eventually(lambda: len(claimed(fresh_postgres_url, "tick")) >= 3, 10) and \
        claimed(fresh_postgres_url, "tick")[:3]
    assert runs, beat.output()[-3000:]
    late = (runs[0].claimed_at - runs[0].due_at).total_seconds()
    print(f"the first run after the edit was due {(runs[0].due_at - edited_at).total_seconds():.2f}"
          f" s after it and claimed {late:.2f} s after its due time (poll {POLL} s)")
    assert late <= POLL + 1.5  # within the poll interval, with slack for a loaded machine
    assert abs((runs[0].due_at - edited_at).total_seconds()) < 2  # the edit's now + 1 s
    gaps = [(b.due_at - a.due_at).total_seconds() for a, b in zip(runs, runs[1:], strict=False)]
    assert gaps == [1.0, 1.0]

    browser_page.get_by_role("link", name="Disable").click()
    browser_page.get_by_role("button", name="Disable").click()
    disabled_at = dt.datetime.now(dt.timezone.utc)
    assert browser_page.locator(".result").inner_text() == "Schedule disabled."
    assert beat_app.schedules.get("tick").next_run_at is None
    time.sleep(3 * POLL)  # beat polls meanwhile: a claim after the disable cannot commit
    assert [r for r in claimed(fresh_postgres_url, "tick") if r.claimed_at > disabled_at] == []
    browser_page.reload()
    history = browser_page.locator("table.runs").inner_text()
    assert history.count("beat") >= 3 and "Europe/Berlin" in history
    assert errors == []
    assert beat.stop() == 0
