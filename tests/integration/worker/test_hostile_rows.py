"""Rows written by plain SQL, around the producer's checks: each fails alone, with its
fault named; the claim goes on for every other job, which runs once."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue import App
from pgqueue.worker.claiming import from_start
from tests.conftest import running_worker, wait_until

DEEP = "[" * 1000 + "]" * 1000  # jsonb takes it; Python's decoder recurses out

# (args, kwargs, options, what the FAILURE's error must name)
MALFORMED: list[tuple[str, str, str, str]] = [
    ("[]", "{}", "[1, 2]", "options must be a JSON object"),
    ("[]", "{}", '"lease"', "options must be a JSON object"),
    ("[]", "{}", "42", "options must be a JSON object"),
    ("[]", "{}", '{"lease": "abc"}', "options.lease must be a number of seconds"),
    ("[]", "{}", '{"lease": 1e300}', "options.lease must be a number of seconds"),
    ("[]", "{}", '{"lease": 1e400}', "options.lease must be a number of seconds"),
    ("[]", "{}", '{"lease": -5}', "options.lease must be a number of seconds"),
    ("[]", "{}", '{"time_limit": "x"}', "options.time_limit must be"),
    ("[]", "{}", '{"soft_time_limit": true}', "options.soft_time_limit must be"),
    ("[]", "{}", '{"eta": "junk"}', "options.eta must be an ISO 8601"),
    ('{"a": 1}', "{}", "{}", "args must be a JSON array"),
    ('"x"', "{}", "{}", "args must be a JSON array"),
    ("[]", "[1]", "{}", "kwargs must be a JSON object"),
    (DEEP, "{}", "{}", "args: nested too deep to decode"),
    ("[]", '{"k": ' + DEEP + "}", "{}", "kwargs: nested too deep to decode"),
]


def insert_raw(db: psycopg.Connection[Any], queue: str, args: str, kwargs: str,
               options: str, priority: int = 5) -> str:
    row = db.execute(
        "INSERT INTO jobs (id, queue, task, args, kwargs, priority, options) "
        "VALUES (gen_random_uuid(), %s, 'echo', %s::jsonb, %s::jsonb, %s, %s::jsonb) "
        "RETURNING id::text", [queue, args, kwargs, priority, options]).fetchone()
    assert row is not None
    return str(row[0])


def outcomes(db: psycopg.Connection[Any], ids: list[str]) -> dict[str, tuple[Any, ...]]:
    rows = db.execute("SELECT id::text, state, error, attempt FROM results "
                      "WHERE id = ANY(%s::uuid[])", [ids]).fetchall()
    return {row[0]: row[1:] for row in rows}


@pytest.mark.parametrize("queues", [["default"], ["other", "default"]],
                         ids=["one queue", "two queues"])
def test_malformed_rows_fail_alone_and_the_worker_goes_on(
        app: App, db: psycopg.Connection[Any], queues: list[str]) -> None:
    ran: list[Any] = []

    @app.task(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        ran.append(args)
        return args

    good = [r.id for r in echo.apply_many([(n,) for n in range(20)])]
    # Above the good jobs' priority, so that each claim batch takes bad rows first.
    bad = {insert_raw(db, "default", *row[:3]): row[3] for row in MALFORMED}
    with running_worker(app, queues=queues, concurrency=8) as worker:
        done = wait_until(lambda: len(found := outcomes(db, good + list(bad))) == 35 and found,
                          timeout=30, message="every job final")
        assert {done[i][0] for i in good} == {"SUCCESS"}
        assert {done[i][2] for i in good} == {1}
        for job_id, words in bad.items():
            state, error, attempt = done[job_id]
            assert (state, attempt) == ("FAILURE", 1)
            assert error.startswith(f"MalformedJob: job {job_id} cannot run: "), error
            assert words in error and "\n" not in error
        assert sorted(ran) == [(n,) for n in range(20)]  # each good job once, no bad one
        # The worker is alive and claims.
        assert echo.apply_async((99,), queue=queues[0]).get(timeout=10) == [99]
        assert worker.pool.free_slots() == 8
    assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_one_undecodable_row_does_not_cost_its_batch_an_attempt(
        app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(name="echo")
    def echo(*args: Any) -> Any:
        return args

    before = [r.id for r in echo.apply_many([(n,) for n in range(5)], priority=6)]
    deep = insert_raw(db, "default", DEEP, "{}", "{}", priority=5)
    after = [r.id for r in echo.apply_many([(n,) for n in range(5)], priority=4)]
    with running_worker(app, concurrency=20):  # one claim takes all eleven
        done = wait_until(lambda: len(found := outcomes(db, [*before, deep, *after])) == 11
                          and found, timeout=30, message="every job final")
    assert {done[i][:1] + done[i][2:] for i in before + after} == {("SUCCESS", 1)}
    assert done[deep][0] == "FAILURE" and "args: nested too deep" in done[deep][1]


def test_claim_and_heartbeat_statements_bound_any_row_lease(
        app: App, db: psycopg.Connection[Any]) -> None:
    """The statements themselves, on rows whose lease no check has seen: they succeed for
    all of them, and no lease is longer than a year or shorter than the worker's."""
    ids = [insert_raw(db, "default", "[]", "{}", options) for options in (
        '{"lease": "abc"}', '{"lease": 1e300}', '{"lease": 1e400}', '{"lease": null}',
        '{"lease": [1]}', '{"lease": true}', '[1]', '"x"', '{"lease": 60}')]
    params = {**from_start(["default"]), "limit": 100, "worker": "w", "lease": 30.0}
    for statement in ("job_claim_one_queue", "job_claim"):
        claimed = db.execute(app.queries[statement], params).fetchall()
        assert sorted(row[0] for row in claimed) == sorted(ids)
        db.execute("UPDATE jobs SET state = 'queued', worker = NULL")
    db.execute(app.queries["job_claim"], params)
    attempts = [row[0] for row in db.execute(
        "SELECT attempt FROM jobs WHERE id = ANY(%s::uuid[]) ORDER BY id", [ids])]
    db.execute(app.queries["job_heartbeat"], {
        "ids": sorted(ids), "attempts": attempts, "worker": "w", "lease": 1e300})
    leases = dict(db.execute(
        "SELECT options::text, extract(epoch FROM lease_expires_at - now()) FROM jobs"
    ).fetchall())
    assert all(365 * 86400 - 60 < seconds <= 365 * 86400 for seconds in leases.values())
    db.execute(app.queries["job_heartbeat"], {
        "ids": sorted(ids), "attempts": attempts, "worker": "w", "lease": 30.0})
    leases = dict(db.execute(
        "SELECT options::text, extract(epoch FROM lease_expires_at - now()) FROM jobs"
    ).fetchall())
    assert 55 < leases.pop('{"lease": 60}') <= 60
    huge = [seconds for options, seconds in leases.items() if "0000000000" in options]
    assert len(huge) == 2 and all(365 * 86400 - 60 < s <= 365 * 86400 for s in huge)
    others = [seconds for options, seconds in leases.items() if "0000000000" not in options]
    assert len(others) == 6 and all(25 < seconds <= 30 for seconds in others), leases


