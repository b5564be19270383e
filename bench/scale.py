"""Scale checks (``python -m bench --scale``).

1. **Backlog**: drain rate, enqueue→start latency and the claim statement's time on an
   empty schema, then again with ``backlog`` future (``scheduled``) jobs in ``jobs`` and
   ``backlog`` finished rows in ``results``. They should stay flat: the claim index holds
   runnable rows only, and finished jobs live in another table.
2. **Open transaction** (pgqueue, and the Postgres peers named with ``--systems``): drain
   rounds while another session keeps a transaction (with an xid, REPEATABLE READ) open for
   ``hold`` seconds. Dead tuples of finished jobs cannot be
   vacuumed behind it; the rounds show how much the drain rate degrades, and the table
   and index sizes show what piles up.

3. **History** (``--history``): drain rate (results stored) and ``AsyncResult.get()`` of
   finished jobs with an empty history, then with ``history`` finished results spread over
   days of ``per_day`` each (one partition per day, sql/migrations/0010); then the time
   to prune the oldest day (its partitions dropped). Targets: within 10%, under a second.

The scenarios run inside pgqueue's interpreter (via ``bench.scenario``); :func:`main`
runs in the orchestrator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from . import env
from .measure import median

BACKLOG_TASK = "backlog"


# -- inside the pgqueue interpreter -------------------------------------------------------
def _schema_sql(text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(s=sql.Identifier(schema))


def add_backlog(adapter: Any, rows: int) -> dict[str, float]:
    """Insert ``rows`` future jobs and ``rows`` finished results; VACUUM ANALYZE both."""
    from .systems.pgqueue_sys import SCHEMA

    db = adapter.db
    timings = {}
    started = time.perf_counter()
    for offset in range(0, rows, 250_000):
        n = min(250_000, rows - offset)
        db.execute(_schema_sql(
            "INSERT INTO {s}.jobs (id, queue, task, state, run_at) "
            "SELECT gen_random_uuid(), 'default', %(task)s, 'scheduled', "
            "       now() + interval '30 days' + i * interval '1 second' "
            "  FROM generate_series(1, %(n)s) AS i", SCHEMA), {"task": BACKLOG_TASK, "n": n})
        db.execute(_schema_sql(
            "INSERT INTO {s}.results (id, queue, task, state, created_at, started_at,"
            "                         finished_at) "
            "SELECT gen_random_uuid(), 'default', %(task)s, 'SUCCESS', now() - interval '1 hour',"
            "       now() - interval '1 hour', now() - interval '1 hour' + i * interval '1 ms'"
            "  FROM generate_series(1, %(n)s) AS i", SCHEMA), {"task": BACKLOG_TASK, "n": n})
    timings["insert_s"] = time.perf_counter() - started
    started = time.perf_counter()
    db.execute(_schema_sql("VACUUM ANALYZE {s}.jobs", SCHEMA))
    db.execute(_schema_sql("VACUUM ANALYZE {s}.results", SCHEMA))
    timings["vacuum_s"] = time.perf_counter() - started
    return timings


def claim_statement_ms(adapter: Any, queued: int = 1_000, limit: int = 10,
                       samples: int = 30) -> dict[str, float]:
    """Time pgqueue's own claim statement (rolled back) with ``queued`` runnable jobs."""
    from pgqueue.worker.claiming import from_start

    from .apps import pgqueue_app

    adapter.reset()
    adapter.prefill(queued)
    adapter.analyze()
    statement = pgqueue_app.app.queries["job_claim"]
    params = {**from_start(["default"]), "limit": limit, "worker": "bench-probe",
              "lease": 30.0}
    times = []
    with psycopg.connect(adapter.dsn) as conn:  # not autocommit: every claim is rolled back
        for _ in range(samples):
            started = time.perf_counter()
            rows = conn.execute(statement, params).fetchall()
            times.append((time.perf_counter() - started) * 1000)
            conn.rollback()
            assert len(rows) == limit, f"claim returned {len(rows)} rows, expected {limit}"
        executions = []
        for _ in range(10):
            plan = conn.execute(b"EXPLAIN (ANALYZE, BUFFERS) " + statement, params).fetchall()
            conn.rollback()
            executions.extend(float(line[0].split()[-2]) for line in plan
                              if line[0].startswith("Execution Time"))
    adapter.reset()
    return {"claim_roundtrip_ms": median(times), "claim_execution_ms": median(executions)}


