"""A job revoked while an attempt runs never runs again, on any worker, however late:
the revoke flags its row, and the worker that claims its retry ends it REVOKED without
running it, as Celery's workers discard a revoked id. Real `pgqueue worker` processes
(apps/pool_gaps.py)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.acceptance.procs import workers
from tests.conftest import wait_until
from tests.integration.worker.pool_gaps_helpers import lines, mark, start

pytestmark = pytest.mark.acceptance


def test_the_retry_of_a_job_revoked_while_it_ran_is_refused_by_another_worker(
        gaps_app: App, pg_dsn: str, schema: str, marks: Path) -> None:
    """Worker A runs the first attempt and stops after it (a warm shutdown); the job is
    revoked meanwhile (no terminate: the attempt runs to its end, as in Celery); the
    attempt asks for a retry, which worker B, started after the revoke (it never saw
    the request), claims and ends REVOKED without running it. A terminate that reaches
    the worker after the attempt ended is the same case: the revoke flagged the row
    whatever the request does."""
    with workers() as procs:
        first = start(procs, pg_dsn, schema, "-P", "threads", "-c", "1", "-l", "INFO",
                      "-n", "first@gaps")
        job = gaps_app.send_task("pool_gaps.retries_after", ["go"])
        wait_until(lambda: lines(marks, "attempt", job.id), timeout=30,
                   message="the first attempt")
        first.signal(signal.SIGTERM)  # a warm shutdown: the attempt ends first
        wait_until(lambda: "SIGTERM received" in first.output(), timeout=30,
                   message="worker A stopping")
        assert gaps_app.control.revoke(job.id) == []  # running: not revoked at once
        second = start(procs, pg_dsn, schema, "-P", "threads", "-c", "1", "-l", "INFO",
                       "-n", "second@gaps")
        mark(marks, "go")
        wait_until(lambda: job.state == "REVOKED", timeout=60,
                   message=f"the retry refused\n{first.output()}\n{second.output()}")
        assert first.wait(60) == 0
        assert f"Discarding revoked task: pool_gaps.retries_after[{job.id}]" \
            in second.output(), second.output()
        assert gaps_app.send_task("pool_gaps.quick", [7]).get(timeout=30) == 7
    assert [m[2] for m in lines(marks, "attempt", job.id)] == ["0"]  # never ran again


def test_a_revoke_flags_a_started_row_whatever_its_options_hold(
        gaps_app: App, db: psycopg.Connection[Any]) -> None:
    """Hostile rows: a started job whose options column is not an object (written by
    plain SQL) is flagged all the same; the revoke does not fail."""
    [job] = gaps_app.send_many("pool_gaps.quick", [[1]])
    db.execute("UPDATE jobs SET state = 'started', worker = 'w', attempt = 1, "
               "lease_expires_at = now() + interval '1 minute', options = '[1, 2]'::jsonb")
    assert gaps_app.control.revoke(job.id) == []  # started: left to its worker
    [(options,)] = db.execute("SELECT options FROM jobs").fetchall()
    assert options == {"revoked": True}


def test_an_abort_does_not_flag_the_row_revoked(
        gaps_app: App, db: psycopg.Connection[Any]) -> None:
    """An aborted job that is rescued runs again, told (is_aborted() True), as in
    Celery: abort shares the revoke's statement, but not its flag."""
    from pgqueue.contrib.abortable import AbortableAsyncResult

    [job] = gaps_app.send_many("pool_gaps.quick", [[1]])
    db.execute("UPDATE jobs SET state = 'started', worker = 'w', attempt = 1, "
               "lease_expires_at = now() + interval '1 minute'")
    AbortableAsyncResult(job.id, app=gaps_app).abort()
    [(options,)] = db.execute("SELECT options FROM jobs").fetchall()
    assert options.get("aborted") is True and "revoked" not in options
