"""Worker, beat and web under systemd's notify protocol (``Type=notify``, issues #13
and #14), on the real RabbitMQ and PostgreSQL, with a datagram socket of the test's own
as ``NOTIFY_SOCKET``: READY once consuming (beat: once it holds or waits for the lease;
web: once it listens), STATUS, WATCHDOG pings, STOPPING at shutdown, all from the main
process only
(``NotifyAccess=main``); a prefork worker whose child stops stops pinging; SIGUSR1
dumps the stacks of the supervisor and of each child to the log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from support.notify import Message, NotifySocket
from support.processes import BeatProc, WorkerProc, worker_env
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

WATCHDOG = 2.0
"""WatchdogSec of these tests: pings every second."""


@pytest.fixture
def notify():
    sock = NotifySocket()
    yield sock
    sock.close()


def _in_order(messages: list[Message], *fields: str) -> list[Message]:
    """The first message with each field, each after the one before; fails if missing."""
    found, start = [], 0
    for field in fields:
        index = next((i for i in range(start, len(messages)) if messages[i].has(field)), None)
        assert index is not None, f"no {field} after {found[-1].fields if found else 'start'}"\
            f" in {[m.fields for m in messages]}"
        found.append(messages[index])
        start = index + 1
    return found


def _pings_after(sock: NotifySocket, at: float) -> int:
    return sum(1 for m in sock.with_field("WATCHDOG=1") if m.at > at)


def _child_pids(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def test_a_prefork_worker_tells_systemd_ready_status_watchdog_and_stopping(
        env, workers, notify):
    w = workers({**env, **notify.env(WATCHDOG)}, queues=("celery", "priority.high"),
                pool="prefork", concurrency=2)
    assert eventually(lambda: notify.with_field("READY=1"), 30), w.output()[-3000:]
    ready_at = notify.with_field("READY=1")[0].at
    assert eventually(lambda: _pings_after(notify, ready_at) >= 2, 10), notify.messages
    assert w.stop() == 0, w.output()[-3000:]
    ready, pinged, stopping = _in_order(notify.messages, "READY=1", "WATCHDOG=1",
                                        "STOPPING=1")
    assert ready.value("STATUS") == "consuming celery,priority.high; 2 children"
    assert stopping.value("STATUS") == "warm shutdown: children finish their running task"
    assert {m.pid for m in notify.messages} == {w.proc.pid}, "only the main process speaks"
    pings = [m.at for m in notify.with_field("WATCHDOG=1") if m.at < stopping.at]
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert max(gaps) < WATCHDOG, f"pings well within WatchdogSec: {gaps}"


def test_a_threads_worker_tells_systemd_too(env, workers, notify):
    w = workers({**env, **notify.env(WATCHDOG)}, pool="threads", concurrency=2)
    assert eventually(lambda: notify.with_field("READY=1"), 30), w.output()[-3000:]
    ready_at = notify.with_field("READY=1")[0].at
    assert eventually(lambda: _pings_after(notify, ready_at) >= 1, 10), notify.messages
    assert w.stop() == 0
    ready, _, _ = _in_order(notify.messages, "READY=1", "WATCHDOG=1", "STOPPING=1")
    assert ready.value("STATUS") == "consuming celery; threads pool, concurrency 2"
    assert {m.pid for m in notify.messages} == {w.proc.pid}


def test_a_worker_whose_child_is_stuck_stops_pinging_the_watchdog(env, workers, notify):
    """SIGSTOP one child (as good as a hung consumer: it never shows it is alive
    again): the supervisor stops pinging, so systemd would restart the worker after
    WatchdogSec; SIGCONT and the pings come back."""
    w = workers({**env, **notify.env(WATCHDOG)}, pool="prefork", concurrency=2)
    assert eventually(lambda: notify.with_field("READY=1"), 30), w.output()[-3000:]
    child = _child_pids(w.proc.pid)[0]
    os.kill(child, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        # stale after max(3 s, WATCHDOG / 2): then no ping for a whole WatchdogSec and more
        assert eventually(lambda: time.monotonic() - max(
            m.at for m in notify.with_field("WATCHDOG=1")) > 2 * WATCHDOG, 15), \
            [m.at - stopped_at for m in notify.with_field("WATCHDOG=1")]
        assert "worker child not alive" in w.output()
    finally:
        os.kill(child, signal.SIGCONT)
    resumed_at = time.monotonic()
    assert eventually(lambda: _pings_after(notify, resumed_at) >= 1, 10)
    assert w.stop() == 0


def test_sigusr1_dumps_every_stack_of_the_supervisor_and_its_children(env, workers):
    w = workers(env, pool="prefork", concurrency=2)
    w.wait_ready(count=2)
    w.signal(signal.SIGUSR1)
    children = set(_child_pids(w.proc.pid))

    def dumped() -> set[int]:
        lines = [json.loads(line) for line in w.lines if '"thread stacks dumped"' in line]
        return {line["pid"] for line in lines}

    assert eventually(lambda: dumped() >= {w.proc.pid, *children}, 10), w.output()[-3000:]
    stacks = [json.loads(line) for line in w.lines if '"thread stack"' in line]
    assert any("consumer" in s["thread"] for s in stacks)  # a child's consumer thread
    assert any(s["thread"] == "MainThread" and "prefork.py" in s["stack"] for s in stacks)
    assert w.stop() == 0, "SIGUSR1 stops nothing"
    assert "worker child exited" not in w.output()


def test_sighup_to_the_group_reloads_each_process_once(env, workers):
    """Every process hears a group's SIGHUP, and each child its supervisor's relay of
    it too: one reload per process (unchanged sources: nothing applied)."""
    w = workers(env, pool="prefork", concurrency=2)
    w.wait_ready(count=2)
    w.signal_group(signal.SIGHUP)

    def reloaded() -> list[dict]:
        return [json.loads(line) for line in w.lines if '"settings reloaded"' in line]

    assert eventually(lambda: len(reloaded()) >= 3, 10), w.output()[-3000:]
    assert w.stop() == 0, "SIGHUP stops nothing"
    assert sorted(line["pid"] for line in reloaded()) == sorted(
        {w.proc.pid, *(line["pid"] for line in reloaded())}), "one reload per process"
    assert len(reloaded()) == 3
    assert all(line["applied"] == {} and line["not_reloaded"] == [] for line in reloaded())


def test_sighup_reloads_the_log_level_from_the_settings_file(env, workers, tmp_path):
    """The operator edits /etc/hutch/hutch.toml and sends HUP (``systemctl reload``): the
    new log level applies in the running worker; a setting that needs a restart is named
    and left as it was."""
    config = tmp_path / "hutch.toml"
    config.write_text('[hutch]\nlog_level = "INFO"\nworker_prefetch_multiplier = 8\n')
    w = workers({**env, "HUTCH_CONFIG": str(config)}, pool="threads", concurrency=1)
    w.wait_ready()
    config.write_text('[hutch]\nlog_level = "DEBUG"\nworker_prefetch_multiplier = 4\n')
    w.signal(signal.SIGHUP)

    def reloaded() -> list[dict]:
        return [json.loads(line) for line in w.lines if '"settings reloaded"' in line]

    assert eventually(reloaded, 10), w.output()[-3000:]
    line = reloaded()[0]
    assert line["applied"] == {"log_level": "DEBUG"}, line
    assert line["not_reloaded"] == ["worker_prefetch_multiplier"], line
    assert w.stop() == 0  # the level's effect on the root logger: tests/unit/test_diagnostics.py


def _beat(env: dict[str, str]) -> BeatProc:
    return BeatProc(env).start()


def test_beats_tell_systemd_ready_when_active_or_standby_then_watchdog_and_stopping(
        amqp_url, postgres_url, topology_prefix, notify):
    env = worker_env(amqp_url, postgres_url, topology_prefix, HUTCH_BEAT_POLL_INTERVAL="0.5",
                     HUTCH_BEAT_LEASE_SECONDS="3")
    other = NotifySocket()
    active = _beat({**env, **notify.env(WATCHDOG)})
    standby = None
    try:
        assert eventually(lambda: notify.with_field("READY=1"), 30), active.output()[-3000:]
        standby = _beat({**env, **other.env(WATCHDOG)})
        assert eventually(lambda: other.with_field("READY=1"), 30), standby.output()[-3000:]
        ready_at = notify.with_field("READY=1")[0].at
        assert eventually(lambda: _pings_after(notify, ready_at) >= 2, 10), notify.messages
        assert active.stop() == 0 and standby.stop() == 0
    finally:
        other.close()
        for beat in (active, standby):
            if beat is not None and beat.proc is not None and beat.proc.poll() is None:
                beat.proc.kill()
    ready, _, stopping = _in_order(notify.messages, "READY=1", "WATCHDOG=1", "STOPPING=1")
    assert ready.value("STATUS") == "active: holds the lease, sends the schedules"
    assert stopping.value("STATUS") == "stopping: releasing the lease"
    assert {m.pid for m in notify.messages} == {active.proc.pid}
    standby_ready = other.with_field("READY=1")[0].value("STATUS")
    assert standby_ready is not None and standby_ready.startswith(
        "standby: waiting for the lease held by beat@"), standby_ready


def _web(env: dict[str, str]) -> WorkerProc:
    """``hutch web`` on a free loopback port (``--port 0``: its STATUS names the port)."""
    web = WorkerProc(env)
    web.args = [sys.executable, "-m", "hutch", "-A", "apps.env_app", "--log-format",
                "json", "web", "--port", "0"]
    return web.start()


def _get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def test_web_tells_systemd_ready_once_it_listens_then_watchdog_and_stopping(env, notify):
    """READY comes after the socket listens (/healthz answers at once), /readyz sees the
    real PostgreSQL and RabbitMQ, pings come from the serving loop, SIGUSR1 and SIGHUP
    dump stacks and reload as in every hutch process, and SIGTERM is STOPPING then a
    graceful stop, exit 0."""
    web = _web({**env, **notify.env(WATCHDOG)})
    try:
        assert eventually(lambda: notify.with_field("READY=1"), 30), web.output()[-3000:]
        status = notify.with_field("READY=1")[0].value("STATUS") or ""
        assert status.startswith("listening on http://127.0.0.1:"), status
        base = status.removeprefix("listening on ")
        assert _get_json(base + "healthz") == (200, {"status": "ok"})
        assert _get_json(base + "readyz") == (
            200, {"status": "ok", "checks": {"database": "ok", "broker": "ok"}})
        ready_at = notify.with_field("READY=1")[0].at
        assert eventually(lambda: _pings_after(notify, ready_at) >= 2, 10), notify.messages
        for sig, event in ((signal.SIGUSR1, '"thread stacks dumped"'),
                           (signal.SIGHUP, '"settings reloaded"')):
            web.signal(sig)
            assert eventually(lambda event=event: any(event in line for line in web.lines),
                              10), web.output()[-3000:]
        assert _get_json(base + "healthz") == (200, {"status": "ok"}), "nor stop it"
        assert web.stop() == 0, web.output()[-3000:]
    finally:
        if web.proc is not None and web.proc.poll() is None:
            web.proc.kill()
    ready, _, stopping = _in_order(notify.messages, "READY=1", "WATCHDOG=1", "STOPPING=1")
    assert stopping.value("STATUS") == "stopping: finishing the requests in flight"
    assert {m.pid for m in notify.messages} == {web.proc.pid}
    pings = [m.at for m in notify.with_field("WATCHDOG=1") if ready.at < m.at < stopping.at]
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert gaps and max(gaps) < WATCHDOG, f"pings well within WatchdogSec: {gaps}"
    logged = [json.loads(line)["event"] for line in web.lines if line.startswith("{")]
    assert "web listening" in logged and logged[-1] == "web stopped", logged
    assert "Traceback" not in web.output()
