"""Flow-control checks (``python -m bench.flow``), the two figures of issue 16:

1. **Unlimited drain, A/B**: the drain rate of a queue with no limit, with the limiter
   code present and without it, taking turns, ``--repeats`` each, one ``pgqueue worker
   -P threads -c 100`` per run. Without it is, by default, this checkout's worker with
   the claim as it was before flow control (``bench/apps/pgqueue_ungated.py``, on a
   schema stripped of migration 0007: :func:`strip_flow_control`); ``--baseline PATH``
   runs another checkout's code instead. Each side migrates its own schema; the jobs are
   inserted by the same plain SQL for both.
2. **A queue limited to 200/s** (``--rate``) for ``--seconds`` (60) with 3 worker
   processes: the starts counted from ``results.started_at`` over the window, the rate
   they make, and the most starts in any 1-second window.

Writes ``bench/results/flow-*.json`` and prints a small table.
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

QUEUE = "default"


def _pgqueue(code: Path, *args: str, schema: str, log: Path | None = None,
             background: bool = False) -> subprocess.Popen[bytes] | None:
    environment = {**os.environ, "PYTHONPATH": str(code), "BENCH_DSN": env.database_dsn(),
                   "BENCH_PGQ_SCHEMA": schema, "PGQUEUE_SCHEMA": schema}
    command = [sys.executable, "-m", "pgqueue", *args]
    if background:
        out = log.open("w") if log else subprocess.DEVNULL
        return subprocess.Popen(command, env=environment, cwd=code, stdout=out,
                                stderr=subprocess.STDOUT)
    subprocess.run(command, env=environment, cwd=code, check=True, capture_output=True)
    return None


def _fresh(db: psycopg.Connection[Any], code: Path, schema: str) -> None:
    db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    _pgqueue(code, "migrate", "--dsn", env.database_dsn(), "--schema", schema, schema=schema)


def _fill(db: psycopg.Connection[Any], schema: str, task: str, n: int) -> None:
    db.execute(sql.SQL(
        "INSERT INTO {}.jobs (id, queue, task, ignore_result)"
        " SELECT gen_random_uuid(), %s, %s, %s FROM generate_series(1, %s)").format(
        sql.Identifier(schema)), [QUEUE, task, task == "noop", n])
    db.execute(sql.SQL("ANALYZE {}.jobs").format(sql.Identifier(schema)))


def _left(db: psycopg.Connection[Any], schema: str) -> int:
    return int(db.execute(sql.SQL("SELECT count(*) FROM {}.jobs").format(
        sql.Identifier(schema))).fetchone()[0])


APP = "bench.apps.pgqueue_app:app"
#: The bench-only baseline: the claim before flow control (see the module doc).
UNGATED_APP = "bench.apps.pgqueue_ungated:app"


def strip_flow_control(db: psycopg.Connection[Any], schema: str) -> None:
    """Take migration 0007's column out of ``jobs`` in ``schema`` (its two indexes go
    with it), so that the baseline's writes are as before. ``flow_limits`` stays: the
    worker's start-up check looks for it, and the baseline never reads it."""
    db.execute(sql.SQL("ALTER TABLE {}.jobs DROP COLUMN concurrency_key").format(
        sql.Identifier(schema)))


def _workers(code: Path, schema: str, count: int, concurrency: int,
             app: str = APP) -> list[Any]:
    logs = env.RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return [_pgqueue(code, "worker", "-A", app, "-P", "threads",
                     "-c", str(concurrency), "-l", "WARNING", schema=schema,
                     log=logs / f"flow-{schema}-{i}.log", background=True)
            for i in range(count)]


