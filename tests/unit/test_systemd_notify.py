"""hutch.systemd: the notify protocol over NOTIFY_SOCKET, a no-op without it."""

from __future__ import annotations

import os
import tempfile
import threading
import time

import pytest

from hutch import systemd
from support.notify import NotifySocket
from support.waiting import eventually


@pytest.fixture(params=["abstract", "path"])
def sock(request, monkeypatch):
    """A notify socket, named in the abstract namespace (``@...``) or by a file path
    (short: AF_UNIX paths are limited to 108 bytes), in NOTIFY_SOCKET."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        listener = NotifySocket(None if request.param == "abstract" else f"{tmp}/notify")
        monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield listener
        listener.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.ready("x") is False
    assert systemd.watchdog() is False


def test_messages_arrive_in_order_with_their_fields_from_this_process(sock):
    assert systemd.ready("consuming celery; 2 children")
    assert systemd.status("busy")
    assert systemd.watchdog()
    assert systemd.stopping("warm shutdown")
    assert eventually(lambda: len(sock.messages) == 4)
    assert [m.fields for m in sock.messages] == [
        ("READY=1", "STATUS=consuming celery; 2 children"), ("STATUS=busy",),
        ("WATCHDOG=1",), ("STOPPING=1", "STATUS=warm shutdown")]
    assert {m.pid for m in sock.messages} == {os.getpid()}


def test_a_socket_nobody_listens_on_is_not_an_error(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "@hutch-test-nobody-listens-here")
    assert systemd.ready() is False


@pytest.mark.parametrize(("usec", "pid", "every"), [
    ("4000000", None, 2.0), ("4000000", "self", 2.0), ("4000000", "1", None),
    ("0", None, None), (None, None, None), ("soon", None, None)])
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(monkeypatch, usec,
                                                                     pid, every):
    for name, value in (("WATCHDOG_USEC", usec),
                        ("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert systemd.watchdog_interval() == every


def test_forget_drops_the_notify_variables(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "@x")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    systemd.forget()
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ


def test_watchdog_wait_pings_at_its_pace_while_waiting(sock, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    watchdog = systemd.Watchdog()
    assert watchdog.every == 0.1
    started = time.monotonic()
    assert watchdog.wait(threading.Event(), 0.55) is False
    assert time.monotonic() - started >= 0.55
    assert eventually(lambda: len(sock.with_field("WATCHDOG=1")) >= 5), sock.messages
    watchdog.alive()  # just pinged: not again yet
    count = len(sock.with_field("WATCHDOG=1"))
    assert len(sock.with_field("WATCHDOG=1")) == count


def test_watchdog_wait_returns_when_the_event_is_set(sock, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    done = threading.Event()
    threading.Timer(0.15, done.set).start()
    started = time.monotonic()
    assert systemd.Watchdog().wait(done, 30) is True
    assert time.monotonic() - started < 5
