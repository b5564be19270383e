"""A send whose commit landed but whose answer was lost (a failover: the standby has the
row, the client saw its connection die) is sent again by the producer. By then its job
may have run and finished on a worker of the new primary: the retry must not make it run
a second time (docs/deploying.md, "Through a failover"). A retry whose first try did not
land, or a task_id given again by its caller, is still sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.conftest import running_worker, wait_until

LOST = "server closed the connection unexpectedly"


def count(db: psycopg.Connection[Any], table: str, job_id: str) -> int:
    found = db.execute(f"SELECT count(*) FROM {table} WHERE id = %s::uuid", [job_id]).fetchone()
    assert found is not None
    return int(found[0])


def first_send_fails(app: App, monkeypatch: pytest.MonkeyPatch, *, landed: bool,
                     meanwhile: Callable[[str], None]) -> list[bytes]:
    """The next send's insert loses its answer: after it committed (``landed``) or
    before it ran; ``meanwhile(job_id)`` runs in between, as a failover's seconds do."""
    real = app.run_pooled
    sent: list[bytes] = []

    def run_pooled(query: Any, params: dict[str, Any] | None, needs: str = "producer"
                   ) -> list[Any]:
        text = getattr(query, "query", query)
        if b"INSERT INTO" not in text or b".jobs (" not in text:
            return real(query, params, needs)  # the worker's, the result reads
        sent.append(text)
        if len(sent) > 1:
            return real(query, params, needs)
        assert params is not None
        if landed:
            real(query, params, needs)
        meanwhile(params["id"])
        raise psycopg.OperationalError(LOST)

    monkeypatch.setattr(app, "run_pooled", run_pooled)
    return sent


@pytest.mark.parametrize("way", ["general", "short"])
def test_a_job_that_ran_before_the_resend_does_not_run_again(
        app: App, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch,
        way: str) -> None:
    ran: list[int] = []

    @app.task(name="t.once")
    def once(n: int) -> int:
        ran.append(n)
        return n

    if way == "short":
        once.delay(0)  # made the short way's builder
        db.execute("DELETE FROM jobs")

    def run_it(job_id: str) -> None:
        with running_worker(app, concurrency=1):
            wait_until(lambda: count(db, "results", job_id) == 1, timeout=30,
                       message="the first try's job finished")

    sent = first_send_fails(app, monkeypatch, landed=True, meanwhile=run_it)
    result = once.delay(1)
    assert len(sent) == 2, "the send was not tried again"
    assert result.get(timeout=10) == 1
    assert count(db, "jobs", result.id) == 0, "the retry queued the finished job again"
    assert count(db, "results", result.id) == 1
    assert ran == [1]
    assert b"NOT EXISTS" in sent[1] and b"NOT EXISTS" not in sent[0]


def test_a_retry_whose_first_try_did_not_land_is_sent(
        app: App, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    @app.task(name="t.plain")
    def plain() -> None: ...

    first_send_fails(app, monkeypatch, landed=False, meanwhile=lambda _id: None)
    result = plain.delay()
    assert count(db, "jobs", result.id) == 1


def test_a_task_id_sent_again_by_its_caller_still_runs_again(
        app: App, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Reusing a task_id is the caller's choice (as in Celery): a retry of such a send
    whose first try did not land inserts it, although an earlier result has that id."""
    ran: list[str] = []

    @app.task(name="t.named")
    def named(tag: str) -> str:
        ran.append(tag)
        return tag

    job_id = "0191e2a4-5b6c-4d7e-8f90-a1b2c3d4e5f6"
    with running_worker(app, concurrency=1):
        assert named.apply_async(("first",), task_id=job_id).get(timeout=30) == "first"
        first_send_fails(app, monkeypatch, landed=False, meanwhile=lambda _id: None)
        named.apply_async(("second",), task_id=job_id)
        wait_until(lambda: ran == ["first", "second"], timeout=30,
                   message="the task_id sent again ran again")
