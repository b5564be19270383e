"""pgqueue's tasks for the benchmark (``pgqueue worker -A bench.apps.pgqueue_app:app``)."""

from __future__ import annotations

import os

from bench import workload
from pgqueue import App

app = App("bench", dsn=os.environ["BENCH_DSN"],
          schema=os.environ.get("BENCH_PGQ_SCHEMA", "bench_pgq"))
if os.environ.get("BENCH_KEEP_RESULTS"):
    # the history check: the workers' leader must not prune the history it measures
    app.conf.result_expires = None


@app.task(name="noop", ignore_result=True)
def noop() -> None:
    workload.noop()


@app.task(name="noop_stored")
def noop_stored() -> None:
    workload.noop()


@app.task(name="mark", ignore_result=True)
def mark(sent_at: float) -> None:
    workload.record_latency(sent_at)


# -- canvas (python -m bench.canvas) -------------------------------------------------------
@app.task(name="one")
def one(*previous: object) -> int:
    """A no-op whose result is stored: a chord member, a chain step."""
    return 1


@app.task(name="total")
def total(values: list[int]) -> int:
    return sum(values)
