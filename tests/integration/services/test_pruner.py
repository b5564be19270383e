"""The result pruner: index order, batches, a bounded run, and a warning when it lags."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgqueue import App, ConfigurationError
from pgqueue.db import Dedicated, application_name, migrations
from pgqueue.services.pruner import Pruner
from tests.helpers import plan_scans, wait_until

DAY = 86400.0


@pytest.fixture
def conn(app: App) -> Iterator[Dedicated]:
    connection = Dedicated(app.dsn, app.schema, "test", durable=False)
    yield connection
    connection.close()


def add_results(db: psycopg.Connection[Any], count: int, age: str,
                same_time: bool = False) -> None:
    """``count`` results that finished ``age`` ago (one apart each, or all at once)."""
    db.execute("""
        INSERT INTO results (id, queue, task, state, result, created_at, finished_at)
        SELECT gen_random_uuid(), 'default', 't.x', 'SUCCESS', '1', now(),
               now() - %s::interval - CASE WHEN %s THEN interval '0' ELSE g * interval '1 ms' END
          FROM generate_series(1, %s) g""", [age, same_time, count])


def count(db: psycopg.Connection[Any], where: str = "true") -> int:
    row = db.execute(f"SELECT count(*) FROM results WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def partitioned(app: App) -> None:
    """results converted by `pgqueue migrate --partition-results`."""
    assert migrations.partition_results(app.dsn, app.schema)


@pytest.mark.parametrize("expired_share", [1.0, 0.01])
def test_the_prune_statements_read_results_through_an_index(
        app: App, db: psycopg.Connection[Any], expired_share: float) -> None:
    """Whether nearly every row has expired (catching up) or few have (steady state), the
    planner reads results_finished_at_idx and deletes by row address: no sequential scan
    of a big table, also for the look-up of the oldest row in the falling-behind warning."""
    total = 50_000
    add_results(db, int(total * expired_share), "2 days")
    add_results(db, total - int(total * expired_share), "1 minute")
    db.execute("ANALYZE results")
    scans: list[tuple[str, str]] = []
    for success in (None, True):
        for after in (None, "2000-01-01T00:00:00Z"):
            scans += plan_scans(db, app.queries["result_prune"], {
                "older_than": DAY, "limit": 5000, "after": after, "success": success})
    # each kind of its own retention, read on from the last row read
    for success in (True, False):
        for after in (None, "2000-01-01T00:00:00Z"):
            scans += plan_scans(db, app.queries["result_prune_kind"], {
                "older_than": DAY, "limit": 5000, "after": after, "success": success})
    scans += plan_scans(db, app.queries["result_oldest"], {})
    assert scans and all(relation == "results" for _, relation in scans)
    assert not [node for node, _ in scans if "Seq Scan" in node], scans
    assert ("Tid Scan", "results") in scans


@pytest.mark.usefixtures("partitioned")
@pytest.mark.parametrize("expired_share", [1.0, 0.01])
def test_on_partitions_the_prune_statements_read_through_an_index(
        app: App, db: psycopg.Connection[Any], expired_share: float) -> None:
    """The same on a partitioned results table."""
    total = 50_000
    add_results(db, int(total * expired_share), "2 days")
    add_results(db, total - int(total * expired_share), "1 minute")
    db.execute("ANALYZE results")
    scans: list[tuple[str, str]] = []
    for statement in ("result_prune", "result_prune_default"):
        for after in (None, "2000-01-01T00:00:00Z"):
            scans += plan_scans(db, app.queries[statement], {
                "older_than": DAY, "limit": 5000, "after": after, "success": True})
    scans += plan_scans(db, app.queries["result_oldest"], {})
    # the days' partitions, and the DEFAULT one that holds rows of days without a
    # partition, like these; with 1% expired, that one is small (500 rows) and may be
    # read whole
    assert scans and all(relation.startswith("results") for _, relation in scans)
    small = {"results_default"} if expired_share < 1 else set()
    assert not [r for node, r in scans if "Seq Scan" in node and r not in small], scans
    assert ("Tid Scan", "results_default") in scans or small


def test_a_run_deletes_every_expired_result_in_batches_and_keeps_the_rest(
        app: App, db: psycopg.Connection[Any], conn: Dedicated,
        caplog: pytest.LogCaptureFixture) -> None:
    add_results(db, 2_345, "25 hours")
    add_results(db, 300, "23 hours")
    # a run's time budget wide enough for 24 batches (and their pauses) on a loaded machine
    pruner = Pruner(app.queries, DAY, worker_ttl=60, batch=100, run_seconds=60)
    with caplog.at_level(logging.WARNING, logger="pgqueue.maintenance"):
        assert pruner.run_once(conn) == pruner.interval  # caught up within one run
    assert pruner.deleted == 2_345
    assert count(db) == 300
    assert count(db, "finished_at < now() - interval '1 day'") == 0
    assert "falling behind" not in caplog.text


def test_a_run_stops_after_its_time_and_the_next_goes_on_where_it_stopped(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """With no time to spare a run deletes one batch and asks to run again soon; the runs
    that follow finish the job, oldest results first."""
    add_results(db, 450, "2 days")
    add_results(db, 10, "1 hour")
    pruner = Pruner(app.queries, DAY, worker_ttl=60, batch=100, run_seconds=0)
    delays = []
    while not delays or delays[-1] < pruner.interval:
        delays.append(pruner.run_once(conn))
        assert len(delays) <= 5
        if delays[-1] < pruner.interval:
            # oldest first: what is left is the most recent of the expired rows
            assert count(db, "finished_at < now() - interval '1 day'") == 450 - 100 * len(
                delays)
    # soon: a batch's time (well under the 60 s interval, also on a loaded machine)
    assert len(delays) == 5 and all(d < 10.0 for d in delays[:-1])
    assert count(db) == 10


def test_results_that_finished_at_the_same_instant_are_all_deleted(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """One finish statement gives all its rows one finished_at (the transaction's time),
    and a rescue or revoke may end thousands at once: more than a batch share the
    position the next batch starts from."""
    add_results(db, 1_050, "2 days", same_time=True)
    add_results(db, 5, "1 hour", same_time=True)
    pruner = Pruner(app.queries, DAY, worker_ttl=60, batch=100, run_seconds=0)
    runs = 0
    while pruner.run_once(conn) < pruner.interval:
        runs += 1
        assert runs < 20
    assert runs == 10 and count(db) == 5


def test_a_result_refreshed_after_the_batch_was_chosen_is_kept(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """A finish that re-uses an id (same task_id) while the batch is being deleted
    deletes the old row and inserts a new one (0010): the pruner skips the deleted row
    and never sees the new one."""
    add_results(db, 3, "2 days")
    with psycopg.connect(app.dsn, autocommit=False) as other:
        other.execute(f'SET search_path TO "{app.schema}"')
        other.execute("""
            WITH old AS (DELETE FROM results WHERE id =
                             (SELECT id FROM results ORDER BY finished_at LIMIT 1)
                         RETURNING *)
            INSERT INTO results (id, queue, task, state, created_at)
            SELECT id, queue, task, state, created_at FROM old""")
        pruner = Pruner(app.queries, DAY, worker_ttl=60)
        thread = threading.Thread(target=pruner.run_once, args=(conn,))
        thread.start()
        wait_until(lambda: count_waiting(db, application_name(app.schema, "test")),
                   message="the pruner waiting for the row being replaced")
        other.commit()
        thread.join(10)
    assert not thread.is_alive() and pruner.deleted == 2 and count(db) == 1


@pytest.mark.usefixtures("partitioned")
def test_a_row_moved_to_another_partition_meanwhile_waits_for_the_next_run(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """Plain SQL that changes a finish time moves the row to another partition, which
    fails a concurrent delete of it (serialization failure): the run stops there, and
    the next one deletes what is still expired."""
    add_results(db, 3, "2 days")
    with psycopg.connect(app.dsn, autocommit=False) as other:
        other.execute(f'SET search_path TO "{app.schema}"')
        other.execute("UPDATE results SET finished_at = now() WHERE id = "
                      "(SELECT id FROM results ORDER BY finished_at LIMIT 1)")
        pruner = Pruner(app.queries, DAY, worker_ttl=60)
        thread = threading.Thread(target=pruner.run_once, args=(conn,))
        thread.start()
        wait_until(lambda: count_waiting(db, application_name(app.schema, "test")),
                   message="the pruner waiting for the row being updated")
        other.commit()
        thread.join(10)
    assert not thread.is_alive() and pruner.deleted == 0 and count(db) == 3
    Pruner(app.queries, DAY, worker_ttl=60).run_once(conn)
    assert count(db) == 1


def count_waiting(db: psycopg.Connection[Any], name: str) -> int:
    row = db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                     " AND wait_event_type = 'Lock'", [name]).fetchone()
    return int(row[0]) if row else 0


def test_falling_behind_is_logged_once_per_period(
        app: App, db: psycopg.Connection[Any], conn: Dedicated,
        caplog: pytest.LogCaptureFixture) -> None:
    add_results(db, 50, "3 days")
    pruner = Pruner(app.queries, DAY, worker_ttl=60, batch=10, run_seconds=0,
                    behind_after=0)
    with caplog.at_level(logging.WARNING, logger="pgqueue.maintenance"):
        pruner.run_once(conn)
        pruner.run_once(conn)
    warnings = [r.getMessage() for r in caplog.records if "falling behind" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "(10 rows" in warnings[0] and "the oldest finished 259200s ago" in warnings[0]


def test_no_result_expiry_deletes_nothing(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    add_results(db, 20, "400 days")
    for expires in (None, 0):
        assert Pruner(app.queries, expires, worker_ttl=60).run_once(conn) == 60.0
    assert count(db) == 20


@pytest.mark.parametrize("value", [-1, math.nan, math.inf, 1e300, "1 day", True,
                                   timedelta(hours=-1)])
def test_hostile_result_expires_is_refused_in_one_line(app: App, value: Any) -> None:
    """A negative age would delete results as they finish; NaN or a huge one would break
    the prune statement on every run."""
    with pytest.raises(ConfigurationError) as error:
        app.conf.result_expires = value
    message = str(error.value)
    assert "\n" not in message and "'result_expires'" in message and "for ever" in message
    assert app.conf.seconds("result_expires") == DAY


def test_a_catch_up_cut_off_for_longer_than_an_interval_starts_again(
        app: App, db: psycopg.Connection[Any], conn: Dedicated,
        caplog: pytest.LogCaptureFixture) -> None:
    """A leader that lost its lease mid catch-up and wins it back later has not been
    deleting all that time: it does not report falling behind for the gap."""
    add_results(db, 50, "3 days")
    pruner = Pruner(app.queries, DAY, worker_ttl=60, interval=0.1, batch=10,
                    run_seconds=0, behind_after=1.0)
    with caplog.at_level(logging.WARNING, logger="pgqueue.maintenance"):
        # each run asks to go on: it returns its batch's time as the pause, not the interval
        # (a batch may take longer than the 0.1 s interval on a loaded machine)
        assert pruner.run_once(conn) != pruner.interval
        time.sleep(1.2)  # the gap itself, not a wait for a condition
        assert pruner.run_once(conn) != pruner.interval
    assert "falling behind" not in caplog.text
    assert pruner.deleted == 10  # counted from the second run



# -- two retentions on a plain table: each row is read once, not on every run --------------
WEEK = 7 * DAY


def add_kind(db: psycopg.Connection[Any], count: int, state: str, age: str,
             apart: str = "10 ms") -> None:
    """``count`` results of ``state`` that finished ``age`` ago, ``apart`` from each other."""
    db.execute("""
        INSERT INTO results (id, queue, task, state, created_at, finished_at)
        SELECT gen_random_uuid(), 'default', 't.x', %s, now() - interval '30 days',
               now() - %s::interval - g * %s::interval
          FROM generate_series(1, %s) g""", [state, age, apart, count])


def blocks_read(db: psycopg.Connection[Any]) -> int:
    """Buffers of results and its indexes read since the statistics began (hits too)."""
    db.execute("SELECT pg_stat_clear_snapshot()")
    row = db.execute("""
        SELECT coalesce(heap_blks_read, 0) + heap_blks_hit + coalesce(idx_blks_read, 0)
               + coalesce(idx_blks_hit, 0)
          FROM pg_statio_user_tables WHERE relid = 'results'::regclass""").fetchone()
    assert row is not None
    return int(row[0])


def flushed_run(pruner: Pruner, conn: Dedicated) -> float:
    """One run, with the statistics of the pruner's session flushed after it."""
    delay = pruner.run_once(conn)
    conn.execute(b"SELECT pg_stat_force_next_flush()")
    conn.execute(b"SELECT 1")  # its end flushes (the session goes idle)
    return delay


@pytest.mark.parametrize(("success_for", "failed_for", "kept"), [
    (WEEK, DAY, "SUCCESS"),  # failures go first: successes fill their range
    (DAY, WEEK, "FAILURE"),  # successes go first: failures fill their range
])
def test_with_two_retentions_nothing_due_reads_a_handful_of_buffers(
        app: App, db: psycopg.Connection[Any], conn: Dedicated,
        success_for: float, failed_for: float, kept: str) -> None:
    """A plain results table, successes and failures kept for different times: the
    finish-time range of the shorter retention holds 200,000 rows of the other kind,
    not due. The first run reads them once; the next runs, with nothing due, read only
    what finished since (a handful of buffers), not the whole range again. Due rows of
    each state go, the others stay."""
    # the buffer counts are the table's: no autovacuum pass may add its own
    db.execute("ALTER TABLE results SET (autovacuum_enabled = false)")
    add_kind(db, 200_000, kept, "36 hours")  # not due: kept for a week
    add_kind(db, 40, "SUCCESS", "8 days")  # due
    add_kind(db, 40, "FAILURE", "8 days")  # due
    add_kind(db, 40, "REVOKED", "9 days")  # due
    short = "FAILURE" if kept == "SUCCESS" else "SUCCESS"
    add_kind(db, 30, short, "2 days")  # due: past the shorter retention
    add_kind(db, 20, short, "2 hours")  # not due
    add_kind(db, 20, "REVOKED", "2 hours")  # not due
    db.execute("ANALYZE results")
    pruner = Pruner(app.queries, success_for, worker_ttl=60, batch=5000, run_seconds=120,
                    result_expires_failed=failed_for)
    assert flushed_run(pruner, conn) == pruner.interval  # caught up in one run
    assert pruner.deleted == 150
    left = dict(db.execute("SELECT state, count(*) FROM results GROUP BY 1").fetchall())
    assert left == ({"SUCCESS": 200_000, "FAILURE": 20, "REVOKED": 20} if kept == "SUCCESS"
                    else {"FAILURE": 200_000, "SUCCESS": 20, "REVOKED": 20}), left

    before = blocks_read(db)
    for _ in range(3):
        assert flushed_run(pruner, conn) == pruner.interval
    read = blocks_read(db) - before
    # 3 runs of 2 statements each (one per kind): at most 25 buffers each (measured
    # 5-13), where reading the range again took 2,770 a run
    assert read < 150, f"{read} buffers read by 3 runs with nothing due"

    # what becomes due later still goes: rows that finished after the last one read
    add_kind(db, 25, short, "3 days", apart="0 ms")  # behind it: the hourly re-read's
    add_kind(db, 5, short, "1 hour", apart="0 ms")
    db.execute("UPDATE results SET finished_at = now() - interval '25 hours' "
               "WHERE finished_at > now() - interval '90 minutes' AND state = %s", [short])
    flushed_run(pruner, conn)
    assert db.execute("SELECT count(*) FROM results WHERE state = %s "
                      "AND finished_at < now() - interval '1 day'",
                      [short]).fetchone() == (25,)
    pruner.REREAD_EVERY = 0.0
    flushed_run(pruner, conn)
    assert db.execute("SELECT count(*) FROM results WHERE state = %s "
                      "AND finished_at < now() - interval '1 day'", [short]).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM results WHERE state = %s",
                      [kept]).fetchone() == (200_000,)


def test_with_two_retentions_kept_rows_of_one_instant_do_not_stop_the_reading(
        app: App, db: psycopg.Connection[Any], conn: Dedicated) -> None:
    """More kept rows than a batch finished at one instant (one revoke of many jobs):
    a batch reads the whole instant, and the next goes on past it."""
    add_kind(db, 350, "REVOKED", "30 hours", apart="0 ms")  # kept: failures for a week
    add_kind(db, 120, "SUCCESS", "29 hours")  # due after the instant
    add_kind(db, 10, "SUCCESS", "31 hours")  # due before it
    pruner = Pruner(app.queries, DAY, worker_ttl=60, batch=100, run_seconds=0,
                    result_expires_failed=WEEK)
    runs = 0
    while pruner.run_once(conn) < pruner.interval:
        runs += 1
        assert runs < 10
    assert dict(db.execute("SELECT state, count(*) FROM results GROUP BY 1").fetchall()) \
        == {"REVOKED": 350}
