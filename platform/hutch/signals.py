"""Signals: Celery's hooks into the life of a task, a worker and a beat, by the same names
and with the same arguments, so receivers written for ``celery.signals`` (Sentry, metrics,
tracing, per-process setup) work once their import says ``hutch.signals``.

A receiver is connected with ``@signal.connect`` (or ``@signal.connect(sender=...)``) and
is called as ``receiver(signal=signal, sender=sender, **arguments)``; it should accept
``**kwargs``, as in Celery, so arguments can be added later. A receiver that raises is
logged on the ``hutch.signals`` logger with its traceback and never breaks what sent the
signal (a publish, a task's run, a worker's start or stop); its exception is its response.

Sending with nobody connected costs one check of an empty tuple, so the hot paths
(publishing, running a task) pay nothing for signals nobody uses; where building the
arguments costs something, the sender checks ``signal.receivers`` first.

Which process sends which signal, and the values hutch passes where Celery has a
value hutch does not, are in docs/signals.md.
"""

from __future__ import annotations

import inspect
import threading
import traceback as tb_module
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from .errors import ConfigurationError
from .logs import get_logger

__all__ = [
    "ExceptionInfo",
    "Signal",
    "after_setup_logger",
    "after_task_publish",
    "beat_init",
    "before_task_publish",
    "import_modules",
    "setup_logging",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_success",
    "task_unknown",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutdown",
    "worker_shutting_down",
]

log = get_logger("hutch.signals")

R = TypeVar("R", bound=Callable[..., Any])
Response = tuple[Callable[..., Any], Any]


@dataclass(frozen=True)
class ExceptionInfo:
    """The ``einfo`` argument (Celery's ``billiard.einfo.ExceptionInfo``): the exception,
    its type, its traceback object ``tb`` and its formatted ``traceback`` text."""

    exception: BaseException
    type: type[BaseException]
    tb: TracebackType | None
    traceback: str

    @classmethod
    def of(cls, exc: BaseException) -> ExceptionInfo:
        return cls(exc, type(exc), exc.__traceback__,
                   "".join(tb_module.format_exception(exc)))

    def __str__(self) -> str:
        return self.traceback


@dataclass(frozen=True)
class _Receiver:
    """One connection: the receiver (or a weak reference to it) and what it listens to."""

    key: tuple[Hashable, Hashable]
    ref: Callable[[], Callable[..., Any] | None]
    sender: Any
    """The ``sender=`` filter, None for every sender."""

    def wants(self, sender: Any) -> bool:
        """A name (``"proj.add"``) matches a sender of that name, or an object whose
        ``name`` it is (a task); an object matches itself, or its own ``name``."""
        wanted = self.sender
        if wanted is None or wanted is sender:
            return True
        if isinstance(wanted, str):
            return wanted == sender or wanted == _name_of(sender)
        return isinstance(sender, str) and sender == _name_of(wanted)


def _name_of(obj: Any) -> str | None:
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else None


def _sender_key(sender: Any) -> Hashable:
    return sender if sender is None or isinstance(sender, str) else id(sender)


def _receiver_key(receiver: Callable[..., Any]) -> Hashable:
    """A bound method is a new object on each access: it is known by its function and
    instance."""
    func = getattr(receiver, "__func__", None)
    if func is not None:
        return id(func), id(getattr(receiver, "__self__", None))
    return id(receiver)


def _strong(receiver: Callable[..., Any]) -> Callable[[], Callable[..., Any]]:
    return lambda: receiver


