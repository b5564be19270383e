"""``result_read_dsn``: AsyncResult reads on a hot standby, and a wait that never returns
a stale state (docs/deploying.md, "Read replicas and failover")."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App, reads, states
from pgqueue.db import migrations
from pgqueue.exceptions import ConfigurationError, SchemaMissing
from tests.acceptance.procs import WorkerProcess
from tests.conftest import wait_until
from tests.replica.cluster import ReplicaPair, replica_pair

APPS = Path(__file__).resolve().parent / "apps"
SCHEMA = "pgq_reads"


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicaPair]:
    with replica_pair() as built:
        migrations.migrate(built.primary.dsn, SCHEMA)
        wait_until(built.caught_up, 20, message="the standby replaying the migration")
        yield built


@pytest.fixture(scope="module")
def worker(pair: ReplicaPair) -> Iterator[WorkerProcess]:
    process = WorkerProcess(pair.primary.dsn, SCHEMA, "replica_app", "-c", "4",
                            apps_dir=APPS)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def app(pair: ReplicaPair, worker: WorkerProcess,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    for name in ("PGQUEUE_LISTEN_DSN", "PGQUEUE_RESULT_READ_DSN", "PGQUEUE_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    application = App("reader", dsn=pair.primary.dsn, schema=SCHEMA,
                      result_read_dsn=pair.standby.dsn, set_as_current=False)
    try:
        yield application
    finally:
        application.close()
        if not pair.standby.running():
            pair.standby.start()
        pair.resume_replay()


def in_recovery(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])


def test_results_are_read_from_the_standby(app: App, pair: ReplicaPair) -> None:
    result = app.send_task("replica.add", (2, 3))
    assert result.get(timeout=20) == 5
    wait_until(lambda: result.state == states.SUCCESS, 10, message="the standby replaying")
    # Proof that `state` reads the standby: with its replay paused, a result deleted on
    # the primary still reads there as it was.
    pair.pause_replay()
    result.forget()
    assert app.execute("result_get", {"id": result.row_id}) == []  # gone on the primary
    assert result.state == states.SUCCESS and result.result == 5
    with reads.connection(app) as conn:  # what a dashboard reads with: the standby too
        assert in_recovery(conn)
    pair.resume_replay()
    wait_until(lambda: result.state == states.PENDING, 10, message="the forget replayed")


def test_get_never_returns_a_stale_state_while_state_may_lag(app: App, pair: ReplicaPair
                                                              ) -> None:
    pair.pause_replay()
    result = app.send_task("replica.add", (20, 22))
    # The primary's NOTIFY wakes the wait; the standby has not replayed the finish (nor
    # the send), so the wait re-reads on the primary.
    assert result.get(timeout=20) == 42
    assert result.state == states.PENDING  # documented: `state` lags by the replay lag
    pair.resume_replay()
    wait_until(lambda: result.state == states.SUCCESS, 10, message="the standby replaying")
    assert result.result == 42


def test_a_job_finished_before_the_wait_listened_is_read_on_the_primary(
        app: App, pair: ReplicaPair) -> None:
    pair.pause_replay()
    result = app.send_task("replica.add", (1, 1))
    wait_until(lambda: pair.primary.query(
        f"SELECT state FROM {SCHEMA}.results WHERE id = '{result.row_id}'"), 20,
        message="the job finished on the primary")
    # Its NOTIFY went out before this wait listened, and the standby shows no job: only a
    # read on the primary once listening can see it. A 60 s interval would outlast the
    # timeout if the wait trusted the standby.
    started = time.monotonic()
    assert result.get(timeout=10, interval=60) == 2
    assert time.monotonic() - started < 10


def test_after_retry_the_handle_reads_its_own_write_on_the_primary(
        app: App, pair: ReplicaPair, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = app.send_task("replica.fails_first", (str(marker),))
    with pytest.raises(ValueError, match="first run fails"):
        result.get(timeout=20)
    wait_until(lambda: result.state == states.FAILURE, 10, message="the standby replaying")
    pair.pause_replay()
    # The standby still shows the first run's FAILURE, a final state: a wait that
    # trusted it would raise the old error at once.
    assert result.retry().get(timeout=20) == "second run"
    assert app.AsyncResult(result.id).state == states.FAILURE  # another handle: may lag


def test_a_standby_that_is_down_sends_reads_to_the_primary(
        app: App, pair: ReplicaPair, caplog: pytest.LogCaptureFixture) -> None:
    """Decided: reads fall back to the primary (one warning line), rather than fail: a
    status page keeps working through the standby's restart; the primary pays."""
    result = app.send_task("replica.add", (3, 4))
    assert result.get(timeout=20) == 7
    pair.standby.stop("immediate")
    with caplog.at_level(logging.WARNING, logger="pgqueue.db"):
        assert result.state == states.SUCCESS and result.result == 7
        assert app.send_task("replica.add", (5, 5)).get(timeout=20) == 10
        with reads.connection(app) as conn:
            assert not in_recovery(conn)  # the primary's
    lost = [r.getMessage() for r in caplog.records if "result reads on the standby" in
            r.getMessage()]
    assert len(lost) == 1, caplog.text  # one line per outage, not one per read
    assert f":{pair.standby.port}" in lost[0]
    pair.standby.start()

    def back_on_the_standby() -> bool:
        with reads.connection(app) as conn:
            return in_recovery(conn)

    wait_until(back_on_the_standby, 15, interval=0.2, message="reads back on the standby")


def test_hostile_read_dsns_are_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="not supported") as caught:
        App("bad", dsn="postgresql://x/y", result_read_dsn="redis://standby:6379/0",
            set_as_current=False)
    assert "\n" not in str(caught.value)
    monkeypatch.setenv("PGQUEUE_RESULT_READ_DSN", "user:hunter2@standby")
    application = App("env", dsn="postgresql://x/y", set_as_current=False)
    with pytest.raises(ConfigurationError, match="PGQUEUE_RESULT_READ_DSN") as caught:
        reads.standby_pool(application)
    assert "hunter2" not in str(caught.value)


def test_an_unreachable_standby_with_a_password_is_never_printed(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    app.conf.result_read_dsn = "postgresql://reader:s3cret-pw@127.0.0.1:1/postgres"
    result = app.send_task("replica.add", (1, 2))
    with caplog.at_level(logging.WARNING, logger="pgqueue.db"):
        assert result.get(timeout=20) == 3
    assert "result reads on the standby" in caplog.text
    assert "s3cret-pw" not in caplog.text


def test_a_read_dsn_without_the_schema_says_to_migrate(app: App, pair: ReplicaPair) -> None:
    app.conf.result_read_dsn = pair.standby.dsn.replace("dbname=postgres", "dbname=template1")
    with pytest.raises(SchemaMissing, match="pgqueue migrate"):
        app.AsyncResult("0b8e1e9c-1111-4c3b-9a8e-2f1f1f1f1f1f").state  # noqa: B018
