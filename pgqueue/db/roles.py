"""The group roles of a schema: who may enqueue, work, control and read (docs/security.md).

``pgqueue migrate`` creates four NOLOGIN roles named after the schema, so two apps (or two
tests) in one cluster stay apart: ``<schema>_producer``, ``<schema>_worker``,
``<schema>_control`` and ``<schema>_reader``. A login role gets what it needs with
``GRANT pgqueue_producer TO web_app``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from pgqueue.db import queries
from pgqueue.exceptions import ConfigurationError, PermissionDenied

logger = logging.getLogger("pgqueue.roles")

KINDS = ("producer", "worker", "control", "reader")

# The kind of role each named statement needs, where it is not the worker's.
_NEEDS = {
    "producer": ("job_insert", "job_insert_one", "job_insert_one_again", "job_unique_holders",
                 "result_get",
                 "result_get_recent", "result_get_state_recent",
                 "result_get_recent_unprepared", "result_get_state_recent_unprepared",
                 "result_get_state", "result_forget", "result_forget_recent",
                 "result_forget_recent_unprepared", "job_insert_claimed",
                 "unique_claim_holders"),
    "control": ("job_revoke", "job_abort", "job_purge", "control_request_insert",
                "control_reply_read",
                "schedule_insert", "schedule_delete", "schedule_set_enabled",
                "schedule_run_now", "result_retry"),
    "reader": ("job_counts", "job_list_started", "job_list_held", "job_list_scheduled",
               "result_list_revoked", "worker_list", "schedule_list",
               "schedule_get", "leader_get", "job_history_get",
               "job_metrics", "result_metrics", "worker_metrics", "schedule_metrics",
               "event_listeners_fresh", "event_listener_upsert", "event_listener_delete"),
}
NEEDS = {statement: kind for kind, names in _NEEDS.items() for statement in names}

# What a worker checks it holds before it registers, so that a missing grant is one line
# at start rather than a warning per claim. Schedules only matter with beat.
WORKER_PRIVILEGES = (
    [("jobs", p) for p in ("SELECT", "INSERT", "UPDATE", "DELETE")]
    + [("results", p) for p in ("SELECT", "INSERT", "UPDATE", "DELETE")]
    + [("workers", p) for p in ("SELECT", "INSERT", "UPDATE", "DELETE")]
    + [("leader", p) for p in ("SELECT", "INSERT", "UPDATE")]
    + [("control_requests", "SELECT"), ("control_replies", "INSERT")]
    + [("flow_limits", p) for p in ("SELECT", "INSERT", "UPDATE")]
)
BEAT_PRIVILEGES = [("schedules", p) for p in ("SELECT", "INSERT", "UPDATE", "DELETE")]

# Role names stop at 63 bytes; Postgres would cut a longer one silently, and two schemas
# sharing a long prefix would then share roles.
_MAX_NAME_BYTES = 63


def role_name(schema: str, kind: str) -> str:
    return f"{schema}_{kind}"


def needed_for(statement: str) -> str:
    return NEEDS.get(statement, "worker")


def _quoted(name: str) -> str:
    return sql.Identifier(name).as_string(None)


def missing_grant(schema: str, error: Exception, needs: str | None,
                  user: str | None) -> PermissionDenied:
    """One line: what was refused, and the role that grants it."""
    refused = str(error).splitlines()[0] if str(error) else "permission denied"
    who = f"the role {user!r}" if user else "this database role"
    grantee = _quoted(user) if user else "<role>"
    if needs is None:
        return PermissionDenied(
            f"{refused}: {who} lacks a grant on schema {schema!r}; grant it one of "
            f"{', '.join(role_name(schema, k) for k in KINDS)} (see docs/security.md)")
    role = role_name(schema, needs)
    return PermissionDenied(f"{refused}: {who} needs the {role} role "
                            f"(GRANT {_quoted(role)} TO {grantee})")


def statements(schema: str) -> list[sql.Composed]:
    """Create the roles if missing and grant each its privileges; safe to run again."""
    names = {kind: role_name(schema, kind) for kind in KINDS}
    too_long = [n for n in names.values() if len(n.encode()) > _MAX_NAME_BYTES]
    if too_long:
        raise ConfigurationError(
            f"role name {too_long[0]!r} is longer than 63 bytes: use a shorter schema name "
            "to have pgqueue's roles, or grant privileges yourself (docs/security.md)")
    if any("$pgqueue$" in n for n in names.values()):
        raise ConfigurationError(f"schema name {schema!r} cannot hold '$pgqueue$'")
    params: dict[str, Any] = {"schema": sql.Identifier(schema)}
    for kind, name in names.items():
        params[kind] = sql.Identifier(name)
        params[f"{kind}_name"] = sql.Literal(name)
    for table in ("jobs", "results", "results_default"):
        params[f"{table}_table"] = sql.Literal(sql.Identifier(schema, table).as_string(None))
    creates = [sql.SQL(queries.ROLE_CREATE.strip()).format(
        name=sql.Literal(name), role=sql.Identifier(name)) for name in names.values()]
    grants = [sql.SQL(text.strip()).format(**params) for text in queries.ROLE_GRANTS]
    return creates + grants


def render(schema: str) -> str:
    """The SQL of :func:`statements`, for an administrator to run (``migrate --roles``)."""
    return "".join(f"{s.as_string(None)};\n" for s in statements(schema))


def ensure(conn: psycopg.Connection[Any], schema: str,
           report: Callable[[str], None]) -> bool:
    """Create and grant the roles inside the caller's transaction, under a savepoint.

    Without CREATEROLE (and the roles missing) nothing changes and ``report`` gets one
    line saying how to have them made: roles are optional, the schema works without.
    """
    user = conn.info.user
    try:
        with conn.transaction():
            for statement in statements(schema):
                conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege as error:
        report(f"roles not created ({str(error).splitlines()[0]}): the role {user!r} needs "
               f"CREATEROLE; the schema is migrated all the same. To add the roles, have "
               f"an administrator run the output of `pgqueue migrate --roles --schema "
               f"{schema}` (docs/security.md)")
        return False
    except ConfigurationError as error:
        report(f"roles not created: {error}")
        return False
    return True


def check_worker(db: Any, schema: str, beat: bool) -> None:
    """Raise :class:`PermissionDenied` naming the first privilege a worker (with ``beat``,
    its scheduler too) needs and its role lacks; ``db`` is a :class:`pgqueue.db.Dedicated`."""
    wanted = WORKER_PRIVILEGES + (BEAT_PRIVILEGES if beat else [])
    missing = db.execute(sql.SQL(queries.ROLE_MISSING_PRIVILEGES).as_bytes(None), {
        "schema": schema, "tables": [t for t, _ in wanted],
        "privileges": [p for _, p in wanted]})
    if missing:
        table, privilege = missing[0]
        refused = Exception(f"no {privilege} privilege on table {schema}.{table}")
        raise missing_grant(schema, refused, "worker", db.connect().info.user)
