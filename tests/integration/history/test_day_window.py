"""Reads of results by id try the two UTC days of the id first (pgqueue.result.read_bounded,
queries.WINDOWED): on partitioned results the statement names those days by literal
bounds through `results`, so the plan it keeps locks their partitions only, and it is
refused nothing a read of `results` is allowed. Nothing found there is read again
bounded, then whole: every test below runs on both layouts, prepared and through the
path that never prepares, and every row must be found wherever it finished."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue import App, AsyncResult, ResultSet, db, result
from pgqueue.db import migrations
from pgqueue.db.queries import WINDOWED
from pgqueue.limits import row_id
from pgqueue.utils import uuid7
from tests.integration.history.test_id_bounds import uuid7_at
from tests.pgserver import pgbouncer

UTC = timezone.utc


def midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def day_name(day: datetime) -> str:
    return f"results_p{day:%Y%m%d}"


@pytest.fixture(params=["plain", "partitioned"])
def layout(request: pytest.FixtureRequest, pg_dsn: str, schema: str) -> str:
    if request.param == "partitioned":
        assert migrations.partition_results(pg_dsn, schema)
    return str(request.param)


@pytest.fixture(params=["prepared", "never-prepared"])
def reader(request: pytest.FixtureRequest, pg_dsn: str, schema: str) -> Iterator[App]:
    """An app that prepares its statements (the default), or one that never does, as
    through a transaction pooler (``transaction_pooling=True``)."""
    pooling: bool | str = True if request.param == "never-prepared" else "auto"
    if pooling == "auto" and db.through_pooler(pg_dsn):
        pytest.skip("through a pooler (PGQUEUE_TEST_VIA_PGBOUNCER) nothing is prepared")
    app = App("window", dsn=pg_dsn, schema=schema, transaction_pooling=pooling,
              set_as_current=False)
    assert (db.prepare_threshold(app.dsn) is None) is (pooling is True)
    yield app
    app.close()
    db.declare_pooling(pg_dsn, "auto")


def add_days(conn: psycopg.Connection[Any], *days: datetime) -> None:
    for day in days:
        conn.execute("SELECT results_partition_add(%s::date)", [day.date()])


def store(conn: psycopg.Connection[Any], task_id: str, finished: datetime,
          parent: str | None = None) -> str:
    rid = row_id(task_id)
    assert rid is not None
    conn.execute("""INSERT INTO results (id, task_id, queue, task, state, result, args,
                                         parent_id, created_at, finished_at)
                    VALUES (%s, %s, 'default', 't', 'SUCCESS', '7', '[1, 2]', %s, %s, %s)""",
                 [rid, None if rid == task_id else task_id, parent,
                  finished - timedelta(seconds=1), finished])
    return rid


def statements_run(app: App) -> list[str]:
    """The statements ``app`` runs from now on, by name ("<name>@window" for a window of
    days): a record of what reaches the database, which still answers every one."""
    ran: list[str] = []
    execute = app.execute

    def recording(name: str, params: dict[str, Any] | None = None,
                  query: bytes | None = None) -> list[Any]:
        ran.append(name if query is None else f"{name}@window")
        return execute(name, params, query)

    app.execute = recording  # type: ignore[method-assign]
    return ran


def reads_all(app: App, task_id: str, rid: str, parent: str) -> None:
    """Every read by id finds the result; then forget() deletes it, wherever it is."""
    for _ in range(6):  # psycopg prepares a statement at its 5th run on a connection
        found = AsyncResult(task_id, app=app)
        assert found.state == "SUCCESS"
        assert found.ready() and found.get(timeout=5) == 7 and found.args == [1, 2]
    assert found.parent is not None and found.parent.id == parent
    assert ResultSet([found, AsyncResult(str(uuid7()), app=app)],
                     app=app).completed_count() == 1
    found.forget()
    assert AsyncResult(task_id, app=app).state == "PENDING"


NOW = datetime.now(UTC)
# where a result of an id made at noon five days ago finished, relative to that noon
WHERE = {
    "in-its-day": timedelta(minutes=1),
    "the-day-after": timedelta(days=1, hours=11),
    "days-later": timedelta(days=3),  # past the window: read bounded
    "before-its-bound": timedelta(hours=-3),  # in results_early, in the window still
    "the-day-before": timedelta(days=-1),  # in results_early, read whole
}


@pytest.mark.parametrize("where", list(WHERE))
def test_a_result_is_found_wherever_it_finished(
        reader: App, db: psycopg.Connection[Any], layout: str, where: str) -> None:
    made = midnight(datetime.now(UTC)) - timedelta(days=5) + timedelta(hours=12)
    if layout == "partitioned":
        add_days(db, *(midnight(made) + timedelta(days=n) for n in range(-2, 5)))
    task_id, parent = uuid7_at(made), str(uuid7())
    rid = store(db, task_id, made + WHERE[where], parent)
    ran = statements_run(reader)
    AsyncResult(task_id, app=reader).state  # noqa: B018
    expected = {"in-its-day": ["result_get@window"],
                "the-day-after": ["result_get@window"],
                "before-its-bound": ["result_get@window"],
                "days-later": ["result_get@window", "result_get_recent"],
                "the-day-before": ["result_get@window", "result_get_recent", "result_get"]}
    reads = [n.replace("_unprepared", "") for n in ran if n != "result_partitioned"]
    if layout == "plain":  # today's path: bounded, then whole
        assert reads == (["result_get_recent"] if WHERE[where] > timedelta(hours=-1)
                         else ["result_get_recent", "result_get"])
    else:
        assert reads == expected[where]
    reads_all(reader, task_id, rid, parent)


@pytest.mark.parametrize("task_id", ["6f1c2e0a-3b4d-4e5f-8a6b-7c8d9e0f1a2b", "order-17",
                                     "{" + uuid7_at(NOW + timedelta(days=400)) + "}",
                                     "FFFFFFFF-FFFF-7FFF-BFFF-FFFFFFFFFFFF",
                                     "00000000-0000-7000-8000-000000000001"],
                         ids=["v4", "custom", "braced-v7-a-year-ahead", "v7-year-10889",
                              "v7-the-epoch"])
def test_an_id_without_a_usable_time_is_read_whole(
        reader: App, db: psycopg.Connection[Any], layout: str, task_id: str) -> None:
    parent = str(uuid7())
    rid = store(db, task_id, datetime.now(UTC), parent)
    ran = statements_run(reader)
    reads_all(reader, task_id, rid, parent)
    if "-7" not in task_id:  # no time: never a window, never a bound
        assert not [n for n in ran if "@window" in n or "recent" in n]
    if task_id[0] == "F":  # a time past what a window can name: bounded, then whole
        assert not [n for n in ran if "@window" in n]


def test_a_job_sent_again_reads_live(reader: App, db: psycopg.Connection[Any],
                                     layout: str) -> None:
    """Its last result in the window and its live row: the live one says how it stands."""
    task_id = str(uuid7())
    store(db, task_id, datetime.now(UTC))
    db.execute("INSERT INTO jobs (id, queue, task, state) VALUES (%s, 'default', 't', 'queued')",
               [task_id])
    for _ in range(6):
        assert AsyncResult(task_id, app=reader).state == "PENDING"


def test_a_day_without_a_partition_is_read_in_the_default_one(
        reader: App, db: psycopg.Connection[Any]) -> None:
    assert migrations.partition_results(reader.dsn, reader.schema)
    made = midnight(datetime.now(UTC)) - timedelta(days=5) + timedelta(hours=12)
    add_days(db, midnight(made))  # the day after has none: its rows go to results_default
    task_id, parent = uuid7_at(made), str(uuid7())
    rid = store(db, task_id, made + timedelta(days=1))
    assert db.execute("SELECT tableoid::regclass::text FROM results WHERE id = %s",
                      [rid]).fetchone() == ("results_default",)
    ran = statements_run(reader)
    db.execute("UPDATE results SET parent_id = %s WHERE id = %s", [parent, rid])
    reads_all(reader, task_id, rid, parent)
    assert ran[:2] == ["result_partitioned", "result_get@window"]


def test_a_day_dropped_under_prepared_reads_is_no_error(
        reader: App, db: psycopg.Connection[Any]) -> None:
    """The window's plan is kept (prepared) when the day it names is dropped: Postgres
    plans it again, and the window reads what is left of those days."""
    assert migrations.partition_results(reader.dsn, reader.schema)
    made = midnight(datetime.now(UTC)) - timedelta(days=5) + timedelta(hours=12)
    add_days(db, *(midnight(made) + timedelta(days=n) for n in range(3)))
    task_id, gone_id, parent = uuid7_at(made), uuid7_at(made), str(uuid7())
    rid = store(db, task_id, made + timedelta(days=1), parent)
    store(db, gone_id, made + timedelta(minutes=1))
    for _ in range(6):
        assert AsyncResult(task_id, app=reader).state == "SUCCESS"
        assert AsyncResult(gone_id, app=reader).state == "SUCCESS"
    db.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(day_name(midnight(made)))))
    assert AsyncResult(gone_id, app=reader).state == "PENDING"
    reads_all(reader, task_id, rid, parent)
    # and the day after, the window's last one: its rows gone, no error either
    late_id = uuid7_at(made)
    store(db, late_id, made + timedelta(days=1))
    for _ in range(6):
        assert AsyncResult(late_id, app=reader).state == "SUCCESS"
    db.execute(sql.SQL("DROP TABLE {}").format(
        sql.Identifier(day_name(midnight(made) + timedelta(days=1)))))
    assert AsyncResult(late_id, app=reader).state == "PENDING"


def test_a_conversion_is_seen_within_the_minute(app: App, db: psycopg.Connection[Any]) -> None:
    assert result.partitioned(app) is False
    assert migrations.partition_results(app.dsn, app.schema)
    assert result.partitioned(app) is False  # as read a moment ago
    result._layouts.pop(app)  # a minute later
    assert result.partitioned(app) is True
    task_id = str(uuid7())
    store(db, task_id, datetime.now(UTC))
    assert AsyncResult(task_id, app=app).state == "SUCCESS"


# -- roles -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["producer", "reader", "worker"])
def test_a_role_that_may_read_results_reads_the_window_without_grants_on_partitions(
        pg_dsn: str, schema: str, groups: dict[str, str], login: Callable[..., str],
        apps: Callable[[str], App], db: psycopg.Connection[Any], kind: str) -> None:
    assert migrations.partition_results(pg_dsn, schema)
    made = midnight(datetime.now(UTC)) - timedelta(days=5) + timedelta(hours=12)
    add_days(db, *(midnight(made) + timedelta(days=n) for n in range(2)))
    task_id, parent = uuid7_at(made), str(uuid7())
    rid = store(db, task_id, made + timedelta(minutes=1), parent)
    dsn = login(groups[kind])
    leaf = f"{day_name(midnight(made))}_success"
    # results_partition_add gives a new day no grant: read by its name, it is refused
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL("SELECT 1 FROM {}").format(sql.Identifier(schema, leaf)))
    app = apps(dsn)
    window = result.day_window([rid])
    assert window is not None
    name = "result_get" if kind != "producer" else "result_get_state"
    rows = app.execute(name, {"id": rid}, app.queries.window(name, *window))
    assert [row[1] for row in rows] == ["SUCCESS"]
    found = AsyncResult(task_id, app=app)
    assert found.state == "SUCCESS" and found.get(timeout=5) == 7
    assert found.args == (None if kind == "producer" else [1, 2])
    assert found.parent is not None and found.parent.id == parent
    assert ResultSet([found], app=app).completed_count() == 1
    if kind == "producer":  # may forget its results
        found.forget()
        assert AsyncResult(task_id, app=app).state == "PENDING"


# -- what the window locks --------------------------------------------------------------
def leaves_locked(db: psycopg.Connection[Any], text: str, value: str, mode: str) -> set[str]:
    """The leaf partitions of results locked by one run of ``text`` (with $1 = value)
    as a prepared statement with plan_cache_mode ``mode``."""
    db.execute(f"PREPARE read_by_id(uuid) AS {text}".encode(), prepare=False)
    db.execute(f"SET plan_cache_mode = {mode}".encode(), prepare=False)
    uuid.UUID(value)  # a literal below: only a UUID
    db.execute(f"EXECUTE read_by_id('{value}')".encode(), prepare=False)  # planned
    with db.transaction():
        db.execute(f"EXECUTE read_by_id('{value}')".encode(), prepare=False).fetchall()
        rows = db.execute("""
            SELECT c.relname::text FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
             WHERE l.pid = pg_backend_pid() AND c.relkind = 'r'
               AND c.relname LIKE 'results\\_%%'""").fetchall()
    db.execute(b"DEALLOCATE read_by_id", prepare=False)
    return {name for (name,) in rows}


@pytest.mark.parametrize("mode", ["force_generic_plan", "force_custom_plan"])
@pytest.mark.parametrize("statement", ["result_get", "result_parent", "result_forget"])
def test_the_window_locks_the_partitions_of_its_two_days_only(
        app: App, db: psycopg.Connection[Any], mode: str, statement: str) -> None:
    assert migrations.partition_results(app.dsn, app.schema)
    today = midnight(datetime.now(UTC))
    add_days(db, *(today - timedelta(days=n) for n in range(1, 11)))
    made = today - timedelta(days=5) + timedelta(hours=12)
    rid = store(db, uuid7_at(made), made)
    window = result.day_window([rid])
    assert window is not None
    text = app.queries.window(statement, *window).decode().replace("%(id)s", "$1")
    day, after = day_name(midnight(made)), day_name(midnight(made) + timedelta(days=1))
    locked = leaves_locked(db, text, rid, mode)
    assert locked == {f"{day}_success", f"{day}_other", f"{after}_success", f"{after}_other"}
    # what the bound capped by now() locks (a generic plan): every leaf
    if mode == "force_generic_plan" and statement == "result_get":
        bounded = app.queries["result_get_recent"].decode().replace("%(id)s", "$1")
        assert len(leaves_locked(db, bounded, rid, mode)) >= 25
    # a day with no partition: the DEFAULT one in its place, no error
    db.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(after)))
    assert leaves_locked(db, text, rid, mode) == {f"{day}_success", f"{day}_other",
                                                  "results_default"}


def test_a_group_window_locks_its_days_only(app: App, db: psycopg.Connection[Any]) -> None:
    assert migrations.partition_results(app.dsn, app.schema)
    today = midnight(datetime.now(UTC))
    add_days(db, *(today - timedelta(days=n) for n in range(1, 11)))
    made = today - timedelta(days=5) + timedelta(hours=23, minutes=30)
    ids = [uuid7_at(made), uuid7_at(made + timedelta(hours=2))]
    window = result.day_window(ids)
    assert window is not None and window[1] - window[0] == timedelta(days=3)
    text = app.queries.window("result_get_many", *window).decode()
    db.execute(f"PREPARE many(uuid[]) AS {text.replace('%(ids)s', '$1')}".encode())
    db.execute("SET plan_cache_mode = force_generic_plan")
    literal = "'{" + ",".join(ids) + "}'"
    with db.transaction():
        db.execute(f"EXECUTE many({literal})".encode()).fetchall()
        row = db.execute("""SELECT count(*) FROM pg_locks l JOIN pg_class c
                              ON c.oid = l.relation
                             WHERE l.pid = pg_backend_pid() AND c.relkind = 'r'
                               AND c.relname LIKE 'results\\_p%%'""").fetchone()
    assert row == (6,)  # three days, two leaves each


def test_the_window_holds_the_bound_of_every_id(db: psycopg.Connection[Any]) -> None:
    """The server's result_id_since of an id lies in the first day of its window."""
    moments = [datetime(2026, 12, 4, h, m, tzinfo=UTC) for h in (0, 1, 12, 23) for m in (0, 59)]
    ids = [uuid7_at(m) for m in moments] + ["00000000-0000-7000-8000-000000000001"]
    for rid in ids:
        window = result.day_window([rid])
        assert window is not None
        row = db.execute("SELECT result_id_since(%s)", [rid]).fetchone()
        assert row is not None and window[0] <= row[0] < window[0] + timedelta(days=1)


