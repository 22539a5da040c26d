"""Send a workflow from a client: freeze its ids, store its groups, publish its first tasks.

The group rows are committed before any task is published, so a worker that
finishes a chord's last header task always finds the chord to count it in.
The returned handle is built from the frozen ids alone: it exists (and its
``.parent`` walks back) before anything has run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..call_options import RetryPolicy, check_options
from ..client.handles import AsyncResult, GroupResult
from .canvas import Signature, as_list, chain, chord, chunks, group
from .plan import Planner

if TYPE_CHECKING:
    from ..client.sync import Client

PUBLISH_OPTIONS = ("retry", "retry_policy")


def apply_workflow(client: Client, sig: Signature, args: tuple[Any, ...] = (),
                   kwargs: dict[str, Any] | None = None,
                   options: dict[str, Any] | None = None) -> AsyncResult | GroupResult:
    """Send ``sig`` (a chain, group, chord or chunks) with call ``options``.

    ``args``/``kwargs`` go where the primitive puts them (a chain's first task,
    every member of a group, every header task of a chord). ``task_id=`` names
    the workflow's result (a chain's last task, a group, a chord's body).
    """
    options = dict(options or {})
    check_options({k: v for k, v in options.items()})
    retry = options.pop("retry", True)
    policy = RetryPolicy.from_mapping(options.pop("retry_policy", None))
    if isinstance(sig, chunks):
        sig = sig.group()
    sig = sig.clone(args, kwargs)
    _apply_options(sig, options)
    sig.freeze()
    plan = Planner(client.conf, client.task_options).plan(sig)
    client.store.insert_groups(plan.groups)
    client.send(plan.messages, retry=retry, policy=policy)
    return handle(sig, client)


def _apply_options(sig: Signature, options: dict[str, Any]) -> None:
    for callback in as_list(options.pop("link", None)):
        sig.link(callback)
    for errback in as_list(options.pop("link_error", None)):
        sig.link_error(errback)
    task_id = options.pop("task_id", None)
    if task_id is not None:
        _result_sig(sig).options["task_id"] = str(task_id)
    sig.options.update(options)


def _result_sig(sig: Signature) -> Signature:
    if isinstance(sig, chain):
        return _result_sig(sig.tasks[-1])
    if isinstance(sig, chord):
        return _result_sig(sig.body)
    return sig


def handle(sig: Signature, client: Client,
           parent: AsyncResult | GroupResult | None = None) -> AsyncResult | GroupResult:
    """The result handle of a frozen signature, with ``parent`` links set."""
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
        return GroupResult(str(sig.options["task_id"]),
                           [handle(m, client) for m in sig.tasks], client, parent)
    return AsyncResult(str(sig.options["task_id"]), client, parent)

