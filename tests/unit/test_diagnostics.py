"""SIGUSR1 dumps every thread's stack to the log; SIGHUP applies the settings that are
safe to change in a running process and names the others (hutch.diagnostics). The
signals are real, sent to this process, with the handlers hutch installs."""

from __future__ import annotations

import logging
import os
import signal
import threading

import pytest

from hutch.config import Settings
from hutch.diagnostics import DUMP, RELOAD, Once, Reloader, install
from support.logs import capture_logs
from support.waiting import eventually


@pytest.fixture
def handlers():
    """Restore SIGUSR1's and SIGHUP's handlers and the root log level after the test."""
    saved = {sig: signal.getsignal(sig) for sig in (DUMP, RELOAD)}
    level = logging.getLogger().level
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    logging.getLogger().setLevel(level)


class Sources:
    """What the settings' sources say: a test changes them between two reads."""

    def __init__(self, **values):
        self.values = values

    def __call__(self) -> Settings:
        conf = Settings()
        conf.update(**self.values)
        return conf


def test_sigusr1_logs_the_stack_of_every_thread(handlers):
    parked = threading.Event()
    thread = threading.Thread(target=parked.wait, name="parked-for-the-dump", daemon=True)
    thread.start()
    install(None)
    with capture_logs() as events:
        os.kill(os.getpid(), DUMP)
        assert eventually(lambda: any(e["event"] == "thread stacks dumped" for e in events))
    parked.set()
    stacks = {e["thread"]: e["stack"] for e in events if e["event"] == "thread stack"}
    assert "parked-for-the-dump" in stacks and "MainThread" in stacks
    assert "wait" in stacks["parked-for-the-dump"]
    assert "test_sigusr1_logs_the_stack_of_every_thread" in stacks["MainThread"]
    assert all(e["log_level"] == "warning" and e["pid"] == os.getpid() for e in events)


def test_sighup_changes_the_log_level_and_names_what_needs_a_restart(handlers):
    conf = Settings()
    sources = Sources(log_level="INFO")
    install(Reloader(conf, sources))
    logging.getLogger().setLevel("INFO")
    sources.values.update(log_level="DEBUG", worker_disable_rate_limits=True,
                          worker_concurrency=9)
    with capture_logs() as events:
        os.kill(os.getpid(), RELOAD)
        assert eventually(lambda: any(e["event"] == "settings reloaded" for e in events))
    assert logging.getLogger().level == logging.DEBUG
    assert conf.log_level == "DEBUG" and conf.worker_disable_rate_limits is True
    assert conf.worker_concurrency != 9
    done = next(e for e in events if e["event"] == "settings reloaded")
    assert done["applied"] == {"log_level": "DEBUG", "worker_disable_rate_limits": True}
    assert done["not_reloaded"] == ["worker_concurrency"]


def test_a_value_from_the_command_line_stays_until_its_source_changes():
    """``-l debug`` set conf.log_level; the sources still say INFO: a reload keeps DEBUG,
    until the sources say something new."""
    conf = Settings()
    conf.log_level = "DEBUG"
    sources = Sources(log_level="INFO")
    reloader = Reloader(conf, sources)
    level = logging.getLogger().level
    try:
        assert reloader.reload() == {}
        assert conf.log_level == "DEBUG"
        sources.values["log_level"] = "WARNING"
        assert reloader.reload() == {"log_level": "WARNING"}
    finally:
        logging.getLogger().setLevel(level)


def test_invalid_sources_change_nothing_and_say_so():
    conf = Settings()
    sources = Sources(log_level="INFO")
    reloader = Reloader(conf, sources)
    sources.values["log_level"] = "LOUD"
    with capture_logs() as events:
        assert reloader.reload() == {}
    assert conf.log_level == "INFO"
    assert [e["event"] for e in events] == [
        "settings not reloaded: their sources are not valid; nothing changed"]


def test_one_request_heard_twice_at_once_acts_once():
    """A child hears a group's SIGUSR1 and its supervisor's relay of it."""
    ran: list[int] = []
    once = Once(lambda: ran.append(1))
    once()
    once()
    assert eventually(lambda: ran == [1])
