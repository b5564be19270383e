"""Celery's tasks for the canvas figures (``python -m bench.canvas``): Redis as broker and
as result backend (a chord needs one; Redis counts a chord's members with INCR)."""

from __future__ import annotations

import os

from celery import Celery

from bench import env

BACKEND_URL = os.environ.get("BENCH_REDIS_BACKEND_URL", "redis://127.0.0.1:6379/10")

app = Celery("bench_canvas", broker=env.REDIS_URL, backend=BACKEND_URL)
app.conf.update(
    task_default_queue="canvas",
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
    result_expires=3600,
)


@app.task(name="one")
def one(*previous: object) -> int:
    return 1


@app.task(name="total")
def total(values: list[int]) -> int:
    return sum(values)
