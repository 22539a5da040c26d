"""Celery's ways of declaring tasks: Task subclasses (``register_task``, ``base=``),
their hooks, ``typing=`` and ``@shared_task``, on memory:// and eager runs."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from hutch import Hutch, Task, current, shared_task
from hutch import shared as shared_module
from hutch.errors import ConfigurationError
from hutch.hooks import ExceptionInfo
from support.logs import capture_logs
from support.workers import running_worker


@pytest.fixture
def app(tmp_path):
    app = Hutch("classes", broker=f"memory://{uuid.uuid4().hex}",
                backend=f"sqlite:///{tmp_path / 'r.sqlite'}", worker_concurrency=2)
    yield app
    app.close()


@pytest.fixture
def shared_declarations():
    """Shared tasks declared by a test are forgotten after it, so no other test's app
    registers them."""
    before = dict(shared_module._declared)
    yield
    added = [d for key, d in shared_module._declared.items() if before.get(key) is not d]
    shared_module._declared.clear()
    shared_module._declared.update(before)
    for app in list(shared_module._apps):  # the apps other test modules keep alive too
        for declaration in added:
            name = declaration.name_in(app)
            if getattr(app.tasks.get(name), "fn", None) is declaration.fn:
                del app.tasks._tasks[name]


class Recorded(Task):
    """Hooks that append what they were given to the class's ``calls``."""

    calls: list[tuple]

    def on_success(self, retval, task_id, args, kwargs):
        self.calls.append(("on_success", retval, task_id, tuple(args), dict(kwargs)))

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        self.calls.append(("on_failure", type(exc).__name__, task_id, tuple(args), einfo))

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        self.calls.append(("on_retry", str(exc), task_id, einfo))

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        self.calls.append(("after_return", status, retval if status == "SUCCESS"
                           else type(retval).__name__, task_id, einfo))


class Multiply(Recorded):
    name = "classes.multiply"
    queue = "maths"
    max_retries = 5
    rate_limit = "10/s"
    calls: list[tuple] = []

    def run(self, x, y=2):
        return x * y


# -- class-based tasks ----------------------------------------------------------------
def test_class_attributes_are_the_options_and_register_task_returns_the_task(app):
    task = app.register_task(Multiply())
    assert app.tasks["classes.multiply"] is task and task.app is app
    assert (task.options.queue, task.options.max_retries, task.options.rate_limit) == \
        ("maths", 5, "10/s")
    assert task.max_retries == 5 and task.acks_late is None and task.typing is True
    assert task(3) == 6 and task.fn is None
    assert app.client().message("classes.multiply").queue == "maths"


def test_the_class_itself_is_accepted_and_unnamed_classes_take_their_module_name(app):
    class Unnamed(Task):
        def run(self):
            return "ran"

    task = app.register_task(Unnamed, max_retries=1)
    assert task.name == f"{__name__}.Unnamed" and task.max_retries == 1
    assert task() == "ran"


def test_options_set_on_a_class_are_checked_like_the_decorators(app):
    class BadRate(Task):
        rate_limit = "fast"

        def run(self):
            """Never runs."""

    with pytest.raises(ConfigurationError, match="rate_limit 'fast'"):
        app.register_task(BadRate())
    with pytest.raises(ConfigurationError, match="unknown option.*throws"):
        app.register_task(Multiply(), throws=(KeyError,))


def test_what_register_task_refuses(app):
    class NoRun(Task):
        pass

    with pytest.raises(ConfigurationError, match="NoRun defines no run"):
        app.register_task(NoRun())
    with pytest.raises(ConfigurationError, match="not a subclass of hutch.Task"):
        app.register_task(dict)
    with pytest.raises(ConfigurationError, match="expected a hutch.Task"):
        app.register_task(lambda: None)


def test_another_class_under_a_taken_name_is_refused(app):
    app.register_task(Multiply())

    class Other(Task):
        name = "classes.multiply"

        def run(self):
            """Not the same task."""

    with pytest.raises(ConfigurationError, match="registered twice"):
        app.register_task(Other())
    assert app.register_task(Multiply()).name == "classes.multiply"  # the same class again


