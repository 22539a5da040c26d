"""Stamping (hutch.workflows.stamping): what a visitor is asked where, what each task of
a workflow carries, and what a task sees in ``self.request.stamps``, on memory://."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps import stamp_tasks
from hutch import StampingVisitor, chain, chord, group
from hutch.errors import ConfigurationError
from hutch.messages import TaskMessage
from hutch.results.store import ResultStore
from hutch.workflows.plan import Planner
from support.waiting import eventually
from support.workers import running_worker


@pytest.fixture
def app(memory_app):
    return stamp_tasks.register(memory_app)


@pytest.fixture
def seen(app):
    return app.tasks["stamps.seen"]


class Recorder(StampingVisitor):
    """Stamps each place with where it is, and logs every call."""

    def __init__(self):
        self.calls = []

    def on_signature(self, sig, **headers):
        self.calls.append(("on_signature", sig.args, dict(headers)))
        return {"place": f"task{sig.args[0] if sig.args else ''}"}

    def on_group_start(self, group, **headers):
        self.calls.append(("on_group_start", len(group), dict(headers)))
        return {"in_group": True}

    def on_group_end(self, group, **headers):
        self.calls.append(("on_group_end", len(group), dict(headers)))

    def on_chain_start(self, chain, **headers):
        self.calls.append(("on_chain_start", len(chain.tasks), dict(headers)))
        return {"in_chain": "yes"}

    def on_chain_end(self, chain, **headers):
        self.calls.append(("on_chain_end", len(chain.tasks), dict(headers)))

    def on_chord_header_start(self, chord, **headers):
        self.calls.append(("on_chord_header_start", len(chord.tasks), dict(headers)))
        return {"part": "header"}

    def on_chord_header_end(self, chord, **headers):
        self.calls.append(("on_chord_header_end", len(chord.tasks), dict(headers)))

    def on_chord_body(self, chord, **headers):
        self.calls.append(("on_chord_body", chord.body.args, dict(headers)))
        return {"part": "body"}

    def on_callback(self, callback, **headers):
        self.calls.append(("on_callback", callback.args, dict(headers)))
        return {"callback": True}

    def on_errback(self, errback, **headers):
        self.calls.append(("on_errback", errback.args, dict(headers)))
        return {"errback": True}


def messages(app, sig):
    """The messages that start ``sig``, and the chord bodies that wait, by first arg."""
    plan = Planner(app.conf, app.tasks.options_for).plan(sig)
    out = {m.args[0] if m.args else None: m for m in plan.messages}
    for row in plan.groups:
        if row.body:
            out[("body", *row.body["args"])] = row.body
    return out


def test_a_chain_visits_the_chain_then_each_step_and_every_step_is_stamped(app, seen):
    visitor = Recorder()
    flow = chain(seen.s(1), seen.s(2), seen.s(3)).stamp(visitor, tenant="acme")
    assert [c[0] for c in visitor.calls] == [
        "on_chain_start", "on_signature", "on_signature", "on_signature", "on_chain_end"]
    assert visitor.calls[0][2] == {"tenant": "acme"}
    assert visitor.calls[1][2] == {"tenant": "acme", "in_chain": "yes"}
    assert [step.options["stamps"] for step in flow.tasks] == [
        {"tenant": "acme", "in_chain": "yes", "place": f"task{i}"} for i in (1, 2, 3)]
    first = messages(app, flow)[1]
    assert first.stamps["place"] == "task1"
    later = first.link[0]  # step 2 travels in step 1's link, step 3 in step 2's
    assert later["options"]["stamps"]["place"] == "task2"
    assert later["options"]["link"][0]["options"]["stamps"]["place"] == "task3"


def test_a_group_and_a_chord_stamp_members_header_and_body(app, seen):
    visitor = Recorder()
    flow = chord(group(seen.s(1), seen.s(2)), seen.s("b")).stamp(visitor, run="r1")
    names = [c[0] for c in visitor.calls]
    assert names == ["on_chord_header_start", "on_signature", "on_signature",
                     "on_chord_header_end", "on_chord_body", "on_signature"]
    found = messages(app, flow)
    assert found[1].stamps == {"run": "r1", "part": "header", "place": "task1"}
    assert found[2].stamps["part"] == "header"
    assert found[("body", "b")]["options"]["stamps"] == {
        "run": "r1", "part": "body", "place": "taskb"}

    visitor = Recorder()
    members = messages(app, group(seen.s(1), seen.s(2)).stamp(visitor))
    assert [c[0] for c in visitor.calls] == [
        "on_group_start", "on_signature", "on_signature", "on_group_end"]
    assert members[2].stamps == {"in_group": True, "place": "task2"}


def test_the_default_chord_header_visit_is_the_group_visit(app, seen):
    class GroupOnly(StampingVisitor):
        def on_signature(self, sig, **headers):
            return {}

        def on_group_start(self, group, **headers):
            return {"members": len(group)}

    flow = chord([seen.s(1), seen.s(2), seen.s(3)], seen.s()).stamp(GroupOnly())
    assert {m.stamps["members"] for m in messages(app, flow).values()
            if isinstance(m, TaskMessage)} == {3}


def test_callbacks_and_errbacks_get_their_own_stamps(app, seen):
    visitor = Recorder()
    sig = seen.s(1)
    sig.link(seen.s("cb"))
    sig.link_error(seen.s("eb"))
    sig.stamp(visitor, k="v")
    assert [c[0] for c in visitor.calls] == [
        "on_callback", "on_signature", "on_errback", "on_signature", "on_signature"]
    message = messages(app, sig)[1]
    assert message.stamps == {"k": "v", "place": "task1"}
    assert message.link[0]["options"]["stamps"] == {"k": "v", "callback": True,
                                                    "place": "taskcb"}
    assert message.link_error[0]["options"]["stamps"] == {"k": "v", "errback": True,
                                                          "place": "taskeb"}


def test_append_stamps_keeps_both_values_and_replacing_is_the_default(seen):
    sig = seen.s(1).stamp(tag="a")
    assert sig.stamp(tag="b").options["stamps"] == {"tag": "b"}
    assert sig.stamp(append_stamps=True, tag="c").options["stamps"] == {"tag": ["b", "c"]}
    assert sig.stamp(append_stamps=True, tag=["c", "d"]).options["stamps"] == {
        "tag": ["b", "c", "d"]}


def test_only_the_names_in_stamped_headers_are_stamps(seen):
    class Picky(StampingVisitor):
        def on_signature(self, sig, **headers):
            return {"kept": 1, "other": 2, "stamped_headers": ["kept"]}

    assert seen.s().stamp(Picky()).options["stamps"] == {"kept": 1}


@pytest.mark.parametrize("stamps, error", [
    ({"k": object()}, "stamps from stamp()"),
    ({"k": {"nested": 1}}, "expected a string, number"),
    ({"k": float("nan")}, "expected a string, number"),
    ({"k": "x" * 9000}, "at most 8192"),
])
def test_a_stamp_that_cannot_travel_is_refused_naming_it(seen, stamps, error):
    with pytest.raises(ConfigurationError, match=error):
        seen.s().stamp(**stamps)


def test_a_visitor_returning_no_dict_is_refused(seen):
    class Wrong(StampingVisitor):
        def on_signature(self, sig, **headers):
            return ["not", "a", "dict"]

    with pytest.raises(ConfigurationError, match="on_signature must return a dict"):
        seen.s().stamp(Wrong())


def _reports(value):
    """The ``{"stamps", "stamped_headers"}`` reports nested anywhere in ``value``."""
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _reports(item)


def test_stamps_reach_the_request_and_the_row_of_every_task(app, seen):
    flow = chain(seen.s(1), chord([seen.s(2), seen.s(3)], seen.s()), seen.s())
    flow.stamp(tenant="acme", batch=[7, 8])
    with running_worker(app):
        result = flow.apply_async()
        final = result.get(timeout=20)
    expected = {"tenant": "acme", "batch": [7, 8]}
    assert final[-1] == {"stamps": expected, "stamped_headers": ["batch", "tenant"]}
    seen_by = list(_reports(final))  # every task's report, nested in the results
    assert len(seen_by) >= 5 and all(r["stamps"] == expected for r in seen_by)
    rows = app.client().store
    ids = [result.id, result.parent.id]
    assert all(rows.get(i).stamps == expected for i in ids)


def test_a_callback_errback_and_apply_async_option_carry_stamps(app, seen):
    store = app.client().store
    with running_worker(app):
        direct = seen.apply_async((0,), stamps={"via": "option"})
        assert direct.get(timeout=10)[-1]["stamps"] == {"via": "option"}
        failing = app.tasks["stamps.fail"].s()
        errback = app.tasks["stamps.stamps"].si()
        errback_id = errback.freeze()
        failing.link_error(errback)
        failing.stamp(origin="errback-test")
        failing.apply_async()
        assert eventually(lambda: getattr(store.get(errback_id), "state", None) == "SUCCESS",
                          20)
    assert store.get(errback_id).result == {"origin": "errback-test"}
    assert store.get(direct.id).stamps == {"via": "option"}


def test_an_unstamped_task_sees_an_empty_dict_and_has_a_null_column(app, seen):
    with running_worker(app):
        r = seen.delay()
        assert r.get(timeout=10) == [{"stamps": {}, "stamped_headers": []}]
    assert app.client().store.get(r.id).stamps is None


def test_revoke_by_stamped_headers_refuses_stamped_tasks_after_a_restart_too(app, seen):
    app.control.revoke_by_stamped_headers({"tenant": ["evil", "worse"]})
    store = app.client().store
    assert store.revoked_stamps() == {("tenant", '"evil"'), ("tenant", '"worse"')}
    with running_worker(app):  # started after the revocation: it loads it from the table
        refused = seen.s(1).stamp(tenant="evil").apply_async()
        in_list = seen.s(2).stamp(tenant=["good", "worse"]).apply_async()
        kept = seen.s(3).stamp(tenant="good").apply_async()
        plain = seen.delay(4)
        assert kept.get(timeout=10)[0] == 3 and plain.get(timeout=10)[0] == 4
        assert eventually(lambda: refused.state == "REVOKED" and in_list.state == "REVOKED")
    with running_worker(app):  # running when the broadcast comes
        app.control.revoke_by_stamped_headers({"batch": 7})
        later = seen.s(5).stamp(batch=[6, 7]).apply_async()
        other = seen.s(6).stamp(batch=8).apply_async()
        assert other.get(timeout=10)[0] == 6
        assert eventually(lambda: later.state == "REVOKED")


@pytest.mark.parametrize("headers, error", [
    ({}, "non-empty mapping"), ("tenant", "non-empty mapping"),
    ({"tenant": {"a": 1}}, "expected a string, number"),
])
def test_revoke_by_stamped_headers_refuses_bad_headers(app, headers, error):
    with pytest.raises(ConfigurationError, match=error):
        app.control.revoke_by_stamped_headers(headers)


def test_the_cli_revokes_by_stamps_and_refuses_a_malformed_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    env = {**os.environ, "HUTCH_BROKER_URL": "memory://cli", "HUTCH_BACKEND_URL": url}
    run = [sys.executable, "-m", "hutch", "-A", "apps.env_app", "control",
           "revoke_by_stamped_headers"]
    done = subprocess.run([*run, "tenant=evil", "tenant=7", "flag=true"], env=env,
                          cwd=Path(__file__).parents[1], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert ResultStore(url).revoked_stamps() == {
        ("tenant", '"evil"'), ("tenant", "7"), ("flag", "true")}
    bad = subprocess.run([*run, "tenant"], env=env, cwd=Path(__file__).parents[1],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "expected NAME=VALUE" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_bad_stamps_option_is_refused_before_anything_is_sent(app, seen):
    with pytest.raises(ConfigurationError, match="stamps: expected a mapping"):
        seen.apply_async((1,), stamps="tenant=acme")
    with pytest.raises(ConfigurationError, match=r"stamps: \['k'\]: expected a string"):
        seen.apply_async((1,), stamps={"k": {"deep": 1}})


def test_chunks_give_their_stamps_to_each_chunk_task(app, seen):
    class Counter(StampingVisitor):
        def on_signature(self, sig, **headers):
            return {"kind": sig.subtask_type or "task"}

    flow = seen.chunks([(1,), (2,), (3,)], 2).stamp(Counter(), run="r")
    plan = Planner(app.conf, app.tasks.options_for).plan(flow)
    assert [m.task for m in plan.messages] == ["hutch.starmap"] * 2
    assert {str(m.stamps) for m in plan.messages} == {str({"run": "r", "kind": "chunks"})}
