"""``hutch -A apps.header_app worker``: the shared test tasks and apps.header_tasks', with
the tracer stand-in's receivers connected in the worker's app module, as a project's
tracing set-up is (every prefork child has them: it is forked after the import)."""

from apps import header_tasks
from apps.tasks import app_from_env

app = header_tasks.register(app_from_env())
header_tasks.connect()