def test_an_instance_of_another_app_is_copied(app, tmp_path):
    first = app.register_task(Multiply())

    @app.task(name="classes.plain")
    def plain(x):
        return x

    other = Hutch("other", broker="memory://", backend=f"sqlite:///{tmp_path / 'o.sqlite'}")
    second = other.register_task(first)
    assert second is not first and second.app is other and first.app is app
    again = other.register_task(plain, queue="elsewhere")
    assert again is not plain and again.app is other and again.fn is plain.fn
    assert (again.name, again.queue, plain.queue) == ("classes.plain", "elsewhere", None)
    with pytest.raises(ConfigurationError, match="rate_limit"):
        other.register_task(plain, rate_limit="often")
    other.close()


def test_a_class_based_task_runs_on_a_worker_with_its_hooks_in_order(app):
    Multiply.calls = []
    task = app.register_task(Multiply())
    with running_worker(app, queues=["maths"]):
        result = task.delay(4, y=5)
        assert result.get(timeout=30) == 20
    assert Multiply.calls == [
        ("on_success", 20, result.id, (4,), {"y": 5}),
        ("after_return", "SUCCESS", 20, result.id, None)]


def test_an_async_run_runs_on_the_asyncio_pool(app):
    class Sleepy(Task):
        name = "classes.sleepy"

        async def run(self, seconds):
            await asyncio.sleep(seconds)
            return f"slept {seconds}"

    task = app.register_task(Sleepy())
    assert task.is_async
    with running_worker(app, pool="asyncio"):
        assert task.delay(0.01).get(timeout=30) == "slept 0.01"
    assert task.apply((0,)).get() == "slept 0"


# -- base= --------------------------------------------------------------------------
class Audited(Recorded):
    max_retries = 7
    default_retry_delay = 0
    calls: list[tuple] = []


def test_base_gives_a_function_the_class_hooks_and_defaults(app):
    @app.task(base=Audited, name="classes.div", max_retries=1)
    def div(x, y):
        """Divide."""
        return x / y

    assert isinstance(div, Audited) and type(div) is not Audited
    assert div.name == "classes.div" and div.__doc__ == "Divide."
    assert div.max_retries == 1 and div.options.max_retries == 1  # the decorator wins
    assert div.default_retry_delay == 0
    Audited.calls = []
    assert div.apply((6, 3)).get() == 2
    failed = div.apply((1, 0))
    assert failed.state == "FAILURE"
    assert [call[0] for call in Audited.calls] == \
        ["on_success", "after_return", "on_failure", "after_return"]
    _, kind, task_id, args, einfo = Audited.calls[2]
    assert (kind, task_id, args) == ("ZeroDivisionError", failed.id, (1, 0))
    assert isinstance(einfo, ExceptionInfo) and einfo.type is ZeroDivisionError
    assert isinstance(einfo.exception, ZeroDivisionError)
    assert "ZeroDivisionError" in einfo.traceback and str(einfo) == einfo.traceback
    assert Audited.calls[3][1:3] == ("FAILURE", "ZeroDivisionError")


def test_base_with_bind_passes_the_task_itself(app):
    @app.task(base=Audited, bind=True)
    def whoami(self):
        return self.name, self.max_retries

    assert whoami.apply().get() == (whoami.name, 7)


def test_base_must_be_a_task_subclass(app):
    with pytest.raises(ConfigurationError, match="base= must be a subclass"):
        @app.task(base=object)
        def nothing():
            """Never registered."""


def test_hooks_see_retries_and_the_last_failure_eagerly(app):
    @app.task(base=Audited, bind=True, max_retries=2)
    def flaky(self):
        raise self.retry(exc=KeyError("again"), countdown=0)

    Audited.calls = []
    result = flaky.apply()
    assert result.state == "FAILURE"
    assert [call[0] for call in Audited.calls] == \
        ["on_retry", "on_retry", "on_failure", "after_return"]
    assert Audited.calls[0][1] == "'again'" and isinstance(Audited.calls[0][3], ExceptionInfo)


def test_hooks_run_before_an_eager_failure_propagates(app):
    @app.task(base=Audited)
    def boom():
        raise RuntimeError("no")

    Audited.calls = []
    with pytest.raises(RuntimeError):
        boom.apply(throw=True)
    assert [call[0] for call in Audited.calls] == ["on_failure", "after_return"]


