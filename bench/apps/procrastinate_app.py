"""Procrastinate's tasks for the benchmark
(``procrastinate --app=bench.apps.procrastinate_app.app worker``).

Tasks are ``async def`` (Procrastinate's worker is asyncio; a sync task would be sent to a
thread) and call the same body as every other system.
"""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

from bench import workload

SCHEMA = os.environ.get("BENCH_PROCRASTINATE_SCHEMA", "bench_procrastinate")

app = App(connector=PsycopgConnector(
    conninfo=os.environ["BENCH_DSN"], kwargs={"options": f"-c search_path={SCHEMA}"}))


@app.task(name="noop", queue="default")
async def noop() -> None:
    workload.noop()


@app.task(name="mark", queue="default")
async def mark(sent_at: float) -> None:
    workload.record_latency(sent_at)
