"""task_routes and task_create_missing_queues on memory:// (hutch.routing): which queue a
message goes to, in Celery's precedence, and the errors for routes hutch cannot follow."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from apps import routers
from apps.tasks import make_app
from hutch import chain
from hutch.config import Settings
from hutch.errors import ConfigurationError, QueueNotFound
from hutch.messages import TASK_DEFAULTS
from hutch.routing import ROUTE_KEYS
from support.cli import run_main
from support.workers import running_worker


@pytest.fixture
def build(tmp_path):
    """``build(**settings)``: the test tasks' app on a private memory:// broker."""
    apps = []

    def make(**settings):
        app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}",
                       **settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def queue_of(app, name, *args, **options):
    return app.client().message(name, args, **options).queue


def test_a_routed_task_goes_to_its_queue_and_a_worker_there_runs_it(build):
    app = build(task_routes={"tests.add": {"queue": "routed"}})
    with running_worker(app, queues=["routed"]):
        result = app.tasks["tests.add"].delay(2, 3)
        assert result.get(timeout=10) == 5
    assert app.client().store.get(result.id).queue == "routed"


def test_mapping_keys_are_names_globs_and_regular_expressions_exact_names_first(build):
    app = build(task_routes={
        "tests.*": "by-glob",
        re.compile(r"tests\.(mul|echo)"): {"queue": "by-regex"},
        "tests.echo": "exact",
    })
    assert queue_of(app, "tests.add", 1, 2) == "by-glob"
    assert queue_of(app, "tests.mul", 1, 2) == "by-glob"  # patterns in their order
    assert queue_of(app, "tests.echo", 1) == "exact"
    assert queue_of(app, "other.task") == "celery"  # no route: task_default_queue


def test_precedence_is_celerys_call_then_task_then_route_then_settings(build):
    app = build(task_routes={"*": {"queue": "routed", "priority": 3}},
                task_queues={"routed": {"max_priority": 9}, "own": {"max_priority": 9},
                             "call": {"max_priority": 9}})

    @app.task(name="own.queue", queue="own")
    def own():
        return None

    assert queue_of(app, "tests.add", 1, 2) == "routed"
    assert app.client().message("tests.add", (1, 2)).priority == 3
    assert queue_of(app, "own.queue") == "own"  # the task's own option over the route
    assert queue_of(app, "own.queue", queue="call") == "call"  # the call over both
    assert queue_of(app, "tests.add", 1, 2, routing_key="call") == "call"
    assert app.client().message("tests.add", (1, 2), priority=7).priority == 7


def test_a_route_sets_other_task_defaults_too(build):
    app = build(task_routes={"tests.add": {"queue": "q", "serializer": "msgpack",
                                           "time_limit": 30, "ignore_result": True}})
    message = app.client().message("tests.add", (1, 2))
    assert (message.queue, message.serializer, message.time_limit, message.ignore_result) \
        == ("q", "msgpack", 30.0, True)
    assert app.client().message("tests.add", (1, 2), serializer="json").serializer == "json"


def test_routing_key_alone_names_the_queue():
    conf = Settings(task_routes={"a": {"routing_key": "rk"}}, broker_url="memory://")
    from hutch.call_options import build_message
    assert build_message("a", (), {}, {}, conf).queue == "rk"


def test_router_functions_get_celerys_arguments_and_the_first_answer_wins(build):
    seen = []

    def router(name, args, kwargs, options, task=None, **kw):
        seen.append((name, args, kwargs, options, task))
        return None if name == "tests.mul" else "first"

    app = build(task_routes=[router, {"tests.mul": "second"}])
    assert queue_of(app, "tests.add", 1, 2) == "first"
    assert queue_of(app, "tests.mul", 1, 2) == "second"
    name, args, kwargs, options, task = seen[0]
    assert (name, args, kwargs) == ("tests.add", (1, 2), {})
    assert task is app.tasks["tests.add"] and "serializer" not in options
    app.client().message("tests.add", (1, 2), priority=None, serializer="yaml")
    assert seen[-1][3]["serializer"] == "yaml"


def test_a_router_named_by_path_is_imported_on_first_use(build):
    routers.CALLS.clear()
    app = build(task_routes=("apps.routers:by_first_argument", "apps.routers.OldStyleRouter"))
    assert routers.CALLS == []
    assert queue_of(app, "tests.echo", "x") == "echo-x"
    assert queue_of(app, "tests.mul", 1, 2) == "old-style"  # Celery 3 route_for_task class
    assert queue_of(app, "tests.add", 1, 2) == "celery"
    assert routers.CALLS[0][4] is app.tasks["tests.echo"]


def test_a_router_path_that_cannot_be_imported_fails_at_the_send_naming_it(build):
    app = build(task_routes="apps.routers:missing")
    with pytest.raises(ConfigurationError, match=r"task_routes: cannot import router "
                                                 r"'apps.routers:missing'"):
        app.tasks["tests.add"].delay(1, 2)