def test_hooks_on_a_worker_after_failure_and_retry(app):
    @app.task(base=Audited, name="classes.worker_flaky", bind=True, max_retries=1)
    def worker_flaky(self):
        raise self.retry(exc=ValueError("once more"), countdown=0)

    Audited.calls = []
    with running_worker(app):
        result = worker_flaky.delay()
        with pytest.raises(ValueError, match="once more"):
            result.get(timeout=30)
    names = [call[0] for call in Audited.calls]
    assert names == ["on_retry", "on_failure", "after_return"]
    assert Audited.calls[1][1:3] == ("ValueError", result.id)


class Raising(Task):
    def on_success(self, retval, task_id, args, kwargs):
        raise RuntimeError("hook broke")

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        raise SystemExit(3)


def test_a_hook_that_raises_is_logged_and_changes_nothing(app):
    @app.task(base=Raising, name="classes.fine")
    def fine():
        return "fine"

    with capture_logs() as logs:
        assert fine.apply().get() == "fine"
        with running_worker(app):
            assert fine.delay().get(timeout=30) == "fine"
            assert fine.delay().get(timeout=30) == "fine"  # the worker still runs tasks
    raised = [e for e in logs if e["event"].startswith("task hook raised")]
    assert {e["hook"] for e in raised} == {"on_success", "after_return"}
    assert len(raised) == 6 and all(e["task_id"] and e["log_level"] == "error" for e in raised)
    assert any("hook broke" in e["error"] for e in raised)


class Wrapped(Task):
    """Celery's ContextTask: ``__call__`` wraps every run (here: notes it was inside)."""

    inside: list[str] = []

    def __call__(self, *args, **kwargs):
        self.inside.append("enter")
        try:
            return self.run(*args, **kwargs)
        finally:
            self.inside.append("exit")


def test_a_custom_call_wraps_every_run_on_every_pool_and_eagerly(app):
    @app.task(base=Wrapped, name="classes.wrapped", bind=True)
    def wrapped(self, x):
        Wrapped.inside.append(f"run {x} {self.request.id == 'eager' or len(self.request.id)}")
        return x

    class AsyncWrapped(Wrapped):
        name = "classes.async_wrapped"

        async def run(self, x):
            Wrapped.inside.append(f"async {x}")
            return x

    async_task = app.register_task(AsyncWrapped())
    Wrapped.inside = []
    assert wrapped.apply((1,)).get() == 1
    with running_worker(app):
        assert wrapped.delay(2).get(timeout=30) == 2
    with running_worker(app, pool="asyncio"):
        assert async_task.delay(3).get(timeout=30) == 3
        assert wrapped.delay(4).get(timeout=30) == 4  # a sync task on the asyncio pool
    # an async run is a coroutine __call__ returns: it runs once __call__ has returned
    assert Wrapped.inside == ["enter", "run 1 36", "exit", "enter", "run 2 36", "exit",
                              "enter", "exit", "async 3", "enter", "run 4 36", "exit"]


class Requested(Task):
    seen: list[tuple] = []

    def on_success(self, retval, task_id, args, kwargs):
        self.seen.append((task_id, self.request.id, self.request.is_eager))


def test_hooks_see_the_request_of_the_run(app):
    @app.task(base=Requested, name="classes.requested")
    def requested():
        return None

    Requested.seen = []
    eager = requested.apply()
    with running_worker(app):
        sent = requested.delay()
        sent.get(timeout=30)
    assert Requested.seen == [(eager.id, eager.id, True), (sent.id, sent.id, False)]


def test_an_async_hook_is_refused_with_a_log_line(app):
    class AsyncHook(Task):
        async def on_success(self, retval, task_id, args, kwargs):
            raise AssertionError("never runs")

    @app.task(base=AsyncHook)
    def quick():
        return 1

    with capture_logs() as logs:
        assert quick.apply().get() == 1
    assert [e["hook"] for e in logs if "coroutine function" in e["event"]] == ["on_success"]


