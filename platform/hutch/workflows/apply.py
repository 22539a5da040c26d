"""Prepare a workflow for a client to send: freeze its ids, plan its messages and group
rows, and build its result handle. Both clients send what this returns in the same
order (hutch.client.base): the group rows are committed before any task is published,
so a worker that finishes a chord's last header task always finds the chord to count
it in. The handle is built from the frozen ids alone: it exists (and its ``.parent``
walks back) before anything has run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..call_options import RetryPolicy, check_options
from ..config import Settings
from .canvas import Signature, as_list, chain, chord, chunks, group
from .plan import OptionsOf, Plan, Planner

H = TypeVar("H")


class Handles(Protocol[H]):
    """How a client makes its result handles (sync ``AsyncResult``/``GroupResult``, or
    the awaitable ones of ``AsyncClient``)."""

    def _task_handle(self, task_id: str, parent: H | None) -> H: ...

    def _group_handle(self, group_id: str, members: list[H], parent: H | None) -> H: ...


@dataclass
class Outgoing:
    """A workflow ready to send: ``plan.groups`` to store, then ``plan.messages`` to
    publish with ``retry``/``policy``; ``sig`` is the frozen workflow."""

    sig: Signature
    plan: Plan
    retry: bool
    policy: RetryPolicy


def prepare(conf: Settings, options_of: OptionsOf, sig: Signature,
            args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
            options: dict[str, Any] | None = None, *, notify: str | None = None) -> Outgoing:
    """``sig`` (a chain, group, chord or chunks) with call ``options``, planned;
    ``notify``: the sending client's notice key, carried by the messages it sends.

    ``args``/``kwargs`` go where the primitive puts them (a chain's first task,
    every member of a group, every header task of a chord). ``task_id=`` names
    the workflow's result (a chain's last task, a group, a chord's body).
    """
    options = dict(options or {})
    check_options(options)
    retry = options.pop("retry", True)
    policy = RetryPolicy.from_mapping(options.pop("retry_policy", None))
    if isinstance(sig, chunks):
        sig = sig.group()
    sig = sig.clone(args, kwargs)
    _apply_options(sig, options)
    sig.freeze()
    return Outgoing(sig, Planner(conf, options_of, notify).plan(sig), retry, policy)


def _apply_options(sig: Signature, options: dict[str, Any]) -> None:
    for callback in as_list(options.pop("link", None)):
        sig.link(callback)
    for errback in as_list(options.pop("link_error", None)):
        sig.link_error(errback)
    task_id = options.pop("task_id", None)
    if task_id is not None:
        result_sig(sig).options["task_id"] = str(task_id)
    sig.options.update(options)


def result_sig(sig: Signature) -> Signature:
    """The task whose result is ``sig``'s (the one ``task_id=`` names)."""
    if isinstance(sig, chain):
        return result_sig(sig.tasks[-1])
    if isinstance(sig, chord):
        return result_sig(sig.body)
    return sig


def handle(sig: Signature, client: Handles[H], parent: H | None = None) -> H:
    """The result handle of a frozen signature ``client`` sent, with ``parent`` links
    set. Every task of it tells ``client`` when it ends: the client's messages name its
    notice key, and workers carry the key on to what they send for them (a chain's
    later steps, callbacks, a chord's body through its ``hutch_groups`` row), so the
    handles wait on the client's own notices (hutch.client.waiter)."""
    if isinstance(sig, chain):
        result = parent
        for step in sig.tasks:
            result = handle(step, client, result)
        assert result is not None
        return result
    if isinstance(sig, chord):
        header = handle(sig.header, client, parent)
        return handle(sig.body, client, header)
    if isinstance(sig, group):
        return client._group_handle(str(sig.options["task_id"]),
                                    [handle(m, client, None) for m in sig.tasks], parent)
    return client._task_handle(str(sig.options["task_id"]), parent)