def _stop(procs: list[Any]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(60)


def drain(db: psycopg.Connection[Any], code: Path, schema: str, jobs: int,
          ungated: bool = False) -> float:
    """Jobs per second of one worker draining ``jobs`` noops (start-up not counted);
    ``ungated``: the bench-only baseline without flow control."""
    _fresh(db, code, schema)
    if ungated:
        strip_flow_control(db, schema)
    _fill(db, schema, "noop", jobs)
    procs = _workers(code, schema, 1, 100, UNGATED_APP if ungated else APP)
    try:
        while (left := _left(db, schema)) >= jobs:
            time.sleep(0.005)
        started, first = time.perf_counter(), left
        while _left(db, schema) > 0:
            time.sleep(0.005)
        return first / (time.perf_counter() - started)
    finally:
        _stop(procs)


def limited(db: psycopg.Connection[Any], code: Path, schema: str, rate: float,
            seconds: float) -> dict[str, Any]:
    """Three workers on a queue limited to ``rate``/s for ``seconds``."""
    _fresh(db, code, schema)
    _fill(db, schema, "noop_stored", int(rate * (seconds + 15)))
    db.execute(sql.SQL("INSERT INTO {}.flow_limits (scope, name, rate_count, rate_seconds)"
                       " VALUES ('queue', %s, %s, 1)").format(sql.Identifier(schema)),
               [QUEUE, rate])
    procs = _workers(code, schema, 3, 32)
    try:
        results = sql.SQL("SELECT extract(epoch FROM started_at)::float8 FROM {}.results"
                          ).format(sql.Identifier(schema))
        while not db.execute(results).fetchone():
            time.sleep(0.05)
        time.sleep(seconds + 3)
        starts = sorted(r[0] for r in db.execute(results).fetchall())
    finally:
        _stop(procs)
    first = starts[0] + 2  # past start-up: the other workers are ready by then
    window = [s for s in starts if first <= s < first + seconds]
    worst, j = 0, 0
    for i, t in enumerate(window):
        while j < len(window) and window[j] < t + 1:
            j += 1
        worst = max(worst, j - i)
    per_worker = db.execute(sql.SQL("SELECT worker, count(*) FROM {}.results GROUP BY 1"
                                    ).format(sql.Identifier(schema))).fetchall()
    return {"rate": rate, "seconds": seconds, "starts": len(window),
            "per_second": len(window) / seconds, "ratio": len(window) / seconds / rate,
            "worst_1s_window": worst, "workers": len(per_worker)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flow", description=__doc__)
    parser.add_argument("--baseline", type=Path,
                        help="another checkout to run as the A/B drain's baseline (default: "
                             "this one's claim without flow control, bench-only)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--drain-jobs", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--skip-rate", action="store_true")
    options = parser.parse_args(argv)
    env.ensure_database()
    this = env.REPO_ROOT
    out: dict[str, Any] = {"commit": subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=this, capture_output=True,
        text=True).stdout.strip()}
    with psycopg.connect(env.database_dsn(harness=True), autocommit=True) as db:
        if not options.skip_drain:
            runs: dict[str, list[float]] = {"baseline": [], "flow": []}
            for _ in range(options.repeats):
                for side, code in (("baseline", options.baseline or this), ("flow", this)):
                    rate = drain(db, code, f"bench_flow_{side}", options.drain_jobs,
                                 ungated=side == "baseline" and options.baseline is None)
                    runs[side].append(rate)
                    env.log(f"drain {side}: {rate:,.0f}/s")
            medians = {side: statistics.median(r) for side, r in runs.items()}
            # Each flow run against the baseline run just before it: the load of this
            # machine drifts within minutes, and a pair shares it.
            paired = [f / b for f, b in zip(runs["flow"], runs["baseline"], strict=True)]
            out["drain"] = {"baseline": str(options.baseline or "ungated claim (bench-only)"),
                            "runs": runs, "median": medians, "paired": paired,
                            "ratio": statistics.median(paired)}
        if not options.skip_rate:
            out["limited"] = limited(db, this, "bench_flow_rate", options.rate,
                                     options.seconds)
            env.log(f"limited: {out['limited']}")
    env.RESULTS_DIR.mkdir(exist_ok=True)
    path = env.RESULTS_DIR / f"flow-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    if "drain" in out:
        d = out["drain"]
        print(f"| unlimited drain, 1 worker c100 | without flow control ({d['baseline']}) "
              f"{d['median']['baseline']:,.0f}/s | with {d['median']['flow']:,.0f}/s | "
              f"{d['ratio']:.3f}x (median of paired runs: "
              f"{', '.join(f'{r:.2f}' for r in d['paired'])}) |")
    if "limited" in out:
        lim = out["limited"]
        print(f"| queue limited to {lim['rate']:g}/s, 3 workers, {lim['seconds']:g} s | "
              f"{lim['per_second']:.1f}/s ({lim['ratio']:.3f}x) | worst 1 s window "
              f"{lim['worst_1s_window']} |")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