# -- typing= ------------------------------------------------------------------------
def test_a_call_that_does_not_fit_the_signature_fails_at_delay(app):
    @app.task
    def add(x, y):
        return x + y

    with pytest.raises(TypeError, match=r"add\(1\): missing a required argument: 'y'"):
        add.delay(1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        add.apply_async((1, 2), {"z": 3})
    assert app.client().flush() is not False
    assert add.delay(1, 2).id  # a good call is sent


def test_a_signature_of_a_known_task_is_checked_when_sent(app):
    @app.task(name="classes.pair")
    def pair(x, y):
        return x, y

    partial = pair.s(1)
    with pytest.raises(TypeError, match=r"classes.pair\(1\): missing"):
        partial.delay()
    assert partial.delay(2).id
    assert app.signature("classes.unknown", (1, 2, 3)).delay().id  # no code here: not checked


def test_a_bound_task_is_checked_without_self(app):
    @app.task(bind=True)
    def bound(self, x):
        return x

    bound.delay(1)
    with pytest.raises(TypeError, match="too many positional arguments"):
        bound.delay(1, 2)


def test_a_class_based_task_is_checked_against_run(app):
    task = app.register_task(Multiply())
    task.delay(1)
    with pytest.raises(TypeError, match="classes.multiply"):
        task.delay()


def test_typing_false_sends_any_call_and_sending_by_name_is_never_checked(app):
    @app.task(typing=False, name="classes.loose")
    def loose(x):
        return x

    @app.task(name="classes.strict")
    def strict(x):
        return x

    assert loose.delay(1, 2, 3).id
    assert app.send_task("classes.strict", (1, 2, 3)).id
    assert app.client().submit("classes.strict").id
    with pytest.raises(ConfigurationError, match="typing must be True or False"):
        app.task(typing="yes")(lambda: None)


def test_typing_false_class_attribute(app):
    class Loose(Task):
        name = "classes.loose_class"
        typing = False

        def run(self, x):
            return x

    task = app.register_task(Loose())
    assert task.delay().id


# -- shared_task --------------------------------------------------------------------
def test_a_shared_task_declared_before_an_app_is_registered_on_it(shared_declarations, tmp_path):
    @shared_task
    def hello(who):
        return f"hello {who}"

    assert isinstance(hello, shared_module.SharedTask)
    app = Hutch("later", broker=f"memory://{uuid.uuid4().hex}",
                backend=f"sqlite:///{tmp_path / 'r.sqlite'}")
    name = f"{__name__}.hello"
    assert name in app.tasks and hello.name == name
    assert hello("you") == "hello you"
    with running_worker(app):
        assert hello.delay("worker").get(timeout=30) == "hello worker"
    app.close()


def test_a_shared_task_declared_later_is_registered_on_the_existing_apps(
        shared_declarations, app, tmp_path):
    second = Hutch("second", broker="memory://", backend=f"sqlite:///{tmp_path / 'b.sqlite'}")

    @shared_task(bind=True, name="shared.whoami", max_retries=9)
    def whoami(self):
        return self.app.main, self.max_retries

    assert "shared.whoami" in app.tasks and "shared.whoami" in second.tasks
    assert app.tasks["shared.whoami"] is not second.tasks["shared.whoami"]
    assert whoami.apply().get() == ("second", 9)
    assert whoami.app is second  # the current app: the one created last
    sig = whoami.s()
    assert sig.task == "shared.whoami"
    second.close()


def test_shared_task_options_are_checked_at_declaration(shared_declarations):
    with pytest.raises(ConfigurationError, match="unknown option"):
        @shared_task(colour="blue")
        def painted():
            """Never declared."""
    with pytest.raises(ConfigurationError, match="with keywords"):
        shared_task(lambda: None, bind=True)


def test_a_shared_task_with_a_base_class(shared_declarations, app):
    @shared_task(base=Audited, name="shared.audited")
    def audited(x):
        return x

    Audited.calls = []
    assert audited.apply((5,)).get() == 5
    assert isinstance(app.tasks["shared.audited"], Audited)
    assert [call[0] for call in Audited.calls] == ["on_success", "after_return"]


def test_a_shared_task_before_any_app_has_a_name_but_cannot_run(shared_declarations, monkeypatch):
    monkeypatch.setattr(current, "_apps", [])

    @shared_task
    def lonely():
        """Waits for an app."""

    assert lonely.name == f"{__name__}.lonely" and lonely.__doc__ == "Waits for an app."
    assert lonely.__name__ == "lonely" and "lonely" in repr(lonely)
    with pytest.raises(ConfigurationError, match="no hutch app exists yet"):
        lonely()
    with pytest.raises(ConfigurationError, match="no hutch app exists yet"):
        lonely.delay()
