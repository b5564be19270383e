"""The cost of task events (``python -m bench.events``), issue 17 point 3.

One ``pgqueue worker -P threads -c 100`` drains ``--jobs`` no-op jobs (start-up not
counted), three ways, taking turns, ``--repeats`` rounds: events off; ``-E`` with nobody
listening (published only while a receiver announces itself, pgqueue.event_listeners);
``-E`` with a ``pgqueue events --json`` running (its output thrown away). Jobs per
second, and CPU per job (µs) of the worker, of its Postgres sessions, of the receiver
process and of the receiver's Postgres session; medians.

``--baseline PATH`` runs another checkout (``/work/main``, say) the same way, each of its
drains just before this checkout's of the same kind (the order flips every round), and
adds the median of the paired ratios: the load of a shared machine drifts within
minutes, and a pair shares it. Each checkout migrates its own schema and runs its own
worker and receiver.

Only the sessions named ``pgqueue:<schema>:...`` count as Postgres CPU, so another
bench in the same database is not measured. The load average before and after is
printed: the figures mean little without it.

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
from .flow import APP, _fill, _fresh, _left, _pgqueue, _stop
from .measure import CpuMeter, TreeMeter, process_cpu

SIDES = ("off", "on, nobody listening", "on, a receiver listening")
FIGURES = (("rate", "jobs/s"), ("worker_cpu_us", "worker µs/job"),
           ("server_cpu_us", "its Postgres µs/job"), ("receiver_cpu_us", "receiver µs/job"),
           ("receiver_server_cpu_us", "receiver's Postgres µs/job"))


def _receiver(code: Path, schema: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "PYTHONPATH": str(code), "PGQUEUE_DSN": env.database_dsn(),
                   "PGQUEUE_SCHEMA": schema}
    return subprocess.Popen([sys.executable, "-m", "pgqueue", "events", "--json"],
                            env=environment, cwd=code, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _sessions(db: psycopg.Connection[Any], schema: str, receiver: bool) -> list[int]:
    """The server processes of ``schema``'s pgqueue sessions: the receiver's
    (``pgqueue:<schema>:events``) or all the others."""
    name = f"pgqueue:{schema}:events"
    return [r[0] for r in db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name LIKE %s AND (application_name = %s) = %s",
        [f"pgqueue:{schema}:%", name, receiver]).fetchall()]


def drain(db: psycopg.Connection[Any], code: Path, schema: str, jobs: int,
          side: str) -> dict[str, float]:
    try:
        _fresh(db, code, schema)
    except subprocess.CalledProcessError as error:  # a shared server: once more, saying why
        env.log(f"migrate failed, once more in 5 s: {error.stderr!r}"[:2000])
        time.sleep(5)
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
    worker_cpu = TreeMeter([p.pid for p in procs])
    server_cpu = CpuMeter(lambda: _sessions(db, schema, receiver=False))
    receiver_server_cpu = CpuMeter(lambda: _sessions(db, schema, receiver=True))
    try:
        while (left := _left(db, schema)) >= jobs:
            time.sleep(0.005)
        started, first = time.perf_counter(), left
        receiver_before = process_cpu(receiver.pid) if receiver else 0.0
        for meter in (worker_cpu, server_cpu, receiver_server_cpu):
            meter.start()
        while _left(db, schema) > 0:
            time.sleep(0.005)
            server_cpu.sample()
            receiver_server_cpu.sample()
        seconds = time.perf_counter() - started
        # The receiver is still handling the last events: wait until its CPU settles.
        receiver_cpu = 0.0
        if receiver is not None:
            previous, receiver_cpu = -1.0, process_cpu(receiver.pid)
            while receiver_cpu != previous:
                time.sleep(0.1)
                previous, receiver_cpu = receiver_cpu, process_cpu(receiver.pid)
            receiver_cpu -= receiver_before
        return {"rate": first / seconds, "worker_cpu_us": worker_cpu.stop() / first * 1e6,
                "server_cpu_us": server_cpu.stop() / first * 1e6,
                "receiver_cpu_us": receiver_cpu / first * 1e6,
                "receiver_server_cpu_us": receiver_server_cpu.stop() / first * 1e6}
    finally:
        _stop(procs)
        if receiver is not None:
            receiver.terminate()
            receiver.wait(30)


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def paired(runs: list[dict[str, float]], baseline: list[dict[str, float]]
           ) -> dict[str, float]:
    """Per figure, the median of this run over the baseline run of the same pair."""
    out = {}
    for key in runs[0]:
        ratios = [r[key] / b[key] for r, b in zip(runs, baseline, strict=True) if b[key]]
        out[key] = statistics.median(ratios) if ratios else float("nan")
    return out


def _load() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


def _table(out: dict[str, Any]) -> str:
    ab = "baseline" in out
    head = [f"| events ({out['jobs']} no-op jobs, 1 worker -P threads -c 100, median of "
            f"{out['repeats']}{', baseline → this (median paired ratio)' if ab else ''}) |"
            + "".join(f" {title} |" for _, title in FIGURES),
            "|---|" + "---:|" * len(FIGURES)]
    rows = []
    for side in SIDES:
        if side not in out["medians"]:
            continue
        this = out["medians"][side]
        cells = []
        for key, _ in FIGURES:
            if ab:
                base = out["baseline"]["medians"][side][key]
                ratio = out["ratios"][side][key]
                shown = f"{ratio:.2f}x" if ratio == ratio else "–"  # NaN: nothing to compare
                cells.append(f"{base:,.0f} → {this[key]:,.0f} ({shown})")
            else:
                cells.append(f"{this[key]:,.0f}")
        rows.append(f"| {side} | " + " | ".join(cells) + " |")
    return "\n".join(head + rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--baseline", type=Path, metavar="PATH",
                        help="another checkout to run the same way, paired with this one")
    parser.add_argument("--sides", default="0,1,2", metavar="LIST",
                        help="which of 0 (off), 1 (on, nobody listening), 2 (on, a "
                             "receiver listening) to run; default all")
    options = parser.parse_args(argv)
    try:
        sides = [SIDES[int(n)] for n in options.sides.split(",")]
    except (ValueError, IndexError):
        parser.error(f"--sides: a comma-separated list of 0, 1 and 2, not {options.sides!r}")
    env.ensure_database()
    this = env.REPO_ROOT
    codes = {"this": this}
    if options.baseline is not None:
        if not (options.baseline / "pgqueue" / "__init__.py").exists():
            parser.error(f"--baseline {options.baseline}: no pgqueue checkout there")
        codes = {"baseline": options.baseline.resolve(), "this": this}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {side: [] for side in sides} for name in codes}
    load_before = _load()
    env.log(f"load average {load_before}")
    with psycopg.connect(env.database_dsn(harness=True), autocommit=True) as db:
        for round_ in range(options.repeats):
            order = sides if round_ % 2 == 0 else list(reversed(sides))
            for side in order:
                names = list(codes) if round_ % 2 == 0 else list(reversed(codes))
                for name in names:
                    run = drain(db, codes[name], f"bench_events_{name}", options.jobs, side)
                    runs[name][side].append(run)
                    env.log(f"{name}, events {side}: {run['rate']:.0f} jobs/s, "
                            + ", ".join(f"{title} {run[key]:.0f}" for key, title in FIGURES[1:]))
    out: dict[str, Any] = {
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=this,
                                 capture_output=True, text=True).stdout.strip(),
        "jobs": options.jobs, "repeats": options.repeats,
        "load_average": {"before": load_before, "after": _load()},
        "runs": runs["this"], "medians": {s: medians(r) for s, r in runs["this"].items()}}
    if "baseline" in codes:
        out["baseline"] = {"path": str(codes["baseline"]), "runs": runs["baseline"],
                           "medians": {s: medians(r) for s, r in runs["baseline"].items()}}
        out["ratios"] = {s: paired(runs["this"][s], runs["baseline"][s]) for s in sides}
    env.RESULTS_DIR.mkdir(exist_ok=True)
    path = env.RESULTS_DIR / f"events-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(_table(out))
    print(f"\nload average (1, 5, 15 min): before {load_before}, after "
          f"{out['load_average']['after']}\n{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
