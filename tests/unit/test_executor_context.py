"""What a running task sees of its context: its id and name bound into log lines, only
for its own run (worker/executor.py, ``Executor._running``)."""

from structlog.contextvars import get_contextvars

from support.workers import running_worker


def test_each_run_binds_its_own_task_id_and_name_for_log_lines(memory_app):
    seen: list[dict[str, object]] = []

    @memory_app.task(name="tests.context")
    def context(n: int) -> int:
        seen.append(get_contextvars())
        return n

    with running_worker(memory_app, pool="solo", concurrency=1):
        first = context.delay(1)
        assert first.get(timeout=10) == 1
        second = context.delay(2)
        assert second.get(timeout=10) == 2
    assert seen == [{"task_id": first.id, "task_name": "tests.context"},
                    {"task_id": second.id, "task_name": "tests.context"}]
    assert "task_id" not in get_contextvars()
