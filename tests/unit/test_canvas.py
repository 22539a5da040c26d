"""Signature merging and workflow composition, without sending anything."""

import pytest

from apps.tasks import make_app
from hutch.errors import ConfigurationError
from hutch.results.records import StateChange
from hutch.workflows.canvas import Signature, chain, chord, chunks, group, signature
from hutch.workflows.plan import Planner, result_id
from hutch.workflows.unreached import unreached


@pytest.fixture
def app():
    return make_app("memory://", "sqlite:///:memory:")


@pytest.fixture
def tasks(app):
    return app.tasks["tests.add"], app.tasks["tests.mul"], app.tasks["tests.xsum"]


def planner(app):
    return Planner(app.conf, lambda name: getattr(app.tasks.get(name), "options", None))


# -- merging ------------------------------------------------------------------------
def test_partial_args_are_prepended_and_kwargs_merge_with_the_caller_winning(tasks):
    add = tasks[0]
    sig = add.s(16, z=1).set(queue="q")
    merged = sig.clone((4,), {"z": 2, "w": 3}, countdown=5)
    assert merged.args == (4, 16) and merged.kwargs == {"z": 2, "w": 3}
    assert merged.options == {"queue": "q", "countdown": 5}
    assert sig.args == (16,) and sig.kwargs == {"z": 1} and sig.options == {"queue": "q"}


def test_immutable_signatures_ignore_arguments_but_take_options(tasks):
    sig = tasks[0].si(1, 2).clone((9,), {"z": 1}, queue="q")
    assert sig.args == (1, 2) and sig.kwargs == {} and sig.options == {"queue": "q"}


def test_signature_by_name_travels_as_a_dict(app):
    sig = signature("tasks.remote", args=(1,), options={"queue": "q"}, app=app)
    assert Signature.from_dict(sig.to_dict(), app) == sig


# -- composition --------------------------------------------------------------------
def test_pipe_builds_a_flat_chain(tasks):
    add, mul, _ = tasks
    c = add.s(4, 16) | mul.s(2) | (add.s(4) | mul.s(8))
    assert isinstance(c, chain)
    assert [t.task for t in c.tasks] == ["tests.add", "tests.mul", "tests.add", "tests.mul"]
    assert [t.task for t in (add.s(1, 1) | chain(mul.s(2), add.s(3))).tasks] == \
        ["tests.add", "tests.mul", "tests.add"]
    assert len(chain(chain(add.s(1, 1), mul.s(2)), chain(add.s(3), mul.s(4))).tasks) == 4


def test_group_then_a_task_is_a_chord(tasks):
    add, _, xsum = tasks
    c = group(add.s(i, i) for i in range(3)) | xsum.s()
    assert isinstance(c, chord) and len(c.header) == 3 and c.body.task == "tests.xsum"


def test_a_group_inside_a_chain_becomes_a_chord_with_the_next_step(tasks):
    add, mul, xsum = tasks
    c = add.s(1, 1) | group(add.s(1), add.s(2)) | xsum.s() | mul.s(10)
    assert [type(t).__name__ for t in c.tasks] == ["Signature", "chord", "Signature"]
    assert c.tasks[1].body.task == "tests.xsum"


def test_each_group_in_a_chain_is_a_chord_header_for_the_step_after_it(tasks):
    """Celery's rule, applied to every group: group | group passes the first group's
    list to every member of the second, and the second group | task is a chord again."""
    add, _, xsum = tasks
    c = add.si(1, 0) | group(add.si(1, 1), add.si(1, 1)) | group(xsum.s(), xsum.s()) | xsum.s()
    assert [type(t).__name__ for t in c.tasks] == ["Signature", "chord"]
    outer = c.tasks[1]
    assert isinstance(outer.body, chord) and len(outer.header) == 2
    assert [t.task for t in outer.body.header] == ["tests.xsum", "tests.xsum"]
    assert outer.body.body.task == "tests.xsum"
    tail = chord([add.s(1, 1)], chain(add.s(1), group(xsum.s(), xsum.s()))) | xsum.s()
    assert isinstance(tail, chord) and isinstance(tail.body.tasks[-1], chord)


def test_a_chain_may_end_with_a_group(tasks):
    add = tasks[0]
    c = add.s(1, 1) | group(add.s(1), add.s(2))
    assert isinstance(c.tasks[-1], group)


def test_groups_take_a_generator_and_flatten_nested_groups(tasks):
    add = tasks[0]
    g = group(group(add.s(1, 1), add.s(2, 2)), add.s(3, 3))
    assert [t.args for t in g.tasks] == [(1, 1), (2, 2), (3, 3)]
    assert len(group(add.s(i, i) for i in range(10))) == 10


def test_non_signatures_are_refused(tasks):
    with pytest.raises(ConfigurationError, match="expected signatures"):
        group([1, 2])
    with pytest.raises(ConfigurationError, match="body"):
        chord([tasks[0].s(1, 1)])


@pytest.mark.parametrize("build", [
    lambda add, mul, xsum: add.s(1) | mul.s(2),
    lambda add, mul, xsum: group(add.s(1, 1), mul.s(2, 2)),
    lambda add, mul, xsum: chord([add.s(1, 1), chain(add.s(2, 2), mul.s(3))], xsum.s()),
    lambda add, mul, xsum: add.chunks(zip(range(4), range(4), strict=True), 2),
])
def test_every_primitive_round_trips_through_its_wire_form(app, tasks, build):
    sig = build(*tasks)
    back = Signature.from_dict(sig.to_dict(), app)
    assert type(back) is type(sig) and back.to_dict() == sig.to_dict()


