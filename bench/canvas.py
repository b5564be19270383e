"""Canvas figures of issue 15, for pgqueue, on real worker processes.

    python -m bench.canvas [--quick] [--members 10000] [--steps 200] [--workers 2]

- chord: a chord of N no-op members whose body sums them, from ``apply_async`` to the
  body's result, against N plain jobs (results stored) sent with ``apply_many`` and
  drained by the same workers (time from the send to the last result);
- chain: a chain of S steps, seconds per step, against the enqueue-to-start latency of
  a single job (median of 50);
- group: N jobs sent as ``group(...).apply_async()`` against ``apply_many`` of the same
  jobs, enqueue rate only (no worker running).

Each figure is printed with its ratio to the pgqueue baseline the issue names. Celery+Redis
rows are not measured here yet (Celery's canvas needs a result backend the harness's
Celery app does not configure).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import psycopg

from bench import env

SCHEMA = "bench_canvas"


def _app() -> Any:
    os.environ["BENCH_DSN"] = env.database_dsn()
    os.environ["BENCH_PGQ_SCHEMA"] = SCHEMA
    from bench.apps import pgqueue_app

    return pgqueue_app


def _reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {SCHEMA}.jobs, {SCHEMA}.results, {SCHEMA}.canvas_steps, "
                     f"{SCHEMA}.canvas_edges, {SCHEMA}.canvas_groups")


def _workers(n: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    environ = {**os.environ, "PYTHONPATH": str(env.REPO_ROOT)}
    command = [sys.executable, "-m", "pgqueue.cli", "worker"]
    command = [os.path.join(os.path.dirname(sys.executable), "pgqueue"), "worker", "-A",
               "bench.apps.pgqueue_app:app", "-P", "threads", "-c", str(concurrency),
               "--loglevel", "WARNING"]
    log = (env.RESULTS_DIR / "logs" / "canvas-workers.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return [subprocess.Popen(command, env=environ, stdout=out, stderr=out,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
                for _ in range(n)]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.canvas")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    members = 1_000 if args.quick else args.members
    steps = 50 if args.quick else args.steps
    from pgqueue import chain, chord, group
    from pgqueue.db import migrations

    dsn = env.database_dsn()
    with psycopg.connect(env.SERVER_DSN, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (env.DATABASE,)).fetchone():
            conn.execute(f'CREATE DATABASE "{env.DATABASE}"')
    migrations.migrate(dsn, SCHEMA)
    mod = _app()
    app, one, total = mod.app, mod.one, mod.total
    rows: list[tuple[str, str, str]] = []

    # group vs apply_many: enqueue only
    _reset(dsn)
    app.send_task("one")  # warm the pool
    _reset(dsn)
    started = time.perf_counter()
    one.apply_many([() for _ in range(members)])
    many = time.perf_counter() - started
    _reset(dsn)
    started = time.perf_counter()
    group(one.s() for _ in range(members)).apply_async()
    grouped = time.perf_counter() - started
    rows.append((f"group of {members:,}: enqueue /s", f"{members / grouped:,.0f}",
                 f"{many / grouped:.2f}× apply_many's {members / many:,.0f}/s"))
    _reset(dsn)

    procs = _workers(args.workers, args.concurrency)
    try:
        one.delay().get(timeout=60)  # the workers are up
        # single job latency: enqueue -> result of a no-op (median of 50)
        latencies = []
        for _ in range(50):
            sent = time.perf_counter()
            one.delay().get(timeout=60)
            latencies.append(time.perf_counter() - sent)
        p50 = statistics.median(latencies)
        # plain drain of the same number of stored no-ops
        _reset(dsn)
        started = time.perf_counter()
        results = one.apply_many([() for _ in range(members)])
        results[-1].get(timeout=600)
        with psycopg.connect(dsn, autocommit=True) as conn:
            while conn.execute(f"SELECT count(*) FROM {SCHEMA}.jobs").fetchone() != (0,):
                time.sleep(0.01)
        plain = time.perf_counter() - started
        _reset(dsn)
        started = time.perf_counter()
        result = chord((one.s() for _ in range(members)), total.s()).apply_async()
        assert result.get(timeout=600) == members
        chorded = time.perf_counter() - started
        rows.append((f"chord of {members:,} no-ops, summed: members /s",
                     f"{members / chorded:,.0f}",
                     f"{chorded / plain:.2f}× the cost per job of a plain drain "
                     f"({members / plain:,.0f}/s)"))
        _reset(dsn)
        started = time.perf_counter()
        result = chain(one.s() for _ in range(steps)).apply_async()
        assert result.get(timeout=600) == 1
        per_step = (time.perf_counter() - started) / steps
        rows.append((f"chain of {steps} steps: ms per step", f"{per_step * 1000:.2f}",
                     f"{per_step / p50:.2f}× a single job's send-to-result p50 "
                     f"({p50 * 1000:.2f} ms)"))
    finally:
        _stop(procs)
        app.close()
    print(f"| figure | pgqueue ({args.workers} workers, threads -c {args.concurrency}) "
          "| against |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(row)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
