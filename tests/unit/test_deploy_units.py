"""The systemd units in deploy/systemd/ are valid, and run a worker, a beat or the
dashboard the way docs/ops.md says (notify, watchdog, stop, restart, hardening)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
SERVICES = ["hutch-worker@.service", "hutch-beat.service", "hutch-web.service"]
INSTALLED_HUTCH = "/opt/hutch/venv/bin/hutch"
"""Where docs/ops.md installs hutch, as the units' ExecStart= says."""


def _settings(unit: Path, wanted: str = "Service") -> dict[str, list[str]]:
    """Keys of section ``wanted`` and their values, in order (a key may repeat)."""
    settings: dict[str, list[str]] = {}
    section = None
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == wanted and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_units_are_all_there():
    assert sorted(p.name for p in UNITS.iterdir()) == sorted([*SERVICES, "hutch.target"])


def test_systemd_analyze_verify_accepts_every_unit(tmp_path):
    """What ``systemd-analyze verify`` checks here: every key is known and its value
    parses (an unknown key or a bad value is only a warning, so none may be printed),
    the executables of ExecStart= and ExecReload= exist, the template instantiates
    (``hutch-worker@default``), and the units it names load (hutch.target).

    The ExecStart= path of an installed host (/opt/hutch/venv) is pointed at this
    venv's ``hutch``; nothing else is changed (User=hutch need not exist: verify does
    not look users up). It does not start anything: the notify protocol itself is
    tested in tests/integration/test_systemd_rabbitmq.py (worker, beat and web)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install systemd (deploy/dev/ensure-services.sh)"
    hutch = Path(sys.executable).parent / "hutch"
    assert hutch.exists()
    for unit in UNITS.iterdir():
        text = unit.read_text()
        if unit.suffix == ".service":
            assert INSTALLED_HUTCH in text
        (tmp_path / unit.name).write_text(text.replace(INSTALLED_HUTCH, str(hutch)))
    shutil.copy(tmp_path / "hutch-worker@.service", tmp_path / "hutch-worker@default.service")
    names = ["hutch-worker@default.service", "hutch-beat.service", "hutch-web.service",
             "hutch.target"]
    done = subprocess.run([analyze, "verify", "--man=no", *(f"./{n}" for n in names)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    complaints = [line for line in done.stderr.splitlines() if "hutch" in line]
    assert done.returncode == 0 and complaints == [], done.stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_services_notify_systemd_and_are_watched(unit):
    settings = _settings(UNITS / unit)
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert int(settings["WatchdogSec"][0]) >= 10
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


@pytest.mark.parametrize("unit", SERVICES)
def test_units_send_sigterm_to_the_main_process_only_and_sigkill_to_all_at_the_end(unit):
    settings = _settings(UNITS / unit)
    assert settings["KillMode"] == ["mixed"]
    assert settings["KillSignal"] == ["SIGTERM"]
    assert len(settings["TimeoutStopSec"]) == 1
    assert settings["Restart"] == ["on-failure"]
    assert settings["LimitNOFILE"]


@pytest.mark.parametrize("unit", SERVICES)
def test_services_are_hardened_and_run_as_the_hutch_user(unit):
    settings = _settings(UNITS / unit)
    assert settings["User"] == ["hutch"] and settings["Group"] == ["hutch"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                       "ProtectKernelTunables": "yes",
                       "SystemCallFilter": "@system-service"}.items():
        assert settings[key] == [value], key
    assert set(settings["RestrictAddressFamilies"][0].split()) >= {"AF_UNIX", "AF_INET",
                                                                    "AF_INET6"}
    assert settings["ReadWritePaths"] == ["/var/lib/hutch"]


@pytest.mark.parametrize("unit", SERVICES)
def test_services_belong_to_hutch_target(unit):
    assert _settings(UNITS / unit, "Unit")["PartOf"] == ["hutch.target"]
    assert _settings(UNITS / unit, "Install")["WantedBy"] == ["hutch.target"]


def test_documentation_points_at_docs_the_install_steps_copy():
    """Documentation=file:///usr/share/doc/hutch/X.md: docs/X.md exists, and docs/ops.md
    installs docs/ there."""
    pages = set()
    for unit in UNITS.iterdir():
        for value in _settings(unit, "Unit")["Documentation"]:
            pages.update(re.findall(r"file:///usr/share/doc/hutch/(\S+)", value))
    assert pages and all((ROOT / "docs" / page).exists() for page in pages)
    assert "/usr/share/doc/hutch" in (ROOT / "docs" / "ops.md").read_text()
