"""Tracer providers and span files for the tracing tests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from tests.conftest import wait_until

HERE = Path(__file__).resolve().parent


@contextmanager
def global_provider() -> Iterator[InMemorySpanExporter]:
    """A tracer provider set globally, as an application sets it, for the block only: the
    API lets a process set one once, so it is unset afterwards (as OpenTelemetry's own
    tests do), and tests after this one see no provider."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        _unset_provider()
        provider.shutdown()


def _unset_provider() -> None:
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def traceparent_ids(headers: Any) -> tuple[str, str]:
    """The trace and parent span ids of a W3C traceparent header."""
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    return trace_id, span_id


def worker_env(dsn: str, schema: str, spans: Path) -> dict[str, str]:
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema, "PYTHONPATH": path,
            "PGQUEUE_TEST_SPANS": str(spans)}


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_for_span(path: Path, name: str, message_id: str,
                  timeout: float = 30) -> dict[str, Any]:
    """The span ``name`` of the job ``message_id`` that the worker wrote to ``path``."""
    def found() -> dict[str, Any] | None:
        return next((s for s in read_spans(path) if s["name"] == name
                     and s["attributes"].get("messaging.message.id") == message_id), None)
    span: dict[str, Any] = wait_until(found, timeout, interval=0.05,
                                      message=f"span {name} of job {message_id}")
    return span
