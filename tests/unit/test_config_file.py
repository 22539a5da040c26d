"""The settings file (/etc/hutch/hutch.toml or --config), where each value comes from,
and `hutch config show` / `hutch config check` (docs/ops.md, "Configuration")."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hutch import Hutch, config_file
from hutch.cli.main import main
from hutch.config import Settings, _env, _shown
from hutch.errors import ConfigurationError

PASSWORD = "s3cr3t-in-file"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No default file of the host's, and HUTCH_CONFIG restored after a --config run
    (the option sets it in this process, as it does for a worker's children)."""
    monkeypatch.setattr(config_file, "DEFAULT_PATH", str(tmp_path / "absent" / "hutch.toml"))
    monkeypatch.setenv(config_file.PATH_VARIABLE, "")


def write(tmp_path: Path, text: str, name: str = "hutch.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def hutch(capsys, *args: str) -> tuple[int, str, str]:
    """``hutch ARGS`` through the console entry point: exit code, stdout, stderr."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_precedence_keywords_then_file_then_environment_then_assignments(tmp_path, monkeypatch):
    path = write(tmp_path, """
[hutch]
broker_url = "memory://file"
task_default_queue = "from-file"
worker_concurrency = 3
timezone = "Europe/Paris"
""")
    monkeypatch.setenv("HUTCH_CONFIG", path)
    monkeypatch.setenv("HUTCH_DEFAULT_QUEUE", "from-env")
    monkeypatch.setenv("HUTCH_TIMEZONE", "Asia/Tokyo")
    app = Hutch("t", broker="memory://keyword", task_default_queue="from-keyword",
                log_level="DEBUG")
    app.conf.timezone = "America/Lima"
    conf = app.conf
    assert (conf.broker_url, conf.source_of("broker_url")) == ("memory://file", f"file {path}")
    assert (conf.task_default_queue, conf.source_of("task_default_queue")) == (
        "from-env", "env HUTCH_DEFAULT_QUEUE")
    assert (conf.worker_concurrency, conf.source_of("worker_concurrency")) == (
        3, f"file {path}")
    assert (conf.log_level, conf.source_of("log_level")) == ("DEBUG", "app")
    assert (conf.timezone, conf.source_of("timezone")) == ("America/Lima", "app")
    assert (conf.topology_prefix, conf.source_of("topology_prefix")) == ("hutch", "default")


def test_top_level_keys_count_too_but_not_twice(tmp_path, monkeypatch):
    monkeypatch.setenv("HUTCH_CONFIG", write(tmp_path, 'task_default_queue = "top"\n'
                                                       '[hutch]\nlog_level = "debug"\n'))
    conf = Settings.build()
    assert (conf.task_default_queue, conf.log_level) == ("top", "DEBUG")
    monkeypatch.setenv("HUTCH_CONFIG", write(tmp_path, 'log_level = "info"\n'
                                                       '[hutch]\nlog_level = "debug"\n'))
    with pytest.raises(ConfigurationError, match=r"log_level set both at the top level "
                                                 r"and in \[hutch\]"):
        Settings.build()


def test_structured_and_optional_settings_from_toml(tmp_path, monkeypatch):
    monkeypatch.setenv("HUTCH_CONFIG", write(tmp_path, """
[hutch]
accept_content = ["json", "msgpack"]
result_expires = "none"
task_compression = "none"
[hutch.task_queues.reports]
max_priority = 9
[hutch.beat_schedule.ping]
task = "t.ping"
schedule = 30.0
"""))
    conf = Settings.build()
    assert conf.accept_content == ("json", "msgpack")
    assert conf.result_expires is None and conf.task_compression is None
    assert conf.task_queues == {"reports": {"max_priority": 9}}
    assert conf.beat_schedule["ping"]["schedule"] == 30.0


@pytest.mark.parametrize("text, message", [
    ('[hutch]\nbrokr_url = "memory://"\n', "unknown setting 'brokr_url'; did you mean "
                                          "'broker_url'?"),
    ('BROKER_URL = "memory://"\n', "unknown setting 'BROKER_URL'; did you mean 'broker_url'?"),
    ("HUTCH_CONCURRENCY = 2\n", "unknown setting 'HUTCH_CONCURRENCY' (an environment "
                                "variable); the file uses the setting's name, "
                                "'worker_concurrency'"),
    ("frobnicate = 1\n", "unknown setting 'frobnicate'"),
    ('worker_concurrency = "4"\n', "worker_concurrency: expected a whole number >= 1, "
                                   "got '4'"),
    ('task_acks_late = "no"\n', "task_acks_late: expected True or False, got 'no'"),
    ("task_default_queue = 5\n", "task_default_queue: expected a non-empty string, got 5"),
    ('worker_pool = "gevent"\n', "worker_pool: 'gevent' is not one of prefork"),
    ("[hutch.task_queues.r]\nmax_priority = 900\n",
     "task_queues['r']['max_priority']: expected a whole number 1..255, got 900"),
    ("[hutch\n", "not valid TOML"),
    ("hutch = 3\n", "[hutch] must be a table, got 3"),
])
def test_file_problems_name_the_file_and_the_setting(tmp_path, monkeypatch, text, message):
    path = write(tmp_path, text)
    monkeypatch.setenv("HUTCH_CONFIG", path)
    with pytest.raises(ConfigurationError) as caught:
        Hutch("t")
    assert str(caught.value).startswith(f"file {path}: ")
    assert message in str(caught.value)


def test_a_missing_default_file_is_fine_a_missing_named_one_is_not(tmp_path, monkeypatch):
    assert Settings.build().source_of("broker_url") == "default"
    monkeypatch.setenv("HUTCH_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigurationError, match=r"nope.toml: no such file"):
        Settings.build()


def test_the_default_file_is_read_when_it_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(config_file, "DEFAULT_PATH", write(tmp_path, 'log_level = "error"\n'))
    assert Settings.build().log_level == "ERROR"


def test_secret_fields_are_shown_masked_whole():
    secret = dataclasses.field(default=None, metadata=_env("HUTCH_X", secret=True))
    plain = dataclasses.field(default=None, metadata=_env("HUTCH_Y"))
    assert _shown(secret, "hunter2") == "***"
    assert _shown(secret, None) is None
    assert _shown(plain, "amqp://u:hunter2@h//") == "amqp://u:***@h//"


def test_show_json_gives_every_setting_its_source_with_passwords_masked(tmp_path, capsys,
                                                                         monkeypatch):
    path = write(tmp_path, f'[hutch]\nbroker_url = "amqp://app:{PASSWORD}@rabbit:5672/prod"\n'
                           f'result_backend = "postgresql://app:{PASSWORD}@db/hutch"\n')
    monkeypatch.setenv("HUTCH_CONCURRENCY", "7")
    code, out, err = hutch(capsys, "--config", path, "-l", "debug", "config", "show", "--json")
    assert (code, err) == (0, "")
    assert PASSWORD not in out
    shown = json.loads(out)
    assert shown["file"] == {"path": path, "required": True, "read": True}
    settings = shown["settings"]
    assert set(settings) == {f.name for f in dataclasses.fields(Settings)}
    assert settings["broker_url"] == {"value": "amqp://app:***@rabbit:5672/prod",
                                      "source": f"file {path}"}
    assert settings["result_backend"]["value"] == "postgresql://app:***@db/hutch"
    assert settings["worker_concurrency"] == {"value": 7, "source": "env HUTCH_CONCURRENCY"}
    assert settings["log_level"] == {"value": "DEBUG", "source": "flag --loglevel"}
    assert settings["timezone"] == {"value": "UTC", "source": "default"}


def test_flags_win_over_file_and_environment(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, 'broker_url = "memory://file"\n')
    monkeypatch.setenv("HUTCH_BROKER_URL", "memory://env")
    code, out, _ = hutch(capsys, "-b", "memory://flag", "config", "show", "--config", path)
    assert code == 0
    line = next(row for row in out.splitlines() if row.startswith("broker_url "))
    assert line.split() == ["broker_url", "flag", "--broker", "memory://flag"]
    assert out.startswith(f"# settings file: {path}\n")


def test_check_ok_is_one_line_and_exit_0(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, 'broker_url = "memory://"\nworker_concurrency = 2\n')
    monkeypatch.setenv("HUTCH_POOL", "threads")
    assert hutch(capsys, "config", "check", "--config", path) == (
        0, f"config OK: file {path} (2 settings), environment (1 HUTCH_* variables)\n", "")
    monkeypatch.setenv("HUTCH_CONFIG", "")  # --config set it, as for a worker's children
    code, out, _ = hutch(capsys, "config", "check")
    assert code == 0 and out.startswith("config OK: no file at ")


def test_check_lists_every_problem_by_setting_and_exits_1(tmp_path, capsys, monkeypatch):
    path = write(tmp_path, f'brokr_url = "amqp://u:{PASSWORD}@h//"\nworker_concurrency = 0\n'
                           f'broker_url = "redis://u:{PASSWORD}@h"\n')
    monkeypatch.setenv("HUTCH_POOL", "gevent")
    code, out, err = hutch(capsys, "--config", path, "config", "check")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"error: file {path}: unknown setting 'brokr_url'; did you mean 'broker_url'?",
        f"error: file {path}: worker_concurrency: expected a whole number >= 1, got 0",
        f"error: file {path}: broker_url: 'redis://u:***@h' is not an amqp:// or memory:// URL",
        "error: env HUTCH_POOL: worker_pool: 'gevent' is not one of prefork, threads, "
        "asyncio, solo"]


def test_check_of_a_missing_named_file_and_of_a_bad_flag_exit_1(tmp_path, capsys,
                                                                 monkeypatch):
    code, _, err = hutch(capsys, "config", "check", "--config", str(tmp_path / "nope.toml"))
    assert code == 1 and err == f"error: file {tmp_path / 'nope.toml'}: no such file\n"
    monkeypatch.setenv("HUTCH_CONFIG", "")
    code, _, err = hutch(capsys, "-b", "redis://h", "config", "check")
    assert code == 1 and err == ("error: broker_url: 'redis://h' is not an amqp:// or "
                                 "memory:// URL\n")


def test_check_with_an_app_imports_it(tmp_path):
    """In a subprocess: importing the app makes it the process's current app."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HUTCH_")}
    env.update(PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               HUTCH_CONFIG=write(tmp_path, 'broker_url = "memory://"\n'))

    def check(app: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hutch", "-A", app, "config", "check"],
                              env=env, capture_output=True, text=True, timeout=60)

    loaded = check("apps.env_app")
    assert (loaded.returncode, loaded.stderr) == (0, "")
    assert loaded.stdout.endswith(", app apps.env_app\n")
    missing = check("no_such_module_xyz")
    assert missing.returncode == 1
    assert missing.stderr == ("error: -A no_such_module_xyz: no module named "
                              "'no_such_module_xyz'\n")


def test_show_masks_passwords_in_text_too(tmp_path, capsys):
    path = write(tmp_path, f'broker_url = "amqp://app:{PASSWORD}@rabbit//"\n')
    code, out, _ = hutch(capsys, "config", "show", "--config", path)
    assert code == 0 and PASSWORD not in out and "amqp://app:***@rabbit//" in out


def test_other_commands_stop_at_a_bad_file_with_one_line(tmp_path, capsys):
    path = write(tmp_path, "a_typo = 1\nworker_concurency = 2\n")
    code, _, err = hutch(capsys, "--config", path, "-b", "memory://", "worker")
    assert code == 2
    assert err == (f"error: file {path}: unknown setting 'a_typo' (and 1 more: "
                   f"`hutch config check` lists them)\n")


def test_the_example_file_is_valid_and_documents_every_setting(monkeypatch):
    example = Path(__file__).resolve().parents[2] / "deploy" / "hutch.toml.example"
    monkeypatch.setenv("HUTCH_CONFIG", str(example))
    conf = Settings.build()
    assert conf.source_of("broker_url") == f"file {example}"
    text = example.read_text()
    missing = [f.name for f in dataclasses.fields(Settings) if f.name not in text]
    assert not missing, f"deploy/hutch.toml.example does not mention {missing}"
