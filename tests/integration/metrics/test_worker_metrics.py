"""`pgqueue worker --metrics-port`: a real worker's /metrics, scraped and parsed."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgqueue import App
from tests.acceptance.procs import WorkerProcess, _free_port, workers
from tests.conftest import wait_until
from tests.integration.metrics.helpers import (
    HERE,
    parse,
    run_cli,
    sample,
    scrape,
    without_prometheus,
)

pytestmark = pytest.mark.acceptance


def _env(dsn: str, schema: str, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema, "PYTHONPATH": path,
            **extra}


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_the_worker_counts_each_outcome_once_per_task_and_queue(
        pg_dsn: str, schema: str, pool: str) -> None:
    # Given a worker serving its metrics
    port = _free_port()
    app = App("metrics-test", dsn=pg_dsn, schema=schema)
    with workers() as started:
        worker = WorkerProcess(pg_dsn, schema, "metrics_app", "-P", pool, "-c", "2",
                               "--metrics-port", str(port), apps_dir=HERE)
        started.append(worker)
        worker.wait_ready(60)
        # When it runs 5 successes, 2 failures and a job retried once
        for n in range(5):
            app.send_task("metrics.ok", (n,))
        for _ in range(2):
            app.send_task("metrics.boom")
        app.send_task("metrics.retry_once")

        # Then each outcome is counted under its task and queue
        def settled() -> dict | None:  # type: ignore[type-arg]
            samples = parse(scrape(port))
            done = sum(sample(samples, f"pgqueue_jobs_{what}_total", task=t, queue="default")
                       for what, t in (("succeeded", "metrics.ok"), ("failed", "metrics.boom"),
                                       ("succeeded", "metrics.retry_once")))
            return samples if done == 8 else None

        samples = wait_until(settled, timeout=90, interval=0.2, message="8 outcomes counted")
        app.close()
    q = {"queue": "default"}
    assert sample(samples, "pgqueue_jobs_started_total", task="metrics.ok", **q) == 5
    assert sample(samples, "pgqueue_jobs_started_total", task="metrics.boom", **q) == 2
    assert sample(samples, "pgqueue_jobs_started_total", task="metrics.retry_once", **q) == 2
    assert sample(samples, "pgqueue_jobs_retried_total", task="metrics.retry_once", **q) == 1
    assert sample(samples, "pgqueue_jobs_failed_total", task="metrics.ok", **q) == 0
    assert sample(samples, "pgqueue_jobs_revoked_total", task="metrics.ok", **q) == 0
    assert sample(samples, "pgqueue_job_run_seconds_count", task="metrics.ok") == 5
    assert sample(samples, "pgqueue_job_run_seconds_count", task="metrics.retry_once") == 2
    assert sample(samples, "pgqueue_job_wait_seconds_count", queue="default") == 9
    assert sample(samples, "pgqueue_job_wait_seconds_bucket", queue="default", le="+Inf") == 9
    assert sample(samples, "pgqueue_worker_pool_slots") == 2
    assert sample(samples, "pgqueue_worker_pool_busy_slots") == 0
    info = [k for k in samples if k[0] == "pgqueue_worker_info"]
    assert len(info) == 1 and ("pool", pool) in info[0][1]


def test_a_task_name_with_quotes_and_newlines_is_escaped_in_labels(
        pg_dsn: str, schema: str, db: psycopg.Connection) -> None:  # type: ignore[type-arg]
    # Given a row written with plain SQL whose task name no producer would accept
    weird = 'say "hi"\nand \\ bye'
    db.execute(sql.SQL("INSERT INTO {}.jobs (id, queue, task) VALUES (%s, 'default', %s)")
               .format(sql.Identifier(schema)), [uuid.uuid4(), weird])
    port = _free_port()
    with workers() as started:
        worker = WorkerProcess(pg_dsn, schema, "metrics_app", "--metrics-port", str(port),
                               apps_dir=HERE)
        started.append(worker)
        worker.wait_ready(60)
        # Then the worker's exposition parses back to the very name
        samples = wait_until(
            lambda: (s := parse(scrape(port))) and sample(
                s, "pgqueue_jobs_failed_total", task=weird, queue="default") == 1 and s,
            timeout=60, interval=0.2, message="the odd job counted")
    assert sample(samples, "pgqueue_jobs_failed_total", task=weird, queue="default") == 1


def test_a_port_in_use_is_one_error_line(pg_dsn: str, schema: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("worker", "-A", "metrics_app", "--metrics-port", str(port),
                       env=_env(pg_dsn, schema))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_a_bad_port_is_refused(pg_dsn: str, schema: str, port: str) -> None:
    done = run_cli("worker", "-A", "metrics_app", "--metrics-port", port,
                   env=_env(pg_dsn, schema))
    assert done.returncode == 2
    assert "Error: Invalid value for '--metrics-port'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["worker", "-A", "metrics_app", "--metrics-port", "9"],
                                     ["metrics", "--once"]])
def test_without_the_extra_the_error_names_it(
        pg_dsn: str, schema: str, tmp_path: Path, command: list[str]) -> None:
    env = _env(pg_dsn, schema)
    env["PYTHONPATH"] = os.pathsep.join([without_prometheus(tmp_path), env["PYTHONPATH"]])
    done = run_cli(*command, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        'Error: metrics need the prometheus_client package: '
        'pip install "pgqueue-tasks[metrics]"']


def test_a_host_that_cannot_be_bound_is_one_error_line(pg_dsn: str, schema: str) -> None:
    done = run_cli("worker", "-A", "metrics_app", "--metrics-port", "9",
                   "--metrics-host", "256.1.1.1", env=_env(pg_dsn, schema))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot serve metrics on 256.1.1.1:9: ")
