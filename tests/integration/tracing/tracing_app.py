"""Tasks for the tracing tests: ``pgqueue worker -A tracing_app``.

With ``PGQUEUE_TEST_SPANS`` set, the worker configures a tracer provider (as a deployed
app would) whose spans go, one JSON object a line, to that file.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from pgqueue import App, Task

app = App("tracing_app")


def span_record(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name, "kind": span.kind.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "status": span.status.status_code.name, "description": span.status.description,
        "attributes": dict(span.attributes or {}),
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})}
                   for e in span.events],
        "pid": os.getpid(),
    }


class JsonLinesExporter(SpanExporter):
    """Appends each span to a file: one ``write`` per span, so that the forked children
    of ``-P processes`` and the threads of ``-P threads`` never mix their lines."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS


if os.environ.get("PGQUEUE_TEST_SPANS"):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(
        JsonLinesExporter(os.environ["PGQUEUE_TEST_SPANS"])))
    trace.set_tracer_provider(provider)

tracer = trace.get_tracer("tracing_app")


@app.task(name="tracing.ok")
def ok(n: int) -> int:
    with tracer.start_as_current_span("inside the task"):
        return n


@app.task(name="tracing.aok")
async def aok(n: int) -> int:
    with tracer.start_as_current_span("inside the task"):
        await asyncio.sleep(0)
        return n


@app.task(name="tracing.boom")
def boom() -> None:
    raise ValueError("boom")


@app.task(bind=True, name="tracing.retry_once", max_retries=3)
def retry_once(self: Task) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0, exc=ConnectionError("first try"))
    return "second try"