def measure_once(adapter: Any, config: str, jobs: int, probes: int, tag: str) -> dict[str, Any]:
    from .systems.base import drain, scenario_latency

    return {
        "drain": drain(adapter, config, jobs, "noop", label=f"scale-{tag}"),
        "drain_stored": drain(adapter, config, jobs, "noop_stored", label=f"scale-{tag}"),
        "latency": scenario_latency(adapter, config, probes),
        "claim": claim_statement_ms(adapter),
    }


def scenario_backlog(adapter: Any, config: str, jobs: int, backlog: int,
                     probes: int) -> dict[str, Any]:
    adapter.setup()
    adapter.keep_backlog = True  # reset() then spares the backlog rows
    empty = measure_once(adapter, config, jobs, probes, "empty")
    env.log(f"adding {backlog:,} future jobs and {backlog:,} results")
    loading = add_backlog(adapter, backlog)
    loaded = measure_once(adapter, config, jobs, probes, "backlog")
    sizes = table_sizes(adapter)
    adapter.setup()  # leave no million-row tables behind
    return {"empty": empty, "loaded": loaded, "backlog": backlog, "loading": loading,
            "sizes": sizes}


def table_sizes(adapter: Any) -> dict[str, Any]:
    """Heap size, index size and dead/live rows (statistics) of the system's hot tables."""
    sizes = {}
    for table in adapter.hot_tables():
        row = adapter.db.execute(
            "SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid), "
            "       coalesce(s.n_dead_tup, 0), coalesce(s.n_live_tup, 0) "
            "  FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            " WHERE c.oid = %s::regclass", [table]).fetchone()
        sizes[table] = {"bytes": row[0], "index_bytes": row[1], "dead": row[2], "live": row[3]}
    return sizes


def scenario_hold(adapter: Any, config: str, jobs: int, hold: float,
                  baseline_rounds: int = 2) -> dict[str, Any]:
    from .systems.base import drain

    adapter.setup()
    # No TRUNCATE between rounds: it would throw away the very dead tuples we measure.
    adapter.reset_by_truncate = False
    baseline = [drain(adapter, config, jobs, "noop", label="hold-baseline")
                for _ in range(baseline_rounds)]
    holder = psycopg.connect(adapter.dsn)
    holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT txid_current()")
    opened = time.monotonic()
    rounds = []
    try:
        while time.monotonic() - opened < hold:
            # A degraded round can take long: allow it, and count it as one round.
            result = drain(adapter, config, jobs, "noop", label="hold",
                           timeout=max(300.0, 2 * hold))
            result["at_s"] = time.monotonic() - opened
            result["sizes"] = table_sizes(adapter)
            rounds.append(result)
    finally:
        holder.rollback()
        holder.close()
    held_for = time.monotonic() - opened
    # Right after the release the dead rows are still there (autovacuum has not run yet);
    # then a VACUUM shows what the table gets back to.
    after = drain(adapter, config, jobs, "noop", label="hold-after",
                  timeout=max(300.0, 2 * hold))
    after["sizes"] = table_sizes(adapter)
    for table in adapter.hot_tables():
        schema, _, name = table.partition(".")
        adapter.db.execute(sql.SQL("VACUUM {}.{}").format(sql.Identifier(schema),
                                                         sql.Identifier(name)))
    vacuumed = drain(adapter, config, jobs, "noop", label="hold-vacuumed")
    adapter.reset_by_truncate = True
    vacuumed["sizes"] = table_sizes(adapter)
    adapter.setup()
    return {"baseline": baseline, "rounds": rounds, "after": after, "vacuumed": vacuumed,
            "held_s": held_for, "system": adapter.name, "config": config}


def add_history(adapter: Any, rows: int, per_day: int) -> dict[str, float]:
    """``rows`` finished results (1% FAILURE), ``per_day`` on each day before today, each
    day in its own partition; then VACUUM ANALYZE."""
    from .systems.pgqueue_sys import SCHEMA

    db = adapter.db
    started = time.perf_counter()
    days = _insert_history(db, SCHEMA, rows, per_day, "gen_random_uuid()")
    timings = {"insert_s": time.perf_counter() - started, "days": float(days)}
    started = time.perf_counter()
    db.execute(_schema_sql("VACUUM ANALYZE {s}.results", SCHEMA))
    timings["vacuum_s"] = time.perf_counter() - started
    return timings


def _insert_history(db: psycopg.Connection[Any], schema: str, rows: int, per_day: int,
                    ids: str) -> int:
    """``rows`` finished results of BACKLOG_TASK (1% FAILURE), ``per_day`` on each day
    before today, each day's in its partition (added first; a plain table takes them as
    they come), ids made by the SQL ``ids``; set-based, one statement per day. The days."""
    days = -(-rows // per_day)
    for day in range(days, 0, -1):
        n = min(per_day, rows - (days - day) * per_day)
        db.execute(_schema_sql("SELECT {s}.results_partition_add("
                               "(now() AT TIME ZONE 'UTC')::date - %(day)s)", schema),
                   {"day": day})
        db.execute(_schema_sql(
            "INSERT INTO {s}.results (id, queue, task, state, result, created_at, started_at,"
            "                         finished_at) "
            f"SELECT {ids}, 'default', %(task)s,"
            "       CASE WHEN i %% 100 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END, to_jsonb(i),"
            "       d - interval '1 minute', d - interval '1 second', d "
            "  FROM generate_series(1, %(n)s) AS i,"
            "       LATERAL (SELECT ((now() AT TIME ZONE 'UTC')::date - %(day)s)::timestamp"
            "                       AT TIME ZONE 'UTC' + i * (86399.0 / %(n)s)"
            "                       * interval '1 second') AS t(d)", schema),
            {"task": BACKLOG_TASK, "n": n, "day": day})
        env.log(f"{schema}: {(days - day + 1) * per_day:,} history rows")
    return days


def get_latency_ms(adapter: Any, probes: int, kind: str = "v7") -> dict[str, float]:
    """``AsyncResult(id).get()`` of finished jobs (rows written just before), each a new
    handle: the read path of a caller that asks for a result. ``kind``: ids as pgqueue
    makes them (``v7``, with their time) or with no time (``v4``, as custom task ids)."""
    import uuid

    from pgqueue.utils import uuid7

    from .apps import pgqueue_app
    from .systems.pgqueue_sys import SCHEMA

    ids = [str(uuid7() if kind == "v7" else uuid.uuid4()) for _ in range(probes)]
    adapter.db.execute(_schema_sql(
        "INSERT INTO {s}.results (id, queue, task, state, result, created_at) "
        "SELECT id, 'default', 'probe', 'SUCCESS', '1', now() FROM unnest(%(ids)s::uuid[]) id",
        SCHEMA), {"ids": ids})
    app = pgqueue_app.app
    for task_id in ids[:10]:  # warm the pool and the prepared statements
        app.AsyncResult(task_id).get(timeout=5)
    times = []
    for task_id in ids:
        started = time.perf_counter()
        assert app.AsyncResult(task_id).get(timeout=5) == 1
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": median(times), "p99_ms": times[int(len(times) * 0.99) - 1],
            "partitions": float(adapter.db.execute(_schema_sql(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                " WHERE c.relkind = 'r' AND (i.inhparent = '{s}.results'::regclass OR "
                " i.inhparent IN (SELECT inhrelid FROM pg_inherits "
                "                  WHERE inhparent = '{s}.results'::regclass))",
                SCHEMA)).fetchone()[0])}


def prune_oldest_day(adapter: Any) -> dict[str, float]:
    """Drop the oldest day's partitions (both states) and time it."""
    from .systems.pgqueue_sys import SCHEMA

    oldest = adapter.db.execute(_schema_sql(
        "SELECT min(finished_at), count(*) FROM {s}.results "
        " WHERE finished_at < (SELECT date_trunc('day', min(finished_at) AT TIME ZONE 'UTC')"
        "                      AT TIME ZONE 'UTC' + interval '1 day' FROM {s}.results)",
        SCHEMA)).fetchone()
    started = time.perf_counter()
    pruned = adapter.db.execute(_schema_sql(
        "SELECT partition, approx_rows FROM {s}.results_partition_prune("
        " date_trunc('day', %(t)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        " + interval '1 day', date_trunc('day', %(t)s::timestamptz AT TIME ZONE 'UTC')"
        " AT TIME ZONE 'UTC' + interval '1 day', NULL)", SCHEMA), {"t": oldest[0]}).fetchall()
    took = time.perf_counter() - started
    return {"seconds": took, "rows": float(oldest[1]), "partitions": float(len(pruned))}


def scenario_history(adapter: Any, config: str, jobs: int, history: int, per_day: int,
                     probes: int) -> dict[str, Any]:
    import os

    from pgqueue.db import migrations

    from .systems.base import drain
    from .systems.pgqueue_sys import SCHEMA

    os.environ["BENCH_KEEP_RESULTS"] = "1"  # read by the workers (bench.apps.pgqueue_app)
    adapter.setup()
    # the check measures the opt-in layout (`pgqueue migrate --partition-results`)
    migrations.partition_results(env.database_dsn(), SCHEMA)
    adapter.keep_backlog = True

    def measure(tag: str) -> dict[str, Any]:
        adapter.results_since = adapter.db.execute("SELECT now()").fetchone()[0]
        return {"drain_stored": drain(adapter, config, jobs, "noop_stored",
                                      label=f"history-{tag}"),
                "get": get_latency_ms(adapter, probes),
                "get_v4": get_latency_ms(adapter, probes, "v4")}

    empty = measure("empty")
    env.log(f"adding {history:,} finished results, {per_day:,} a day")
    loading = add_history(adapter, history, per_day)
    loaded = measure("loaded")
    prune = prune_oldest_day(adapter)
    adapter.setup()
    return {"empty": empty, "loaded": loaded, "history": history, "per_day": per_day,
            "loading": loading, "prune": prune}


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "scale_history": scenario_history,
    "scale_backlog": scenario_backlog,
    "scale_hold": scenario_hold,
}


