"""Workflow shapes checked against Celery's rules (issue #11), on any broker and store:
groups in a chain, a failed chain step, a chord whose header task failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.tasks import CustomError
from hutch import GroupResult, Hutch, chord, group
from hutch.errors import ChordError
from hutch.ops.tree import render, workflow_tree

TAILS = {
    "a task": lambda t: t["tests.add"].s(1),
    "a group": lambda t: group(t["tests.add"].s(1), t["tests.add"].s(2)),
    "a chord": lambda t: chord([t["tests.add"].s(1), t["tests.add"].s(2)], t["tests.xsum"].s()),
    "a chain ending in a group": lambda t: t["tests.add"].s(1) | group(t["tests.add"].s(1),
                                                                       t["tests.add"].s(2)),
    "a group then a group": lambda t: group(t["tests.add"].s(1), t["tests.add"].s(2))
    | group(t["tests.xsum"].s(), t["tests.xsum"].s()),
}
"""What may follow a failed chain step."""

BODIES = {
    "a task": lambda t: t["tests.xsum"].s(),
    "a chain": lambda t: t["tests.xsum"].s() | t["tests.add"].s(1),
    "a group": lambda t: group(t["tests.echo"].s(), t["tests.echo"].s()),
    "a chord": lambda t: chord([t["tests.echo"].s(), t["tests.echo"].s()], t["tests.echo"].s()),
}
"""The bodies a chord with a failed header task may have."""


def check_groups_gather(app: Hutch, marker: Path) -> None:
    """Every group in a chain is a chord header for the step after it: group | group
    passes the first list to each member of the second, and the second group | task
    runs the task once with the second list (``marker`` counts its runs)."""
    t = app.tasks
    add, xsum = t["tests.add"], t["tests.xsum"]
    r = (add.si(1, 0) | group(add.si(1, 1), add.si(1, 1)) | group(xsum.s(), xsum.s())
         | xsum.s())()
    assert r.get(timeout=30) == 8
    assert r.parent.get(timeout=10) == [4, 4]
    r = (add.si(1, 0) | group(add.si(1, 1), add.si(1, 1)) | group(xsum.s(), xsum.s())
         | t["tests.count_call"].s(str(marker)))()
    assert r.get(timeout=30) == [4, 4]
    assert marker.read_text().count("\n") == 1


def check_failed_chain(app: Hutch, tail: str) -> None:
    """The steps after a failed one never run: their rows are FAILURE with its exception
    (as Celery marks them), so get() on the chain's result raises it at once, from the
    returned handle or from a handle built by id elsewhere; the tree shows them all."""
    t = app.tasks
    r = (t["tests.add"].s(1, 1) | t["tests.fail"].s() | TAILS[tail](t))()
    with pytest.raises(CustomError, match="^2$"):
        r.get(timeout=20)
    last = r.results[-1] if isinstance(r, GroupResult) else r
    with pytest.raises(CustomError, match="^2$"):
        app.AsyncResult(last.id).get(timeout=20)
    step = lineage(r)[-2]  # the tests.fail step
    rows = app.client().store.get_many([last.id, step.id])
    assert rows[step.id].state == rows[last.id].state == "FAILURE"
    assert rows[last.id].root_id == rows[step.id].root_id and rows[last.id].worker is None
    tree = render(workflow_tree(app.client().store, step.id))
    assert last.id in tree and "PENDING" not in tree


def check_failed_member_chain(app: Hutch) -> None:
    """A failed step inside a group's member chain ends that member: the group's get()
    raises it at once, since the member's last task, which never runs, has its row."""
    t = app.tasks
    g = group(t["tests.add"].s(1, 1) | t["tests.fail"].s() | t["tests.add"].s(1),
              t["tests.add"].s(2, 2))()
    with pytest.raises(CustomError, match="^2$"):
        g.get(timeout=20)
    assert g.results[1].get(timeout=10) == 4
    assert app.client().store.get(g.results[0].id).group_id == g.id


def check_failed_chord(app: Hutch, body: str) -> None:
    """get() raises the failed header task's own exception (type and message), as Celery
    users catch it; the body's rows keep the ChordError naming that task, for DBAs and
    the tree view, and ``.result`` is that ChordError."""
    t = app.tasks
    r = chord([t["tests.add"].s(1, 1), t["tests.fail"].s("header broke")], BODIES[body](t))()
    with pytest.raises(CustomError, match="^header broke$"):
        r.get(timeout=30)
    header = lineage(r)[-1]
    failed_id = header.results[1].id
    body_ids = [m.id for m in r.results] if isinstance(r, GroupResult) else [r.id]
    for row in app.client().store.get_many(body_ids).values():
        assert row.state == "FAILURE" and row.exception_type == "hutch.errors.ChordError"
        assert f"tests.fail[{failed_id}]" in row.exception_message
    assert isinstance(app.AsyncResult(body_ids[0]).result, ChordError)
    with pytest.raises(CustomError, match="^header broke$"):
        app.AsyncResult(body_ids[-1]).get(timeout=10)
    tree = render(workflow_tree(app.client().store, header.id))
    assert all(f"{i} " in tree for i in body_ids) and "ChordError" in tree


def lineage(result):
    """A workflow handle and its parents, up to what ran first."""
    out = [result]
    while out[-1].parent is not None:
        out.append(out[-1].parent)
    return out
