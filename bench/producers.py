"""``python -m bench --producers``: many producers at once, as a web app sends.

16 processes each call ``noop.delay()`` in a loop for the same seconds; the figures are
jobs/s over all of them and p50/p99 of one call. In the same run, pgbench runs pgqueue's
own enqueue statement (the script of the reference row, ``job_insert_one`` with NOTIFY)
with 16 clients: the ceiling of any client sending the same rows one commit each. The
target is pgqueue ≥ 0.8 × pgbench.

Rows, taking turns within each repeat so that load from elsewhere spreads over all:

* durable (the default), 16 processes;
* ``producer_durable=False`` (synchronous_commit=off: commits return before the WAL
  flush), 16 processes, against pgbench with ``-c synchronous_commit=off``;
* 16 threads of one process (``producer_pool_size=16``);
* ``transaction_pooling=True`` on a direct connection: what giving up prepared
  statements costs, without a pooler's own hop;
* through PgBouncer when ``BENCH_PGBOUNCER_DSN`` names one in front of the bench server
  (transaction mode, database ``bench``);
* Celery on Redis and on RabbitMQ: 16 processes of the peers' interpreter calling
  ``noop.delay()`` the same way (``bench.producers_celery``), unless ``--systems`` leaves
  them out; RabbitMQ is skipped with a line when no broker answers. Their "pgqueue ÷ row"
  column is the durable pgqueue row's jobs/s over theirs.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from . import env, reference
from .measure import median, percentile
from .scenario import RESULT_PREFIX

PRODUCERS = 16
#: How many call times each producer sends back (evenly spread), for the percentiles.
SAMPLES_PER_PRODUCER = 5_000


def send_loop(delay: Callable[[], Any], ready: Any, seconds: float) -> list[float]:
    ready.wait(300)  # every producer is connected and warm: all start together
    times: list[float] = []
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            return times
        delay()
        times.append(time.perf_counter() - t0)


def cpu_seconds() -> float:
    """CPU seconds of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _app(dsn: str, settings: dict[str, Any]) -> tuple[Any, Callable[[], Any]]:
    from pgqueue import App

    app = App("bench-producer", dsn=dsn, schema=reference.PGQUEUE_SCHEMA, **settings)

    @app.task(name="noop", ignore_result=True)
    def noop() -> None: ...

    # The pool is open and the statement built before the clock starts. A server shared
    # with other work may be out of connections for a moment: try for a while.
    deadline = time.monotonic() + 60
    while True:
        try:
            noop.delay()
            return app, noop.delay
        except Exception:
            if time.monotonic() > deadline:
                raise
            app.close()
            time.sleep(0.5)


