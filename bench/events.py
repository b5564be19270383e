"""The cost of task events (``python -m bench.events``), issue 17 point 3.

One ``pgqueue worker -P threads -c 100`` drains ``--jobs`` no-op jobs (start-up not
counted), three ways, taking turns, ``--repeats`` rounds: events off; ``-E`` with nobody
listening (published only while a receiver announces itself, pgqueue.event_listeners);
``-E`` with a ``pgqueue events --json`` running (its output thrown away). Jobs per
second and worker/Postgres CPU per job (µs), medians.

Writes ``bench/results/events-*.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from . import env
from .flow import APP, _backends, _fill, _fresh, _left, _pgqueue, _stop
from .measure import CpuMeter, TreeMeter

SIDES = ("off", "on, nobody listening", "on, a receiver listening")


def _receiver(code: Path, schema: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "PYTHONPATH": str(code), "PGQUEUE_DSN": env.database_dsn(),
                   "PGQUEUE_SCHEMA": schema}
    return subprocess.Popen([sys.executable, "-m", "pgqueue", "events", "--json"],
                            env=environment, cwd=code, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def drain(db: psycopg.Connection[Any], code: Path, schema: str, jobs: int,
          side: str) -> dict[str, float]:
    _fresh(db, code, schema)
    _fill(db, schema, "noop", jobs)
    receiver = None
    if side == SIDES[2]:
        receiver = _receiver(code, schema)
        listeners = sql.SQL("SELECT count(*) FROM {}.event_listeners").format(
            sql.Identifier(schema))
        deadline = time.monotonic() + 30
        while not db.execute(listeners).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() > deadline:
                raise RuntimeError("pgqueue events never registered")
            time.sleep(0.05)
    logs = env.RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    args = ["worker", "-A", APP, "-P", "threads", "-c", "100", "-l", "WARNING"]
    if side != SIDES[0]:
        args.append("-E")
    procs = [_pgqueue(code, *args, schema=schema, log=logs / f"events-{schema}.log",
                      background=True)]
    worker_cpu, server_cpu = TreeMeter([p.pid for p in procs]), CpuMeter(lambda: _backends(db))
    try:
        while (left := _left(db, schema)) >= jobs:
            time.sleep(0.005)
        started, first = time.perf_counter(), left
        worker_cpu.start()
        server_cpu.start()
        while _left(db, schema) > 0:
            time.sleep(0.005)
            server_cpu.sample()
        seconds = time.perf_counter() - started
        return {"rate": first / seconds, "worker_cpu_us": worker_cpu.stop() / first * 1e6,
                "server_cpu_us": server_cpu.stop() / first * 1e6}
    finally:
        _stop(procs)
        if receiver is not None:
            receiver.terminate()
            receiver.wait(30)


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000)
    options = parser.parse_args(argv)
    env.ensure_database()
    this = env.REPO_ROOT
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    with psycopg.connect(env.database_dsn(harness=True), autocommit=True) as db:
        for round_ in range(options.repeats):
            order = SIDES if round_ % 2 == 0 else tuple(reversed(SIDES))
            for side in order:
                run = drain(db, this, "bench_events", options.jobs, side)
                runs[side].append(run)
                env.log(f"drain, events {side}: {run['rate']:.0f} jobs/s, worker "
                        f"{run['worker_cpu_us']:.0f} µs/job, Postgres "
                        f"{run['server_cpu_us']:.0f} µs/job")
    out = {"commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=this,
                                    capture_output=True, text=True).stdout.strip(),
           "jobs": options.jobs, "runs": runs,
           "medians": {side: medians(r) for side, r in runs.items()}}
    env.RESULTS_DIR.mkdir(exist_ok=True)
    path = env.RESULTS_DIR / f"events-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"| events ({options.jobs} no-op jobs, 1 worker -P threads -c 100, median of "
          f"{options.repeats}) | jobs/s | worker µs/job | Postgres µs/job |")
    print("|---|---:|---:|---:|")
    for side, m in out["medians"].items():
        print(f"| {side} | {m['rate']:.0f} | {m['worker_cpu_us']:.0f} | "
              f"{m['server_cpu_us']:.0f} |")
    print(f"\n{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
