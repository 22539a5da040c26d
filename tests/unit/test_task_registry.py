"""app.tasks: the registered tasks by name, and each task's options for the components
(client, executor, chord keeper) that need only those."""

from collections.abc import Mapping

import pytest

from hutch import Hutch
from hutch.errors import ConfigurationError
from hutch.tasks import TaskOptions, TaskRegistry


def make_app() -> Hutch:
    app = Hutch("registry", broker="memory://", backend="sqlite://")

    @app.task(name="reg.slow", queue="slow", time_limit=30, ignore_result=True)
    def slow() -> None:
        """A task with its own defaults."""

    return app


def test_a_known_task_gets_its_declared_options():
    options = make_app().tasks.options_for("reg.slow")
    assert (options.name, options.queue, options.time_limit, options.ignore_result) == \
        ("reg.slow", "slow", 30, True)


def test_an_unknown_name_gets_the_plain_defaults():
    assert make_app().tasks.options_for("elsewhere.task") == TaskOptions(name="elsewhere.task")


def test_the_registry_is_a_mapping_of_name_to_task():
    tasks = make_app().tasks
    assert isinstance(tasks, TaskRegistry)
    assert isinstance(tasks, Mapping)
    assert "reg.slow" in tasks and "elsewhere.task" not in tasks
    assert tasks["reg.slow"].name == "reg.slow"
    assert tasks.get("elsewhere.task") is None
    assert "reg.slow" in list(tasks) and len(tasks) == len(list(tasks))


def test_another_function_under_a_taken_name_is_refused():
    app = make_app()
    with pytest.raises(ConfigurationError, match="registered twice"):
        @app.task(name="reg.slow")
        def other() -> None:
            """Not the same function."""


def test_a_client_of_the_app_uses_the_task_defaults():
    app = make_app()
    assert app.client().message("reg.slow").queue == "slow"
    assert app.client().message("elsewhere.task").queue == app.conf.task_default_queue