def thin(times: list[float]) -> list[float]:
    step = max(1, len(times) // SAMPLES_PER_PRODUCER)
    return times[::step]


def _producer(dsn: str, settings: dict[str, Any], ready: Any, seconds: float,
              out: Any) -> None:
    try:
        app, delay = _app(dsn, settings)
    except Exception as error:
        ready.abort()
        out.put(error)
        raise
    cpu = cpu_seconds()
    times = send_loop(delay, ready, seconds)
    cpu = cpu_seconds() - cpu  # includes the wait for the start: a sleep, next to nothing
    app.close()
    out.put((len(times), thin(times), cpu))


def _processes(dsn: str, settings: dict[str, Any], seconds: float) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    ready = ctx.Barrier(PRODUCERS)
    procs = [ctx.Process(target=_producer, args=(dsn, settings, ready, seconds, out))
             for _ in range(PRODUCERS)]
    for p in procs:
        p.start()
    got = [out.get(timeout=300 + seconds) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [e for e in got if isinstance(e, Exception)]
    if errors:
        raise SystemExit(f"bench --producers: a producer could not start: {errors[0]}")
    return call_figures(got, seconds, sum(cpu for *_, cpu in got))


def _threads(dsn: str, settings: dict[str, Any], seconds: float) -> dict[str, float]:
    app, delay = _app(dsn, {**settings, "producer_pool_size": PRODUCERS})
    ready = threading.Barrier(PRODUCERS)
    got: list[tuple[int, list[float], float]] = []

    def one() -> None:
        times = send_loop(delay, ready, seconds)
        got.append((len(times), thin(times), 0.0))

    cpu = cpu_seconds()
    threads = [threading.Thread(target=one) for _ in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = cpu_seconds() - cpu
    app.close()
    return call_figures(got, seconds, cpu)


def call_figures(got: list[tuple[int, list[float], float]], seconds: float,
             cpu: float) -> dict[str, float]:
    samples = [s * 1000 for _, times, _ in got for s in times]
    jobs = sum(n for n, *_ in got)
    return {"jobs_per_s": jobs / seconds, "p50_ms": percentile(samples, 50),
            "p99_ms": percentile(samples, 99), "client_cpu_us": cpu / max(1, jobs) * 1e6}


def _truncate() -> None:
    with psycopg.connect(env.database_dsn(harness=True), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {reference.PGQUEUE_SCHEMA}.jobs")
        conn.execute("CHECKPOINT")  # each run starts without the last one's dirty pages


#: The Celery rows (issue 18: "against Celery+Redis/RabbitMQ"): row -> bench system.
CELERY_ROWS = {"celery_redis_processes": "celery",
               "celery_rabbitmq_processes": "celery-rabbitmq"}


def _celery_systems(wanted: list[str] | None) -> list[str]:
    """The Celery systems to run: those ``--systems`` names (all by default) whose broker
    answers; RabbitMQ is skipped with a line when none does, as in the comparison."""
    from .cli import ready

    return ready([s for s in CELERY_ROWS.values() if wanted is None or s in wanted],
                 what="producers: ")


def _celery(system: str, seconds: float) -> dict[str, Any]:
    """16 Celery producer processes (``bench.producers_celery``, in the peers' virtualenv)."""
    argv = [str(env.peers_python()), "-m", "bench.producers_celery", system, str(seconds)]
    proc = subprocess.run(argv, env=env.subprocess_env(), cwd=env.REPO_ROOT,
                          capture_output=True, text=True, timeout=600 + seconds)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX):]) if lines else {
        "error": f"no result (exit {proc.returncode})"}
    if "error" in result:
        env.log(f"producers: {system} failed: {result['error']}\n{proc.stderr[-3000:]}")
    return result


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the runs that gave figures; the first error when none did."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[0]["error"]}
    return {key: median([r[key] for r in good]) for key in good[0]}


def main(quick: bool = False, repeats: int | None = None,
         systems: list[str] | None = None) -> int:
    """``systems``: the ``--systems`` given, which choose the Celery rows (pgqueue's and
    pgbench's rows always run); None runs every Celery row whose broker answers."""
    if shutil.which("pgbench") is None:
        raise SystemExit("bench --producers needs pgbench (apt-get install postgresql-client)")
    seconds = 5 if quick else 10
    repeats = repeats or (1 if quick else 2)
    script = reference.setup()
    dsn = env.database_dsn()
    bouncer = os.environ.get("BENCH_PGBOUNCER_DSN")
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "pgbench_durable": lambda: _pgbench(script, seconds, durable=True),
        "pgqueue_processes_durable": lambda: _processes(dsn, {}, seconds),
        "pgbench_nondurable": lambda: _pgbench(script, seconds, durable=False),
        "pgqueue_processes_nondurable": lambda: _processes(
            dsn, {"producer_durable": False}, seconds),
        "pgqueue_threads_durable": lambda: _threads(dsn, {}, seconds),
        "pgqueue_processes_unprepared": lambda: _processes(
            dsn, {"transaction_pooling": True}, seconds),
    }
    if bouncer:
        runs["pgqueue_processes_pgbouncer"] = lambda: _processes(bouncer, {}, seconds)
    celery = _celery_systems(systems)
    for row, system in CELERY_ROWS.items():
        if system in celery:
            runs[row] = functools.partial(_celery, system, seconds)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for repeat in range(repeats):
        for name, run in runs.items():
            _truncate()
            env.log(f"producers: {name} (repeat {repeat + 1}/{repeats})")
            results[name].append(run())
    summary = {name: _summary(rs) for name, rs in results.items()}
    table = render(summary, seconds, repeats)
    env.RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (env.RESULTS_DIR / f"producers-{stamp}.json").write_text(
        json.dumps({"seconds": seconds, "repeats": repeats, "runs": results}, indent=1))
    (env.RESULTS_DIR / "producers.md").write_text(table + "\n")
    print(table)
    return 0


