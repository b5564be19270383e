"""A real `pgqueue worker` traces each run as the child of the producer's span, whatever
its pool: the worker's app configures a provider writing spans to a file."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from pgqueue import App
from tests.acceptance.procs import WorkerProcess, pgqueue_command, workers
from tests.conftest import wait_until
from tests.integration.tracing.helpers import (
    global_provider,
    hex_ids,
    read_spans,
    wait_for_span,
    worker_env,
)

pytestmark = pytest.mark.acceptance


def _worker(pg_dsn: str, schema: str, spans: Path, *args: str) -> WorkerProcess:
    """A worker of tracing_app that writes its spans to ``spans`` (WorkerProcess with
    this test's environment: the span file's path)."""
    worker = WorkerProcess.__new__(WorkerProcess)
    worker.log_path = spans.with_suffix(".log")
    worker.log = worker.log_path.open("w")
    worker.proc = subprocess.Popen(
        [*pgqueue_command(), "worker", "-A", "tracing_app", *args],
        env=worker_env(pg_dsn, schema, spans), stdout=worker.log, stderr=subprocess.STDOUT)
    return worker


@pytest.mark.parametrize("pool", ["solo", "threads", "processes", "asyncio"])
def test_each_pool_parents_the_run_on_the_producers_span(
        pg_dsn: str, schema: str, tmp_path: Path, pool: str) -> None:
    spans = tmp_path / "spans.jsonl"
    app = App("tracing-test", dsn=pg_dsn, schema=schema)
    with workers() as started, global_provider() as produced:
        worker = _worker(pg_dsn, schema, spans, "-P", pool, "-c", "2")
        started.append(worker)
        worker.wait_ready(60)
        # When jobs are sent from this process, one sync and one async task
        sent = [app.send_task("tracing.ok", (1,)), app.send_task("tracing.aok", (2,))]
        assert [r.get(timeout=30) for r in sent] == [1, 2]

        for result in sent:
            (send,) = [s for s in produced.get_finished_spans()
                       if s.attributes.get("messaging.message.id") == result.id]
            trace_id, send_id = hex_ids(send)
            # Then the worker's run is a CONSUMER span, the child of the send span
            run = wait_for_span(spans, "process default", result.id)
            assert run["kind"] == "CONSUMER"
            assert (run["trace_id"], run["parent_span_id"]) == (trace_id, send_id)
            assert run["attributes"]["pgqueue.task.state"] == "SUCCESS"
            assert run["attributes"]["messaging.system"] == "pgqueue"
            assert run["attributes"]["messaging.destination.name"] == "default"
            assert run["status"] == "UNSET"
            # and the task's own spans nest inside the run
            inner = [s for s in read_spans(spans) if s["name"] == "inside the task"
                     and s["parent_span_id"] == run["span_id"]]
            assert len(inner) == 1 and inner[0]["trace_id"] == trace_id
        app.close()


def test_a_failure_is_an_error_span_and_a_retry_an_event(
        pg_dsn: str, schema: str, tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    app = App("tracing-test", dsn=pg_dsn, schema=schema)
    with workers() as started, global_provider():
        worker = _worker(pg_dsn, schema, spans, "-P", "threads", "-c", "2")
        started.append(worker)
        worker.wait_ready(60)
        failed = app.send_task("tracing.boom")
        retried = app.send_task("tracing.retry_once")
        with pytest.raises(ValueError, match="boom"):
            failed.get(timeout=30)
        assert retried.get(timeout=30) == "second try"

        # A FAILURE: status ERROR, and the exception as an event
        run = wait_for_span(spans, "process default", failed.id)
        assert run["status"] == "ERROR"
        assert run["description"] == "ValueError: boom"
        (event,) = run["events"]
        assert event["name"] == "exception"
        assert event["attributes"]["exception.type"] == "ValueError"
        assert event["attributes"]["exception.message"] == "ValueError: boom"
        assert "raise ValueError(\"boom\")" in event["attributes"]["exception.stacktrace"]

        # A retry: the first attempt's span has a retry event, the second one succeeds,
        # both children of the one send span
        def attempts() -> list[dict[str, Any]] | None:
            found = [s for s in read_spans(spans) if s["name"] == "process default"
                     and s["attributes"]["messaging.message.id"] == retried.id]
            return found if len(found) == 2 else None
        first, second = sorted(wait_until(attempts, 30, message="two attempts"),
                               key=lambda s: s["attributes"]["pgqueue.task.attempt"])
        assert first["attributes"]["pgqueue.task.state"] == "RETRY"
        assert [e["name"] for e in first["events"]] == ["retry"]
        assert "ConnectionError: first try" in \
            first["events"][0]["attributes"]["pgqueue.retry.reason"]
        assert second["attributes"]["pgqueue.task.state"] == "SUCCESS"
        assert first["parent_span_id"] == second["parent_span_id"]
        assert first["trace_id"] == second["trace_id"]
        app.close()


HOSTILE = [
    {"traceparent": "00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-zzzzzzzzzzzzzzzz-01"},
    {"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"},
    {"traceparent": 42},
    {"traceparent": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]},
    {"traceparent": {"nested": True}},
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                    + "x" * 100_000},
    {"traceparent": None, "tracestate": "\u00ff" * 50, "baggage": "=;=,==%%%"},
    {"baggage": "k=" + "v" * 9000, "tracestate": 7},
]


def test_hostile_headers_still_run_the_job_in_a_fresh_trace(
        pg_dsn: str, schema: str, tmp_path: Path, direct_dsn: str) -> None:
    spans = tmp_path / "spans.jsonl"
    app = App("tracing-test", dsn=pg_dsn, schema=schema)
    # Given jobs whose headers were written by plain SQL, garbage under the
    # propagators' keys (the producer here traces nothing)
    with psycopg.connect(direct_dsn, autocommit=True) as db:
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        sent = []
        for headers in HOSTILE:
            result = app.send_task("tracing.ok", (1,), countdown=3600)
            db.execute("UPDATE jobs SET headers = %s, run_at = now() WHERE id = %s",
                       [Jsonb(headers), result.id])
            sent.append(result)
        # and one whose headers are not an object at all
        refused = app.send_task("tracing.ok", (1,), countdown=3600)
        db.execute("UPDATE jobs SET headers = '\"not an object\"', run_at = now() "
                   "WHERE id = %s", [refused.id])
    with workers() as started:
        worker = _worker(pg_dsn, schema, spans, "-P", "threads", "-c", "2")
        started.append(worker)
        worker.wait_ready(60)
        # Then each job runs, its span the root of a new trace
        assert [r.get(timeout=30) for r in sent] == [1] * len(HOSTILE)
        trace_ids = set()
        for result in sent:
            run = wait_for_span(spans, "process default", result.id)
            assert run["parent_span_id"] is None
            assert run["trace_id"] != "0" * 32
            trace_ids.add(run["trace_id"])
        assert len(trace_ids) == len(HOSTILE)
        # The job whose headers are not an object fails as a malformed job, as without
        # tracing, and the worker goes on
        with pytest.raises(Exception, match="headers must be a JSON object"):
            refused.get(timeout=30)
        after = app.send_task("tracing.ok", (3,))
        assert after.get(timeout=30) == 3
        assert wait_for_span(spans, "process default", after.id)["parent_span_id"] is None
        assert "Traceback" not in worker.output()
        app.close()
