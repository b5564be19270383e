"""Outcomes PostgreSQL cannot store as they are (issue 12): every job still ends, with a
clear error, and the finisher goes on with the outcomes behind it."""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App, AsyncResult
from pgqueue.db.connection import Dedicated
from pgqueue.worker.claiming import from_start
from pgqueue.worker.execution import ClaimedJob, Outcome
from pgqueue.worker.finisher import Finisher
from pgqueue.worker.holdings import Holdings
from tests.conftest import running_worker, wait_until
from tests.poison_tasks import POISON, define, executions_by_job

POOLS = ["threads", "processes", "asyncio", "solo"]


def _rows(db: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    """id → (state, result, error, traceback) of every result row."""
    return {str(r[0]): r[1:] for r in db.execute(
        "SELECT id, state, result, error, traceback FROM results").fetchall()}


# -- real workers -------------------------------------------------------------------------

@pytest.mark.parametrize("pool", POOLS)
def test_poison_outcomes_end_failure_and_the_worker_goes_on(
        app: App, db: psycopg.Connection[Any], tmp_path: Path, pool: str) -> None:
    executions = tmp_path / "executions"
    define(app, executions)
    with running_worker(app, pool=pool, concurrency=1 if pool == "solo" else 4):
        poison = {name: app.send_task(f"poison.{name}") for name in POISON}
        normal = [app.send_task("poison.echo", [i]) for i in range(20)]
        assert [r.get(timeout=30) for r in normal] == list(range(20))
        for result in poison.values():
            with pytest.raises((ValueError, TypeError)):
                result.get(timeout=30)
        after = app.send_task("poison.echo", [99])  # the worker still claims
        assert after.get(timeout=30) == 99
    rows = _rows(db)
    for name, (_, expected) in POISON.items():
        state, _, error, _ = rows[poison[name].id]
        assert state == "FAILURE", (name, error)
        assert expected in error, (name, error)
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    counts = executions_by_job(executions)
    assert counts == {r.id: 1 for r in [*poison.values(), *normal, after]}


def test_an_exception_with_unstorable_text_is_stored_in_a_safe_form(
        app: App, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    define(app, tmp_path / "executions")
    with running_worker(app):
        result = app.send_task("poison.raises_nul")
        with pytest.raises(ValueError) as raised:
            result.get(timeout=20)
    # The exception comes back with the rest of its text, and a note of the replacement.
    assert str(raised.value).startswith("bad\ufffdnews [pgqueue replaced 1 character(s)")
    state, payload, error, traceback = _rows(db)[result.id]
    assert payload["exc_type"] == "ValueError"
    assert "U+FFFD" in error and "U+FFFD" in traceback
    assert "bad\ufffdnews" in traceback and "poison_tasks.py" in traceback


def test_a_huge_exception_message_is_cut_not_stored_three_times(
        app: App, db: psycopg.Connection[Any]) -> None:
    @app.task
    def shouts() -> None:
        raise ValueError("x" * 5_000_000)

    with running_worker(app):
        result = shouts.delay()
        with pytest.raises(ValueError):
            result.get(timeout=20)
    sizes = db.execute("SELECT length(error), length(traceback), octet_length(result::text) "
                       "FROM results WHERE id = %s", [result.id]).fetchone()
    assert sizes is not None
    error, traceback, payload = sizes
    assert 64 * 1024 <= error < 70 * 1024
    assert 1024 * 1024 <= traceback < 1030 * 1024
    assert payload < 70 * 1024
    assert "characters cut by pgqueue" in db.execute(
        "SELECT error FROM results WHERE id = %s", [result.id]).fetchone()[0]  # type: ignore[index]


def test_an_oversized_result_is_not_stored_and_names_size_and_limit(
        app: App, db: psycopg.Connection[Any]) -> None:
    """Results keep a copy of the arguments: a task that returns (a multiple of) its
    argument must not store it again. Only the small FAILURE is stored with the args."""
    app.conf.result_max_bytes = 100_000

    @app.task
    def doubles(text: str) -> str:
        return text * 2

    with running_worker(app):
        result = doubles.delay("y" * 60_000)
        with pytest.raises(ValueError, match=r"120,002 bytes as JSON, over the limit of "
                                             r"100,000 bytes \(result_max_bytes\)"):
            result.get(timeout=20)
        fits = doubles.delay("y" * 40_000)
        assert fits.get(timeout=20) == "y" * 80_000
    row = db.execute("SELECT octet_length(result::text), length(error), octet_length(args::text) "
                     "FROM results WHERE id = %s", [result.id]).fetchone()
    assert row is not None
    assert row[0] < 1000 and row[1] < 1000 and row[2] == 60_004


def test_the_default_result_limit_is_10_mib(app: App) -> None:
    assert app.conf.result_max_bytes == 10 * 1024 * 1024

    @app.task
    def big(n: int) -> str:
        return "z" * n

    with running_worker(app, pool="solo"):
        over = big.delay(10 * 1024 * 1024 - 1)  # with its quotes: one byte over
        with pytest.raises(ValueError, match="10,485,761 bytes as JSON, over the limit of "
                                             "10,485,760 bytes"):
            over.get(timeout=30)
        assert len(big.delay(10 * 1024 * 1024 - 2).get(timeout=30)) == 10 * 1024 * 1024 - 2


def test_no_limit_when_the_setting_is_0(app: App) -> None:
    app.conf.result_max_bytes = 0

    @app.task
    def big() -> str:
        return "z" * 200_000

    with running_worker(app):
        assert len(big.delay().get(timeout=20)) == 200_000


# The processes pool forks from the test process, which holds the threads of every
# earlier test; this case once hung now and then: a child forked while another thread
# held pgqueue's abort lock (see test_prefork_fork_safety.py).
@pytest.mark.parametrize("pool", POOLS)
def test_an_ignored_result_is_not_checked_nor_sent(
        app: App, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture,
        pool: str) -> None:
    """Celery does not serialise an ignored result: neither does pgqueue, even from a
    child process (a lock cannot be pickled)."""
    @app.task(ignore_result=True)
    def fire_and_forget() -> Any:
        return ["a\x00b", threading.Lock()]

    with caplog.at_level(logging.INFO, "pgqueue.worker"), running_worker(app, pool=pool):
        fire_and_forget.delay()
        fire_and_forget.delay()
        wait_until(lambda: db.execute("SELECT count(*) FROM jobs").fetchone() == (0,),
                   message="the jobs to leave the queue")
    # A failure would have been stored: failures are, even for ignore_result tasks.
    assert db.execute("SELECT count(*) FROM results").fetchone() == (0,)
    if pool != "processes":  # a child's log lines do not reach caplog
        assert caplog.text.count("succeeded in") == 2
        assert "['a\\x00b', <unlocked _thread.lock object" in caplog.text
    assert fire_and_forget.apply().get()[0] == "a\x00b"  # and task.apply() returns it


def test_update_state_refuses_unstorable_meta_at_the_call(app: App,
                                                         db: psycopg.Connection[Any]) -> None:
    errors: list[str] = []

    @app.task(bind=True)
    def reports(self: Any) -> None:
        for state, meta in (("PROGRESS", {"k": "a\x00"}), ("PROGRESS", {"k\ud800": 1}),
                            ("PRO\x00GRESS", None), ("PROGRESS", "x" * 200)):
            try:
                self.update_state(state=state, meta=meta)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        self.update_state(state="PROGRESS", meta={"done": 1})  # a good one still works

    app.conf.result_max_bytes = 100
    with running_worker(app):
        reports.delay().get(timeout=20)
    name = reports.name
    assert errors == [
        f"{name}: update_state meta can't be stored: a string or key contains NUL "
        "(\\u0000), which PostgreSQL cannot store",
        f"{name}: update_state meta can't be stored: a string contains a lone surrogate "
        "(such as '\\ud800'), which is not valid Unicode and cannot be encoded as UTF-8",
        f"{name}: update_state state can't be stored: a string or key contains NUL "
        "(\\u0000), which PostgreSQL cannot store",
        f"{name}: update_state meta can't be stored: it is 202 bytes as JSON, over the "
        "limit of 100 bytes (result_max_bytes)",
    ]
    assert db.execute("SELECT meta FROM results").fetchone() == ({"done": 1},)


@pytest.mark.parametrize(("retry", "expected"), [
    ({"args": ["a\x00"]}, "the retry args of task {name} can't be stored: a string or key "
                          "contains NUL"),
    ({"kwargs": {"k": "\udfff"}}, "the retry kwargs of task {name} can't be stored: a string "
                                  "contains a lone surrogate"),
    ({"args": [{1, 2}]}, "the retry args of task {name} is not JSON-serializable"),
    ({"countdown": math.nan}, "task {name} asked to retry at an impossible time: nan"),
    ({"countdown": 1e300}, "task {name} asked to retry at an impossible time: 1e+300"),
])
def test_a_retry_that_cannot_be_stored_fails_clearly(
        app: App, db: psycopg.Connection[Any], retry: dict[str, Any], expected: str) -> None:
    runs: list[int] = []

    @app.task(bind=True, max_retries=3)
    def retries(self: Any) -> None:
        runs.append(1)
        raise self.retry(**{"countdown": 0, **retry})

    with running_worker(app):
        result = retries.delay()
        with pytest.raises((TypeError, ValueError)) as raised:
            result.get(timeout=20)
    assert expected.format(name=retries.name) in str(raised.value)
    assert len(runs) == 1
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


# -- the finisher, given outcomes that skipped the workers' checks --------------------------

def _claim(app: App, count: int) -> list[ClaimedJob]:
    app.send_many("t.any", [[i] for i in range(count)])
    db = Dedicated(app.dsn, app.schema, "test")
    rows = db.execute(app.queries["job_claim"], {
        **from_start(["default"]), "limit": count, "worker": "w", "lease": 60.0})
    db.close()
    jobs = sorted((ClaimedJob.from_row(r) for r in rows), key=lambda j: j.args[0])
    assert len(jobs) == count
    return jobs


def _finish(app: App, outcomes: list[Outcome]) -> Finisher:
    """Run a finisher thread on ``outcomes``, queued before it starts: one batch."""
    holdings = Holdings()
    finisher = Finisher(app.dsn, app.queries, "w", holdings)
    for outcome in outcomes:
        holdings.add(outcome.job_id, outcome.attempt)
        assert finisher.put(outcome)
    finisher.start()
    wait_until(lambda: finisher.flushed == len(outcomes), message="the batch to be flushed")
    finisher.stop()
    assert len(holdings) == 0  # the heartbeat no longer renews any of them
    return finisher


def test_the_finisher_singles_out_the_outcomes_the_database_refuses(
        app: App, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture) -> None:
    jobs = _claim(app, 9)
    later = datetime.now(timezone.utc) + timedelta(hours=1)

    def success(job: ClaimedJob, result: Any = None) -> Outcome:
        return Outcome(job.id, job.attempt, "SUCCESS", result=job.args[0] if result is None
                       else result)

    def retry(job: ClaimedJob, args: list[Any]) -> Outcome:
        return Outcome(job.id, job.attempt, "RETRY", run_at=later, error="again", args=args)

    deep: list[Any] = []
    for _ in range(2000):
        deep = [deep]
    outcomes = [success(jobs[0]), success(jobs[1], "a\x00b"), success(jobs[2]),
                success(jobs[3], "\ud800"), retry(jobs[4], [4]), retry(jobs[5], ["\x00"]),
                success(jobs[6]), success(jobs[7], deep), success(jobs[8])]
    with caplog.at_level(logging.ERROR, "pgqueue.worker"):
        _finish(app, outcomes)
    rows = _rows(db)
    for good in (0, 2, 6, 8):
        assert rows[jobs[good].id][:2] == ("SUCCESS", good)
    reasons = {1: "unsupported Unicode escape sequence", 3: "surrogates not allowed",
               5: "unsupported Unicode escape sequence", 7: "maximum recursion depth"}
    for bad, reason in reasons.items():
        state, payload, error, _ = rows[jobs[bad].id]
        assert state == "FAILURE"
        assert error.startswith("ValueError: outcome could not be stored: ") and reason in error
        assert payload["exc_message"] == [error.removeprefix("ValueError: ")]
    assert db.execute("SELECT id::text, state FROM jobs").fetchall() == [(jobs[4].id, "retry")]
    assert caplog.text.count("could not be stored") == 4


def test_an_outcome_that_cannot_even_fail_is_dropped_not_retried_for_ever(
        app: App, db: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture) -> None:
    jobs = _claim(app, 2)
    hopeless = Outcome("not-a-uuid", 1, "SUCCESS", result=1)
    with caplog.at_level(logging.ERROR, "pgqueue.worker"):
        _finish(app, [Outcome(jobs[0].id, 1, "SUCCESS", result=0), hopeless,
                      Outcome(jobs[1].id, 1, "SUCCESS", result=1)])
    assert db.execute("SELECT count(*) FROM results WHERE state = 'SUCCESS'").fetchone() == (2,)
    assert "dropped the outcome of job not-a-uuid attempt 1: even a FAILURE could not " \
           "be stored" in caplog.text


@pytest.mark.parametrize("fault", ["terminated", "read_only"])
def test_a_good_batch_is_one_statement_and_a_refusal_for_now_retries_it(
        app: App, db: psycopg.Connection[Any], fault: str) -> None:
    """A lost connection, or a database that refuses writes for now (a read-only standby
    after a failover, a lost grant), is retried whole: splitting would not help."""
    jobs = _claim(app, 5)
    holdings = Holdings()
    finisher = Finisher(app.dsn, app.queries, "w", holdings)
    statements: list[bytes] = []
    execute = finisher.db.execute

    def counting(query: bytes, params: dict[str, Any] | None = None) -> list[Any]:
        statements.append(query)
        return execute(query, params)

    finisher.db.execute = counting  # type: ignore[method-assign]
    conn = finisher.db.connect()
    if fault == "terminated":
        pid = conn.info.backend_pid
        db.execute("SELECT pg_terminate_backend(%s)", [pid])
        wait_until(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                      [pid]).fetchone() == (0,), message="the backend to end")
    else:  # this session only; the retry's new connection can write
        conn.execute("SET default_transaction_read_only = on")
    outcomes = [Outcome(j.id, j.attempt, "SUCCESS", result=j.args[0]) for j in jobs]
    for outcome in outcomes:
        holdings.add(outcome.job_id, outcome.attempt)
    finisher._flush_with_retry(outcomes, give_up_after=None)
    # The first attempt met the fault; the retry is the same single statement.
    assert statements == [app.queries["job_finish"]] * 2
    assert db.execute("SELECT count(*) FROM results WHERE state = 'SUCCESS'").fetchone() == (5,)
    finisher.db.close()


def test_reading_back_a_poison_failure_gives_the_note(app: App, tmp_path: Path) -> None:
    define(app, tmp_path / "executions")
    with running_worker(app, pool="solo"):
        result = app.send_task("poison.nul_key")
        with pytest.raises(ValueError, match="the return value of task poison.nul_key "
                                             "can't be stored: a string or key contains NUL"):
            result.get(timeout=20)
    assert AsyncResult(result.id, app).state == "FAILURE"
