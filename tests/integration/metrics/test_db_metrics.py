"""`pgqueue metrics --once` and `--port`: what the database knows, against a seeded schema."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from pgqueue import App
from pgqueue.cli import main
from tests.acceptance.procs import _free_port
from tests.conftest import wait_until
from tests.integration.metrics.helpers import parse, sample, scrape


def metrics_once(dsn: str, schema: str, *args: str) -> str:
    done = CliRunner().invoke(main, ["metrics", "--once", "--dsn", dsn, "--schema", schema,
                                     *args], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    return done.output


def seed(app: App, db: psycopg.Connection, schema: str) -> None:  # type: ignore[type-arg]
    def run(statement: str, params: list[object]) -> None:
        db.execute(sql.SQL(statement).format(sql.Identifier(schema)), params)

    for n in range(3):
        app.send_task("shop.mail", (n,), queue="mail")
    app.send_task("shop.report", queue="reports", countdown=3600)
    # the oldest queued mail could run ten minutes ago
    run("UPDATE {0}.jobs SET run_at = now() - interval '10 minutes' "
        "WHERE id = (SELECT id FROM {0}.jobs WHERE queue = 'mail' LIMIT 1)", [])
    for state, ago in (("SUCCESS", "1 minute"), ("SUCCESS", "2 minutes"),
                       ("FAILURE", "1 minute"), ("SUCCESS", "2 days")):
        run("INSERT INTO {}.results (id, queue, task, state, created_at, finished_at) "
            f"VALUES (%s, 'mail', 'shop.mail', %s, now(), now() - interval '{ago}')",
            [uuid.uuid4(), state])
    run("INSERT INTO {}.workers (id, hostname, pid, queues, concurrency, pool) "
        "VALUES ('w1', 'h', 1, '{{mail}}', 8, 'threads')", [])
    run("INSERT INTO {}.workers (id, hostname, pid, queues, concurrency, pool, last_seen_at) "
        "VALUES ('w2', 'h', 2, '{{mail}}', 4, 'threads', now() - interval '1 hour')", [])
    run("INSERT INTO {}.schedules (name, task, every, next_run_at) "
        "VALUES ('nightly', 'shop.report', '1 day', '2030-01-01T00:00:00Z')", [])
    run("INSERT INTO {}.schedules (name, task, every, next_run_at, enabled) "
        "VALUES ('paused', 'shop.report', '1 day', '2030-01-01T00:00:00Z', false)", [])


def test_metrics_once_prints_what_the_tables_hold(
        app: App, db: psycopg.Connection, pg_dsn: str, schema: str) -> None:  # type: ignore[type-arg]
    seed(app, db, schema)
    samples = parse(metrics_once(pg_dsn, schema))
    assert sample(samples, "pgqueue_database_up") == 1
    assert sample(samples, "pgqueue_queue_jobs", queue="mail", state="queued") == 3
    assert sample(samples, "pgqueue_queue_jobs", queue="reports", state="scheduled") == 1
    age = sample(samples, "pgqueue_queue_oldest_job_age_seconds", queue="mail")
    assert 600 <= age < 3600
    assert ("pgqueue_queue_oldest_job_age_seconds", (("queue", "reports"),)) not in samples
    recent = {"queue": "mail", "task": "shop.mail"}
    assert sample(samples, "pgqueue_results_recent_jobs", state="SUCCESS", **recent) == 2
    assert sample(samples, "pgqueue_results_recent_jobs", state="FAILURE", **recent) == 1
    assert sample(samples, "pgqueue_workers", state="alive") == 1
    assert sample(samples, "pgqueue_workers", state="dead") == 1
    assert sample(samples, "pgqueue_workers_pool_slots") == 8
    fire = sample(samples, "pgqueue_schedule_next_fire_timestamp_seconds",
                  schedule="nightly", task="shop.report")
    assert fire == 1893456000.0
    assert not [k for k in samples if ("schedule", "paused") in k[1]]
    # a wider window counts the result of two days ago too
    wide = parse(metrics_once(pg_dsn, schema, "--window", str(3 * 86400)))
    assert sample(wide, "pgqueue_results_recent_jobs", state="SUCCESS", **recent) == 3


def test_label_values_from_plain_sql_rows_are_escaped(
        db: psycopg.Connection, pg_dsn: str, schema: str) -> None:  # type: ignore[type-arg]
    weird_queue, weird_task = 'q "1"\\', 'task\nwith "quotes"'
    db.execute(sql.SQL("INSERT INTO {}.jobs (id, queue, task) VALUES (%s, %s, %s)")
               .format(sql.Identifier(schema)), [uuid.uuid4(), weird_queue, weird_task])
    db.execute(sql.SQL("INSERT INTO {}.results (id, queue, task, state, created_at) "
                       "VALUES (%s, %s, %s, 'FAILURE', now())").format(sql.Identifier(schema)),
               [uuid.uuid4(), weird_queue, weird_task])
    samples = parse(metrics_once(pg_dsn, schema))
    assert sample(samples, "pgqueue_queue_jobs", queue=weird_queue, state="queued") == 1
    assert sample(samples, "pgqueue_results_recent_jobs", queue=weird_queue, task=weird_task,
                  state="FAILURE") == 1


def test_metrics_needs_once_or_port(pg_dsn: str, schema: str) -> None:
    for args in ([], ["--once", "--port", "9100"]):
        done = CliRunner().invoke(main, ["metrics", "--dsn", pg_dsn, "--schema", schema, *args])
        assert done.exit_code == 2
        assert "Error: give either --once (print) or --port (serve)" in done.output


def test_metrics_once_on_a_schema_without_tables_is_one_error_line(pg_dsn: str) -> None:
    done = CliRunner().invoke(main, ["metrics", "--once", "--dsn", pg_dsn, "--schema",
                                     f"nothing_{uuid.uuid4().hex[:8]}"])
    assert done.exit_code == 1
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the pgqueue tables are not in")


@pytest.mark.acceptance
def test_metrics_serves_until_terminated(pg_dsn: str, schema: str) -> None:
    port = _free_port()
    env = {**os.environ, "PGQUEUE_DSN": pg_dsn, "PGQUEUE_SCHEMA": schema}
    proc = subprocess.Popen([sys.executable, "-m", "pgqueue", "metrics", "--port", str(port)],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        def answers() -> dict | None:  # type: ignore[type-arg]
            try:
                return parse(scrape(port))
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                return None

        samples = wait_until(answers, timeout=60, interval=0.1, message="/metrics answers")
        assert sample(samples, "pgqueue_database_up") == 1
        assert sample(samples, "pgqueue_workers", state="alive") == 0
    finally:
        proc.terminate()
        started = time.monotonic()
        assert proc.wait(30) == 0, time.monotonic() - started
