"""``headers=``, ``shadow=``, ``routing_key=``/``exchange=`` and ``request.eta`` with a real
worker: headers are stored with the job (and its result) and reach ``self.request``,
with what ``before_task_publish`` receivers add; ``shadow`` names the task in log lines;
a routing key names the queue; ``exchange`` is refused; ``countdown`` sets ``eta``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import App, signals
from pgqueue.canvas import Signature
from pgqueue.limits import MAX_HEADERS_BYTES
from pgqueue.utils import utcnow
from tests.conftest import running_worker


@pytest.fixture
def seen(app: App) -> dict[str, Any]:
    found: dict[str, Any] = {}

    @app.task(name="t.look", bind=True)
    def look(self: Any) -> dict[str, Any]:
        found[self.request.id] = self.request
        return {"headers": self.request.headers, "shadow": self.request.shadow,
                "queue": self.request.queue}

    return found


@pytest.fixture
def tracer() -> Iterator[None]:
    def inject(headers: dict[str, Any], **_: Any) -> None:
        headers["traceparent"] = "00-abc-def-01"

    signals.before_task_publish.connect(inject, sender="t.look", weak=False)
    yield
    signals.before_task_publish.disconnect(inject, sender="t.look")


def test_headers_reach_the_task_sql_and_the_result(
        app: App, seen: dict[str, Any], db: psycopg.Connection[Any]) -> None:
    with running_worker(app):
        sent = app.send_task("t.look", headers={"tenant": "acme", "n": [1, 2]})
        assert sent.get(timeout=10)["headers"] == {"tenant": "acme", "n": [1, 2]}
        by_signature = Signature("t.look", app=app).set(headers={"k": "v"}).apply_async()
        assert by_signature.get(timeout=10)["headers"] == {"k": "v"}
        plain = app.send_task("t.look")
        assert plain.get(timeout=10)["headers"] is None
    row = db.execute("SELECT headers->>'tenant' FROM results WHERE id = %s",
                     [sent.id]).fetchone()
    assert row == ("acme",)


def test_what_a_publish_receiver_adds_is_stored(
        app: App, seen: dict[str, Any], tracer: None, db: psycopg.Connection[Any]) -> None:
    with running_worker(app):
        given = app.send_task("t.look", headers={"tenant": "acme"})
        assert given.get(timeout=10)["headers"] == {"tenant": "acme",
                                                     "traceparent": "00-abc-def-01"}
        bare = app.send_task("t.look")  # protocol keys (lang, origin ...) are not kept
        assert bare.get(timeout=10)["headers"] == {"traceparent": "00-abc-def-01"}
    assert db.execute("SELECT headers FROM results WHERE id = %s", [bare.id]
                      ).fetchone() == ({"traceparent": "00-abc-def-01"},)


@pytest.mark.parametrize(("headers", "error", "words"), [
    ("tenant=acme", TypeError, "headers must be a dict, not 'tenant=acme'"),
    ({1: "x"}, TypeError, "keys must be strings, got 1"),
    ({"k": "a\x00b"}, ValueError, "NUL"),
    ({"k\x00": "v"}, ValueError, "NUL"),
    ({"k": object()}, TypeError, "not JSON-serializable"),
    ({"k": "x" * MAX_HEADERS_BYTES}, ValueError, "over the limit of 65,536 bytes"),
    ({"k": "\ud800"}, ValueError, "lone surrogate"),
])
def test_hostile_headers_are_refused_in_one_line(
        app: App, seen: dict[str, Any], db: psycopg.Connection[Any],
        headers: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as caught:
        app.send_task("t.look", headers=headers)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert "t.look: headers" in str(caught.value)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_a_receiver_adding_unstorable_headers_is_refused(
        app: App, seen: dict[str, Any], db: psycopg.Connection[Any]) -> None:
    def bad(headers: dict[str, Any], **_: Any) -> None:
        headers["bad"] = "\x00"

    signals.before_task_publish.connect(bad, sender="t.look", weak=False)
    try:
        with pytest.raises(ValueError, match="with what before_task_publish added"):
            app.send_task("t.look")
    finally:
        signals.before_task_publish.disconnect(bad, sender="t.look")
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_headers_written_by_sql_that_are_not_an_object_fail_that_job(
        app: App, seen: dict[str, Any], db: psycopg.Connection[Any]) -> None:
    job = app.send_task("t.look", countdown=3600)
    db.execute("UPDATE jobs SET headers = '[1]', state = 'queued', run_at = now() "
               "WHERE id = %s", [job.id])
    with running_worker(app), pytest.raises(Exception, match="must be a JSON object"):
        job.get(timeout=10)


def test_shadow_names_the_task_in_log_lines(
        app: App, seen: dict[str, Any], caplog: pytest.LogCaptureFixture,
        db: psycopg.Connection[Any]) -> None:
    caplog.set_level(logging.INFO, logger="pgqueue")
    with running_worker(app):
        job = app.send_task("t.look", shadow="reports.nightly")
        assert job.get(timeout=10)["shadow"] == "reports.nightly"
    lines = [r.getMessage() for r in caplog.records if job.id in r.getMessage()]
    assert any(line.startswith(f"Task reports.nightly[{job.id}] succeeded") for line in lines)
    # the result keeps the real name, so AsyncResult.name and SQL by task still work
    assert db.execute("SELECT task FROM results WHERE id = %s", [job.id]
                      ).fetchone() == ("t.look",)
    with pytest.raises(ValueError, match="t.look: shadow"):
        app.send_task("t.look", shadow="bad\x00name")


def test_routing_key_names_the_queue_unless_queue_is_given(
        app: App, seen: dict[str, Any]) -> None:
    with running_worker(app, queues=["reports", "other"]):
        routed = app.send_task("t.look", routing_key="reports")
        assert routed.get(timeout=10)["queue"] == "reports"
        both = app.send_task("t.look", routing_key="reports", queue="other")
        assert both.get(timeout=10)["queue"] == "other"
    with pytest.raises(ValueError, match="t.look: routing_key"):
        app.send_task("t.look", routing_key="x" * 1000)


def test_exchange_is_refused_naming_queue(app: App, seen: dict[str, Any]) -> None:
    with pytest.raises(TypeError) as caught:
        app.send_task("t.look", exchange="tasks")
    assert "'exchange'" in str(caught.value) and "queue=" in str(caught.value)


def test_countdown_sets_request_eta(app: App, seen: dict[str, Any]) -> None:
    before = utcnow()
    with running_worker(app):
        job = app.send_task("t.look", countdown=1)
        job.get(timeout=10)
        now = app.send_task("t.look", countdown=0)
        now.get(timeout=10)
    eta = seen[job.id].eta
    assert isinstance(eta, datetime)
    assert before + timedelta(seconds=1) <= eta <= utcnow()
    assert before <= seen[now.id].eta <= utcnow()
