"""Print the fault scenarios' reports (JSON lines from ``HUTCH_FAULTS_REPORT``) as the
markdown table docs/reliability.md shows: ``python tests/faults/report.py FILE``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("scenario", "submitted", "confirmed", "missing", "run twice", "run after finished",
           "stuck", "duration s", "notes")


def row(report: dict) -> list[str]:
    twice = str(report["run_twice"])
    if report["run_twice"]:
        twice += (f" ({report['reruns_after_kill']} extra runs after a kill, "
                  f"{report['reruns_unexplained']} otherwise)")
    notes = dict(report["notes"])
    if report["failed"]:
        notes["ended FAILURE/REVOKED"] = report["failed"]
    return [report["scenario"], str(report["submitted"]), str(report["confirmed"]),
            str(report["missing"]), twice, str(report["run_after_finished"]),
            str(report["stuck"]), f"{report['duration']:.1f}",
            "; ".join(f"{k}: {v}" for k, v in notes.items())]


def table(lines: list[str]) -> str:
    rows = [row(json.loads(line)) for line in lines if line.strip()]
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


if __name__ == "__main__":
    path = Path(sys.argv[1])
    if not path.exists():
        sys.exit(f"no reports in {path}: did `make faults` run any scenario?")
    print(table(path.read_text().splitlines()))
