"""``hutch -A apps.beat_app beat``: the shared test tasks plus a beat_schedule from the
environment (HUTCH_TEST_BEAT_SCHEDULE: a JSON object of name -> {task, every, args})."""

import json
import os

from apps.tasks import app_from_env

app = app_from_env()
app.conf.beat_schedule = {
    name: {"task": spec["task"], "schedule": float(spec["every"]),
           "args": spec.get("args", [])}
    for name, spec in json.loads(os.environ.get("HUTCH_TEST_BEAT_SCHEDULE", "{}")).items()
}
