"""PgQueuer (asyncpg): ``Queries.enqueue()`` with one job or lists; ``pgqueuer.run``."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import sql

from .. import env
from .base import System

SCHEMA = os.environ.get("PGQUEUER_SCHEMA", env.SCHEMAS["pgqueuer"])
os.environ["PGQUEUER_SCHEMA"] = SCHEMA
os.environ.setdefault("BENCH_DSN", env.database_dsn())

from pgqueuer import Queries  # noqa: E402

from ..apps import pgqueuer_app  # noqa: E402

_CONFIG = re.compile(r"^(?:(\d+)x-)?b(\d+)$")


class Adapter(System):
    name = "pgqueuer"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self._conn: Any = None
        self._queries: Queries | None = None

    @property
    def queries(self) -> Queries:
        if self._queries is None:
            self._conn = self.loop.run_until_complete(pgqueuer_app.connect(env.HARNESS_APPNAME))
            self._queries = Queries.from_asyncpg_connection(self._conn)
        return self._queries

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def setup(self) -> None:
        self.db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        self._run(self.queries.install())

    def reset(self) -> None:
        if not self.reset_by_truncate:
            self.db.execute(sql.SQL("DELETE FROM {s}.pgqueuer").format(s=sql.Identifier(SCHEMA)))
            return
        self.db.execute(sql.SQL("TRUNCATE {s}.pgqueuer, {s}.pgqueuer_log, {s}.pgqueuer_statistics")
                        .format(s=sql.Identifier(SCHEMA)))

    def hot_tables(self) -> list[str]:
        return [f"{SCHEMA}.pgqueuer"]

    def analyze(self) -> None:
        self.db.execute(sql.SQL("ANALYZE {s}.pgqueuer").format(s=sql.Identifier(SCHEMA)))

    def _warm(self) -> None:
        self._run(self.queries.enqueue("noop", None))
        self.reset()

    def enqueue_single(self, n: int) -> float:
        enqueue = self.queries.enqueue
        return self.timed_async(n, 1, lambda _: enqueue("noop", None), self._run)

    def enqueue_bulk(self, n: int, batch: int) -> float:
        enqueue = self.queries.enqueue
        return self.timed_async(
            n, batch, lambda size: enqueue(["noop"] * size, [None] * size, [0] * size), self._run)

    def prefill(self, n: int, variant: str = "noop") -> None:
        self.enqueue_bulk(n, 5000)

    @contextmanager
    def latency_sender(self) -> Iterator[Callable[[float], None]]:
        self._warm()
        enqueue = self.queries.enqueue

        def send(sent_at: float) -> None:
            self._run(enqueue("mark", repr(sent_at).encode()))

        yield send

    def remaining(self) -> int:
        # Finished jobs leave the queue table (they are logged in pgqueuer_log).
        row = self.db.execute(sql.SQL("SELECT count(*) FROM {}.pgqueuer").format(
            sql.Identifier(SCHEMA))).fetchone()
        assert row is not None
        return int(row[0])

    def worker_commands(self, config: str) -> list[list[str]]:
        match = _CONFIG.match(config)
        if not match:
            raise ValueError(f"unknown pgqueuer worker config {config!r}")
        processes, batch = int(match.group(1) or 1), match.group(2)
        argv = [sys.executable, "-m", "bench.apps.pgqueuer_worker", "--batch-size", batch]
        return [argv] * processes

    def close(self) -> None:
        if self._conn is not None:
            self._run(self._conn.close())
        self.loop.close()
        super().close()