def test_map_and_starmap_materialise_their_items(tasks):
    add, _, xsum = tasks
    assert xsum.map([range(3), range(2)]).kwargs["it"] == [[0, 1, 2], [0, 1]]
    assert add.starmap(zip(range(2), range(2), strict=True)).kwargs["it"] == [(0, 0), (1, 1)]
    assert add.starmap(zip(range(2), range(2), strict=True)).task == "hutch.starmap"


def test_chunks_split_into_starmap_tasks(tasks):
    add = tasks[0]
    g = add.chunks(zip(range(100), range(100), strict=True), 10).group()
    assert len(g) == 10 and {t.task for t in g.tasks} == {"hutch.starmap"}
    assert g.tasks[9].kwargs["it"][-1] == (99, 99)
    with pytest.raises(ConfigurationError, match="positive"):
        chunks(add.s(), [], 0)


# -- planning -----------------------------------------------------------------------
def test_a_chain_is_sent_as_its_first_task_carrying_the_rest(app, tasks):
    add, mul, _ = tasks
    c = chain(add.s(2, 2), add.s(4), mul.s(8))
    last = c.freeze()
    plan = planner(app).plan(c)
    assert len(plan.messages) == 1 and not plan.groups
    first = plan.messages[0]
    assert first.id == c.tasks[0].options["task_id"] and first.root_id == first.id
    second = first.link[0]
    assert second["options"]["task_id"] == c.tasks[1].options["task_id"]
    assert second["options"]["link"][0]["options"]["task_id"] == last


def test_link_error_on_a_chain_is_on_every_step_and_link_on_the_last(app, tasks):
    add, mul, _ = tasks
    c = chain(add.s(2, 2), mul.s(4))
    c.link_error(add.si(0, 0))
    c.link(add.si(9, 9))
    first = planner(app).plan(c).messages[0]
    second = first.link[0]
    assert [e["args"] for e in first.link_error] == [[0, 0]]
    assert [e["args"] for e in second["options"]["link_error"]] == [[0, 0]]
    assert [cb["args"] for cb in second["options"]["link"]] == [[9, 9]]


def test_a_group_is_one_row_and_a_message_per_member(app, tasks):
    add = tasks[0]
    g = group(add.s(i, i) for i in range(3))
    plan = planner(app).plan(g)
    (row,) = plan.groups
    assert row.group_id == g.id and row.body is None
    assert row.member_ids == [m.id for m in plan.messages]
    assert {m.group_id for m in plan.messages} == {g.id}
    assert all(m.chord is None for m in plan.messages)


def test_chord_header_tasks_carry_the_counting_marker_and_the_row_holds_the_body(app, tasks):
    add, mul, xsum = tasks
    c = chord([add.s(1, 1), chain(add.s(2, 2), mul.s(3))], xsum.s())
    c.link_error(add.si(0, 0))
    body_id = c.freeze()
    plan = planner(app).plan(c)
    (row,) = plan.groups
    gid = c.header.id
    assert row.body_id == body_id == result_id(c) and row.body["task"] == "tests.xsum"
    assert row.body["options"]["link_error"][0]["args"] == [0, 0]
    simple, chained = plan.messages
    assert simple.chord == {"group_id": gid, "counts": True}
    assert chained.chord == {"group_id": gid, "counts": False}
    assert chained.link[0]["options"]["chord"] == {"group_id": gid, "counts": True}
    assert row.member_ids == [simple.id, chained.link[0]["options"]["task_id"]]
    assert not simple.link_error and not chained.link_error  # errbacks fire once, from the body


def test_call_options_of_a_group_reach_every_member(app, tasks):
    add = tasks[0]
    g = group(add.s(1, 1), add.s(2, 2)).set(queue="priority.high")
    assert {m.queue for m in planner(app).plan(g).messages} == {"priority.high"}


def test_the_unreached_rest_of_a_chain_is_every_frozen_task_with_its_lineage(app, tasks):
    """What a failed first step ends: the next step, the chord after it (its row FAILED,
    decided by the failed step) with its header and body, each row FAILURE with the
    step's exception; a callback without an id (never frozen) has no row to write."""
    add, mul, xsum = tasks
    c = chain(add.s(1, 1), mul.s(2), chord([add.s(1), add.s(2)], xsum.s()))
    c.freeze()
    first = planner(app).plan(c).messages[0]
    failure = StateChange(task_id=first.id, state="FAILURE", exception_type="builtins.ValueError",
                          exception_message="boom", traceback="tb")
    ended = unreached(planner(app), [*first.link, add.s(9).to_dict()], first.id, first.id,
                      failure)
    step, ch = c.tasks[1], c.tasks[2]
    rows = {r.task_id: r for r in ended.rows}
    assert list(rows) == [step.options["task_id"], *(m.options["task_id"] for m in ch.header),
                          ch.body.options["task_id"]]
    assert {(r.state, r.exception_type, r.exception_message, r.worker) for r in rows.values()} \
        == {("FAILURE", "builtins.ValueError", "boom", None)}
    assert rows[step.options["task_id"]].parent_id == first.id
    assert rows[ch.body.options["task_id"]].parent_id == ch.header.id
    assert {r.root_id for r in rows.values()} == {first.id}
    (row,) = ended.groups
    assert (row.group_id, row.parent_id, row.failed_task_id) == (ch.header.id,
                                                                 step.options["task_id"], first.id)