# -- in the orchestrator ------------------------------------------------------------------
def _pct(new: float, old: float) -> str:
    return f"{(new / old - 1) * 100:+.0f}%" if old else "n/a"


def report_backlog(result: dict[str, Any]) -> str:
    empty, loaded = result["empty"], result["loaded"]
    lines = [f"Backlog check: {result['backlog']:,} future jobs + {result['backlog']:,} "
             "finished results "
             f"(loaded in {result['loading']['insert_s']:.0f}s, "
             f"VACUUM ANALYZE {result['loading']['vacuum_s']:.0f}s)",
             "| figure | empty tables | with backlog | change |", "|---|---|---|---|"]
    figures = [
        ("drain /s (ignore_result)", empty["drain"]["rate"], loaded["drain"]["rate"]),
        ("drain /s (results stored)", empty["drain_stored"]["rate"],
         loaded["drain_stored"]["rate"]),
        ("enqueue→start p50 ms", empty["latency"]["p50_ms"], loaded["latency"]["p50_ms"]),
        ("enqueue→start p99 ms", empty["latency"]["p99_ms"], loaded["latency"]["p99_ms"]),
        ("claim statement, round trip ms", empty["claim"]["claim_roundtrip_ms"],
         loaded["claim"]["claim_roundtrip_ms"]),
        ("claim statement, server execution ms", empty["claim"]["claim_execution_ms"],
         loaded["claim"]["claim_execution_ms"]),
    ]
    for name, before, after in figures:
        lines.append(f"| {name} | {before:,.2f} | {after:,.2f} | {_pct(after, before)} |")
    return "\n".join(lines)


