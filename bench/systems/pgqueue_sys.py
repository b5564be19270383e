"""pgqueue: ``delay()`` / ``apply_many()``, and ``pgqueue worker`` subprocesses."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg import sql

from .. import env
from .base import System

SCHEMA = os.environ.get("BENCH_PGQ_SCHEMA", env.SCHEMAS["pgqueue"])
# The producer side runs in this process: tag its connections as the harness's.
os.environ["BENCH_DSN"] = env.database_dsn(harness=True)
os.environ["BENCH_PGQ_SCHEMA"] = SCHEMA

from pgqueue.db import migrations  # noqa: E402

from ..apps import pgqueue_app  # noqa: E402

# ``...-E``: the workers send task events (``pgqueue worker -E``), to measure their cost.
_CONFIG = re.compile(r"^(?:(\d+)x-)?(threads|solo|processes|prefork|asyncio)-c(\d+)(-E)?$")


class Adapter(System):
    name = "pgqueue"
    #: Set by the backlog check: reset() spares the backlog rows.
    keep_backlog = False
    #: Set by the history check: results that finished since then are the run's own.
    results_since: object = None

    def setup(self) -> None:
        self.db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        migrations.migrate(env.database_dsn(), SCHEMA)

    def reset(self) -> None:
        if self.keep_backlog and self.results_since is not None:
            # the history check: its rows finished before results_since, and the partitions
            # of results hold millions of them: delete by finish time, not by a full scan
            self.db.execute(sql.SQL("DELETE FROM {}.jobs WHERE task <> 'backlog'").format(
                sql.Identifier(SCHEMA)))
            self.db.execute(sql.SQL("DELETE FROM {}.results WHERE finished_at >= %s").format(
                sql.Identifier(SCHEMA)), [self.results_since])
            return
        if self.keep_backlog or not self.reset_by_truncate:
            for table in ("jobs", "results"):
                self.db.execute(sql.SQL("DELETE FROM {}.{} WHERE task <> 'backlog'").format(
                    sql.Identifier(SCHEMA), sql.Identifier(table)))
            return
        self.db.execute(sql.SQL("TRUNCATE {}.jobs, {}.results").format(
            sql.Identifier(SCHEMA), sql.Identifier(SCHEMA)))

    def analyze(self) -> None:
        self.db.execute(sql.SQL("ANALYZE {}.jobs").format(sql.Identifier(SCHEMA)))

    def hot_tables(self) -> list[str]:
        """Tables whose size and dead rows the open-transaction check reports."""
        return [f"{SCHEMA}.jobs"]

    def _warm(self) -> None:
        """Open the producer's connection pool before any clock starts."""
        pgqueue_app.noop.delay()
        self.reset()

    def enqueue_single(self, n: int) -> float:
        delay = pgqueue_app.noop.delay
        return self.timed(n, 1, lambda _: delay())

    def enqueue_bulk(self, n: int, batch: int) -> float:
        apply_many = pgqueue_app.noop.apply_many
        return self.timed(n, batch, lambda size: apply_many([((), {})] * size))

    def prefill(self, n: int, variant: str = "noop") -> None:
        task = pgqueue_app.noop_stored if variant == "noop_stored" else pgqueue_app.noop
        for start in range(0, n, 5000):
            task.apply_many([((), {})] * min(5000, n - start))
        # pgqueue names its pooled connections itself, so they would not carry the harness
        # tag: close them, or an idle producer backend would count as the worker's server.
        pgqueue_app.app.close()

    @contextmanager
    def latency_sender(self) -> Iterator[Callable[[float], None]]:
        self._warm()
        delay = pgqueue_app.mark.delay

        def send(sent_at: float) -> None:
            delay(sent_at)

        yield send

    def remaining(self) -> int:
        # Two partial-index counts: future (scheduled) jobs of the scale checks stay out.
        row = self.db.execute(sql.SQL(
            "SELECT (SELECT count(*) FROM {s}.jobs WHERE state = 'queued')"
            " + (SELECT count(*) FROM {s}.jobs WHERE state = 'started')").format(
                s=sql.Identifier(SCHEMA))).fetchone()
        assert row is not None
        return int(row[0])

    def worker_commands(self, config: str) -> list[list[str]]:
        script = Path(sys.executable).with_name("pgqueue")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "pgqueue"]
        if config == "defaults":  # what a user who never read docs/tuning.md runs
            return [command + ["worker", "-A", "bench.apps.pgqueue_app:app", "-l", "warning"]]
        match = _CONFIG.match(config)
        if not match:
            raise ValueError(f"unknown pgqueue worker config {config!r}")
        processes, pool, concurrency = int(match.group(1) or 1), match.group(2), match.group(3)
        argv = command + ["worker", "-A", "bench.apps.pgqueue_app:app", "-P", pool,
                          "-c", concurrency, "-Q", "default", "-l", "warning"]
        if match.group(4):
            argv.append("-E")
        return [argv] * processes
