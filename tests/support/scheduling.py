"""The order the suite runs in, so the xdist workers finish together.

``make test`` hands whole files to its workers (``--dist loadfile``). xdist's own order
puts the files with the most tests first, which are the quick unit files; the few
slow files (faults, cluster, beat) came last, and one worker ran the last of them
while the other sat idle. Here the files run longest first, by the seconds each took
in a recorded run (tests/durations.json), so the short files fill the end.

The two cluster files are one unit: they share this session's private 3-node cluster
(tests/support/servers.py), which then starts once instead of once per worker.

``make test-durations`` records the file again after tests are added or moved; a file
it does not list counts as a short one.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

DURATIONS = Path(__file__).resolve().parent.parent / "durations.json"
RECORD_ENV = "HUTCH_RECORD_DURATIONS"
"""Set (to anything) for a run that rewrites tests/durations.json at its end."""
UNLISTED = 1.0
"""Seconds assumed for a file tests/durations.json does not list."""
SHARED_UNITS = ("tests/cluster/",)
"""Folders whose files run as one unit, on one worker (a private server they share)."""


def unit_of(nodeid: str) -> str:
    """The unit a test is scheduled in: its file, or its folder when that is shared."""
    path = nodeid.split("::", 1)[0]
    return next((folder for folder in SHARED_UNITS if path.startswith(folder)), path)


def load_durations(path: Path = DURATIONS) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest unit first, in xdist's workers only (a plain run keeps pytest's order);
    a stable sort keeps each file's own order."""
    if not hasattr(config, "workerinput"):
        return
    seconds = load_durations()
    items.sort(key=lambda item: -seconds.get(unit_of(item.nodeid), UNLISTED))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class UnitScheduling(LoadFileScheduling):  # type: ignore[misc]
        """xdist's file scheduling over :func:`unit_of`, in collection order."""

        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    config.option.loadscopereorder = False  # keep the longest-first collection order
    return UnitScheduling(config, log)


class _Recorder:
    """Adds up each unit's seconds (setup, call, teardown) as the reports come in."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[unit_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self) -> None:
        ranked = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        DURATIONS.write_text(json.dumps({k: round(v, 1) for k, v in ranked}, indent=0) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    # In the controlling process only: xdist's workers pass their reports up to it.
    if os.environ.get(RECORD_ENV) and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Recorder(), "hutch-durations")