def report_hold(result: dict[str, Any]) -> str:
    base = median([r["rate"] for r in result["baseline"]])
    table = next(iter(result["rounds"][0]["sizes"]), "?") if result["rounds"] else "?"
    lines = [f"Open-transaction check, {result['system']} ({result['config']}): held "
             f"{result['held_s']:.0f}s; baseline drain {base:,.0f}/s (median of "
             f"{len(result['baseline'])}); sizes of {table}",
             "| round | at s | drain /s | vs baseline | table | indexes | dead rows |",
             "|---|---|---|---|---|---|---|"]

    def sizes(r: dict[str, Any]) -> tuple[str, str, str]:
        table = next(iter(r["sizes"].values()), {})
        return (f"{table.get('bytes', 0) / 1e6:.1f} MB",
                f"{table.get('index_bytes', 0) / 1e6:.1f} MB", f"{table.get('dead', 0):,}")

    for i, r in enumerate(result["rounds"], 1):
        lines.append(f"| {i} | {r['at_s']:.0f} | {r['rate']:,.0f} | {_pct(r['rate'], base)} | "
                     + " | ".join(sizes(r)) + " |")
    for label, key in (("after release", "after"), ("after VACUUM", "vacuumed")):
        r = result.get(key)
        if r:
            lines.append(f"| {label} | | {r['rate']:,.0f} | {_pct(r['rate'], base)} | "
                         + " | ".join(sizes(r)) + " |")
    return "\n".join(lines)


