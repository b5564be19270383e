"""pgqueue's tasks for the benchmark (``pgqueue worker -A bench.apps.pgqueue_app:app``)."""

from __future__ import annotations

import os

from bench import workload
from pgqueue import App

app = App("bench", dsn=os.environ["BENCH_DSN"],
          schema=os.environ.get("BENCH_PGQ_SCHEMA", "bench_pgq"))


@app.task(name="noop", ignore_result=True)
def noop() -> None:
    workload.noop()


@app.task(name="noop_stored")
def noop_stored() -> None:
    workload.noop()


@app.task(name="mark", ignore_result=True)
def mark(sent_at: float) -> None:
    workload.record_latency(sent_at)