def _accepts_keywords(receiver: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(receiver).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


class Signal:
    """A named hook receivers connect to; whoever owns the event calls :meth:`send`.

    ``providing_args`` names the keyword arguments it is sent with (besides ``signal``
    and ``sender``), for the reader and for ``repr``."""

    def __init__(self, name: str, providing_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.providing_args = providing_args
        self.receivers: tuple[_Receiver, ...] = ()
        """Replaced, never changed in place, under the lock: :meth:`send` reads it with
        no lock."""
        self._lock = threading.Lock()
        self._dead = False

    def __repr__(self) -> str:
        return f"<Signal: {self.name} providing_args={list(self.providing_args)}>"

    def connect(self, receiver: R | None = None, sender: Any = None, weak: bool = True,
                dispatch_uid: Hashable | None = None) -> Any:
        """Connect ``receiver``; usable as ``@signal.connect`` or
        ``@signal.connect(sender=..., weak=..., dispatch_uid=...)``. Returns the receiver.

        ``sender``: only sends from it (an object, or a task name); ``weak``: hold the
        receiver by a weak reference, as Celery does by default, so it goes away with its
        object (a lambda or a function defined inside another needs ``weak=False``);
        ``dispatch_uid``: connect once per uid, whatever the receiver object (a module
        imported twice). A receiver already connected for that sender is not added again.
        """
        if receiver is None:
            return lambda fun: self.connect(fun, sender=sender, weak=weak,
                                            dispatch_uid=dispatch_uid)
        if not callable(receiver):
            raise ConfigurationError(f"{self.name}.connect: receiver must be callable, "
                                     f"got {receiver!r}")
        if not _accepts_keywords(receiver):
            raise ConfigurationError(f"{self.name}.connect: receiver {receiver!r} must accept "
                                     "keyword arguments (**kwargs)")
        key = (dispatch_uid if dispatch_uid is not None else _receiver_key(receiver),
               _sender_key(sender))
        ref = self._reference(receiver) if weak else _strong(receiver)
        with self._lock:
            self._drop_dead()
            if all(r.key != key for r in self.receivers):
                self.receivers = (*self.receivers, _Receiver(key, ref, sender))
        return receiver

    def _reference(self, receiver: Callable[..., Any]) -> Callable[[], Callable[..., Any] | None]:
        owner = getattr(receiver, "__self__", None)
        ref: Callable[[], Any]
        try:
            if owner is not None and hasattr(receiver, "__func__"):
                ref = weakref.WeakMethod(receiver)
                weakref.finalize(owner, self._mark_dead)
            else:
                ref = weakref.ref(receiver)
                weakref.finalize(receiver, self._mark_dead)
        except TypeError:
            raise ConfigurationError(f"{self.name}.connect: receiver {receiver!r} cannot be "
                                     "held by a weak reference; connect it with "
                                     "weak=False") from None
        return ref

    def _mark_dead(self) -> None:
        """Called by the garbage collector, maybe while this thread holds the lock: the
        dead receiver is dropped later, by the next connect, disconnect or send."""
        self._dead = True

    def _drop_dead(self) -> None:
        """With the lock held."""
        if self._dead:
            self._dead = False
            self.receivers = tuple(r for r in self.receivers if r.ref() is not None)

    def disconnect(self, receiver: Callable[..., Any] | None = None, sender: Any = None,
                   dispatch_uid: Hashable | None = None) -> bool:
        """Disconnect what :meth:`connect` connected with the same ``sender`` and
        ``dispatch_uid`` (or receiver); True if something was connected."""
        if receiver is None and dispatch_uid is None:
            raise ConfigurationError(f"{self.name}.disconnect: give the receiver or its "
                                     "dispatch_uid")
        key = (dispatch_uid if dispatch_uid is not None else
               _receiver_key(receiver),  # type: ignore[arg-type]
               _sender_key(sender))
        with self._lock:
            self._drop_dead()
            kept = tuple(r for r in self.receivers if r.key != key)
            found, self.receivers = len(kept) != len(self.receivers), kept
        return found

    def has_listeners(self, sender: Any = None) -> bool:
        """Whether a receiver would be called for ``sender`` (None: for any sender)."""
        return any(r.ref() is not None and (sender is None or r.wants(sender))
                   for r in self.receivers)

    def send(self, sender: Any, **named: Any) -> list[Response]:
        """Call every receiver connected for ``sender``, in the order they connected, with
        ``signal``, ``sender`` and ``named``; returns ``[(receiver, response), ...]``,
        where a receiver that raised has its exception as response (logged here)."""
        receivers = self.receivers
        if not receivers:
            return []
        if self._dead:
            with self._lock:
                self._drop_dead()
        responses: list[Response] = []
        for connection in receivers:
            receiver = connection.ref()
            if receiver is None or not connection.wants(sender):
                continue
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception as exc:  # noqa: BLE001 - a receiver never breaks the sender
                log.exception("signal receiver raised; ignored", signal=self.name,
                              receiver=getattr(receiver, "__qualname__", repr(receiver)),
                              error=f"{type(exc).__name__}: {exc}")
                response = exc
            responses.append((receiver, response))
        return responses

    send_robust = send
    """Django's name; as in Celery, :meth:`send` is already robust."""


# -- tasks: the sending process ---------------------------------------------------------
before_task_publish = Signal("before_task_publish", (
    "body", "exchange", "routing_key", "headers", "properties", "declare", "retry_policy"))
"""Before a task message is published, in the process that sends it: a client, beat, or
a worker sending a retry, a chain's next step, a callback or a chord body
(hutch.publishing). Sender: the task name. ``properties`` may be changed by the
receiver, and ``headers`` it adds go out and reach ``self.request`` (hutch's own headers
stay as they are); ``body`` is the encoded body (bytes); ``declare`` is None (hutch
declares its topology itself); ``retry_policy`` is the submit's publish retry policy as
a dict, or None."""

after_task_publish = Signal("after_task_publish", ("headers", "body", "exchange", "routing_key"))
"""After the broker confirmed a task message, in the process that sent it. Sender: the
task name."""

# -- tasks: the worker process that runs them ---------------------------------------------
task_received = Signal("task_received", ("request",))
"""A task message was received and decoded, before it runs. Sender: the executor (Celery's
consumer). ``request``: a :class:`hutch.messages.Request`."""

task_prerun = Signal("task_prerun", ("task_id", "task", "args", "kwargs"))
"""Before a task runs, in the thread (or on the loop) that runs it. Sender: the task."""

task_postrun = Signal("task_postrun", ("task_id", "task", "args", "kwargs", "retval", "state"))
"""After a task ran and its outcome was decided. Sender: the task. ``retval``: the return
value, or the exception; ``state``: SUCCESS, FAILURE, RETRY or REVOKED."""

task_success = Signal("task_success", ("result",))
"""A task succeeded. Sender: the task."""

task_failure = Signal("task_failure", (
    "task_id", "exception", "args", "kwargs", "traceback", "einfo"))
"""A task failed (no retry left). Sender: the task."""

task_retry = Signal("task_retry", ("request", "reason", "einfo"))
"""A task will run again (``self.retry()``, ``autoretry_for``). Sender: the task;
``reason``: the exception that caused the retry."""

task_revoked = Signal("task_revoked", ("request", "terminated", "signum", "expired"))
"""A task was not run (revoked, expired) or was stopped (``terminate=True``). Sender: the
task, or its name if this worker does not have it; ``signum`` is None."""

task_rejected = Signal("task_rejected", ("message", "exc"))
"""A delivery that is not a valid task message was refused (dead-lettered). Sender: the
executor; ``message``: the delivery."""

task_unknown = Signal("task_unknown", ("message", "exc", "name", "id"))
"""A message for a task this worker does not have was refused. Sender: the executor."""

# -- worker and beat processes ------------------------------------------------------------
import_modules = Signal("import_modules")
"""The ``hutch`` command imported the app's module (``-A``). Sender: the app."""

worker_init = Signal("worker_init")
"""The worker starts, before it connects (the prefork supervisor, or the worker process
of the other pools). Sender: the worker object."""

worker_process_init = Signal("worker_process_init")
"""A prefork child starts, before it connects. Sender: None."""

worker_ready = Signal("worker_ready")
"""The worker consumes: every prefork child does, or the single worker process does.
Sender: the worker object."""

worker_shutting_down = Signal("worker_shutting_down", ("sig", "how", "exitcode"))
"""A stop began. Sender: the node name; ``sig``: the signal's name (``"SIGTERM"``) or
None (a stop asked by code or by a control command); ``how``: ``"Warm"`` or ``"Cold"``."""

worker_process_shutdown = Signal("worker_process_shutdown", ("pid", "exitcode"))
"""A prefork child is about to exit (not after SIGKILL). Sender: None."""

worker_shutdown = Signal("worker_shutdown")
"""The worker stopped (warm shutdown), just before it returns. Sender: the worker object."""

beat_init = Signal("beat_init")
"""A beat starts, standalone or embedded (``worker -B``). Sender: the beat."""

# -- logging, in the hutch command ------------------------------------------------------
setup_logging = Signal("setup_logging", ("loglevel", "logfile", "format", "colorize"))
"""If any receiver is connected, the ``hutch`` command leaves logging to it."""

after_setup_logger = Signal("after_setup_logger", (
    "logger", "loglevel", "logfile", "format", "colorize"))
"""After the ``hutch`` command set up logging. ``logger``: the root logger."""