def report_history(result: dict[str, Any]) -> str:
    empty, loaded, prune = result["empty"], result["loaded"], result["prune"]
    lines = [f"History check: {result['history']:,} finished results, "
             f"{result['per_day']:,} a day in {result['loading']['days']:.0f} day partitions "
             f"(loaded in {result['loading']['insert_s']:.0f}s, VACUUM ANALYZE "
             f"{result['loading']['vacuum_s']:.0f}s)",
             "| figure | empty history | with history | change |", "|---|---|---|---|"]
    figures = [
        ("drain /s (results stored)", empty["drain_stored"]["rate"],
         loaded["drain_stored"]["rate"]),
        ("AsyncResult.get() of a finished job, p50 ms", empty["get"]["p50_ms"],
         loaded["get"]["p50_ms"]),
        ("AsyncResult.get() of a finished job, p99 ms", empty["get"]["p99_ms"],
         loaded["get"]["p99_ms"]),
        ("AsyncResult.get(), an id with no time (uuid4), p50 ms",
         empty.get("get_v4", {}).get("p50_ms", 0.0), loaded.get("get_v4", {}).get("p50_ms", 0.0)),
        ("leaf partitions of results", empty["get"]["partitions"],
         loaded["get"]["partitions"]),
    ]
    for name, before, after in figures:
        lines.append(f"| {name} | {before:,.2f} | {after:,.2f} | {_pct(after, before)} |")
    lines.append(f"\nPruning the oldest day ({prune['rows']:,.0f} results, "
                 f"{prune['partitions']:.0f} partitions dropped): "
                 f"{prune['seconds'] * 1000:,.0f} ms")
    return "\n".join(lines)


def main_history(plan_quick: bool, history: int | None, per_day: int | None,
                 run_scenario: Callable[..., dict[str, Any]],
                 config: str | None = None) -> int:
    """The history check alone (``--scale --history N``)."""
    config = config or HOLD_CONFIGS["pgqueue"]
    jobs = 3_000 if plan_quick else 20_000
    history = history or (300_000 if plan_quick else 10_000_000)
    per_day = per_day or min(history, 100_000 if plan_quick else 1_000_000)
    result = run_scenario("pgqueue", "scale_history", {
        "config": config, "jobs": jobs, "history": history, "per_day": per_day,
        "probes": 60 if plan_quick else 300})
    written = _publish("history", result, lambda: (
        report_history(result) if "error" not in result
        else f"History check failed: {result['error']}"))
    print(f"\nWorker: pgqueue {config}; {jobs:,} jobs per drain. Raw results: {written}")
    return 0


HOLD_CONFIGS = {"pgqueue": "threads-c10", "pgqueuer": "b10", "procrastinate": "c10"}


def main(plan_quick: bool, hold: float | None, backlog: int | None,
         run_scenario: Callable[..., dict[str, Any]], config: str | None = None,
         systems: list[str] | None = None) -> int:
    """The backlog check (pgqueue), then the open-transaction check for each system."""
    config = config or HOLD_CONFIGS["pgqueue"]
    jobs = 3_000 if plan_quick else 20_000
    backlog = backlog or (100_000 if plan_quick else 1_000_000)
    hold = hold if hold is not None else (30.0 if plan_quick else 300.0)
    probes = 60 if plan_quick else 200
    backlog_result = run_scenario("pgqueue", "scale_backlog", {
        "config": config, "jobs": jobs, "backlog": backlog, "probes": probes})
    hold_results = []
    for name in systems or ["pgqueue"]:
        if name not in HOLD_CONFIGS:
            env.log(f"{name}: no open-transaction check (it does not keep its jobs in Postgres)")
            continue
        hold_results.append(run_scenario(name, "scale_hold", {
            "config": config if name == "pgqueue" else HOLD_CONFIGS[name], "jobs": jobs,
            "hold": hold}))

    def report() -> str:
        out = [report_backlog(backlog_result) if "error" not in backlog_result
               else f"Backlog check failed: {backlog_result['error']}"]
        for result in hold_results:
            out.append(report_hold(result) if "error" not in result
                       else f"Open-transaction check failed: {result['error']}")
        return "\n\n".join(out)

    written = _publish("scale", {"backlog": backlog_result, "hold": hold_results}, report)
    print(f"\nBacklog check worker: pgqueue {config}; {jobs:,} jobs per drain. Raw results: "
          f"{written}")
    return 0


