"""The systemd units in deploy/ stop a worker or a beat the way docs/ops.md says."""

from __future__ import annotations

from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _service_settings(unit: Path) -> dict[str, list[str]]:
    """``[Service]`` keys and their values, in order (a key may repeat)."""
    settings: dict[str, list[str]] = {}
    section = None
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize("unit", ["hutch-worker@.service", "hutch-beat.service"])
def test_units_send_sigterm_to_the_main_process_only_and_sigkill_to_all_at_the_end(unit):
    settings = _service_settings(DEPLOY / unit)
    assert settings["KillMode"] == ["mixed"]
    assert settings["KillSignal"] == ["SIGTERM"]
    assert len(settings["TimeoutStopSec"]) == 1
