"""LOGIN roles for tests of privileges. Roles are cluster-wide and tests run in parallel:
each role has a unique name and is dropped when the test ends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgqueue.db import migrations, roles


@contextmanager
def login_roles(dsn: str) -> Iterator[Callable[..., str]]:
    """Yields ``make(*group_roles) -> dsn``: a new LOGIN role, member of ``group_roles``
    and of nothing else, and a DSN that connects as it (the test server trusts)."""
    made: list[str] = []

    def make(*groups: str) -> str:
        name = f"login_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
            made.append(name)
            for group in groups:
                conn.execute(sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(group), sql.Identifier(name)))
        return make_conninfo(dsn, user=name)

    try:
        yield make
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in made:
                # a test's sessions may still be closing: end them, or DROP ROLE fails
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE usename = %s", [name])
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def with_group_roles(dsn: str, schema: str) -> dict[str, str]:
    """Create the schema's group roles (``migrate`` as ``pgqueue migrate`` runs it);
    returns their names by kind. tests.pgserver.drop_schema drops them."""
    notes: list[str] = []
    migrations.migrate(dsn, schema, roles=True, report=notes.append)
    assert not notes, notes
    return {kind: roles.role_name(schema, kind) for kind in roles.KINDS}
