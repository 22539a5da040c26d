"""The CLI's contract: one clear line and a non-zero exit for every bad input."""

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from hutch import __version__
from hutch.cli.main import printable
from hutch.results.migrate import heads
from hutch.results.records import FAILURE, REVOKED, SUCCESS, StateChange
from hutch.results.store import ResultStore
from hutch.serialization import to_primitive


def hutch(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hutch", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_version():
    out = hutch("--version")
    assert out.returncode == 0 and __version__ in out.stdout


@pytest.mark.parametrize("args, message", [
    (["-A", "no_such_module_xyz", "worker"], "no module named 'no_such_module_xyz'"),
    (["-b", "redis://u:secret@h", "worker"], "not an amqp"),
    (["--backend", "mysql://x", "result", "abc"], "not a sqlite"),
    (["submit", "tests.add", "1", "--json", "--kwargs", "{bad"], "--kwargs: not valid JSON"),
    (["submit", "tests.add", "--args", "[1"], "--args: not valid JSON"),
    (["submit", "tests.add", "--args", "{}"], "--args: expected a JSON list, got '{}'"),
    (["submit", "tests.add", "--kwargs", "[1]"], "--kwargs: expected a JSON object"),
    (["submit", "tests.add", "1", "--args", "[1]"], "as ARGS or as --args, not both"),
    (["-A", "apps.env_app", "-b", "memory://", "submit", "tests.ad", "1", "2"],
     "-A apps.env_app has no task named 'tests.ad'; did you mean tests.add"),
    (["-b", "memory://", "worker", "-Q", ","], "-Q: give at least one queue"),
])
def test_bad_input_is_one_line_without_traceback(args, message):
    out = hutch(*args, env={**_env(), "PYTHONPATH": "tests"})
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert "secret" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unreachable_broker_is_one_line(tmp_path):
    out = hutch("-A", "apps.env_app", "-b", "amqp://guest:guest@127.0.0.1:5999//",
                "--backend", f"sqlite:///{tmp_path / 'r.sqlite'}", "worker", "-P", "solo",
                env={**_env(), "PYTHONPATH": "tests"})
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "5999" in out.stderr.splitlines()[-1]


def _env():
    return {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}


def test_db_upgrade_current_downgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert "base" in hutch("--backend", url, "db", "current").stdout
    out = hutch("--backend", url, "db", "upgrade")
    assert out.returncode == 0 and heads()[0] in out.stdout
    assert hutch("--backend", url, "db", "current").stdout.strip() == heads()[0]
    assert hutch("--backend", url, "db", "downgrade", "0002").returncode == 0
    assert hutch("--backend", url, "db", "current").stdout.strip() == "0002"
    assert hutch("--backend", url, "db", "downgrade", "0001").returncode == 0
    assert hutch("--backend", url, "db", "current").stdout.strip() == "0001"
    assert hutch("--backend", url, "db", "downgrade", "base").returncode == 0
    assert "base" in hutch("--backend", url, "db", "current").stdout


def test_submit_and_result_on_memory_are_clear_about_unknown_ids(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    out = hutch("-b", "memory://", "--backend", url, "result", "no-such-id")
    assert out.returncode == 0 and '"state": "PENDING"' in out.stdout


def test_db_commands_say_which_database_and_when_it_is_the_embedded_default(tmp_path):
    run = lambda *args: subprocess.run(  # noqa: E731 - in an empty directory, no HUTCH_*
        [sys.executable, "-m", "hutch", *args], capture_output=True, text=True, timeout=60,
        cwd=tmp_path, env=_env())
    current = run("db", "current")
    assert current.returncode == 0 and "the file does not exist" in current.stdout
    assert not (tmp_path / "hutch.sqlite").exists()  # looking did not create it
    upgrade = run("db", "upgrade")
    assert upgrade.returncode == 0 and upgrade.stdout.strip() == f"database at {heads()[0]}"
    assert upgrade.stderr.strip() == (
        f"database: sqlite:///{tmp_path / 'hutch.sqlite'} (the embedded default: no "
        f"result_backend was given by -A, --backend or HUTCH_BACKEND_URL)")
    named = run("--backend", "sqlite:///other.sqlite", "db", "current")
    assert named.stdout.strip() == "base (no hutch tables: the file does not exist)"
    assert named.stderr.strip() == f"database: sqlite:///{tmp_path / 'other.sqlite'}"


def test_db_upgrade_sql_prints_postgresql_ddl_without_connecting():
    url = "postgresql://bob:s3cret@db.invalid:5432/prod"
    out = hutch("--backend", url, "db", "upgrade", "--sql")
    assert out.returncode == 0, out.stderr
    assert "CREATE TABLE hutch_tasks" in out.stdout and "JSONB" in out.stdout
    assert "UPDATE hutch_alembic_version SET version_num='0005'" in out.stdout
    assert out.stderr.strip() == "database: postgresql://bob:***@db.invalid:5432/prod"
    ranged = hutch("--backend", url, "db", "upgrade", "--sql", "0004:head")
    assert "CREATE TABLE hutch_tasks" not in ranged.stdout
    assert "ADD COLUMN catch_up" in ranged.stdout


def test_db_upgrade_sql_on_sqlite_says_what_it_is_for(tmp_path):
    path = tmp_path / "x.sqlite"
    out = hutch("--backend", f"sqlite:///{path}", "db", "upgrade", "--sql")
    assert out.returncode == 0, out.stderr
    assert "CREATE TABLE hutch_tasks" in out.stdout
    assert "SQLite dialect; hutch applies these migrations itself" in out.stderr
    assert not path.exists()


def test_submit_help_says_arguments_are_strings_and_how_to_type_them():
    out = hutch("submit", "--help")
    assert 'Each ARG is sent as a string' in " ".join(out.stdout.split())
    assert "--args '[5, 5]'" in out.stdout


def test_without_an_app_any_task_name_is_sent(tmp_path):
    out = hutch("-b", "memory://", "--backend", f"sqlite:///{tmp_path / 'r.sqlite'}",
                "submit", "some.other.service.task", "--args", "[5, 5]")
    assert out.returncode == 0 and len(out.stdout.strip()) == 36, out.stderr


def _rows(url, *changes):
    store = ResultStore(url)
    try:
        store.write(list(changes))
    finally:
        store.close()


def test_result_exits_1_and_says_the_state_for_failure_and_revoked(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    _rows(url,
          StateChange("ok", SUCCESS, name="t.ok", result=to_primitive({"at": when, "n": 1})),
          StateChange("bad", FAILURE, name="t.bad", exception_type="builtins.ValueError",
                      exception_message="no good"),
          StateChange("gone", REVOKED, name="t.gone", exception_message="revoked"))
    ok = hutch("--backend", url, "result", "ok")
    assert ok.returncode == 0 and ok.stderr == ""
    assert json.loads(ok.stdout)["result"] == {
        "at": {"__hutch__": "datetime", "v": "2030-01-02T03:04:05+00:00"}, "n": 1}
    bad = hutch("--backend", url, "result", "bad")
    assert bad.returncode == 1 and json.loads(bad.stdout)["state"] == "FAILURE"
    assert bad.stderr.strip() == "task bad FAILURE: builtins.ValueError: no good"
    gone = hutch("--backend", url, "result", "gone")
    assert gone.returncode == 1 and gone.stderr.strip() == "task gone REVOKED: revoked"


def test_results_json_cannot_hold_print_tagged_not_as_a_python_repr():
    assert printable((1, {2, 3})) == {"__hutch__": "tuple", "v": [
        1, {"__hutch__": "set", "v": [2, 3]}]}
    assert printable(b"\x00") == {"__hutch__": "bytes", "v": "AA=="}
    odd = printable(object())
    assert odd["__hutch__"] == "python" and odd["type"] == "builtins.object"
    assert odd["repr"].startswith("<object object at")


def test_a_hutch_process_leaves_its_objects_out_of_the_collections_at_exit():
    """hutch.cli.main's last atexit step freezes the collector (about 0.2 s less at the
    exit of every worker and command); an atexit handler registered before main() runs
    after it and sees the objects frozen."""
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: sys.stderr.write(f'frozen {gc.get_freeze_count()}'))\n"
             "from hutch.cli.main import main\n"
             "main(['--version'])\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("hutch")
    assert int(done.stderr.rsplit("frozen ", 1)[1]) > 10_000
