"""Celery's command-line habits (``purge``, ``call``, ``list bindings``, ``shell``, the
``worker`` options) in-process on memory:// + SQLite: what each does to the queues and
rows, and one line with exit 2 for every bad input."""

import io
import json
import os
import subprocess
import sys
import textwrap
import uuid
from importlib import import_module

import pytest

from hutch.brokers.memory import MemoryBroker
from hutch.cli import main as cli_main
from hutch.cli.main import main
from hutch.results.records import PENDING
from support.cli import run_main
from support.logs import capture_logs

APP_MODULE = textwrap.dedent("""
    from hutch import Hutch

    app = Hutch("proj", broker={broker!r}, backend={backend!r}, topology_prefix="pfx",
                task_queues={{"reports": {{}}}})

    @app.task(name="proj.tasks.add")
    def add(x, y):
        return x + y

    @app.task(name="proj.tasks.resize", queue="images")
    def resize(path):
        return path

    @app.task(name="proj.other.add")
    def other_add(x, y):
        return x + y
""")


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A project module on a private memory:// broker: routes celery (default), images
    (a task's queue) and reports (task_queues)."""
    module = f"proj_{uuid.uuid4().hex}"
    broker = f"memory://{module}"
    (tmp_path / f"{module}.py").write_text(APP_MODULE.format(
        broker=broker, backend=f"sqlite:///{tmp_path / 'r.sqlite'}"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module, MemoryBroker(broker)
    if module in sys.modules:  # its rows written before the next test's app migrates its
        sys.modules[module].app.close()  # database: alembic's migrations share globals


@pytest.fixture
def run(proj, capsys, monkeypatch):
    """``run(*args, stdin="")`` runs ``hutch -A PROJ *args``: (exit code, stdout, stderr)."""

    def invoke(*args, stdin=""):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        return run_main(["-A", proj[0], *args], capsys)

    return invoke


def _fill(run):
    """Two messages on the default queue, one on images, none on reports."""
    for args in (("proj.tasks.add", "-a", "[1, 2]"), ("proj.tasks.add", "-a", "[3, 4]"),
                 ("proj.tasks.resize", "-a", '["a.png"]')):
        assert run("call", *args)[0] == 0


def _ready(broker):
    return {route: broker.queue_stats(route).ready for route in ("celery", "images", "reports")}


def test_purge_force_empties_every_route_of_the_app(run, proj):
    _fill(run)
    code, out, err = run("purge", "-f")
    assert (code, out, err) == (0, "purged 3 messages from 3 queues\n", "")
    assert _ready(proj[1]) == {"celery": 0, "images": 0, "reports": 0}


def test_purge_q_touches_only_the_named_queues(run, proj):
    _fill(run)
    code, out, _ = run("purge", "-f", "-Q", "images")
    assert (code, out) == (0, "purged 1 message from 1 queue\n")
    assert _ready(proj[1]) == {"celery": 2, "images": 0, "reports": 0}


def test_purge_asks_first_and_says_what_each_queue_holds(run, proj):
    _fill(run)
    code, out, err = run("purge", "-Q", "celery,images", stdin="n\n")
    assert code == 2 and err == "aborted\n"
    assert out.splitlines()[:2] == ["celery: 2 message(s)", "images: 1 message(s)"]
    assert "Delete these 3 message(s) from 2 queue(s)?" in out
    assert _ready(proj[1])["celery"] == 2
    code, out, _ = run("purge", "-Q", "celery", stdin="y\n")
    assert code == 0 and out.endswith("purged 2 messages from 1 queue\n")
    assert _ready(proj[1]) == {"celery": 0, "images": 1, "reports": 0}


@pytest.mark.parametrize("queues, message", [
    ("imgs", "error: -Q: the app has no queue named 'imgs' (its queues: celery, images, "
             "reports; add others to task_queues)"),
    (",", "error: -Q: give at least one queue name"),
])
def test_purge_refuses_a_queue_the_app_does_not_have(run, proj, queues, message):
    _fill(run)
    assert run("purge", "-f", "-Q", queues) == (2, "", message + "\n")
    assert _ready(proj[1])["images"] == 1


def test_call_sends_by_name_even_a_task_not_registered_here(run, proj, tmp_path):
    code, out, err = run("call", "elsewhere.report", "--args", '[1, "x"]',
                         "--kwargs", '{"full": true}', "--queue", "reports",
                         "--expires", "3600")
    assert code == 0 and err == "" and len(out.strip()) == 36
    record = _store(proj).get(out.strip())
    assert (record.state, record.name, record.queue) == (PENDING, "elsewhere.report", "reports")
    assert (record.args, record.kwargs) == ([1, "x"], {"full": True})
    assert record.expires is not None
    assert _ready(proj[1])["reports"] == 1


def test_call_eta_and_countdown_delay_the_message(run, proj):
    assert run("call", "proj.tasks.add", "-a", "[1, 1]", "--countdown", "600")[0] == 0
    code, out, _ = run("call", "proj.tasks.add", "--eta", "2030-01-01T00:00:00+00:00")
    assert code == 0
    assert _store(proj).get(out.strip()).eta.year == 2030
    assert proj[1].delayed_count() == 2 and _ready(proj[1])["celery"] == 0


@pytest.mark.parametrize("args, message", [
    (["-a", "[1"], "--args: not valid JSON"),
    (["--args", "{}"], "--args: expected a JSON list, got '{}'"),
    (["-k", "[1]"], "--kwargs: expected a JSON object, got '[1]'"),
    (["--eta", "tomorrow"], "--eta: expected an ISO 8601 time"),
    (["--expires", "soon"], "--expires: expected an ISO 8601 time"),
    (["--eta", "2030-01-01T00:00:00", "--countdown", "5"], "either eta or countdown"),
])
def test_call_bad_input_is_one_line_and_sends_nothing(run, proj, args, message):
    code, out, err = run("call", "proj.tasks.add", *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
    assert _ready(proj[1])["celery"] == 0 and proj[1].delayed_count() == 0


def test_submit_takes_eta_too(run, proj):
    code, out, _ = run("submit", "proj.tasks.add", "--json", "1", "2",
                       "--eta", "2030-06-01T12:00:00+00:00")
    assert code == 0 and _store(proj).get(out.strip()).eta.month == 6


def test_list_bindings_names_each_route_with_its_dead_letter_pair(run):
    code, out, _ = run("list", "bindings")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["QUEUE", "EXCHANGE", "ROUTING_KEY",
                                              "DEAD_LETTER_EXCHANGE", "DEAD_LETTER_QUEUE",
                                              "FROM"]
    assert [line.split()[:5] for line in lines[1:]] == [
        ["pfx.celery", "pfx.celery", "celery", "pfx.celery.dlx", "pfx.celery.dead"],
        ["pfx.images", "pfx.images", "images", "pfx.images.dlx", "pfx.images.dead"],
        ["pfx.reports", "pfx.reports", "reports", "pfx.reports.dlx", "pfx.reports.dead"]]
    code, out, _ = run("list", "bindings", "--json")
    images = json.loads(out)[1]
    assert images == {"route": "images", "exchange": "pfx.images", "routing_key": "images",
                      "queue": "pfx.images", "dead_letter_exchange": "pfx.images.dlx",
                      "dead_letter_queue": "pfx.images.dead",
                      "sources": ["task proj.tasks.resize"]}


def test_shell_has_the_app_its_tasks_and_the_canvas(proj, tmp_path):
    """``add`` is two tasks' last name (proj.tasks.add, proj.other.add): neither takes it."""
    script = textwrap.dedent("""\
        print(resize("p"), app.tasks["proj.tasks.add"](2, 3))
        print(app.main, celery is app, chain.__name__, group.__name__, chord.__name__)
        print(signature("proj.tasks.add", (1, 2)).task)
        print("add" in dir(), "other_add" in dir())
        print(len(resize.delay("q").id))
    """)
    out = subprocess.run([sys.executable, "-m", "hutch", "-A", proj[0], "shell"],
                         input=script, capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    printed = [line.replace(">>> ", "").strip() for line in out.stdout.splitlines()]
    assert [line for line in printed if line and line != ">>>"] == [
        "p 5", "proj True chain group chord", "proj.tasks.add", "False False", "36"]
    assert out.stderr.strip() == ("hutch shell: Signature, app, celery, chain, chord, group, "
                                  "resize, signature")


def test_shell_refuses_ipython_when_it_is_not_installed(run):
    assert run("shell", "-I") == (2, "", "error: -I/--ipython: IPython is not installed "
                                         "(pip install ipython)\n")


@pytest.fixture
def started(monkeypatch):
    """The worker command's run_worker replaced: records the wiring it would run."""
    calls = []
    monkeypatch.setattr(cli_main, "run_worker", lambda wiring, *a, **k: calls.append(wiring) or 0)
    return calls


def test_worker_takes_celerys_options_after_the_subcommand(proj, started, capsys):
    with capture_logs() as events, pytest.raises(SystemExit) as exit_:
        main(["worker", "-A", proj[0], "--prefetch-multiplier", "3", "-O", "fair",
              "--without-heartbeat", "--without-mingle", "--without-gossip"])
    assert exit_.value.code == 0
    (wiring,) = started
    assert wiring.conf.worker_prefetch_multiplier == 3
    assert wiring.conf.source_of("worker_prefetch_multiplier") == "flag --prefetch-multiplier"
    assert "proj.tasks.resize" in wiring.tasks
    said = [e["event"] for e in events if e["log_level"] == "info"]
    assert [s.split(":")[0] for s in said] == ["--without-heartbeat", "--without-mingle",
                                               "--without-gossip"]
    assert "hutch_workers" in said[0]


def test_worker_takes_the_child_recycling_options(proj, started):
    with pytest.raises(SystemExit) as exit_:
        main(["worker", "-A", proj[0], "--max-tasks-per-child", "100",
              "--max-memory-per-child", "512000"])
    assert exit_.value.code == 0
    (wiring,) = started
    assert (wiring.conf.worker_max_tasks_per_child, wiring.conf.worker_max_memory_per_child) \
        == (100, 512000)
    assert wiring.conf.source_of("worker_max_tasks_per_child") == "flag --max-tasks-per-child"


@pytest.mark.parametrize("args, message", [
    (["-O", "fast"], "Invalid value for '-O'"),
    (["--prefetch-multiplier", "0"], "Invalid value for '--prefetch-multiplier'"),
    (["--max-tasks-per-child", "0"], "Invalid value for '--max-tasks-per-child'"),
    (["--max-memory-per-child", "-5"], "Invalid value for '--max-memory-per-child'"),
])
def test_worker_refuses_what_it_cannot_do(proj, started, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["worker", "-A", proj[0], *args])
    assert exit_.value.code == 2 and not started
    assert message in capsys.readouterr().err


def _store(proj):
    """The project's result store, once the rows the client queued are written."""
    client = import_module(proj[0]).app.client()
    assert client.flush()
    return client.store
