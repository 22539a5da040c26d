"""``hutch -A apps.class_tasks worker``: Celery-style tasks (a Task subclass, base=, a
shared task declared before the app) whose hooks append JSON lines to the file named
by $CLASS_TASKS_HOOKS, with the pid of the process that ran them.

Only worker subprocesses import this module: its shared task would otherwise be
registered on every app the test process creates afterwards."""

from __future__ import annotations

import json
import os

from hutch import Hutch, Task, shared_task


@shared_task(name="class_tasks.shared_pid")
def shared_pid() -> int:
    return os.getpid()


class Audited(Task):
    """Writes each hook call to the hooks file."""

    def _write(self, hook: str, task_id: str, **fields: object) -> None:
        line = {"hook": hook, "task": self.name, "task_id": task_id, "pid": os.getpid(),
                **fields}
        with open(os.environ["CLASS_TASKS_HOOKS"], "a") as out:
            out.write(json.dumps(line) + "\n")

    def on_success(self, retval, task_id, args, kwargs):
        self._write("on_success", task_id, retval=retval, args=list(args))

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        self._write("on_failure", task_id, error=type(exc).__name__,
                    einfo_type=einfo.type.__name__, traceback=einfo.traceback)

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        self._write("on_retry", task_id, error=str(exc))

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        self._write("after_return", task_id, status=status)


class WhichProcess(Audited):
    name = "class_tasks.which_process"
    max_retries = 4

    def run(self, tag: str) -> dict[str, object]:
        return {"pid": os.getpid(), "tag": tag, "max_retries": self.max_retries,
                "retries": self.request.retries}


app = Hutch("class_tasks")
app.register_task(WhichProcess())


@app.task(base=Audited, name="class_tasks.divide")
def divide(x: float, y: float) -> float:
    return x / y


@app.task(base=Audited, name="class_tasks.retry_once", bind=True, default_retry_delay=0)
def retry_once(self: Task) -> int:
    if self.request.retries == 0:
        raise self.retry(exc=KeyError("first try"))
    return self.request.retries