def test_a_junk_abort_flag_does_not_break_abort_checks(
        app: App, db: psycopg.Connection[Any]) -> None:
    from pgqueue.worker import aborts

    job_id = insert_raw(db, "default", "[]", "{}", '{"aborted": "yes"}')
    flagged = insert_raw(db, "default", "[]", "{}", '{"aborted": true}')
    aborts.ask_database()  # as a prefork child does: the row's flag answers
    assert not aborts.is_aborted(app, job_id)
    assert aborts.is_aborted(app, flagged)


def test_reading_the_state_of_a_malformed_running_row_does_not_raise(
        app: App, db: psycopg.Connection[Any]) -> None:
    from pgqueue import AsyncResult

    job_id = insert_raw(db, "default", "[]", "{}", '["not", "an", "object"]')
    db.execute("UPDATE jobs SET state = 'started', attempt = 1, worker = 'w', started_at = now(), "
               "lease_expires_at = now() + interval '1 minute' WHERE id = %s", [job_id])
    assert AsyncResult(job_id, app=app).state == "PENDING"


@pytest.mark.parametrize("column", ["run_at", "created_at", "expires_at"])
@pytest.mark.parametrize("value", ["infinity", "-infinity"])
def test_an_infinite_job_time_is_refused_when_written(
        db: psycopg.Connection[Any], column: str, value: str) -> None:
    job_id = insert_raw(db, "default", "[]", "{}", "{}")
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_times_finite"):
        db.execute(f"UPDATE jobs SET {column} = %s WHERE id = %s", [value, job_id])


def test_a_negative_attempt_is_refused_when_written(db: psycopg.Connection[Any]) -> None:
    job_id = insert_raw(db, "default", "[]", "{}", "{}")
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_attempt_not_negative"):
        db.execute("UPDATE jobs SET attempt = -5 WHERE id = %s", [job_id])


def test_a_row_at_the_largest_attempt_is_claimed_and_ends(
        app: App, db: psycopg.Connection[Any]) -> None:
    @app.task(name="echo")
    def echo(*args: Any) -> Any:
        return list(args)

    stuck = insert_raw(db, "default", "[1]", "{}", "{}")
    db.execute("UPDATE jobs SET attempt = 2147483647, max_retries = 0 WHERE id = %s", [stuck])
    good = [echo.delay(i).id for i in range(5)]
    with running_worker(app):
        wait_until(lambda: len(outcomes(db, [stuck, *good])) == 6, timeout=20,
                   message="the maxed-out row and the good jobs to end")
    ended = outcomes(db, [stuck, *good])
    assert all(ended[job][0] == "SUCCESS" for job in good)
    assert ended[stuck][0] in ("SUCCESS", "FAILURE")
