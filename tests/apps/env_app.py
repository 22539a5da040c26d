"""``hutch -A apps.env_app worker``: the shared test tasks, configured by HUTCH_* variables."""

from apps.tasks import app_from_env

app = app_from_env()