def _publish(kind: str, result: Any, report: Callable[[], str]) -> str:
    """``result`` in bench/results/KIND-<time>.json (first: a report that fails loses
    no figure), then what ``report`` makes of it in latest-KIND.md and on stdout; the
    JSON file's path from the checkout's root."""
    env.RESULTS_DIR.mkdir(exist_ok=True)
    path = env.RESULTS_DIR / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    text = report()
    (env.RESULTS_DIR / f"latest-{kind}.md").write_text(text + "\n")
    print()
    print(text)
    return str(path.relative_to(env.REPO_ROOT))


# -- history A/B (``python -m bench.scale``) ----------------------------------------------
# The history check above runs one code on one layout, empty then loaded. This one runs,
# on each layout, the code of this checkout and of a baseline checkout in turns (round
# after round), with an empty history, then with ``history`` results, then with the
# history gone again (the drift of a loaded machine shows as empty ≠ emptied).
# Job ids are UUIDv7, made in SQL from the clock, as pgqueue's producers make them.
_V7 = ("(lpad(to_hex((extract(epoch FROM {t}) * 1000)::bigint), 12, '0') || '7'"
       " || substr(md5({seed}), 1, 3) || '8' || substr(md5({seed}), 4, 15))::uuid")


def _v7(moment: str, seed: str) -> str:
    return _V7.format(t=moment, seed=seed)


_HISTORY_ID = _v7("d - interval '1 minute'", "i::text || %(day)s::text")


def ab_fill_jobs(db: psycopg.Connection[Any], schema: str, n: int) -> None:
    db.execute(_schema_sql(
        "INSERT INTO {s}.jobs (id, queue, task) "
        f"SELECT {_v7('clock_timestamp()', 'random()::text')}, 'default', 'noop_stored'"
        "  FROM generate_series(1, %(n)s)", schema), {"n": n})
    db.execute(_schema_sql("ANALYZE {s}.jobs", schema))


def ab_add_history(db: psycopg.Connection[Any], schema: str, rows: int,
                   per_day: int) -> dict[str, float]:
    """``rows`` results, ``per_day`` on each day before today (1% FAILURE), UUIDv7 ids
    made a minute before each finish; set-based, one statement per day."""
    started = time.perf_counter()
    days = _insert_history(db, schema, rows, per_day, _HISTORY_ID)
    db.execute(_schema_sql("VACUUM ANALYZE {s}.results", schema))
    return {"seconds": time.perf_counter() - started, "days": float(days)}


def ab_drop_history(db: psycopg.Connection[Any], schema: str) -> None:
    """The history goes (the day partitions before today, or every row of a plain table)."""
    if db.execute(_schema_sql("SELECT relkind = 'p' FROM pg_class "
                              "WHERE oid = '{s}.results'::regclass", schema)).fetchone()[0]:
        db.execute(_schema_sql(
            "SELECT count(*) FROM {s}.results_partition_prune("
            " date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',"
            " date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', NULL)", schema))
    else:
        db.execute(_schema_sql("TRUNCATE {s}.results", schema))
    db.execute(_schema_sql("VACUUM ANALYZE {s}.results", schema))


# Run in a process of the side's code: AsyncResult(id).get() of finished jobs, a new
# handle each, after a warm-up; prints {"v7": [ms...], "v4": [ms...]}.
_GET_PROBE = r"""
import json, sys, time, uuid
from pgqueue import App
from pgqueue.utils import uuid7
import psycopg
dsn, schema, probes = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = App("probe", dsn=dsn, schema=schema)
out = {}
with psycopg.connect(dsn, autocommit=True) as db:
    for kind, make in (("v7", lambda: str(uuid7())), ("v4", lambda: str(uuid.uuid4()))):
        ids = [make() for _ in range(probes + 10)]
        db.execute(f'INSERT INTO "{schema}".results (id, queue, task, state, result,'
                   ' created_at) SELECT i, %s, %s, %s, %s, now()'
                   ' FROM unnest(%s::uuid[]) i', ["default", "probe", "SUCCESS", "1", ids])
        for i in ids[:10]:
            app.AsyncResult(i).get(timeout=5)
        times = []
        for i in ids[10:]:
            started = time.perf_counter()
            assert app.AsyncResult(i).get(timeout=5) == 1
            times.append((time.perf_counter() - started) * 1000)
        out[kind] = times
print(json.dumps(out))
"""


