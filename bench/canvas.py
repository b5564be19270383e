"""Canvas figures of issue 15, for pgqueue, on real worker processes.

    python -m bench.canvas [--quick] [--members 10000] [--steps 200] [--workers 2]

- chord: a chord of N no-op members whose body sums them, from ``apply_async`` to the
  body's result, against N plain jobs (results stored) sent with ``apply_many`` and
  drained by the same workers (time from the send to the last result);
- chain: a chain of S steps, seconds per step, against the enqueue-to-start latency of
  a single job (median of 50);
- group: N jobs sent as ``group(...).apply_async()`` (the signatures built in the timed
  part) against ``apply_many`` of the same jobs, enqueue rate only (no worker running),
  the medians of interleaved rounds (``--rounds``); then the CPU each send costs, the
  client's thread and its server process (where /proc shows it), which other work on a
  shared machine hardly moves; ``--group-only`` runs this figure alone.

Each figure is printed with its ratio to the pgqueue baseline the issue names, then side
by side with Celery+Redis (Redis as broker and result backend, ``bench/canvas_celery.py``
in the peers' virtualenv, the same number of worker processes, prefork pool).
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

from bench import env

#: ``BENCH_CANVAS_SCHEMA`` overrides it (two checkouts compared, each on its own schema).
SCHEMA = os.environ.get("BENCH_CANVAS_SCHEMA", "bench_canvas")


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
    parser.add_argument("--rounds", type=int, default=9,
                        help="interleaved rounds of group vs apply_many")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--celery-concurrency", type=int, default=4)
    parser.add_argument("--celery-timeout", type=int, default=600,
                        help="seconds to wait for Celery's chord body")
    parser.add_argument("--no-celery", action="store_true",
                        help="skip the Celery+Redis figures")
    parser.add_argument("--group-only", action="store_true",
                        help="only the group figure: no workers, no Celery (to compare "
                             "two checkouts, run alternately)")
    args = parser.parse_args(argv)
    members = 1_000 if args.quick else args.members
    steps = 50 if args.quick else args.steps
    rounds = 3 if args.quick else max(1, args.rounds)
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
    mine: dict[str, float] = {}

    # group vs apply_many: enqueue only, interleaved A/B rounds (the machine may be
    # shared: each round runs both, in alternating order; the figure is the medians')
    _reset(dsn)
    app.send_task("one")  # warm the pool
    times: dict[str, list[float]] = {"many": [], "group": []}
    for round_ in range(rounds):
        for kind in ("many", "group") if round_ % 2 == 0 else ("group", "many"):
            _reset(dsn)
            started = time.perf_counter()
            if kind == "many":
                one.apply_many([() for _ in range(members)])
            else:
                group(one.s() for _ in range(members)).apply_async()
            times[kind].append(time.perf_counter() - started)
    many, grouped = statistics.median(times["many"]), statistics.median(times["group"])
    mine["group_enqueue"] = grouped
    rows.append((f"group of {members:,}: enqueue /s (median of {rounds} A/B rounds)",
                 f"{members / grouped:,.0f}",
                 f"{many / grouped:.2f}× apply_many's {members / many:,.0f}/s"))
    cpu = _group_cpu(dsn, one, group, members, rounds)
    if cpu is not None:
        rows.append((f"group of {members:,}: CPU ms per send, client + its server "
                     f"process (mean of {rounds})", f"{cpu['group']:.1f}",
                     f"{cpu['many'] / cpu['group']:.2f}× apply_many's {cpu['many']:.1f}"))
    _reset(dsn)
    if args.group_only:
        print("| figure | pgqueue | against pgqueue's own |\n|---|---|---|\n"
              + "\n".join(f"| {' | '.join(row)} |" for row in rows))
        print(f"rounds, ms: apply_many {_ms(times['many'])}; group {_ms(times['group'])}; "
              f"load average {os.getloadavg()[0]:.1f}")
        app.close()
        return 0

    procs = _workers(args.workers, args.concurrency)
    try:
        one.delay().get(timeout=60)  # the workers are up
        # single job latency: enqueue -> result of a no-op (median of 50)
        latencies = []
        for _ in range(50):
            sent = time.perf_counter()
            one.delay().get(timeout=60)
            latencies.append(time.perf_counter() - sent)
        p50 = mine["single_p50"] = statistics.median(latencies)
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
        mine["chord"] = chorded
        rows.append((f"chord of {members:,} no-ops, summed: members /s",
                     f"{members / chorded:,.0f}",
                     f"{chorded / plain:.2f}× the cost per job of a plain drain "
                     f"({members / plain:,.0f}/s)"))
        _reset(dsn)
        started = time.perf_counter()
        result = chain(one.s() for _ in range(steps)).apply_async()
        assert result.get(timeout=600) == 1
        per_step = (time.perf_counter() - started) / steps
        mine["chain_step"] = per_step
        rows.append((f"chain of {steps} steps: ms per step", f"{per_step * 1000:.2f}",
                     f"{per_step / p50:.2f}× a single job's send-to-result p50 "
                     f"({p50 * 1000:.2f} ms)"))
    finally:
        _stop(procs)
        app.close()
    print(f"| figure | pgqueue ({args.workers} workers, threads -c {args.concurrency}) "
          "| against pgqueue's own |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(row)} |")
    if not args.no_celery:
        theirs = _celery(members, steps, args.workers, args.celery_concurrency,
                         args.celery_timeout)
        print()
        print(f"| figure | pgqueue | celery+redis ({args.workers} workers, prefork "
              f"-c {args.celery_concurrency}) | pgqueue / celery |")
        print("|---|---|---|---|")
        if "error" in theirs:
            print(f"| celery+redis | | failed: {theirs['error']} | |")
            return 0
        if "chord" in theirs:
            print(f"| chord of {members:,}, summed: members /s | "
                  f"{members / mine['chord']:,.0f} | {members / theirs['chord']:,.0f} | "
                  f"{theirs['chord'] / mine['chord']:.2f}× |")
        else:
            print(f"| chord of {members:,}, summed: members /s | "
                  f"{members / mine['chord']:,.0f} | did not finish: "
                  f"{theirs.get('chord_error')} | |")
        print(f"| chain of {steps}: ms per step | {mine['chain_step'] * 1000:.2f} | "
              f"{theirs['chain_step'] * 1000:.2f} | "
              f"{theirs['chain_step'] / mine['chain_step']:.2f}× faster |")
        print(f"| group of {members:,}: enqueue /s | {members / mine['group_enqueue']:,.0f} | "
              f"{members / theirs['group_enqueue']:,.0f} | "
              f"{theirs['group_enqueue'] / mine['group_enqueue']:.2f}× |")
        print(f"| single job, send to result p50 ms | {mine['single_p50'] * 1000:.2f} | "
              f"{theirs['single_p50'] * 1000:.2f} | |")
    return 0


def _group_cpu(dsn: str, one: Any, group: Any, members: int,
               rounds: int) -> dict[str, float] | None:
    """CPU time of a send, this thread's and its server process's (read from /proc: a
    server on this machine, readable by this user), apply_many and group interleaved on
    one connection: unlike wall time, hardly moved by other work on a shared machine.
    None where the server process cannot be read."""
    tick = os.sysconf("SC_CLK_TCK")
    spent = {"many": 0.0, "group": 0.0}
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        stat = f"/proc/{row[0] if row else 0}/stat"

        def server() -> float:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick

        try:
            server()
        except OSError:
            return None
        for round_ in range(rounds):
            for kind in ("many", "group") if round_ % 2 == 0 else ("group", "many"):
                _reset(dsn)
                before, mine = server(), time.thread_time()
                if kind == "many":
                    one.apply_many([() for _ in range(members)], connection=conn)
                else:
                    group(one.s() for _ in range(members)).apply_async(connection=conn)
                spent[kind] += time.thread_time() - mine + server() - before
    return {kind: total / rounds * 1000 for kind, total in spent.items()}


def _ms(seconds: list[float]) -> str:
    return " ".join(f"{s * 1000:.0f}" for s in seconds)


def _celery(members: int, steps: int, processes: int, concurrency: int,
            timeout: int) -> dict[str, Any]:
    """Run bench.canvas_celery in the peers' interpreter; its figures, or an error."""
    try:
        python = env.ensure_peers_venv()
        env.ensure_redis()
    except Exception as error:  # no Redis, no network for the peers
        return {"error": f"{type(error).__name__}: {error}"}
    environ = {**os.environ, "PYTHONPATH": str(env.REPO_ROOT)}
    run = subprocess.run([str(python), "-m", "bench.canvas_celery", str(members), str(steps),
                          str(processes), str(concurrency), str(timeout)], env=environ,
                         cwd=env.REPO_ROOT,
                         capture_output=True, text=True, timeout=3600)
    last = [line for line in run.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if not last:
        return {"error": (run.stderr.strip().splitlines() or ["no output"])[-1]}
    figures: dict[str, Any] = json.loads(last[-1].split(" ", 1)[1])
    return figures


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
