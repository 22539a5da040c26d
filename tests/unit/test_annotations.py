"""task_annotations on memory:// (hutch.annotations): task options set from the settings,
over ``@app.task``'s, for one task or every task, and what they refuse."""

from __future__ import annotations

import uuid

import pytest

from apps.tasks import make_app
from hutch import Hutch
from hutch.config import Settings
from hutch.errors import ConfigurationError
from support.workers import running_worker


@pytest.fixture
def build(tmp_path):
    apps = []

    def make(**settings):
        app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}",
                       **settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def test_star_annotates_every_task_and_a_name_its_own_task_which_wins(build):
    app = build(task_annotations={"*": {"rate_limit": "10/s", "max_retries": 7},
                                  "tests.add": {"rate_limit": "1/m", "time_limit": 30}})
    add, mul = app.tasks["tests.add"].options, app.tasks["tests.mul"].options
    assert (add.rate_limit, add.max_retries, add.time_limit) == ("1/m", 7, 30.0)
    assert (mul.rate_limit, mul.max_retries, mul.time_limit) == ("10/s", 7, None)


def test_an_annotation_overrides_the_decorators_option_and_a_worker_follows_it(build):
    app = build(task_annotations={"own.task": {"queue": "annotated"}})

    @app.task(name="own.task", queue="declared")
    def own(x):
        return x * 2

    assert own.options.queue == "annotated"
    with running_worker(app, queues=["annotated"]):
        result = own.delay(21)
        assert result.get(timeout=10) == 42
    assert app.client().store.get(result.id).queue == "annotated"


def test_finalize_applies_annotations_set_after_the_tasks_were_registered(build):
    app = build()
    app.conf.task_annotations = {"tests.add": {"ignore_result": True}}
    assert app.tasks["tests.add"].options.ignore_result is None
    app.finalize()
    assert app.tasks["tests.add"].options.ignore_result is True


def test_annotating_again_starts_from_the_declared_options(build):
    app = build(task_annotations={"tests.add": {"max_retries": 9}})
    task = app.tasks["tests.add"]
    assert task.options.max_retries == 9
    app.conf.task_annotations = None
    app._annotate(task)
    assert task.options.max_retries == 3  # the default it was declared with


class Annotator:
    """Celery's annotation object: ``annotate(task)`` and ``annotate_any()``."""

    def annotate(self, task):
        return {"soft_time_limit": 5} if task.name.endswith(".mul") else None

    def annotate_any(self):
        return {"max_retries": 1}


def test_objects_and_lists_the_first_answer_for_a_task_wins(build):
    app = build(task_annotations=[Annotator(), {"tests.mul": {"soft_time_limit": 9},
                                                "*": {"max_retries": 5}}])
    mul, add = app.tasks["tests.mul"].options, app.tasks["tests.add"].options
    assert (mul.soft_time_limit, mul.max_retries) == (5.0, 1)
    assert (add.soft_time_limit, add.max_retries) == (None, 1)


@pytest.mark.parametrize(("annotation", "message"), [
    ({"@on_failure": print}, r"cannot set @on_failure; an annotation may set .*method "
                             r"annotations \('@...'\) are not supported"),
    ({"name": "other"}, r"task_annotations for tests.add: cannot set name"),
    ({"rate_limit": "fast"}, r"task_annotations for tests.add: task tests.add: rate_limit "
                             r"'fast' is not a rate"),
    ({"soft_time_limit": 10, "time_limit": 5}, r"soft_time_limit=10 s must be shorter"),
])
def test_bad_annotations_fail_when_applied_naming_the_task(tmp_path, annotation, message):
    with pytest.raises(ConfigurationError, match=message):
        make_app("memory://", f"sqlite:///{tmp_path / 'r.sqlite'}",
                 task_annotations={"tests.add": annotation})


@pytest.mark.parametrize("value", [{"tests.add": 5}, [3], "tests.add", {1: {}}])
def test_a_bad_shape_is_refused_when_set(value):
    with pytest.raises(ConfigurationError, match="task_annotations: expected"):
        Settings(task_annotations=value)


def test_annotations_come_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv("HUTCH_TASK_ANNOTATIONS", '{"*": {"rate_limit": "5/s"}}')
    app = Hutch("env_annotations", broker="memory://")

    @app.task
    def anything():
        return None

    assert anything.options.rate_limit == "5/s"
