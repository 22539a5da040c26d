"""``hutch -A apps.beat_app beat``: the shared test tasks plus a beat_schedule from the
environment (HUTCH_TEST_BEAT_SCHEDULE: a JSON object of name -> {task, every, args,
and optionally catch_up, catch_up_limit})."""

import json
import os

from apps.tasks import app_from_env

CARRIED = ("args", "catch_up", "catch_up_limit")

app = app_from_env()
app.conf.beat_schedule = {
    name: {"task": spec["task"], "schedule": float(spec["every"]),
           **{key: spec[key] for key in CARRIED if key in spec}}
    for name, spec in json.loads(os.environ.get("HUTCH_TEST_BEAT_SCHEDULE", "{}")).items()
}
