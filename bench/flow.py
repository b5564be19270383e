"""Flow-control checks (``python -m bench.flow``), the figures of issue 16:

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
3. **Enqueue→start latency, keyed and plain** (``--latency-jobs`` each, sent one at a
   time to one idle worker): ``results.started_at - created_at``, medians and the
   slowest; a job with a free ``concurrency_key`` should start as fast as a plain one.

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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from . import env
from .measure import CpuMeter, TreeMeter, observe_drain

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


def _backends(db: psycopg.Connection[Any]) -> list[int]:
    """The workers' server processes: every session of the bench database but the
    harness's own."""
    return [r[0] for r in db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND coalesce(application_name, '') <> %s", [env.HARNESS_APPNAME]).fetchall()]


def drain(db: psycopg.Connection[Any], code: Path, schema: str, jobs: int,
          ungated: bool = False, task: str = "noop", keep_column: bool = False,
          strip: Callable[[psycopg.Connection[Any], str], None] | None = None
          ) -> dict[str, float]:
    """One worker draining ``jobs`` jobs of ``task`` (:func:`time_drain`): jobs per
    second, and worker and Postgres CPU per job (µs; steadier than the rate on a loaded
    machine). ``ungated``: the bench-only baseline without flow control; ``strip``
    changes the fresh schema before the fill (a bench-only baseline's)."""
    _fresh(db, code, schema)
    if ungated and not keep_column:
        strip_flow_control(db, schema)
    if strip is not None:
        strip(db, schema)
    _fill(db, schema, task, jobs)
    procs = _workers(code, schema, 1, 100, UNGATED_APP if ungated else APP)
    try:
        return time_drain(db, schema, jobs, procs)
    finally:
        _stop(procs)


def time_drain(db: psycopg.Connection[Any], schema: str, jobs: int, procs: list[Any],
               timeout: float = 720.0) -> dict[str, float]:
    """The clock of :func:`drain` (and bench.scale's history A/B): ``procs``, started on a
    queue of ``jobs`` jobs, emptying it, polled every 5 ms from the harness's connection
    (start-up not counted; a worker that exits, or ``timeout`` seconds, ends it with an
    error). Jobs per second, and worker and Postgres CPU per job in µs."""
    def alive() -> None:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a worker on {schema} exited with {proc.returncode}: "
                                   f"see {env.RESULTS_DIR / 'logs'}")

    result = observe_drain(jobs, lambda: _left(db, schema), TreeMeter([p.pid for p in procs]),
                           CpuMeter(lambda: _backends(db)), alive, timeout, every=0.005)
    figures = result.as_dict()
    return {figure: figures[figure] for figure in ("rate", "worker_cpu_us", "server_cpu_us")}


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


def latency(db: psycopg.Connection[Any], code: Path, schema: str,
            jobs: int) -> dict[str, Any]:
    """Enqueue→start of ``jobs`` plain and ``jobs`` keyed jobs (one key each, free),
    sent one at a time to one idle worker, in turns."""
    _fresh(db, code, schema)
    procs = _workers(code, schema, 1, 4)
    send = sql.SQL("INSERT INTO {}.jobs (id, queue, task, options)"
                   " VALUES (%s, %s, %s, jsonb_strip_nulls(jsonb_build_object("
                   "'concurrency_key', %s::text)))").format(sql.Identifier(schema))
    started = sql.SQL("SELECT extract(epoch FROM started_at - created_at)::float8"
                      " FROM {}.results WHERE id = %s").format(sql.Identifier(schema))
    seconds: dict[str, list[float]] = {"plain": [], "keyed": []}
    try:
        time.sleep(3)  # the worker is up and idle
        for i in range(jobs):
            for kind in ("plain", "keyed"):
                job_id = str(uuid.uuid4())
                db.execute(send, [job_id, QUEUE, "noop_stored",
                                  f"k{i}" if kind == "keyed" else None])
                db.execute("SELECT pg_notify(%s, %s)", [f"{schema}.jobs", QUEUE])
                deadline = time.monotonic() + 10
                while not (row := db.execute(started, [job_id]).fetchone()):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"a {kind} job did not start in 10 s")
                    time.sleep(0.002)
                seconds[kind].append(row[0])
                time.sleep(0.05)  # the worker is idle again
    finally:
        _stop(procs)
    return {kind: {"median_ms": statistics.median(s) * 1000, "max_ms": max(s) * 1000}
            for kind, s in seconds.items()}


def describe(run: dict[str, float]) -> str:
    return (f"{run['rate']:,.0f}/s, worker {run['worker_cpu_us']:.0f} µs/job, "
            f"Postgres {run['server_cpu_us']:.0f} µs/job")


