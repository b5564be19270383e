"""``pgqueue migrate``: apply the numbered SQL files of ``sql/migrations`` once each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgqueue import db
from pgqueue.db.queries import Queries

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


def migrate(dsn: str, schema: str) -> list[Migration]:
    """Apply pending migrations in one transaction under an advisory lock.

    Concurrent runs wait for each other; the second finds nothing to do.
    """
    queries = Queries(schema)
    with db.connect(dsn, autocommit=False) as conn:
        with conn.transaction():
            conn.execute(queries["migration_lock"], {"key": f"pgqueue.migrate:{schema}"})
            todo = pending(conn, schema)
            if not todo:
                return []
            for name in _PREAMBLE:
                conn.execute(queries[name])
            for migration in todo:
                conn.execute(migration.sql.encode())
                conn.execute(queries["migration_record"],
                             {"version": migration.version, "name": migration.name})
        return todo


def render_sql(schema: str, todo: list[Migration] | None = None) -> str:
    """The SQL ``migrate`` would run, for teams that apply migrations with their own tool."""
    todo = available() if todo is None else todo
    queries = Queries(schema)
    parts = ["BEGIN;"]
    parts += [queries[name].decode().strip() + ";" for name in _PREAMBLE]
    for migration in todo:
        parts.append(f"\n-- {migration.path.name}\n{migration.sql.strip()}")
        record = queries["migration_record"].decode().strip()
        parts.append(record.replace("%(version)s", str(migration.version)).replace(
            "%(name)s", sql.Literal(migration.name).as_string(None)) + ";")
    parts.append("COMMIT;")
    return "\n".join(parts) + "\n"


def current_version(dsn: str, schema: str) -> int:
    with db.connect(dsn) as conn:
        done = applied(conn, schema)
    return max(done, default=0)
