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
    # (False, the failures kept for a time of their own, has no rows to find here: read
    # whole, which is why docs/deploying.md advises partitions for that setting)
    for success in (None, True):
        for after in (None, "2000-01-01T00:00:00Z"):
            scans += plan_scans(db, app.queries["result_prune"], {
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

