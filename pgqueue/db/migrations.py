"""``pgqueue migrate``: apply the numbered SQL files of ``sql/migrations`` once each."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgqueue import db
from pgqueue.db import roles as group_roles
from pgqueue.db.queries import Queries
from pgqueue.exceptions import PermissionDenied, SchemaMissing

logger = logging.getLogger("pgqueue.migrations")

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Statements that create the schema before any migration runs, in order.
_PREAMBLE = ("schema_create", "schema_search_path", "migration_table_create")


def migrations_dir() -> Path:
    """Inside the wheel: ``pgqueue/sql``; in a source checkout: the top-level ``sql``."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "sql" / "migrations", package.parent / "sql" / "migrations"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("pgqueue's sql/migrations folder is missing from the install")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()


def available() -> list[Migration]:
    found = []
    for path in sorted(migrations_dir().iterdir()):
        match = _NAME.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    return found


def _version_table(schema: str) -> str:
    return sql.Identifier(schema, "schema_version").as_string(None)


def applied(conn: psycopg.Connection[Any], schema: str) -> set[int]:
    queries = Queries(schema)
    table = _version_table(schema)
    exists = conn.execute(queries["migration_table_exists"], {"table": table}).fetchone()
    if not exists or not exists[0]:
        return set()
    rows = conn.execute(queries["migration_versions"]).fetchall()
    return {r[0] for r in rows}


def pending(conn: psycopg.Connection[Any], schema: str) -> list[Migration]:
    done = applied(conn, schema)
    return [m for m in available() if m.version not in done]


def migrate(dsn: str, schema: str, *, roles: bool = False,
            report: Callable[[str], None] | None = None) -> list[Migration]:
    """Apply pending migrations in one transaction under an advisory lock.

    Concurrent runs wait for each other; the second finds nothing to do. With
    ``roles=True`` (what ``pgqueue migrate`` does) the group roles of
    :mod:`pgqueue.roles` are created and granted too, when the migrating role may
    create roles; when it may not, ``report`` gets one line and the schema is migrated
    all the same.
    """
    with _locked(dsn, schema) as (conn, queries, todo):
        if todo:
            _apply(conn, queries, todo)
        if roles:
            group_roles.ensure(conn, schema, report or logger.warning)
    return todo


def partition_results(dsn: str, schema: str) -> bool:
    """Convert ``results`` into the partitioned layout ("History that scales" in
    docs/deploying.md); False when it is partitioned already. Run after :func:`migrate`
    (every migration applied, else :class:`SchemaMissing`), by the role that owns the
    tables; holds ``results`` locked while it copies the rows.
    """
    with _locked(dsn, schema) as (conn, queries, todo):
        if todo:
            raise SchemaMissing(
                f"schema {schema!r} lacks migration {todo[0].path.name}: run "
                f"`pgqueue migrate` before converting its results")
        conn.execute(queries["schema_search_path"])
        row = conn.execute(queries["results_partition"]).fetchone()
    return bool(row and row[0])


@contextmanager
def _locked(dsn: str, schema: str
            ) -> Iterator[tuple[psycopg.Connection[Any], Queries, list[Migration]]]:
    """One transaction that holds the schema's migration lock (concurrent migrations and
    conversions wait for each other): its connection, the schema's queries and the
    migrations still pending. Committed when the block ends; a grant the block lacks is
    raised as :class:`PermissionDenied`, on one line."""
    queries = Queries(schema)
    with db.connect(dsn, autocommit=False) as conn:
        try:
            with conn.transaction():
                conn.execute(queries["migration_lock"], {"key": f"pgqueue.migrate:{schema}"})
                yield conn, queries, pending(conn, schema)
        except psycopg.errors.InsufficientPrivilege as error:
            raise _refused(conn, schema, error) from None


def _apply(conn: psycopg.Connection[Any], queries: Queries, todo: list[Migration]) -> None:
    exists = conn.execute(queries["schema_exists"], {"schema": queries.schema}).fetchone()
    for name in _PREAMBLE:
        # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
        # exists; a role given only its schema must still be able to migrate it.
        if not (name == "schema_create" and exists and exists[0]):
            conn.execute(queries[name])
    for migration in todo:
        conn.execute(migration.sql.encode())
        conn.execute(queries["migration_record"],
                     {"version": migration.version, "name": migration.name})


def _refused(conn: psycopg.Connection[Any], schema: str,
             error: psycopg.Error) -> PermissionDenied:
    """The grant ``migrate`` lacks, on one line."""
    refused = str(error).splitlines()[0]
    user = conn.info.user
    who = sql.Identifier(user).as_string(None)
    target = sql.Identifier(schema).as_string(None)
    if "for database" in refused:
        database = sql.Identifier(conn.info.dbname).as_string(None)
        fix = (f"it needs CREATE on the database to create schema {schema!r} "
               f"(GRANT CREATE ON DATABASE {database} TO {who}), or an administrator "
               f"creates the schema for it (CREATE SCHEMA {target} AUTHORIZATION {who})")
    elif "for schema" in refused:
        fix = (f"it needs CREATE on schema {schema!r} (GRANT CREATE ON SCHEMA {target} TO "
               f"{who}); or run `pgqueue migrate` as the schema's owner")
    elif refused.startswith("must be owner"):
        fix = (f"run `pgqueue migrate` as the role that owns pgqueue's tables in schema "
               f"{schema!r} (the one that migrated it first)")
    else:
        fix = "see docs/security.md for the privileges `pgqueue migrate` needs"
    return PermissionDenied(f"pgqueue migrate: {refused}: the role {user!r} cannot migrate; "
                            f"{fix}")


def render_sql(schema: str, todo: list[Migration] | None = None, *,
               partition_results: bool = False) -> str:
    """The SQL ``migrate`` would run, for teams that apply migrations with their own tool;
    with ``partition_results``, then the conversion of ``results`` (a no-op if done)."""
    todo = available() if todo is None else todo
    queries = Queries(schema)
    parts = ["BEGIN;"]
    parts += [queries[name].decode().strip() + ";" for name in _PREAMBLE]
    for migration in todo:
        parts.append(f"\n-- {migration.path.name}\n{migration.sql.strip()}")
        record = queries["migration_record"].decode().strip()
        parts.append(record.replace("%(version)s", str(migration.version)).replace(
            "%(name)s", sql.Literal(migration.name).as_string(None)) + ";")
    if partition_results:
        parts.append(queries["results_partition"].decode().strip() + ";")
    parts.append("COMMIT;")
    return "\n".join(parts) + "\n"


def current_version(dsn: str, schema: str) -> int:
    with db.connect(dsn) as conn:
        done = applied(conn, schema)
    return max(done, default=0)