def test_workflow_steps_are_routed_too(build):
    app = build(task_routes={"tests.mul": "muls"})
    add, mul = app.tasks["tests.add"], app.tasks["tests.mul"]
    with running_worker(app, queues=["celery", "muls"]):
        result = chain(add.s(1, 2), mul.s(10)).delay()
        assert result.get(timeout=10) == 30
    assert app.client().store.get(result.id).queue == "muls"


@pytest.mark.parametrize(("routes", "message"), [
    ({"a": {"queue": "q", "exchange": "media"}}, r"task_routes\['a'\]: 'exchange' is not "
                                                 r"supported by hutch: hutch publishes to one"),
    ({"a": {"qeue": "q"}}, r"task_routes\['a'\]: unknown key 'qeue'; a route may set queue"),
    ({"a": 5}, r"task_routes\['a'\]: a route is a queue name or a mapping"),
    ({"a": {"queue": ""}}, r"'queue' must be a non-empty string"),
    ({5: "q"}, r"task_routes: keys are task names, globs"),
    ([("a", "q")], r"task_routes\[0\]: expected \(pattern, route\) pairs, got 'a'"),
    ([[("a", "q", "extra")]], r"task_routes\[0\]: expected \(pattern, route\) pairs, got "
                              r"\('a', 'q', 'extra'\)"),
    ("not a path", r"task_routes: 'not a path' is not a 'module.path:function' path"),
    (42, r"task_routes: expected a mapping of task name to route, a router function"),
])
def test_bad_routes_are_refused_when_set(routes, message):
    with pytest.raises(ConfigurationError, match=message):
        Settings(task_routes=routes)


def test_a_bad_route_from_a_router_names_the_router_and_task(build):
    app = build(task_routes=[lambda *a, **k: None, lambda *a, **k: {"exchange": "x"}])
    with pytest.raises(ConfigurationError, match=r"task_routes\[1\] for tests.add: 'exchange'"):
        queue_of(app, "tests.add", 1, 2)


def test_pairs_lists_route_like_mappings():
    conf = Settings(task_routes=[[("a.*", "qa"), (re.compile("b"), {"queue": "qb"})]])
    from hutch.call_options import build_message
    assert build_message("a.x", (), {}, {}, conf).queue == "qa"
    assert build_message("b", (), {}, {}, conf).queue == "qb"


def test_routes_and_missing_queues_come_from_the_environment_too(monkeypatch):
    monkeypatch.setenv("HUTCH_TASK_ROUTES", '{"a.*": {"queue": "from-env"}}')
    monkeypatch.setenv("HUTCH_CREATE_MISSING_QUEUES", "false")
    conf = Settings.build("memory://")
    assert conf.task_routes == {"a.*": {"queue": "from-env"}}
    assert conf.task_create_missing_queues is False
    assert conf.source_of("task_routes") == "env HUTCH_TASK_ROUTES"


def test_route_keys_are_the_task_defaults_and_routing_key():
    assert set(ROUTE_KEYS) == {*TASK_DEFAULTS, "routing_key"}


# -- task_create_missing_queues -----------------------------------------------------------

def test_missing_queues_are_created_by_default_as_hutch_always_did(build):
    app = build()
    assert app.conf.task_create_missing_queues is True
    with running_worker(app, queues=["never-configured"]):
        result = app.tasks["tests.add"].apply_async((1, 1), queue="never-configured")
        assert result.get(timeout=10) == 2


def test_without_missing_queues_only_configured_queues_and_the_default_are_allowed(build):
    app = build(task_create_missing_queues=False, task_queues={"reports": {}},
                task_routes={"tests.mul": "nowhere", "tests.echo": "reports"})
    assert queue_of(app, "tests.add", 1, 2) == "celery"
    assert queue_of(app, "tests.echo", 1) == "reports"
    with pytest.raises(QueueNotFound, match=r"task tests.mul: queue 'nowhere' is not in "
                                            r"task_queues and task_create_missing_queues "
                                            r"is off \(known: celery, reports\)"):
        app.tasks["tests.mul"].delay(1, 2)
    with pytest.raises(QueueNotFound, match="queue 'typo'"):
        app.tasks["tests.add"].apply_async((1, 2), queue="typo")


def test_without_missing_queues_a_worker_refuses_an_unknown_queue(tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("HUTCH_CREATE_MISSING_QUEUES", "false")
    code, _, err = run_main(["-b", "memory://", "--backend", f"sqlite:///{tmp_path}/r.db",
                             "worker", "-Q", "celery,unlisted", "-P", "threads"], capsys)
    assert code == 2
    assert "queue 'unlisted' is not in task_queues" in err and "Traceback" not in err


def test_settings_with_regex_routes_and_router_functions_can_be_shown_as_json():
    conf = Settings(task_routes=[len, {re.compile(r"a\..*"): "q"}])
    shown = json.loads(json.dumps(conf.masked(), default=str))["task_routes"]
    assert shown[1] == {"re.compile('a\\\\..*')": "q"} and "len" in shown[0]


def test_a_routes_mapping_changed_in_place_is_followed(build):
    routes = {"tests.add": "first"}
    app = build(task_routes=routes)
    assert queue_of(app, "tests.add", 1, 2) == "first"
    routes["tests.add"] = "second"
    assert queue_of(app, "tests.add", 1, 2) == "second"
