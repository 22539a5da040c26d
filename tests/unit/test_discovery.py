"""app.autodiscover_tasks, the imports/include settings and app.finalize (hutch.discovery):
which task modules are imported, when, and the errors for those that cannot be."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from hutch import Hutch
from hutch.errors import ConfigurationError
from support.cli import run_main

TASKS = """
from hutch.current import current_app
import {log}
{log}.ORDER.append(__name__)
app = current_app()

@app.task(name=__name__ + ".ping")
def ping():
    return "pong from " + __name__
"""


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """``tree(files)``: modules under a fresh directory on sys.path, names made unique by
    a prefix (returned); each task module records its import in ``<prefix>log.ORDER``."""
    prefix = f"d{uuid.uuid4().hex[:8]}_"
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / f"{prefix}log.py").write_text("ORDER = []\n")

    def make(files: dict[str, str]) -> str:
        for path, body in files.items():
            target = tmp_path / (prefix + path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(body).format(log=f"{prefix}log"))
        return prefix

    yield make
    for name in [n for n in sys.modules if n.startswith(prefix)]:
        del sys.modules[name]


def order(prefix: str) -> list[str]:
    return [name.removeprefix(prefix) for name in importlib.import_module(f"{prefix}log").ORDER]


@pytest.fixture
def app():
    app = Hutch("discovery", broker="memory://", backend="sqlite://")
    yield app
    app.close()


def test_autodiscover_is_lazy_and_imports_each_packages_tasks_module(tree, app):
    p = tree({"shop/__init__.py": "", "shop/tasks.py": TASKS,
              "billing/__init__.py": "", "billing/tasks.py": TASKS,
              "plain/__init__.py": ""})  # no tasks module: skipped, as in Celery
    app.autodiscover_tasks([f"{p}shop", f"{p}billing", f"{p}plain"])
    assert f"{p}shop.tasks" not in sys.modules and f"{p}shop.tasks.ping" not in app.tasks
    app.finalize()
    assert order(p) == ["shop.tasks", "billing.tasks"]
    assert app.tasks[f"{p}shop.tasks.ping"]() == f"pong from {p}shop.tasks"
    app.finalize()  # once per app
    assert order(p) == ["shop.tasks", "billing.tasks"]


def test_force_imports_now_and_after_finalize_discovery_is_immediate(tree, app):
    p = tree({"a/__init__.py": "", "a/tasks.py": TASKS, "b/__init__.py": "", "b/tasks.py": TASKS})
    app.autodiscover_tasks([f"{p}a"], force=True)
    assert order(p) == ["a.tasks"]
    app.finalize()
    app.autodiscover_tasks([f"{p}b"])
    assert order(p) == ["a.tasks", "b.tasks"]


def test_packages_may_be_a_function_read_at_discovery_and_related_name_is_chosen(tree, app):
    p = tree({"jobs_pkg/__init__.py": "", "jobs_pkg/jobs.py": TASKS, "whole/__init__.py": TASKS})
    found: list[str] = []
    app.autodiscover_tasks(lambda: found, related_name="jobs")
    app.autodiscover_tasks([f"{p}whole"], related_name=None)  # the package itself
    found.append(f"{p}jobs_pkg")  # after the call: read when the app is finalized
    app.finalize()
    assert order(p) == ["jobs_pkg.jobs", "whole"]


def test_imports_and_include_are_imported_at_finalize_after_autodiscovery(tree):
    p = tree({"first.py": TASKS, "second.py": TASKS, "found/__init__.py": "",
              "found/tasks.py": TASKS})
    app = Hutch("discovery", broker="memory://", imports=[f"{p}first"], include=f"{p}second")
    app.autodiscover_tasks([f"{p}found"])
    assert order(p) == []
    app.finalize()
    assert order(p) == ["found.tasks", "first", "second"]
    assert app.conf.include == (f"{p}second",)


def test_looking_a_task_up_finalizes_the_app(tree, app):
    p = tree({"lookup/__init__.py": "", "lookup/tasks.py": TASKS})
    app.autodiscover_tasks([f"{p}lookup"])
    assert app.get_task(f"{p}lookup.tasks.ping").name == f"{p}lookup.tasks.ping"


@pytest.mark.parametrize(("files", "kind", "message"), [
    ({}, "missing-package", r"autodiscover_tasks: cannot import '{p}gone' "
                            r"\(ModuleNotFoundError"),
    ({"broken/__init__.py": "", "broken/tasks.py": "import no_such_module_here\n"}, "broken",
     r"autodiscover_tasks: cannot import '{p}broken.tasks' \(ModuleNotFoundError: No module "
     r"named 'no_such_module_here'\)"),
    ({}, "imports", r"imports: cannot import '{p}nowhere' \(ModuleNotFoundError"),
])
def test_a_module_that_cannot_be_imported_is_an_error_naming_it(tree, app, files, kind,
                                                                  message):
    p = tree(files)
    if kind == "missing-package":
        app.autodiscover_tasks([f"{p}gone"])
    elif kind == "broken":
        app.autodiscover_tasks([f"{p}broken"])
    else:
        app.conf.imports = [f"{p}nowhere"]
    with pytest.raises(ConfigurationError, match=message.format(p=p)):
        app.finalize()


def test_without_packages_and_without_django_settings_it_says_what_to_do(app, monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    pytest.importorskip("django")
    from django.conf import settings
    if settings.configured:
        pytest.skip("Django was configured by another test in this process")
    with pytest.raises(ConfigurationError, match="give the packages to search, or set "
                                                 "DJANGO_SETTINGS_MODULE"):
        app.autodiscover_tasks(force=True)


@pytest.mark.parametrize("value", [5, ["ok", ""], ["not a module"], [3]])
def test_bad_module_lists_are_refused_when_set(app, value):
    with pytest.raises(ConfigurationError, match="imports: expected module names"):
        app.conf.imports = value


def test_hutch_dash_a_finalizes_so_autodiscovered_tasks_are_known(tree, tmp_path, capsys):
    p = tree({"proj_app.py": """
                  from hutch import Hutch
                  app = Hutch("proj", broker="memory://")
                  app.autodiscover_tasks([__name__.replace("proj_app", "cli_pkg")])
              """, "cli_pkg/__init__.py": "", "cli_pkg/tasks.py": TASKS})
    code, out, err = run_main(["-A", f"{p}proj_app", "--backend",
                               f"sqlite:///{tmp_path / 'r.db'}", "submit",
                               f"{p}cli_pkg.tasks.ping"], capsys)
    assert code == 0, err
    assert len(out.strip()) == 36 and order(p) == ["cli_pkg.tasks"]


def test_with_django_settings_finalize_sets_django_up_before_importing_tasks(tmp_path):
    """In a process of its own: Django's set-up is once per process."""
    script = (
        "from hutch import Hutch\n"
        "app = Hutch('p', broker='memory://')\n"
        "app.conf.imports = ['shop.models']  # a models module: needs the apps ready\n"
        "app.finalize()\n"
        "from django.apps import apps\n"
        "print(apps.ready, apps.get_app_config('shop').get_model('Order').__name__)\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "proj.settings",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "apps" / "django_proj")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "Order"]


def test_a_module_that_fails_to_import_stops_a_hutch_command_with_one_line(tree, capsys):
    p = tree({"bad_app.py": """
                  from hutch import Hutch
                  app = Hutch("proj", broker="memory://", imports=["no_such_task_module"])
              """})
    code, _, err = run_main(["-A", f"{p}bad_app", "worker", "-P", "threads"], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == ["error: imports: cannot import 'no_such_task_module' "
                                        "(ModuleNotFoundError: No module named "
                                        "'no_such_task_module')"]
