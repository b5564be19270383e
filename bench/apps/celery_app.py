"""Celery's tasks for the benchmark (``celery -A bench.apps.celery_app worker``).

One app for both Celery systems; ``BENCH_CELERY_BROKER`` picks the broker when this module
is imported: ``redis`` (default; ``BENCH_REDIS_URL``) or ``rabbitmq`` (``BENCH_AMQP_URL``).
The adapters set it for their own process and in the environment of the workers they start.

No result backend (results ignored, like pgqueue's ``ignore_result``); ``acks_late`` so a
message stays unacknowledged until its task has run (in Redis's ``unacked`` hash, which is
how the harness counts unfinished jobs there). Everything else is Celery's default, also
for RabbitMQ: a durable ``default`` queue on a durable direct exchange, persistent messages
(``delivery_mode`` 2), no publisher confirms, prefetch multiplier 4.
"""

from __future__ import annotations

import os

from celery import Celery

from bench import env, workload

BROKERS = {"redis": env.REDIS_URL, "rabbitmq": env.AMQP_URL}

BROKER = os.environ.get(env.CELERY_BROKER_ENV) or "redis"
if BROKER not in BROKERS:
    raise RuntimeError(f"{env.CELERY_BROKER_ENV}={BROKER!r}: expected one of "
                       f"{', '.join(BROKERS)}")

app = Celery("bench", broker=BROKERS[BROKER])
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
