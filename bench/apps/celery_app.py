"""Celery's tasks for the benchmark (``celery -A bench.apps.celery_app worker``).

No result backend (results ignored, like pgqueue's ``ignore_result``); ``acks_late`` so a
message stays in Redis's ``unacked`` hash until its task has run, which is how the
harness counts unfinished jobs.
"""

from __future__ import annotations

import os

from celery import Celery

from bench import workload

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"))
app.conf.update(
    task_default_queue="default",
    task_ignore_result=True,
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
)


@app.task(name="noop", ignore_result=True)
def noop() -> None:
    workload.noop()


@app.task(name="mark", ignore_result=True)
def mark(sent_at: float) -> None:
    workload.record_latency(sent_at)
