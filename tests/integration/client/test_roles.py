"""Least privilege (issue 12): the group roles `pgqueue migrate` makes, what each may do,
the one line a missing grant gives, and no password in any error."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgqueue import App
from pgqueue.db import migrations
from pgqueue.exceptions import PermissionDenied
from pgqueue.worker import Worker
from tests.conftest import running_worker, wait_until
from tests.login_roles import with_group_roles
from tests.pgserver import drop_schema

PGQUEUE = str(Path(sys.executable).with_name("pgqueue"))


def user_of(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["user"])


def test_migrate_makes_four_nologin_group_roles_named_after_the_schema(
    pg_dsn: str, schema: str, groups: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    assert groups == {kind: f"{schema}_{kind}" for kind in
                      ("producer", "worker", "control", "reader")}
    rows = db.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s) "
                      "ORDER BY 1", [list(groups.values())]).fetchall()
    assert rows == sorted((name, False) for name in groups.values())
    assert with_group_roles(pg_dsn, schema) == groups  # again: a no-op, no error


def test_producer_enqueues_reads_states_and_cannot_read_arguments(
    app: App, groups: dict[str, str], login: Callable[..., str],
    apps: Callable[[str], App]
) -> None:
    producer_dsn = login(groups["producer"])
    producer = apps(producer_dsn)

    @producer.task(name="t.add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="t.add")
    def add_on_worker(a: int, b: int) -> int:
        return a + b

    secret = add.delay(40, 2)
    producer.send_task("t.add", [1, 1], unique_key=f"k-{uuid.uuid4()}")  # ON CONFLICT path
    assert secret.state == "PENDING" and secret.args is None  # state yes, arguments no
    with psycopg.connect(producer_dsn, autocommit=True) as conn:
        path = sql.SQL("SET search_path TO {}").format(sql.Identifier(app.schema))
        conn.execute(path)
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (2,)
        for table in ("jobs", "results"):
            for column in ("args", "kwargs", "*"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"SELECT {column} FROM {table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE jobs SET priority = 9")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO control_requests (action) VALUES ('terminate')")
    worker_app = apps(login(groups["worker"]))
    worker_app.tasks["t.add"] = add_on_worker
    with running_worker(worker_app):
        assert secret.get(timeout=10) == 42
    assert secret.state == "SUCCESS"
    with pytest.raises(PermissionDenied, match=f"needs the {groups['control']} role"):
        producer.control.revoke(secret.id, terminate=True)


def test_control_role_terminates_a_job_run_by_a_worker_role(
    app: App, groups: dict[str, str], login: Callable[..., str], apps: Callable[[str], App]
) -> None:
    started = threading.Event()
    worker_app = apps(login(groups["worker"]))

    @worker_app.task(name="t.spin")
    def spin() -> None:
        started.set()
        while True:
            threading.Event().wait(0.01)

    operator = apps(login(groups["control"], groups["producer"]))
    with running_worker(worker_app, concurrency=2):
        job = operator.send_task("t.spin")
        assert started.wait(10)
        operator.control.revoke(job.id, terminate=True)
        wait_until(job.ready, message="terminated")
    assert job.state == "REVOKED"


def test_reader_reads_everything_and_writes_nothing(
    app: App, groups: dict[str, str], login: Callable[..., str], apps: Callable[[str], App]
) -> None:
    job = app.send_task("t.anything", [1, "secret"])
    reader = apps(login(groups["reader"]))
    assert reader.AsyncResult(job.id).args == [1, "secret"]
    assert [r[1] for r in reader.execute("job_counts")] == ["queued"]
    with pytest.raises(PermissionDenied, match=f"needs the {groups['producer']} role"):
        reader.send_task("t.anything")


def test_a_role_without_grants_gets_one_line_naming_the_role_it_needs(
    app: App, groups: dict[str, str], login: Callable[..., str], apps: Callable[[str], App]
) -> None:
    dsn = login()
    nobody = apps(dsn)
    user = user_of(dsn)
    job = app.send_task("t.anything")
    expected = [
        (lambda: nobody.send_task("t.anything"), "producer"),
        (lambda: nobody.AsyncResult(job.id).state, "producer"),
        (lambda: nobody.control.revoke(job.id), "control"),
        (lambda: nobody.execute("job_counts"), "reader"),
        (lambda: Worker(nobody, install_signal_handlers=False).run(), "worker"),
    ]
    for action, kind in expected:
        with pytest.raises(PermissionDenied) as raised:
            action()
        message = str(raised.value)
        assert "\n" not in message
        assert message.startswith(("permission denied for", "no ")), message
        assert message.endswith(f"the role {user!r} needs the {groups[kind]} role "
                                f'(GRANT "{groups[kind]}" TO "{user}")'), message


def test_worker_start_names_a_grant_that_is_missing(
    app: App, groups: dict[str, str], login: Callable[..., str], apps: Callable[[str], App],
    db: psycopg.Connection[Any]
) -> None:
    dsn = login()
    user = user_of(dsn)
    db.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
        sql.Identifier(app.schema), sql.Identifier(user)))
    db.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON jobs, results, workers, leader "
                       "TO {}").format(sql.Identifier(user)))
    with pytest.raises(PermissionDenied, match=r"no SELECT privilege on table \S+"
                                               r"\.control_requests: the role"):
        Worker(apps(dsn), install_signal_handlers=False).run()


# -- migrate ------------------------------------------------------------------------------

def _migrate_cli(dsn: str, schema: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PGQUEUE, "migrate", "--dsn", dsn, "--schema", schema],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def new_schema(pg_dsn: str) -> Iterator[str]:
    name = f"r_{uuid.uuid4().hex[:12]}"
    yield name
    drop_schema(pg_dsn, name)


def test_migrate_without_createrole_migrates_and_says_so_in_one_line(
    pg_dsn: str, new_schema: str, login: Callable[..., str]
) -> None:
    dsn = login()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        database = conninfo_to_dict(pg_dsn)["dbname"]
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(str(database)), sql.Identifier(user_of(dsn))))
    run = _migrate_cli(dsn, new_schema)
    assert run.returncode == 0, run.stderr
    assert "applied 0002_control_requests.sql" in run.stdout
    warning = run.stderr.strip().splitlines()
    assert len(warning) == 1 and "roles not created" in warning[0], run.stderr
    assert "CREATEROLE" in warning[0] and "pgqueue migrate --roles" in warning[0]


def test_migrate_without_create_on_the_database_says_which_grant(
    pg_dsn: str, new_schema: str, login: Callable[..., str]
) -> None:
    dsn = login()
    run = _migrate_cli(dsn, new_schema)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "permission denied for database" in lines[0]
    assert "GRANT CREATE ON DATABASE" in lines[0]
    with pytest.raises(PermissionDenied, match="GRANT CREATE ON DATABASE"):
        migrations.migrate(dsn, new_schema)


def test_migrate_of_a_schema_without_create_on_it_says_which_grant(
    pg_dsn: str, new_schema: str, login: Callable[..., str]
) -> None:
    dsn = login()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(new_schema)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(new_schema), sql.Identifier(user_of(dsn))))
    run = _migrate_cli(dsn, new_schema)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "permission denied for schema" in lines[0] and "GRANT CREATE ON SCHEMA" in lines[0]
    # Given CREATE on its schema (and nothing on the database), the role migrates it.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(
            sql.Identifier(new_schema), sql.Identifier(user_of(dsn))))
    assert [m.version for m in migrations.migrate(dsn, new_schema)] == [
        m.version for m in migrations.available()]


def test_migrate_roles_prints_sql_that_an_administrator_can_apply(
    pg_dsn: str, new_schema: str
) -> None:
    migrations.migrate(pg_dsn, new_schema)  # no roles from the library by default
    printed = subprocess.run([PGQUEUE, "migrate", "--roles", "--schema", new_schema],
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert f'CREATE ROLE "{new_schema}_producer" NOLOGIN' in printed.stdout
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s",
                            [f"{new_schema}\\_%"]).fetchone() == (0,)
    for _ in range(2):  # twice: it is safe to run again
        applied = subprocess.run(["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-q",
                                  pg_dsn], input=printed.stdout, capture_output=True,
                                 text=True, timeout=60)
        assert applied.returncode == 0, applied.stderr
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE %s",
                            [f"{new_schema}\\_%"]).fetchone() == (4,)
    helped = subprocess.run([PGQUEUE, "migrate", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert "--roles" in helped.stdout and "CREATEROLE" in helped.stdout


def test_a_schema_too_long_for_role_names_is_migrated_without_roles(
    pg_dsn: str, new_schema: str
) -> None:
    schema = new_schema + "x" * (55 - len(new_schema))  # the longest schema pgqueue accepts
    notes: list[str] = []
    try:
        migrations.migrate(pg_dsn, schema, roles=True, report=notes.append)
        assert len(notes) == 1 and "longer than 63 bytes" in notes[0]
    finally:
        drop_schema(pg_dsn, schema)


# -- no password in any error -------------------------------------------------------------

PASSWORD = "s3cr3t-Pw"


@pytest.mark.parametrize("dsn", [
    f"user:{PASSWORD}@host/db",  # not a URL: echoed as it was
    f"postgresql://user:{PASSWORD}%zz@127.0.0.1/db",  # libpq echoes the bad token
    f"postgresql://user:{PASSWORD}@127.0.0.1:1/db",  # nobody listening
    f"host=127.0.0.1 port=1 user=x password={PASSWORD}",
    f"host=127.0.0.1 user=x password='{PASSWORD} sslmode=bogus",  # unterminated quote
    f"postgresql://user:{PASSWORD}@127.0.0.1/db?sslmode=bogus",
])
@pytest.mark.parametrize("command", [["migrate"], ["worker", "-A", "tests.acceptance.apps."
                                                                 "core_app"], ["inspect"]])
def test_no_error_prints_the_password(dsn: str, command: list[str]) -> None:
    run = subprocess.run([PGQUEUE, *command, "--dsn", dsn], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert PASSWORD not in output and PASSWORD.replace("-", "%2D") not in output
    assert output.startswith("Error: ") and len(output.strip().splitlines()) == 1, output

