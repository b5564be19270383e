"""PgQueuer's entrypoints for the benchmark (``pgq run bench.apps.pgqueuer_app:create``).

asyncpg driver (PgQueuer's fastest), uvloop (what ``pgq run`` uses). Entrypoints are
``async def`` (a sync one would be sent to a thread) and call the same body as every other
system; the latency probe's ``sent_at`` travels as the payload.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import AsyncpgDriver, Job, PgQueuer

from bench import workload

SCHEMA = os.environ.get("PGQUEUER_SCHEMA", "bench_pgqueuer")


async def connect(application_name: str | None = None) -> asyncpg.Connection:
    settings = {"search_path": SCHEMA}
    if application_name:
        settings["application_name"] = application_name
    return await asyncpg.connect(os.environ["BENCH_DSN"], server_settings=settings)


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    connection = await connect()
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        workload.noop()

    @pgq.entrypoint("mark")
    async def mark(job: Job) -> None:
        assert job.payload is not None
        workload.record_latency(float(job.payload))

    try:
        yield pgq
    finally:
        await connection.close()
