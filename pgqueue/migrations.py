"""``pgqueue migrate``: apply the numbered SQL files of ``sql/migrations`` once each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from . import db

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations_dir() -> Path:
    """Inside the wheel: ``pgqueue/sql``; in a source checkout: the top-level ``sql``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql" / "migrations", here.parent / "sql" / "migrations"):
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


def _preamble(schema: str) -> list[sql.Composed]:
    ident = sql.Identifier(schema)
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident),
        sql.SQL("SET LOCAL search_path TO {}").format(ident),
        sql.SQL("CREATE TABLE IF NOT EXISTS {}.schema_version ("
                "version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())").format(ident),
    ]


def applied(conn: psycopg.Connection[Any], schema: str) -> set[int]:
    exists = conn.execute("SELECT to_regclass(%s)",
                          [f"{sql.Identifier(schema).as_string(conn)}.schema_version"]).fetchone()
    if not exists or exists[0] is None:
        return set()
    rows = conn.execute(sql.SQL("SELECT version FROM {}.schema_version").format(
        sql.Identifier(schema))).fetchall()
    return {r[0] for r in rows}


def pending(conn: psycopg.Connection[Any], schema: str) -> list[Migration]:
    done = applied(conn, schema)
    return [m for m in available() if m.version not in done]


def migrate(dsn: str, schema: str) -> list[Migration]:
    """Apply pending migrations in one transaction under an advisory lock.

    Concurrent runs wait for each other; the second finds nothing to do.
    """
    with db.connect(dsn, autocommit=False) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                         [f"pgqueue.migrate:{schema}"])
            todo = pending(conn, schema)
            if not todo:
                return []
            for statement in _preamble(schema):
                conn.execute(statement)
            for migration in todo:
                conn.execute(migration.sql.encode())
                conn.execute(sql.SQL("INSERT INTO {}.schema_version (version, name) "
                                     "VALUES (%s, %s)").format(sql.Identifier(schema)),
                             [migration.version, migration.name])
        return todo


def render_sql(schema: str, todo: list[Migration] | None = None) -> str:
    """The SQL ``migrate`` would run, for teams that apply migrations with their own tool."""
    todo = available() if todo is None else todo
    parts = ["BEGIN;"]
    parts += [f"{s.as_string(None)};" for s in _preamble(schema)]
    for migration in todo:
        parts.append(f"\n-- {migration.path.name}\n{migration.sql.strip()}")
        parts.append(sql.SQL("INSERT INTO {}.schema_version (version, name) "
                             "VALUES ({}, {});").format(
            sql.Identifier(schema), sql.Literal(migration.version),
            sql.Literal(migration.name)).as_string(None))
    parts.append("COMMIT;")
    return "\n".join(parts) + "\n"


def current_version(dsn: str, schema: str) -> int:
    with db.connect(dsn) as conn:
        done = applied(conn, schema)
    return max(done, default=0)
