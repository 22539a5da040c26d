"""``hutch -A apps.request_app worker``: the shared test tasks and apps.request_tasks',
configured by HUTCH_* variables."""

from apps.request_tasks import app_from_env_with_requests

app = app_from_env_with_requests()
