"""Profiles of pgqueue's hot paths: ``python -m bench.profile [statements|sql|pyspy|all]``.

* ``statements``: an in-process worker drains a pre-filled queue while every statement it
  sends is counted and timed (calls per job, rows per call, milliseconds per call).
* ``sql``: each hot statement on its own, on a pre-filled queue: client round trip with a
  real commit, and the server's own execution time from ``EXPLAIN (ANALYZE, BUFFERS)``
  (rolled back). The difference is commit + network + client-side decoding.
* ``latency``: an idle in-process worker with a timestamp at each step of one job's way
  (enqueue call, NOTIFY received, claim sent, claimed, running).
* ``pyspy``: py-spy samples of a ``pgqueue worker`` subprocess draining a queue, and of
  a producer doing single ``delay()`` calls, only while holding the GIL (Python CPU),
  summarised by thread, by function (self) and by function (inclusive).

``pg_stat_statements`` would give per-statement server time too, but it needs
``shared_preload_libraries`` and a server restart, which a shared server should not get;
``sql`` measures the same statements directly instead.

Runs in pgqueue's interpreter (``/work/venv/bin/python -m bench.profile``). Output goes to
stdout and to ``bench/profiles/``.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import env

os.environ["BENCH_DSN"] = env.database_dsn(harness=True)

from pgqueue.worker.claiming import from_start  # noqa: E402

from .apps import pgqueue_app  # noqa: E402
from .measure import median, percentile, tree_cpu  # noqa: E402
from .systems.pgqueue_sys import Adapter  # noqa: E402

PROFILES = env.BENCH_DIR / "profiles"


def _out(name: str, text: str) -> None:
    PROFILES.mkdir(exist_ok=True)
    (PROFILES / name).write_text(text + "\n")
    print(text)


# -- statements per job -------------------------------------------------------------------
def statements(jobs: int, concurrency: int, variant: str) -> str:
    from pgqueue import db as pgdb
    from pgqueue.worker.worker import Worker

    app = pgqueue_app.app
    names = {stmt: name for name, stmt in app.queries._statements.items()}
    calls: collections.Counter[str] = collections.Counter()
    rows: collections.Counter[str] = collections.Counter()
    spent: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    original = pgdb.Dedicated.execute

    def counted(self: Any, query: Any, params: Any = None) -> Any:
        started = time.perf_counter()
        result = original(self, query, params)
        elapsed = time.perf_counter() - started
        name = names.get(query, "other")
        with lock:
            calls[name] += 1
            rows[name] += len(result)
            spent[name] += elapsed
        return result

    adapter = Adapter()
    adapter.setup()
    adapter.prefill(jobs, variant)
    adapter.analyze()
    pgdb.Dedicated.execute = counted  # type: ignore[method-assign]
    try:
        worker = Worker(app, concurrency=concurrency or None, install_signal_handlers=False)
        thread = threading.Thread(target=worker.run, daemon=True)
        started = time.perf_counter()
        thread.start()
        while adapter.remaining() > 0:
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        worker.stop()
        thread.join(30)
    finally:
        pgdb.Dedicated.execute = original  # type: ignore[method-assign]
    adapter.reset()
    config = f"-P threads -c {concurrency}" if concurrency else \
        f"with default options (pool ended at {worker.pool.size} threads)"
    lines = [f"statements: {jobs:,} {variant} jobs, in-process worker {config}: "
             f"{elapsed:.2f}s including start-up ({jobs / elapsed:,.0f}/s)",
             "| statement | calls | per job | rows/call | ms/call | total s |",
             "|---|---|---|---|---|---|"]
    for name, count in calls.most_common():
        lines.append(f"| {name} | {count:,} | {count / jobs:.3f} | {rows[name] / count:.1f} | "
                     f"{spent[name] / count * 1000:.2f} | {spent[name]:.2f} |")
    adapter.close()
    return "\n".join(lines)


# -- statements on their own --------------------------------------------------------------
def _explain_ms(conn: Any, statement: bytes, params: dict[str, Any]) -> float:
    plan = conn.execute(b"EXPLAIN (ANALYZE, BUFFERS) " + statement, params).fetchall()
    conn.rollback()
    for (line,) in plan:
        if line.startswith("Execution Time"):
            return float(line.split()[-2])
    return float("nan")


class _Capture:
    """Records the parameters psycopg is given for one statement (to replay it)."""

    def __init__(self, statement: bytes) -> None:
        import psycopg

        self.statement = statement
        self.params: list[Any] = []
        self._cursor = psycopg.Cursor
        self._original = psycopg.Cursor.execute

    def __enter__(self) -> _Capture:
        original, capture = self._original, self

        def execute(cur: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            if query == capture.statement:
                capture.params.append(params)
            return original(cur, query, params, **kwargs)

        self._cursor.execute = execute  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cursor.execute = self._original  # type: ignore[method-assign]


def _insert_params(txn: Any, n: int) -> Any:
    """The job_insert parameters pgqueue itself builds for ``n`` no-op calls."""
    with _Capture(pgqueue_app.app.queries["job_insert"]) as capture:
        pgqueue_app.noop.apply_many([((), {})] * n, connection=txn)
    txn.rollback()
    return capture.params[-1]


def _outcomes(rows: list[Any]) -> str:
    from pgqueue.utils import json_dumps
    from pgqueue.worker.execution import ClaimedJob, Outcome

    jobs = [ClaimedJob.from_row(row) for row in rows]
    return json_dumps([Outcome(j.id, j.attempt, "SUCCESS").finish_record() for j in jobs])


def sql_costs(samples: int) -> str:
    """Round trip (with commit) and server execution time of the hot statements.

    Statement parameters are the ones pgqueue builds (captured from a real call), so this
    follows the library's current SQL; only ``job_claim``'s and ``job_finish``'s parameter
    names are assumed.
    """
    import psycopg

    queries = pgqueue_app.app.queries
    adapter = Adapter()
    adapter.setup()
    worker = "bench-profile"
    lines = [f"sql: median of {samples} (client round trip with commit | server execution from "
             "EXPLAIN ANALYZE, rolled back)",
             "| statement | rows | round trip ms | per job µs | server ms | per job µs |",
             "|---|---|---|---|---|---|"]
    auto = psycopg.connect(adapter.dsn, autocommit=True)
    txn = psycopg.connect(adapter.dsn)
    channels = queries.channels()

    def add(name: str, n: int, times: list[float], server: float) -> None:
        rt = median(times) * 1000
        lines.append(f"| {name} | {n} | {rt:.2f} | {rt / n * 1000:.0f} | {server:.2f} | "
                     f"{server / n * 1000:.0f} |")

    for n in (1, 100, 1000):
        times = []
        for _ in range(samples):
            params = _insert_params(txn, n)
            started = time.perf_counter()
            auto.execute(queries["job_insert"], params).fetchall()
            times.append(time.perf_counter() - started)
        server = median([_explain_ms(txn, queries["job_insert"], _insert_params(txn, n))
                         for _ in range(5)])
        add("job_insert", n, times, server)
        adapter.reset()
    for n in (10, 100):
        adapter.prefill(n * (samples + 10))
        adapter.analyze()
        claim = {**from_start(["default"]), "limit": n, "worker": worker, "lease": 30.0}
        claim_times, finish_times = [], []
        for _ in range(samples):
            started = time.perf_counter()
            claimed = auto.execute(queries["job_claim"], claim).fetchall()
            claim_times.append(time.perf_counter() - started)
            finish = {"outcomes": _outcomes(claimed), "ids": [str(r[0]) for r in claimed],
                      "worker": worker, **channels}
            started = time.perf_counter()
            auto.execute(queries["job_finish"], finish).fetchall()
            finish_times.append(time.perf_counter() - started)
        claim_server = median([_explain_ms(txn, queries["job_claim"], claim) for _ in range(5)])
        claimed = auto.execute(queries["job_claim"], claim).fetchall()  # a batch to finish
        finish = {"outcomes": _outcomes(claimed), "ids": [str(r[0]) for r in claimed],
                  "worker": worker, **channels}
        finish_server = median([_explain_ms(txn, queries["job_finish"], finish)
                                for _ in range(5)])
        add("job_claim", n, claim_times, claim_server)
        add("job_finish", n, finish_times, finish_server)
        adapter.reset()
    auto.close()
    txn.close()
    adapter.close()
    return "\n".join(lines)


# -- latency, step by step ----------------------------------------------------------------
def latency_steps(probes: int, concurrency: int) -> str:
    """Where enqueue→start time goes: an in-process worker with timestamps at each step."""
    from pgqueue.worker.worker import Worker

    app = pgqueue_app.app
    marks: dict[str, float] = {}
    ran = threading.Event()

    def mark(name: str) -> None:
        marks.setdefault(name, time.perf_counter())

    on_notify, claim = Worker._on_notify, Worker._claim

    def traced_notify(self: Any, channel: str, payload: str) -> None:
        mark("notified")
        on_notify(self, channel, payload)

    def traced_claim(self: Any, limit: int) -> Any:
        mark("claim_sent")
        jobs = claim(self, limit)
        if jobs:
            mark("claimed")
        return jobs

    @app.task(name="bench_probe", ignore_result=True)
    def probe() -> None:
        mark("running")
        ran.set()

    Worker._on_notify = traced_notify  # type: ignore[method-assign]
    Worker._claim = traced_claim  # type: ignore[method-assign]
    adapter = Adapter()
    adapter.setup()
    worker = Worker(app, concurrency=concurrency, install_signal_handlers=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    worker.started.wait(30)
    probe.delay()  # warm up the producer pool and the worker
    ran.wait(10)
    steps: dict[str, list[float]] = collections.defaultdict(list)
    try:
        for _ in range(probes):
            time.sleep(0.02)
            marks.clear()
            ran.clear()
            sent = time.perf_counter()
            probe.delay()
            returned = time.perf_counter()
            if not ran.wait(10):
                raise TimeoutError("a latency probe did not run within 10s")
            m = marks
            steps["enqueue call (INSERT + commit)"].append(returned - sent)
            steps["commit → NOTIFY received"].append(m.get("notified", returned) - returned)
            steps["NOTIFY → claim sent"].append(m["claim_sent"] - m.get("notified", returned))
            steps["claim statement"].append(m["claimed"] - m["claim_sent"])
            steps["claimed → task running"].append(m["running"] - m["claimed"])
            steps["total"].append(m["running"] - sent)
    finally:
        worker.stop()
        thread.join(30)
        Worker._on_notify, Worker._claim = on_notify, claim  # type: ignore[method-assign]
        adapter.close()
    lines = [f"latency steps: {probes} probes, in-process worker -P threads -c {concurrency}",
             "| step | p50 ms | p90 ms | max ms |", "|---|---|---|---|"]
    for name, values in steps.items():
        ms = [v * 1000 for v in values]
        lines.append(f"| {name} | {median(ms):.3f} | {percentile(ms, 90):.3f} | {max(ms):.3f} |")
    return "\n".join(lines)


# -- py-spy -------------------------------------------------------------------------------
def _pyspy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("bench.profile: py-spy is missing: pip install py-spy (into this venv)")
    return found


_ROLES = ("_claim_loop", "Finisher.run", "_executor_main", "Listener.run", "Maintenance.run",
          "enqueue_single")


def summarize(raw: Path, top: int = 25) -> str:
    """Collapsed stacks (py-spy ``--format raw``) as % of samples by thread role and
    function (self, inclusive)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    roles: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [re.sub(r" \((?:.*/)?([^/]*?):\d+\)$", r" (\1)", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
        roles[next((f for f in frames if any(r in f for r in _ROLES)), "other")] += n
    if not total:
        return "(no samples)"

    def block(title: str, counter: collections.Counter[str], limit: int) -> list[str]:
        return [title] + [f"  {c / total * 100:5.1f}%  {name}" for name, c in
                          counter.most_common(limit)]

    return "\n".join([f"{total} samples"] + block("by thread:", roles, 8)
                     + block("self:", own, top) + block("inclusive:", inclusive, top + 15))


def _record(pid: int, output: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [_pyspy(), "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
         "--threads", "--gil", "--nonblocking", "--duration", "600", "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pyspy(jobs: int, config: str) -> str:
    PROFILES.mkdir(exist_ok=True)
    adapter = Adapter()
    adapter.setup()
    adapter.prefill(jobs)
    adapter.analyze()
    raw = PROFILES / "worker-drain.raw"
    with adapter.workers(config, "profile") as workers:
        while adapter.remaining() == jobs:
            time.sleep(0.005)
        cpu_before = tree_cpu(workers.pids)
        spy = _record(workers.pids[0], raw)
        started, left = time.perf_counter(), adapter.remaining()
        while adapter.remaining() > 0:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu = tree_cpu(workers.pids) - cpu_before
        spy.send_signal(signal.SIGINT)
        spy.wait()
    text = [f"pyspy worker drain ({config}): {left:,} jobs in {elapsed:.2f}s "
            f"({left / elapsed:,.0f}/s); worker CPU {cpu / left * 1e6:.0f} µs/job, "
            f"{cpu / elapsed * 100:.0f}% of one core",
            summarize(raw)]
    # The producer: single delay() calls in a child process, sampled the same way.
    raw = PROFILES / "producer-single.raw"
    argv = [sys.executable, "-m", "bench.scenario", "pgqueue", "single",
            f'{{"jobs": {max(5000, min(20000, jobs // 2))}}}']
    spy = subprocess.run([_pyspy(), "record", "--rate", "250", "--format", "raw", "--threads",
                          "--gil", "--nonblocking", "--output", str(raw), "--"] + argv,
                         env=env.subprocess_env(), capture_output=True, text=True)
    result = [ln for ln in spy.stdout.splitlines() if ln.startswith("BENCH-RESULT")]
    text += [f"pyspy producer, single delay() calls: {result[-1] if result else spy.stderr[-500:]}",
             summarize(raw)]
    adapter.close()
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("what", choices=["statements", "sql", "latency", "pyspy", "all"],
                        nargs="?", default="all")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10,
                        help="statements: the worker's -c; 0: the default (no -c)")
    parser.add_argument("--config", default="threads-c10")
    parser.add_argument("--variant", default="noop", choices=["noop", "noop_stored"])
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args(argv)
    env.ensure_database()
    if args.what in ("statements", "all"):
        _out("statements.md", statements(args.jobs, args.concurrency, args.variant))
    if args.what in ("sql", "all"):
        _out("sql.md", sql_costs(args.samples))
    if args.what in ("latency", "all"):
        _out("latency.md", latency_steps(args.samples * 2, args.concurrency))
    if args.what in ("pyspy", "all"):
        _out("pyspy.txt", pyspy(args.jobs, args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