def ab_get(code: Any, schema: str, probes: int) -> dict[str, float]:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _GET_PROBE, env.database_dsn(), schema,
                           str(probes)], env={**os.environ, "PYTHONPATH": str(code)},
                          cwd=code, check=True, capture_output=True, text=True)
    times = json.loads(done.stdout)
    return {f"get_{kind}_p50_ms": median(t) for kind, t in times.items()}


def ab_drain(db: psycopg.Connection[Any], code: Any, schema: str, jobs: int,
             concurrency: int) -> dict[str, float]:
    """One worker of ``code`` draining ``jobs`` noop_stored jobs: rate, CPU per job."""
    from .flow import _stop, _workers, time_drain

    ab_fill_jobs(db, schema, jobs)
    procs = _workers(code, schema, 1, concurrency)
    try:
        return time_drain(db, schema, jobs, procs)
    finally:
        _stop(procs)
        # what autovacuum does within a minute of a partition's first rows: without
        # statistics the planner may AND the id index with the finish-time one
        db.execute(_schema_sql("ANALYZE {s}.results", schema))


def ab_history(layouts: list[str], baseline: Any, history: int, per_day: int, rounds: int,
               jobs: int, probes: int, concurrency: int) -> dict[str, Any]:
    import os
    from pathlib import Path

    from pgqueue.db import migrations

    from .flow import _fresh

    os.environ["BENCH_KEEP_RESULTS"] = "1"  # the workers' pruner keeps the history
    this = env.REPO_ROOT
    sides = {"baseline": Path(baseline), "this": this}
    env.ensure_database()
    out: dict[str, Any] = {}
    with psycopg.connect(env.database_dsn(harness=True), autocommit=True) as db:
        for layout in layouts:
            schema = f"bench_hist_{layout}"
            _fresh(db, this, schema)
            if layout == "partitioned":
                migrations.partition_results(env.database_dsn(), schema)
            phases: dict[str, Any] = {}
            for phase in ("empty", "loaded", "emptied"):
                if phase == "loaded":
                    out[f"{layout}_loading"] = ab_add_history(db, schema, history, per_day)
                elif phase == "emptied":
                    ab_drop_history(db, schema)
                runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
                for _ in range(rounds):
                    for side, code in sides.items():
                        run = {**ab_drain(db, code, schema, jobs, concurrency),
                               **ab_get(code, schema, probes)}
                        runs[side].append(run)
                        env.log(f"{layout} {phase} {side}: " + ", ".join(
                            f"{k} {v:,.2f}" for k, v in run.items()))
                phases[phase] = runs
            out[layout] = phases
            db.execute(_schema_sql("DROP SCHEMA {s} CASCADE", schema))
    return out


def report_ab(result: dict[str, Any], layouts: list[str]) -> str:
    figures = ("rate", "server_cpu_us", "worker_cpu_us", "get_v7_p50_ms", "get_v4_p50_ms")
    lines = ["| layout | code | figure | empty | loaded | emptied | loaded vs empty+emptied |",
             "|---|---|---|---|---|---|---|"]
    for layout in layouts:
        for side in ("baseline", "this"):
            for figure in figures:
                m = {phase: median([r[figure] for r in result[layout][phase][side]])
                     for phase in ("empty", "loaded", "emptied")}
                calm = (m["empty"] + m["emptied"]) / 2
                lines.append(f"| {layout} | {side} | {figure} | {m['empty']:,.2f} | "
                             f"{m['loaded']:,.2f} | {m['emptied']:,.2f} | "
                             f"{_pct(m['loaded'], calm)} |")
    return "\n".join(lines)


def main_ab(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=(
        "History A/B: drain and AsyncResult.get() with an empty history, with N results, "
        "and with the history gone again, this checkout and a baseline in turns"))
    parser.add_argument("--baseline", required=True, help="another checkout (its code)")
    parser.add_argument("--history", type=int, default=10_000_000)
    parser.add_argument("--per-day", type=int, default=1_000_000)
    parser.add_argument("--layouts", default="plain,partitioned")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drain-jobs", type=int, default=20_000)
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    options = parser.parse_args(argv)
    layouts = options.layouts.split(",")
    result = ab_history(layouts, options.baseline, options.history, options.per_day,
                        options.rounds, options.drain_jobs, options.probes,
                        options.concurrency)
    _publish("history-ab", result, lambda: report_ab(result, layouts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main_ab())
