"""``hutch -A apps.signal_app``: the shared test tasks, with a receiver on every signal of
hutch.signals that appends one JSON line per signal (its name, the process id and the
arguments that tell the events apart) to the file named by ``$SIGNAL_APP_LOG``.

With ``SIGNAL_APP_OWN_LOGGING=1`` it also connects ``setup_logging``, which takes the
process's logging over from hutch. Never import it in the test process itself: its
receivers would stay connected for every later test.
"""

from __future__ import annotations

import json
import os
from typing import Any

from apps.tasks import app_from_env
from hutch import signals

app = app_from_env()

LOG = os.environ.get("SIGNAL_APP_LOG")

EVERY = [
    signals.before_task_publish, signals.after_task_publish, signals.task_received,
    signals.task_prerun, signals.task_postrun, signals.task_success, signals.task_failure,
    signals.task_retry, signals.task_revoked, signals.task_rejected, signals.task_unknown,
    signals.worker_init, signals.worker_process_init, signals.worker_ready,
    signals.worker_shutting_down, signals.worker_process_shutdown, signals.worker_shutdown,
    signals.beat_init, signals.after_setup_logger, signals.import_modules,
]


def _task_id(named: dict[str, Any]) -> str | None:
    request = named.get("request")
    if request is not None:
        return str(request.id)
    headers = named.get("headers")
    return named.get("task_id") or named.get("id") or (headers or {}).get("id")


def record(signal: signals.Signal, sender: Any, **named: Any) -> None:
    if not LOG:
        return
    line = {"signal": signal.name, "pid": os.getpid(), "task_id": _task_id(named),
            "sender": sender if isinstance(sender, str) else type(sender).__name__,
            **{k: named[k] for k in ("state", "how", "sig", "exitcode", "name")
               if k in named}}
    with open(LOG, "a") as out:
        out.write(json.dumps(line, default=str) + "\n")


for each in EVERY:
    each.connect(record)

if os.environ.get("SIGNAL_APP_OWN_LOGGING") == "1":
    signals.setup_logging.connect(record)
