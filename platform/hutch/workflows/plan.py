"""Turn a (frozen) workflow signature into the messages to publish now and the group
rows to store before them. Pure: no I/O, so the client and the worker share it.

A workflow is carried by its own messages: a chain's first task carries the rest
of the chain as its ``link`` (each later step its own), so a worker continues it
with the ordinary follow-up machinery; group members carry ``group_id``; chord
header tasks also carry a ``chord`` marker (``{"group_id", "counts"}``) telling
the worker that records their outcome to count them in ``hutch_groups``, where
the chord's body waits (worker/chords.py). Ids are assigned before anything is
sent (:meth:`Signature.freeze`), so result handles exist at once and a body's
id is known to the group row from the start.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..call_options import build_message
from ..config import Settings
from ..messages import SignatureDict, TaskMessage
from .canvas import COLLECT_TASK, Signature, as_list, chain, chord, chunks, group

if TYPE_CHECKING:
    from ..tasks import TaskOptions

OptionsOf = Callable[[str], "TaskOptions | None"]
"""A task's defaults by name: ``app.tasks.options_for`` (hutch.tasks.TaskRegistry)."""

INTERNAL_OPTIONS = frozenset({"task_id", "link", "link_error", "parent_id", "root_id",
                              "group_id", "chord", "stamps"})
"""Options of a composite that are not passed on to its tasks as call options (its
stamps are on each of its tasks already: hutch.workflows.stamping)."""


@dataclass
class GroupRow:
    """One ``hutch_groups`` row to insert (see docs/dba.md)."""

    group_id: str
    member_ids: list[str]
    parent_id: str | None = None
    root_id: str | None = None
    body: SignatureDict | None = None
    """The chord body, frozen (its task id is ``body_id``); None for a plain group."""
    body_id: str | None = None
    failed_task_id: str | None = None
    """Set for a chord that is failed before it starts (workflows/unreached.py): the
    task whose failure decided it; the row is inserted ``FAILED``."""
    notify: str | None = None
    """For a chord: the notice key of its sender (TaskMessage.notify), which the worker
    that sends the body puts on it (worker/chords.py)."""


@dataclass
class Plan:
    messages: list[TaskMessage] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)

    def extend(self, other: Plan) -> None:
        self.messages.extend(other.messages)
        self.groups.extend(other.groups)


class Planner:
    """Builds plans with the sender's settings and task defaults."""

    def __init__(self, conf: Settings, options_of: OptionsOf, notify: str | None = None) -> None:
        """``notify``: the sending client's notice key (TaskMessage.notify); a worker's
        planner has none."""
        self.conf = conf
        self.options_of = options_of
        self.notify = notify

    def for_sender(self, notify: str | None) -> Planner:
        """This planner for messages that carry ``notify`` on: a worker's follow-ups of
        a task whose sender waits for the workflow (hutch.client.waiter)."""
        return self if notify == self.notify else Planner(self.conf, self.options_of, notify)

    def plan(self, sig: Signature, prepend: tuple[Any, ...] = (), *, parent_id: str | None = None,
             root_id: str | None = None) -> Plan:
        """Messages and group rows that start ``sig`` (with ``prepend`` before its args)."""
        sig.freeze()
        out = Plan()
        self._plan(sig, tuple(prepend), parent_id, root_id or first_id(sig), out)
        return out

    def _plan(self, sig: Signature, prepend: tuple[Any, ...], parent_id: str | None,
              root_id: str, out: Plan) -> None:
        if isinstance(sig, chunks):
            sig = sig.group()
            sig.freeze()
        if isinstance(sig, chain):
            self._plan(linked(sig), prepend, parent_id, root_id, out)
        elif isinstance(sig, chord):
            self._chord(sig, prepend, parent_id, root_id, out)
        elif isinstance(sig, group):
            self._group(sig, prepend, parent_id, root_id, out)
        else:
            out.messages.append(self.message(sig, prepend, parent_id, root_id))

    def message(self, sig: Signature, prepend: tuple[Any, ...], parent_id: str | None,
                root_id: str | None) -> TaskMessage:
        """One task's message; raises ConfigurationError/SerializationError for bad input."""
        args = sig.args if sig.immutable else prepend + sig.args
        options = {**sig.options, "parent_id": parent_id, "root_id": root_id}
        return build_message(sig.task, args, sig.kwargs, options, self.conf,
                             self.options_of(sig.task), notify=self.notify)

    def _group(self, sig: group, prepend: tuple[Any, ...], parent_id: str | None, root_id: str,
               out: Plan) -> None:
        gid = str(sig.options["task_id"])
        members = [mark(m, gid, None) for m in distribute(sig)]
        out.groups.append(GroupRow(gid, [result_id(m) for m in members], parent_id, root_id))
        self._plan_members(members, prepend, parent_id, root_id, out)

    def _chord(self, sig: chord, prepend: tuple[Any, ...], parent_id: str | None, root_id: str,
               out: Plan) -> None:
        header = copy.copy(sig.header)  # its members are copied by distribute()
        header.options = {**sig.header.options, **call_options(sig)}
        gid = str(header.options["task_id"])
        members = [mark(m, gid, gid) for m in distribute(header)]
        out.groups.append(GroupRow(gid, [result_id(m) for m in members], parent_id, root_id,
                                   sig.body.to_dict(), result_id(sig.body), notify=self.notify))
        if not members:  # nothing to wait for: the body runs now with no results
            self._plan(sig.body, ([],), gid, root_id, out)
        self._plan_members(members, prepend, parent_id, root_id, out)

    def _plan_members(self, members: list[Signature], prepend: tuple[Any, ...],
                      parent_id: str | None, root_id: str, out: Plan) -> None:
        for member in members:
            if type(member) is Signature:  # the common case, thousands in a big chord
                out.messages.append(self.message(member, prepend, parent_id, root_id))
            else:
                self._plan(member, prepend, parent_id, root_id, out)