# -- through PgBouncer ------------------------------------------------------------------
def test_reads_by_window_through_pgbouncer(direct_dsn: str, schema: str,
                                           db: psycopg.Connection[Any]) -> None:
    """Through a transaction pooler nothing is prepared: each window is planned at
    each read (Debian's PgBouncer 1.18 would fail a prepared one on another session)."""
    with pgbouncer(direct_dsn) as dsn:
        assert migrations.partition_results(direct_dsn, schema)
        made = midnight(datetime.now(UTC)) - timedelta(days=5) + timedelta(hours=12)
        add_days(db, *(midnight(made) + timedelta(days=n) for n in range(-2, 5)))
        app = App("bounced", dsn=dsn, schema=schema, set_as_current=False)
        try:
            assert db_through_pooler(app)
            for offset in WHERE.values():
                task_id, parent = uuid7_at(made), str(uuid7())
                rid = store(db, task_id, made + offset, parent)
                reads_all(app, task_id, rid, parent)
        finally:
            app.close()


def db_through_pooler(app: App) -> bool:
    return db.prepare_threshold(app.dsn) is None


@pytest.mark.parametrize("name", sorted(WINDOWED))
def test_every_windowed_statement_prepares_on_both_layouts(
        app: App, db: psycopg.Connection[Any], layout: str, name: str) -> None:
    start = midnight(datetime.now(UTC))
    text = app.queries.window(name, start, start + timedelta(days=2))
    query = text.replace(b"%(ids)s", b"$1").replace(b"%(id)s", b"$1")
    prepared = db.pgconn.prepare(b"", query)
    assert prepared.status == psycopg.pq.ExecStatus.COMMAND_OK, prepared.error_message
