"""The CLI's contract: one clear line and a non-zero exit for every bad input."""

import os
import subprocess
import sys

import pytest

from hutch import __version__


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
    (["-b", "memory://", "worker", "-Q", ","], "-Q: give at least one queue"),
])
def test_bad_input_is_one_line_without_traceback(args, message):
    out = hutch(*args)
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
    assert out.returncode == 0 and "0006" in out.stdout
    assert hutch("--backend", url, "db", "current").stdout.strip() == "0006"
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
