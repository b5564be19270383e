"""What every system adapter provides, and the scenarios written once on top of it.

An adapter runs inside the system's own interpreter (the project's venv for pgqueue, the
peers' venv for the others). It knows how to reset the system, enqueue, count unfinished
jobs and start workers; the scenarios here do the timing, identically for everyone.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from .. import env, workload
from ..measure import CpuMeter, TreeMeter, Workers, observe_drain, percentile


class System:
    #: Short name used on the command line and in the table.
    name = ""
    #: False during the open-transaction check: reset() must DELETE, not TRUNCATE (a
    #: TRUNCATE gives the table a new file and throws away the dead rows being measured).
    reset_by_truncate = True
    #: search_path of the harness's own connection (for systems whose triggers need it).
    search_path: str | None = None

    def __init__(self) -> None:
        self.dsn = env.database_dsn(harness=True)
        self._db: psycopg.Connection[Any] | None = None

    # -- to implement -------------------------------------------------------------------
    def setup(self) -> None:
        """Create a fresh, empty installation (schema, tables)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Remove every job and result, keeping the installation."""
        raise NotImplementedError

    def enqueue_single(self, n: int) -> float:
        """Enqueue ``n`` no-op jobs, one call (one transaction) each; return the seconds."""
        raise NotImplementedError

    def enqueue_bulk(self, n: int, batch: int) -> float:
        """Enqueue ``n`` no-op jobs with the system's bulk call, ``batch`` per call."""
        raise NotImplementedError

    def prefill(self, n: int, variant: str = "noop") -> None:
        """Enqueue ``n`` jobs of ``variant`` as fast as possible (not timed)."""
        raise NotImplementedError

    def _warm(self) -> None:
        """Open the system's connections before any clock starts."""

    # -- the one timing loop of the enqueue figures, for every system ---------------------
    def timed(self, n: int, batch: int, send: Callable[[int], object]) -> float:
        """Seconds to enqueue ``n`` jobs with ``send(size)``, ``batch`` jobs per call."""
        self._warm()
        started = time.perf_counter()
        for start in range(0, n, batch):
            send(min(batch, n - start))
        return time.perf_counter() - started

    def timed_async(self, n: int, batch: int, send: Callable[[int], Awaitable[object]],
                    run: Callable[[Coroutine[Any, Any, float]], float]) -> float:
        """The same loop for an asyncio client, timed inside its event loop."""
        self._warm()

        async def loop() -> float:
            started = time.perf_counter()
            for start in range(0, n, batch):
                await send(min(batch, n - start))
            return time.perf_counter() - started

        return float(run(loop()))

    @contextmanager
    def latency_sender(self) -> Iterator[Callable[[float], None]]:
        """A function that enqueues one latency job carrying ``sent_at``."""
        raise NotImplementedError
        yield

    def remaining(self) -> int:
        """Jobs not finished yet, by the system's own bookkeeping."""
        raise NotImplementedError

    def worker_commands(self, config: str) -> list[list[str]]:
        """One command per worker process for ``config`` (e.g. ``2x-threads-c10``: two
        processes; the names and their meaning are listed in ``bench/cli.py``)."""
        raise NotImplementedError

    def analyze(self) -> None:
        """Refresh planner statistics after a pre-fill, as autovacuum would in production.

        A freshly truncated and refilled table has no statistics; some claim queries
        then pick a plan that sorts the whole queue for every job.
        """

    def hot_tables(self) -> list[str]:
        """The queue's tables (``schema.table``) the open-transaction check reports on."""
        return []

    def server_pids(self) -> list[int]:
        """Processes doing the broker's work (default: our Postgres backends)."""
        return self.backend_pids()

    # -- helpers ------------------------------------------------------------------------
    @property
    def db(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed:
            options: dict[str, Any] = (
                {"options": f"-c search_path={self.search_path}"} if self.search_path else {})
            # No prepared statements: the harness's own statements are not measured, and
            # it may run through PgBouncer (BENCH_PG_DSN, docs/deploying.md).
            self._db = psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None,
                                       **options)
        return self._db

    def backend_pids(self) -> list[int]:
        rows = self.db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND coalesce(application_name, '') <> %s",
            [env.HARNESS_APPNAME]).fetchall()
        return [r[0] for r in rows]

    def worker_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return env.subprocess_env(extra)

    def workers(self, config: str, label: str,
                extra_env: dict[str, str] | None = None) -> Workers:
        log = env.RESULTS_DIR / "logs" / f"{self.name}-{label}.log"
        return Workers(self.worker_commands(config), self.worker_env(extra_env), log)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


