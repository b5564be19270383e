"""Tasks for the core acceptance tests: ``pgqueue worker -A tests.acceptance.apps.core_app``.

The database and schema come from ``PGQUEUE_DSN`` and ``PGQUEUE_SCHEMA``, as a deployed
app's would.
"""

from __future__ import annotations

from psycopg import sql

from pgqueue import App, Task

app = App("core_app")


def record_execution(task: Task, n: int) -> None:
    """One row per execution in ``executions`` (created by the test, with no unique
    constraint: a job that ran twice shows up twice)."""
    with app.connection() as conn:
        conn.execute(
            sql.SQL("INSERT INTO {}.executions (job_id, n, worker) VALUES (%s, %s, %s)")
            .format(sql.Identifier(app.schema)),
            [task.request.id, n, task.request.worker],
        )


@app.task(bind=True, name="core.record")
def record(self: Task, n: int) -> int:
    record_execution(self, n)
    return 2 * n


@app.task(bind=True, name="core.flaky", autoretry_for=(ConnectionError,), retry_backoff=True,
          retry_jitter=False, max_retries=2)
def flaky(self: Task, n: int) -> None:
    """Fails every attempt: retried after 1 s, then 2 s, then FAILURE."""
    record_execution(self, n)
    raise ConnectionError(f"attempt {self.request.retries + 1}")


@app.task(name="core.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="core.fail")
def fail(message: str) -> None:
    raise ValueError(message)