def call_options(sig: Signature) -> dict[str, Any]:
    """A composite's call options (queue=, countdown=, ...) for its tasks."""
    return {k: v for k, v in sig.options.items() if k not in INTERNAL_OPTIONS}


def distribute(sig: group) -> list[Signature]:
    """The members with the group's call options, callbacks and errbacks applied."""
    members = []
    options = call_options(sig)
    for member in sig.tasks:
        member = _copy(member, options)
        for callback in as_list(sig.options.get("link")):
            member.link(Signature.from_dict(callback, sig.app))
        for errback in as_list(sig.options.get("link_error")):
            member.link_error(Signature.from_dict(errback, sig.app))
        members.append(member)
    return members


def _copy(sig: Signature, options: dict[str, Any]) -> Signature:
    """A member that mark() may change: a composite is cloned; a task signature (the
    common case, thousands in a big chord) only gets its own options dict."""
    if type(sig) is not Signature:
        return sig.clone(**options)
    return Signature(sig.task, sig.args, sig.kwargs, {**sig.options, **options}, sig.immutable,
                     sig.app)


def linked(sig: chain) -> Signature:
    """The chain as its first step, each step carrying the next in its ``link``.

    The chain's call options go to the first step, its callbacks to the last and
    its errbacks to every step (so one fires, on the step that failed: the later
    steps never run).
    """
    steps = [s.clone() for s in sig.tasks]
    steps[0] = steps[0].clone(**call_options(sig))
    for callback in as_list(sig.options.get("link")):
        steps[-1].link(Signature.from_dict(callback, sig.app))
    for errback in as_list(sig.options.get("link_error")):
        for step in steps:
            step.link_error(Signature.from_dict(errback, sig.app))
    for i in range(len(steps) - 2, -1, -1):
        steps[i].link(steps[i + 1])
    return steps[0]


def mark(sig: Signature, group_id: str, chord_id: str | None, counts: bool = True) -> Signature:
    """``sig`` (a copy it may change: distribute() made it) as a member of group
    ``group_id`` and of chord ``chord_id``.

    Every task of the member gets ``group_id``; inside a chord every task also gets
    the marker that makes its final failure fail the chord, and the member's
    final task (``counts``) the marker that counts its success. A member chain
    ending in a group is ended with ``hutch.collect`` so that one task's result
    (the group's list) is the member's.
    """
    if isinstance(sig, chain):
        if chord_id and isinstance(sig.tasks[-1], group):
            sig.tasks[-1] = collected(sig.tasks[-1])
        last = len(sig.tasks) - 1
        sig.tasks = [mark(s, group_id, chord_id, counts and i == last)
                     for i, s in enumerate(sig.tasks)]
        return sig
    if isinstance(sig, chord):
        sig.body = mark(sig.body, group_id, chord_id, counts)
        return sig
    if isinstance(sig, group):
        return mark(collected(sig), group_id, chord_id, counts) if chord_id else sig
    sig.options["group_id"] = group_id
    if chord_id:
        sig.options["chord"] = {"group_id": chord_id, "counts": counts}
    return sig


def collected(sig: group) -> chord:
    """A group turned into a chord whose body returns the list of its results."""
    body = Signature(COLLECT_TASK, app=sig.app)
    body.freeze()
    return chord(sig, body, app=sig.app)


def result_id(sig: Signature) -> str:
    """The id whose result is the signature's result (frozen signatures only)."""
    if isinstance(sig, chain):
        return result_id(sig.tasks[-1])
    if isinstance(sig, chord):
        return result_id(sig.body)
    return str(sig.options["task_id"])


def first_id(sig: Signature) -> str:
    """The id of what runs first: a workflow's root."""
    if isinstance(sig, chain):
        return first_id(sig.tasks[0])
    if isinstance(sig, chord):
        return first_id(sig.header)
    return str(sig.options["task_id"])


def task_ids(sig: Signature) -> list[str]:
    """Every task id in the signature (frozen), in order."""
    if isinstance(sig, chain):
        return [i for s in sig.tasks for i in task_ids(s)]
    if isinstance(sig, chord):
        return task_ids(sig.header) + task_ids(sig.body)
    if isinstance(sig, group):
        return [i for s in sig.tasks for i in task_ids(s)]
    return [str(sig.options["task_id"])]


def errbacks(sig: Signature) -> list[Signature]:
    """The errbacks to call when ``sig`` cannot run (its chord failed): those of what
    would have run first."""
    own = [Signature.from_dict(e, sig.app) for e in as_list(sig.options.get("link_error"))]
    if isinstance(sig, chain):
        return _unique(own + errbacks(sig.tasks[0]))
    if isinstance(sig, chord):
        return _unique(own + errbacks(sig.body))
    return own


def chord_marker(sig: Signature) -> dict[str, Any] | None:
    """The chord marker of the task whose result is ``sig``'s, if it is a header member."""
    if isinstance(sig, chain):
        return chord_marker(sig.tasks[-1])
    if isinstance(sig, chord):
        return chord_marker(sig.body)
    marker = sig.options.get("chord")
    return marker if isinstance(marker, dict) else None


def _unique(sigs: list[Signature]) -> list[Signature]:
    out: list[Signature] = []
    for sig in sigs:
        if sig not in out:
            out.append(sig)
    return out

