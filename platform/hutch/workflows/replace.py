"""``self.replace(sig)``: a running task hands its place over to a signature.

The task ends at once (``Task.replace`` raises :class:`~hutch.errors.Replaced`) and
the worker sends the replacement instead of recording an outcome. The replacement
takes over everything that made the task's place:

- its id: the replacement is frozen so that the task whose result is the
  replacement's result (a chain's last task, a chord's body) runs under the
  replaced task's id, so ``AsyncResult(id).get()``, a chain's next step and a
  chord's count all see the replacement's result. A group is first gathered into
  one result (a chord with ``hutch.collect`` as its body, as Celery gathers it
  with ``celery.accumulate``), also where it ends a chain or a chord's body;
- its callbacks (``link``, a chain's next step among them) go to the task that now
  carries the id; its errbacks to every task that could fail in its place (a
  chain's every step, a chord's body, which a failed header calls them for);
- its group and chord: every task gets the ``group_id``; inside a chord every
  task gets the marker that fails the chord if it fails, and the task with the id
  the marker that counts it (hutch.workflows.plan.mark), so the chord counts the
  replacement's result once and the replaced task never;
- its lineage: ``root_id`` is kept, and what the replacement runs first takes the
  replaced task's ``parent_id``, so the replacement sits where the task sat:
  ``P -> a -> b -> X`` for ``X`` replaced by ``a | b | c`` (``c`` runs as ``X``).
  Celery makes the replacement's tasks children of ``X`` instead, which for a
  chain makes a cycle (``X -> a -> b -> X``) that a tree could not be drawn from.

While the replacement runs, the replaced id's row is PENDING again (its ``retries``
one higher than the replaced run's: the store lets a later attempt's change move a
STARTED row back, and nothing else), keeping the replaced run's ``worker`` and
``started_at``; the replacement's task with that id then claims it like any
queued task and writes its states and outcome over it. Pure: the worker writes
and publishes what :func:`hand_over` returns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

from ..current import reset_request, set_request
from ..errors import ConfigurationError
from ..messages import TaskMessage
from ..results.pending_rows import pending_change, pending_changes
from ..results.records import PENDING, StateChange
from .apply import result_sig
from .canvas import Signature, chain, chord, chunks, group
from .plan import Plan, Planner, collected, mark

if TYPE_CHECKING:
    from ..app import Hutch


def check_replacement(sig: Any) -> Signature:
    """``sig`` (a signature, or one's dict) if it can replace a task; a
    ConfigurationError saying why not."""
    if isinstance(sig, dict) and "task" in sig:
        sig = Signature.from_dict(sig)  # a signature as it travels (hutch.signature)
    if not isinstance(sig, Signature):
        raise ConfigurationError(f"replace(): expected a signature (task.s(...), a chain, "
                                 f"group or chord), got {sig!r}")
    if isinstance(sig, chain) and not sig.tasks:
        raise ConfigurationError("replace(): cannot replace a task with an empty chain")
    if isinstance(sig, group) and not sig.tasks:
        raise ConfigurationError("replace(): cannot replace a task with an empty group")
    if "chord" in sig.options:
        raise ConfigurationError("replace(): the replacement must not be part of a chord "
                                 "already (it takes the replaced task's place in its chord)")
    return sig


def replacement(sig: Any, request: TaskMessage) -> Signature:
    """A copy of ``sig`` frozen and marked to take the place of the task ``request``
    describes (see the module docstring); ConfigurationError if it cannot."""
    sig = check_replacement(sig)
    new = gathered(sig.group() if isinstance(sig, chunks) else sig.clone())
    for callback in request.link:
        new.link(Signature.from_dict(callback, sig.app))
    for errback in request.link_error:
        new.link_error(Signature.from_dict(errback, sig.app))
    result_sig(new).options["task_id"] = request.id
    new.freeze()
    marker = request.chord
    chord_id = str(marker["group_id"]) if marker else None
    group_id = request.group_id or chord_id
    if group_id is None:
        return new
    return mark(new, group_id, chord_id, bool(marker.get("counts", True)) if marker else True)


def gathered(sig: Signature) -> Signature:
    """``sig`` with one task whose result is its result: a group at its end (alone,
    ending a chain, or as a chord's body) is gathered by a ``hutch.collect`` body."""
    if isinstance(sig, group):
        return collected(sig)
    if isinstance(sig, chain):
        return chain(*sig.tasks[:-1], gathered(sig.tasks[-1]), options=sig.options, app=sig.app)
    if isinstance(sig, chord):
        return chord(sig.header, gathered(sig.body), options=sig.options, app=sig.app)
    return sig


@dataclasses.dataclass
class Handover:
    """What the worker records and publishes for a replaced task: the replaced id's
    PENDING ``change`` (None under ``ignore_result``), then ``plan``'s group rows,
    messages and their PENDING rows (``children``)."""

    change: StateChange | None
    plan: Plan
    children: list[StateChange]


def hand_over(planner: Planner, sig: object, m: TaskMessage) -> Handover:
    """The messages that start ``sig`` (a :func:`replacement` of ``m``) and the rows to
    write with them. Raises what planning raises (HutchError) for a bad replacement."""
    if not isinstance(sig, Signature):
        raise ConfigurationError(f"replace(): expected a signature, got {sig!r}")
    token = set_request(None)  # lineage comes from m, never from the task running here
    try:
        plan = planner.plan(sig, (), parent_id=m.parent_id, root_id=m.root_id or m.id)
    finally:
        reset_request(token)
    children = pending_changes(plan.messages)
    if m.ignore_result:
        return Handover(None, plan, children)
    now = dt.datetime.now(dt.timezone.utc)
    own = next((c for c in plan.messages if c.id == m.id), None)
    change = pending_change(own, now) if own is not None else StateChange(m.id, PENDING)
    change.retries = m.retries + 1  # moves the STARTED row back (see the module docstring)
    return Handover(change, plan, [c for c in children if c.task_id != m.id])


def run_eagerly(app: Hutch, sig: Any) -> Any:
    """The replacement's result, run here (``task.apply()``, ``task_always_eager``, a
    direct call), as Celery's eager ``replace`` returns ``sig.apply().get()``: a task's
    value, a chain's or chord's last, a group's list; a failure raises here."""
    sig = check_replacement(sig)
    return app.client().apply_here(sig).get()