def _pgbench(script: reference.Script, seconds: float, durable: bool) -> dict[str, float]:
    for attempt in (1, 2, 3):  # a server shared with other work may be out of connections
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            figures = reference.pgbench_latency(
                script, PRODUCERS, int(seconds), prepared=True,
                options=None if durable else "-c synchronous_commit=off")
            break
        except subprocess.CalledProcessError as error:
            env.log(f"pgbench failed ({(error.stderr or '').strip()[-200:]}); "
                    f"{'trying again' if attempt < 3 else 'giving up'}")
            if attempt == 3:
                raise
            time.sleep(5)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    jobs = figures["jobs_per_s"] * seconds
    return {**figures, "client_cpu_us": cpu / max(1.0, jobs) * 1e6}


LABELS = {
    "pgbench_durable": "pgbench, pgqueue's enqueue statement, 16 clients",
    "pgqueue_processes_durable": "pgqueue delay(), 16 processes",
    "pgbench_nondurable": "pgbench, same, synchronous_commit=off",
    "pgqueue_processes_nondurable": "pgqueue delay(), 16 processes, producer_durable=False",
    "pgqueue_threads_durable": "pgqueue delay(), 16 threads of 1 process (pool of 16)",
    "pgqueue_processes_unprepared": "pgqueue delay(), 16 processes, no prepared statements",
    "pgqueue_processes_pgbouncer": "pgqueue delay(), 16 processes, through PgBouncer",
    "celery_redis_processes": "Celery+Redis delay(), 16 processes (Redis: no persistence)",
    "celery_rabbitmq_processes": "Celery+RabbitMQ delay(), 16 processes (persistent "
                                 "messages, no publisher confirms)",
}
REFERENCE_OF = {"pgqueue_processes_nondurable": "pgbench_nondurable"}
#: The row each peer is compared with in the "pgqueue ÷" column.
PGQUEUE_ROW = "pgqueue_processes_durable"


def render(summary: dict[str, dict[str, Any]], seconds: float, repeats: int) -> str:
    lines = [f"Many producers ({seconds:.0f} s per run, median of {repeats}):", "",
             "| row | jobs/s | × pgbench | pgqueue ÷ row | call p50 ms | call p99 ms | "
             "client CPU µs/job |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    mine = summary[PGQUEUE_ROW]["jobs_per_s"]
    for name, fig in summary.items():
        if "error" in fig:
            lines.append(f"| {LABELS[name]} | failed: {fig['error'][:120]} | | | | | |")
            continue
        ref = summary[REFERENCE_OF.get(name, "pgbench_durable")]["jobs_per_s"]
        ratio = "" if name.startswith("pgbench") else f"{fig['jobs_per_s'] / ref:.2f}"
        versus = f"{mine / fig['jobs_per_s']:.2f}" if name in CELERY_ROWS else ""
        lines.append(f"| {LABELS[name]} | {fig['jobs_per_s']:,.0f} | {ratio} | {versus} | "
                     f"{fig['p50_ms']:.2f} | {fig['p99_ms']:.2f} | "
                     f"{fig['client_cpu_us']:.0f} |")
    return "\n".join(lines)


def cpu_rounds(rounds: int = 3, seconds: float = 4) -> list[dict[str, Any]]:
    """The client's CPU per job alone: 16 processes, then 16 threads of one process,
    ``rounds`` times in turn, ``seconds`` each, no pgbench and no Celery. CPU time per
    job moves far less with outside load than rates do: what to compare two versions of
    the client by (run each in turn) when the machine is not quiet."""
    reference.setup()
    dsn = env.database_dsn()
    figures: list[dict[str, Any]] = []
    for repeat in range(rounds):
        for kind, run in (("processes", _processes), ("threads", _threads)):
            _truncate()
            got = run(dsn, {}, seconds)
            got.update(round=repeat + 1, load=os.getloadavg()[0])
            print(f"{kind:9s} round {repeat + 1}: {got['jobs_per_s']:7,.0f} jobs/s, "
                  f"client CPU {got['client_cpu_us']:5.0f} µs/job, load average "
                  f"{got['load']:.1f}", flush=True)
            figures.append({"kind": kind, **got})
    return figures


if __name__ == "__main__":  # python -m bench.producers [ROUNDS [SECONDS]]: cpu_rounds
    import sys

    env.ensure_database()
    cpu_rounds(*(int(a) for a in sys.argv[1:3]))