def compare(runs: list[dict[str, float]], baseline: list[dict[str, float]]
            ) -> dict[str, Any]:
    """Medians of each figure, and of each run over the baseline run just before it:
    the load of this machine drifts within minutes, and a pair shares it."""
    out: dict[str, Any] = {}
    for figure in ("rate", "worker_cpu_us", "server_cpu_us"):
        paired = [r[figure] / b[figure] for r, b in zip(runs, baseline, strict=True)
                  if b[figure]]
        out[figure] = {"median": statistics.median(r[figure] for r in runs),
                       "baseline_median": statistics.median(b[figure] for b in baseline),
                       "paired": paired,
                       "ratio": statistics.median(paired) if paired else float("nan")}
    return out


def table_row(title: str, figures: dict[str, Any]) -> str:
    """``| title | rate | worker CPU | Postgres CPU |``, each as this / baseline."""
    cells = []
    for figure, unit in (("rate", "/s"), ("worker_cpu_us", " µs"), ("server_cpu_us", " µs")):
        f = figures[figure]
        cells.append(f"{f['baseline_median']:,.0f}{unit} → {f['median']:,.0f}{unit}: "
                     f"**{f['ratio']:.3f}x** ({', '.join(f'{r:.2f}' for r in f['paired'])})")
    return f"| {title} | " + " | ".join(cells) + " |"


TABLE_HEAD = ("| A/B (baseline → this; median of paired ratios, each pair) | drain rate | "
              "worker CPU per job | Postgres CPU per job |\n|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flow", description=__doc__)
    parser.add_argument("--baseline", type=Path,
                        help="another checkout to run as the A/B drain's baseline (default: "
                             "this one's claim without flow control, bench-only)")
    parser.add_argument("--keep-column", action="store_true",
                        help="the ungated baseline keeps migration 0007's concurrency_key "
                             "column and indexes: the A/B then measures the worker's code")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--drain-jobs", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--skip-rate", action="store_true")
    parser.add_argument("--latency-jobs", type=int, default=100)
    parser.add_argument("--skip-latency", action="store_true")
    options = parser.parse_args(argv)
    env.ensure_database()
    this = env.REPO_ROOT
    out: dict[str, Any] = {"commit": subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=this, capture_output=True,
        text=True).stdout.strip()}
    with psycopg.connect(env.database_dsn(harness=True), autocommit=True) as db:
        if not options.skip_drain:
            runs: dict[str, list[dict[str, float]]] = {"baseline": [], "flow": []}
            for _ in range(options.repeats):
                for side, code in (("baseline", options.baseline or this), ("flow", this)):
                    run = drain(db, code, f"bench_flow_{side}", options.drain_jobs,
                                ungated=side == "baseline" and options.baseline is None,
                                keep_column=options.keep_column)
                    runs[side].append(run)
                    env.log(f"drain {side}: {describe(run)}")
            baseline = str(options.baseline or "ungated claim (bench-only)" + (
                ", concurrency_key column kept" if options.keep_column else ""))
            out["drain"] = {"baseline": baseline,
                            "runs": runs, **compare(runs["flow"], runs["baseline"])}
        if not options.skip_rate:
            out["limited"] = limited(db, this, "bench_flow_rate", options.rate,
                                     options.seconds)
            env.log(f"limited: {out['limited']}")
        if not options.skip_latency:
            out["latency"] = latency(db, this, "bench_flow_latency", options.latency_jobs)
            env.log(f"latency: {out['latency']}")
    env.RESULTS_DIR.mkdir(exist_ok=True)
    path = env.RESULTS_DIR / f"flow-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    if "drain" in out:
        print(TABLE_HEAD)
        print(table_row(f"unlimited drain, 1 worker c100: without flow control "
                        f"({out['drain']['baseline']}) → with", out["drain"]))
    if "limited" in out:
        lim = out["limited"]
        print(f"| queue limited to {lim['rate']:g}/s, 3 workers, {lim['seconds']:g} s | "
              f"{lim['per_second']:.1f}/s ({lim['ratio']:.3f}x) | worst 1 s window "
              f"{lim['worst_1s_window']} |")
    if "latency" in out:
        lat = out["latency"]
        print(f"| enqueue→start, 1 idle worker | plain {lat['plain']['median_ms']:.1f} ms "
              f"(max {lat['plain']['max_ms']:.0f}) | keyed {lat['keyed']['median_ms']:.1f} ms "
              f"(max {lat['keyed']['max_ms']:.0f}) |")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
