"""Procrastinate: ``defer_async()`` / ``batch_defer_async()``, ``procrastinate worker``."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg import sql

from .. import env
from .base import System

SCHEMA = os.environ.get("BENCH_PROCRASTINATE_SCHEMA", env.SCHEMAS["procrastinate"])
os.environ["BENCH_DSN"] = env.database_dsn(harness=True)
os.environ["BENCH_PROCRASTINATE_SCHEMA"] = SCHEMA

from ..apps import procrastinate_app  # noqa: E402

_CONFIG = re.compile(r"^(?:(\d+)x-)?c(\d+)$")


class Adapter(System):
    name = "procrastinate"
    search_path = SCHEMA  # its triggers name their tables without a schema

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self._open = False

    def _run(self, coro):  # type: ignore[no-untyped-def]
        if not self._open:
            self.loop.run_until_complete(procrastinate_app.app.open_async())
            self._open = True
        return self.loop.run_until_complete(coro)

    def setup(self) -> None:
        ident = sql.Identifier(SCHEMA)
        self.db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
        self.db.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        self._run(procrastinate_app.app.schema_manager.apply_schema_async())

    def hot_tables(self) -> list[str]:
        return [f"{SCHEMA}.procrastinate_jobs"]

    def reset(self) -> None:
        if not self.reset_by_truncate:
            self.db.execute(sql.SQL("DELETE FROM {}.procrastinate_jobs").format(
                sql.Identifier(SCHEMA)))
            return
        self.db.execute(sql.SQL(
            "TRUNCATE {s}.procrastinate_jobs, {s}.procrastinate_events, "
            "{s}.procrastinate_periodic_defers, {s}.procrastinate_workers CASCADE").format(
                s=sql.Identifier(SCHEMA)))

    def analyze(self) -> None:
        self.db.execute(sql.SQL("ANALYZE {}.procrastinate_jobs").format(sql.Identifier(SCHEMA)))

    def _warm(self) -> None:
        self._run(procrastinate_app.noop.defer_async())
        self.reset()

    def enqueue_single(self, n: int) -> float:
        defer = procrastinate_app.noop.defer_async
        return self.timed_async(n, 1, lambda _: defer(), self._run)

    def enqueue_bulk(self, n: int, batch: int) -> float:
        batch_defer = procrastinate_app.noop.batch_defer_async
        return self.timed_async(n, batch, lambda size: batch_defer(*[{}] * size), self._run)

    def prefill(self, n: int, variant: str = "noop") -> None:
        self.enqueue_bulk(n, 5000)

    @contextmanager
    def latency_sender(self) -> Iterator[Callable[[float], None]]:
        self._warm()
        defer = procrastinate_app.mark.defer_async

        def send(sent_at: float) -> None:
            self._run(defer(sent_at=sent_at))

        yield send

    def remaining(self) -> int:
        row = self.db.execute(sql.SQL(
            "SELECT count(*) FROM {}.procrastinate_jobs WHERE status IN ('todo', 'doing')"
        ).format(sql.Identifier(SCHEMA))).fetchone()
        assert row is not None
        return int(row[0])

    def worker_commands(self, config: str) -> list[list[str]]:
        match = _CONFIG.match(config)
        if not match:
            raise ValueError(f"unknown procrastinate worker config {config!r}")
        processes, concurrency = int(match.group(1) or 1), match.group(2)
        argv = [str(Path(sys.executable).with_name("procrastinate")),
                "--app=bench.apps.procrastinate_app.app", "--log-level", "warning",
                "worker", "--concurrency", concurrency, "--queues", "default"]
        return [argv] * processes

    def close(self) -> None:
        if self._open:
            self.loop.run_until_complete(procrastinate_app.app.close_async())
        self.loop.close()
        super().close()
