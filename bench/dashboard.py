"""The dashboard's job list against a million finished jobs.

    python -m bench.dashboard [--rows 1000000] [--repeats 7] [--dsn URL]

Seeds schema ``bench_dashboard`` (dropped and made again each run) with ``--rows`` results
in one ``INSERT ... SELECT generate_series`` (30 days of them, ten tasks of which one is
rare, three queues, 2 % failed, 1 % revoked) and a thousand live jobs, then times pages
of the dashboard through its ASGI app (routing, the query, rendering; no network):
the first page, a keyset page half a million rows deep, and filtered pages. Prints one
table: median and slowest of ``--repeats`` requests and the target (300 ms for the list).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from urllib.parse import quote

import psycopg
from psycopg import sql

TARGET_MS = 300.0
SCHEMA = "bench_dashboard"


def seed(dsn: str, rows: int) -> None:
    from pgqueue.db import migrations

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    migrations.migrate(dsn, SCHEMA)
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(SCHEMA)))
        conn.execute("""
            INSERT INTO results (id, queue, task, state, result, error, args, kwargs, attempt,
                                 created_at, started_at, finished_at)
            SELECT gen_random_uuid(), (ARRAY['default', 'mail', 'reports'])[1 + i %% 3],
                   CASE WHEN i %% 1000 = 7 THEN 'shop.rare_audit'
                        ELSE 'shop.task_' || (i %% 9) END,
                   CASE WHEN i %% 50 = 0 THEN 'FAILURE' WHEN i %% 100 = 1 THEN 'REVOKED'
                        ELSE 'SUCCESS' END,
                   CASE WHEN i %% 50 <> 0 THEN to_jsonb(i) END,
                   CASE WHEN i %% 50 = 0 THEN 'TimeoutError: upstream' END,
                   jsonb_build_array(i, 'customer-' || (i %% 5000)), '{}'::jsonb, 1,
                   t - interval '2 s', t - interval '1 s', t
              FROM generate_series(1, %(rows)s) i,
                   LATERAL (SELECT now() - make_interval(secs => i * 2592000.0 / %(rows)s)) s(t)
            """, {"rows": rows})
        conn.execute("""
            INSERT INTO jobs (id, queue, task, args, state, run_at)
            SELECT gen_random_uuid(), 'default', 'shop.task_' || (i % 9), jsonb_build_array(i),
                   CASE WHEN i % 10 = 0 THEN 'scheduled' ELSE 'queued' END,
                   now() + make_interval(secs => CASE WHEN i % 10 = 0 THEN 3600 ELSE 0 END)
              FROM generate_series(1, 1000) i
            """)
        conn.execute("ANALYZE results")
        conn.execute("ANALYZE jobs")
    print(f"seeded {rows:,} results and 1,000 live jobs in {time.monotonic() - started:.1f}s",
          file=sys.stderr)


def deep_cursor(dsn: str, depth: int) -> str:
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(SCHEMA)))
        row = conn.execute("SELECT finished_at, id FROM results ORDER BY finished_at DESC, "
                           "id DESC OFFSET %s LIMIT 1", [depth]).fetchone()
    assert row is not None
    return f"{row[0].isoformat()}_{row[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description="dashboard job list with a million results")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dsn", default=os.environ.get(
        "BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--keep", action="store_true", help="reuse the seeded schema")
    options = parser.parse_args()
    from starlette.testclient import TestClient

    from pgqueue import App
    from pgqueue.dashboard import create_app

    if not options.keep:
        seed(options.dsn, options.rows)
    deep = deep_cursor(options.dsn, options.rows // 2)
    app = App("bench", dsn=options.dsn, schema=SCHEMA, set_as_current=False)
    with psycopg.connect(options.dsn) as conn:
        mid = conn.execute(sql.SQL("SELECT now() - interval '15 days'")).fetchone()[0]
    since, until = (mid - timedelta(days=1)).isoformat(), mid.isoformat()
    cases = [
        ("list: first page", "/jobs", TARGET_MS),
        ("list: keyset page 500k rows deep", f"/jobs?before={quote(deep)}", TARGET_MS),
        ("list: state=FAILURE (2 %)", "/jobs?state=FAILURE", TARGET_MS),
        ("list: FAILURE, 500k deep", f"/jobs?state=FAILURE&before={quote(deep)}", TARGET_MS),
        ("list: task (11 %)", "/jobs?task=shop.task_3", TARGET_MS),
        ("list: queue=mail", "/jobs?queue=mail", TARGET_MS),
        ("list: one day, mid-range",
         f"/jobs?since={quote(since)}&until={quote(until)}", TARGET_MS),
        ("list: 200 rows a page", "/jobs?limit=200", TARGET_MS),
        ("list: live jobs only", "/jobs?state=queued", TARGET_MS),
        # No index can serve a substring of the arguments: this one scans (bounded by the
        # dashboard's 5 s statement timeout), so it has no target; narrow it with a time range.
        ("search: argument text, 1 in 5000 (scan)", "/jobs?q=customer-4321%22", None),
        ("search: argument text within one day", f"/jobs?q=customer-4321%22&since="
         f"{quote(since)}&until={quote(until)}", TARGET_MS),
        ("list: rare task (0.1 %)", "/jobs?task=shop.rare_audit", TARGET_MS),
        ("overview (last hour)", "/", None),
    ]
    print(f"{'page':38} {'median ms':>10} {'slowest':>9} {'target':>8}  verdict")
    worst = 0
    with TestClient(create_app(app)) as client:
        client.get("/jobs")  # warm the pool and templates
        for name, path, target in cases:
            times = []
            for _ in range(options.repeats):
                began = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, (path, response.status_code,
                                                     response.text[:300])
            median = statistics.median(times)
            verdict = "" if target is None else "ok" if median <= target else "OVER"
            worst += verdict == "OVER"
            print(f"{name:38} {median:10.1f} {max(times):9.1f} "
                  f"{'' if target is None else f'{target:.0f}':>8}  {verdict}")
    app.close()
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
