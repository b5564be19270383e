"""The spans a producer makes when it sends jobs, and the context it stores in their
headers (no worker: the rows are read back)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from pgqueue import App, chain, tracing
from tests.conftest import running_worker
from tests.integration.tracing.helpers import global_provider, hex_ids, traceparent_ids


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with global_provider() as exporter:
        yield exporter


def _headers(db: psycopg.Connection[Any], job_id: str) -> Any:
    row = db.execute("SELECT headers FROM jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None, f"no job {job_id}"
    return row[0]


def test_delay_makes_a_producer_span_whose_context_the_job_carries(
        app: App, db: psycopg.Connection[Any], spans: InMemorySpanExporter) -> None:
    @app.task(name="t.add", queue="maths")
    def add(x: int, y: int) -> int:
        return x + y

    # When a job is sent
    result = add.apply_async((1, 2), headers={"tenant": "acme"})

    # Then one PRODUCER span "send <queue>" describes it, per the messaging conventions
    (span,) = spans.get_finished_spans()
    assert span.name == "send maths"
    assert span.kind == SpanKind.PRODUCER
    assert span.attributes == {
        "messaging.system": "pgqueue", "messaging.operation.name": "send",
        "messaging.operation.type": "send", "messaging.destination.name": "maths",
        "pgqueue.task.name": "t.add", "messaging.message.id": result.id}
    # and the job's headers carry its context next to the ones given
    headers = _headers(db, result.id)
    assert headers["tenant"] == "acme"
    assert traceparent_ids(headers) == hex_ids(span)


def test_send_task_and_delay_inside_a_span_continue_the_callers_trace(
        app: App, db: psycopg.Connection[Any], spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("handle request") as request_span:
        result = app.send_task("t.by_name", (1,))
    send = next(s for s in spans.get_finished_spans() if s.name == "send default")
    assert send.parent is not None
    assert send.parent.span_id == request_span.get_span_context().span_id
    assert traceparent_ids(_headers(db, result.id)) == hex_ids(send)


def test_apply_many_gives_each_job_its_own_creation_context(
        app: App, db: psycopg.Connection[Any], spans: InMemorySpanExporter) -> None:
    @app.task(name="t.one")
    def one(n: int) -> int:
        return n

    results = one.apply_many([(n,) for n in range(3)])

    finished = spans.get_finished_spans()
    (send,) = [s for s in finished if s.name == "send default"]
    creates = {s.attributes["messaging.message.id"]: s for s in finished
               if s.name == "create default"}
    # One CLIENT span for the batch, one PRODUCER span per job inside it
    assert send.kind == SpanKind.CLIENT
    assert send.attributes["messaging.batch.message_count"] == 3
    assert set(creates) == {r.id for r in results}
    for result in results:
        create = creates[result.id]
        assert create.kind == SpanKind.PRODUCER
        assert create.parent is not None
        assert create.parent.span_id == hex_int(hex_ids(send)[1])
        assert traceparent_ids(_headers(db, result.id)) == hex_ids(create)


def hex_int(text: str) -> int:
    return int(text, 16)


def test_a_chains_later_steps_carry_a_creation_context_too(
        app: App, db: psycopg.Connection[Any], spans: InMemorySpanExporter) -> None:
    @app.task(name="t.step")
    def step(n: int) -> int:
        return n

    result = chain(step.s(1), step.s(), step.s()).apply_async()

    # The first step is a job now; the others wait in canvas_steps with their headers
    creates = {s.attributes["messaging.message.id"]: s for s in spans.get_finished_spans()
               if s.name == "create default"}
    waiting = db.execute("SELECT id::text, job -> 'headers' FROM canvas_steps").fetchall()
    assert len(waiting) == 2
    for step_id, headers in waiting:
        assert traceparent_ids(headers) == hex_ids(creates[step_id])
    assert result.id in {step_id for step_id, _ in waiting}


def test_a_failed_insert_ends_its_span_with_an_error(
        app: App, spans: InMemorySpanExporter) -> None:
    app.send_task("t.unique", unique_key="k")
    with pytest.raises(Exception, match="k"):
        app.send_task("t.unique", unique_key="k", on_duplicate="raise")
    failed = [s for s in spans.get_finished_spans() if s.status.status_code.name == "ERROR"]
    assert len(failed) == 1
    assert [e.name for e in failed[0].events] == ["exception"]


def test_without_a_provider_nothing_is_added_to_the_headers(
        app: App, db: psycopg.Connection[Any]) -> None:
    # Given opentelemetry imported but no tracer provider configured
    assert tracing.tracer() is None
    result = app.send_task("t.plain", (1,))
    other = app.send_task("t.plain", (2,), headers={"tenant": "acme"})
    assert _headers(db, result.id) is None
    assert _headers(db, other.id) == {"tenant": "acme"}


SENDS = """
import sys
from pgqueue import App, tracing
app = App('t', dsn=sys.argv[1], schema=sys.argv[2])
print(app.send_task('t.plain', (1,)).id)
assert tracing.tracer() is None
loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))
assert not loaded, loaded
"""


def _send_in_a_new_process(pg_dsn: str, schema: str, python_path: list[str]) -> str:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([*python_path, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SENDS, pg_dsn, schema], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_producer_that_configured_no_tracing_never_imports_opentelemetry(
        pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    job_id = _send_in_a_new_process(pg_dsn, schema, [])
    assert _headers(db, job_id) is None


def test_without_opentelemetry_pgqueue_imports_and_sends(
        pg_dsn: str, schema: str, tmp_path: Path, db: psycopg.Connection[Any]) -> None:
    # Given a Python where `import opentelemetry` fails, as without the otel extra
    fake = tmp_path / "opentelemetry"
    fake.mkdir()
    (fake / "__init__.py").write_text('raise ImportError("No module named opentelemetry")\n')
    job_id = _send_in_a_new_process(pg_dsn, schema, [str(tmp_path)])
    assert _headers(db, job_id) is None


def test_a_provider_named_by_opentelemetrys_variable_turns_tracing_on(
        pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    # OTEL_PYTHON_TRACER_PROVIDER: the API loads that provider on first use, and sets no
    # global until then
    script = ("import sys\n"
              "import opentelemetry.trace\n"
              "from pgqueue import App\n"
              "app = App('t', dsn=sys.argv[1], schema=sys.argv[2])\n"
              "print(app.send_task('t.plain', (1,)).id)\n")
    env = {**os.environ, "OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"}
    done = subprocess.run([sys.executable, "-c", script, pg_dsn, schema], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    headers = _headers(db, done.stdout.strip())
    assert len(traceparent_ids(headers)[0]) == 32


class _BrokenPropagator(TextMapPropagator):
    """An application's propagator that fails both ways."""

    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        raise RuntimeError("inject broke")

    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        raise RuntimeError("extract broke")

    @property
    def fields(self) -> set[str]:
        return {"traceparent"}


def test_a_failing_propagator_neither_stops_a_send_nor_a_run(
        app: App, db: psycopg.Connection[Any], spans: InMemorySpanExporter) -> None:
    @app.task(name="t.fine")
    def fine() -> str:
        return "ran"

    given = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(_BrokenPropagator())
    try:
        result = fine.apply_async(headers=given)
        # sent, with the headers as given
        assert _headers(db, result.id) == given
        with running_worker(app):
            assert result.get(timeout=30) == "ran"
    finally:
        propagate.set_global_textmap(before)
    # run in a trace of its own
    (run,) = [s for s in spans.get_finished_spans() if s.name == "process default"]
    assert run.parent is None
    assert run.attributes["pgqueue.task.state"] == "SUCCESS"