# -- the scenarios ------------------------------------------------------------------------
def scenario_single(system: System, jobs: int) -> dict[str, Any]:
    system.reset()
    seconds = system.enqueue_single(jobs)
    assert system.remaining() == jobs, "enqueued jobs are missing"
    system.reset()
    return {"rate": jobs / seconds, "jobs": jobs, "seconds": seconds}


def scenario_bulk(system: System, jobs: int, batch: int) -> dict[str, Any]:
    system.reset()
    seconds = system.enqueue_bulk(jobs, batch)
    assert system.remaining() == jobs, "enqueued jobs are missing"
    system.reset()
    return {"rate": jobs / seconds, "jobs": jobs, "seconds": seconds, "batch": batch}


def drain(system: System, config: str, jobs: int, variant: str = "noop",
          label: str = "drain", timeout: float | None = None) -> dict[str, Any]:
    """Pre-fill ``jobs``, start the workers, time the queue emptying, stop the workers."""
    system.reset()
    system.prefill(jobs, variant)
    system.analyze()
    assert system.remaining() == jobs, "pre-filled jobs are missing"
    with system.workers(config, f"{label}-{config}") as workers:
        result = observe_drain(
            jobs, system.remaining, TreeMeter(workers.pids), CpuMeter(system.server_pids),
            workers.check_alive, timeout=timeout or max(60.0, jobs / 200))
    system.reset()
    return {**result.as_dict(), "config": config, "variant": variant}


def scenario_drain(system: System, config: str, jobs: int, variant: str = "noop") -> dict[str, Any]:
    return drain(system, config, jobs, variant)


def scenario_latency(system: System, config: str, probes: int,
                     warmup: int = 5) -> dict[str, Any]:
    """Enqueue→start latency with an idle worker: one job at a time, waiting for each.

    Measured from just before the enqueue call (what a caller sees; the main figure) and
    from the moment the call returned (delivery alone: commit → wake-up → claim → start).
    """
    system.reset()
    with tempfile.TemporaryDirectory(prefix="bench-lat-") as tmp:
        path = Path(tmp) / "latency.txt"
        path.touch()
        workers = system.workers(config, f"latency-{config}",
                                 {workload.LATENCY_FILE_ENV: str(path)})
        with workers, system.latency_sender() as send:
            samples, after_return = [], []
            for i in range(warmup + probes):
                size = path.stat().st_size
                sent_at = time.time()
                send(sent_at)
                returned_at = time.time()
                # The first probe also waits for the worker to come up.
                deadline = time.monotonic() + (60 if i == 0 else 10)
                while path.stat().st_size == size:
                    if time.monotonic() > deadline:
                        workers.check_alive()
                        raise TimeoutError(f"latency probe {i} did not start within 10s")
                    time.sleep(0.0005)
                # A line is written in one write(); re-read until it is complete.
                while not path.read_bytes().endswith(b"\n"):
                    time.sleep(0.0005)
                if i >= warmup:
                    latency = float(path.read_bytes().splitlines()[-1])
                    samples.append(latency)
                    after_return.append(sent_at + latency - returned_at)
                # Idle gap, jittered so probes do not line up with any poll timer.
                time.sleep(random.uniform(0.01, 0.03))
    system.reset()
    ms = [s * 1000 for s in samples]
    from_return = [s * 1000 for s in after_return]
    return {"p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99), "max_ms": max(ms), "probes": len(ms),
            "from_return_p50_ms": percentile(from_return, 50),
            "from_return_p99_ms": percentile(from_return, 99), "config": config}


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "single": scenario_single,
    "bulk": scenario_bulk,
    "drain": scenario_drain,
    "latency": scenario_latency,
}

