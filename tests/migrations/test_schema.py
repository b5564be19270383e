"""A fresh `pgqueue migrate` gives exactly the schema the code expects.

The expected description below is written by hand from DESIGN.md section 2. A migration
that changes the schema must change it too, on purpose.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue.db import migrations
from pgqueue.db.queries import TEMPLATES, Queries
from tests.login_roles import with_group_roles
from tests.pgserver import drop_schema
from tests.pgserver import fresh_schema as fresh_schema_of

PGQUEUE = str(Path(sys.executable).with_name("pgqueue"))

TS = "timestamp with time zone"
# table -> [(column, type, NOT NULL, default)]
EXPECTED_TABLES: dict[str, list[tuple[str, str, bool, str | None]]] = {
    "jobs": [
        ("id", "uuid", True, None),
        ("queue", "text", True, None),
        ("task", "text", True, None),
        ("args", "jsonb", True, "'[]'::jsonb"),
        ("kwargs", "jsonb", True, "'{}'::jsonb"),
        ("state", "text", True, "'queued'::text"),
        ("priority", "smallint", True, "0"),
        ("run_at", TS, True, "now()"),
        ("expires_at", TS, False, None),
        ("attempt", "integer", True, "0"),
        ("max_retries", "integer", False, None),
        ("lease_expires_at", TS, False, None),
        ("worker", "text", False, None),
        ("unique_key", "text", False, None),
        ("parent_id", "uuid", False, None),
        ("root_id", "uuid", False, None),
        ("group_id", "uuid", False, None),
        ("ignore_result", "boolean", True, "false"),
        ("progress_state", "text", False, None),
        ("meta", "jsonb", False, None),
        ("last_error", "text", False, None),
        ("options", "jsonb", True, "'{}'::jsonb"),
        ("created_at", TS, True, "now()"),
        ("started_at", TS, False, None),
        ("headers", "jsonb", False, None),
        ("task_id", "text", False, None),
        # generated from options (0007)
        ("concurrency_key", "text", False, "(options ->> 'concurrency_key'::text)"),
    ],
    "results": [
        ("id", "uuid", True, None),
        ("queue", "text", True, None),
        ("task", "text", True, None),
        ("state", "text", True, None),
        ("result", "jsonb", False, None),
        ("error", "text", False, None),
        ("traceback", "text", False, None),
        ("args", "jsonb", True, "'[]'::jsonb"),
        ("kwargs", "jsonb", True, "'{}'::jsonb"),
        ("priority", "smallint", True, "0"),
        ("attempt", "integer", True, "0"),
        ("worker", "text", False, None),
        ("unique_key", "text", False, None),
        ("parent_id", "uuid", False, None),
        ("root_id", "uuid", False, None),
        ("group_id", "uuid", False, None),
        ("meta", "jsonb", False, None),
        ("created_at", TS, True, None),
        ("started_at", TS, False, None),
        ("finished_at", TS, True, "now()"),
        ("headers", "jsonb", False, None),
        ("task_id", "text", False, None),
    ],
    "schedules": [
        ("name", "text", True, None),
        ("task", "text", True, None),
        ("args", "jsonb", True, "'[]'::jsonb"),
        ("kwargs", "jsonb", True, "'{}'::jsonb"),
        ("options", "jsonb", True, "'{}'::jsonb"),
        ("cron", "text", False, None),
        ("every", "interval", False, None),
        ("timezone", "text", True, "'UTC'::text"),
        ("enabled", "boolean", True, "true"),
        ("catch_up", "boolean", True, "true"),
        ("next_run_at", TS, False, None),
        ("last_run_at", TS, False, None),
        ("total_run_count", "bigint", True, "0"),
        ("source", "text", True, "'db'::text"),
        ("created_at", TS, True, "now()"),
        ("updated_at", TS, True, "now()"),
    ],
    "workers": [
        ("id", "text", True, None),
        ("hostname", "text", True, None),
        ("pid", "integer", True, None),
        ("queues", "text[]", True, None),
        ("concurrency", "integer", True, None),
        ("pool", "text", True, None),
        ("started_at", TS, True, "now()"),
        ("last_seen_at", TS, True, "now()"),
    ],
    "leader": [
        ("id", "smallint", True, "1"),
        ("holder", "text", True, None),
        ("term", "bigint", True, None),
        ("elected_at", TS, True, "now()"),
        ("expires_at", TS, True, None),
    ],
    "control_requests": [
        ("id", "bigint", True, None),
        ("action", "text", True, None),
        ("job_ids", "uuid[]", True, "'{}'::uuid[]"),
        ("destination", "text[]", False, None),
        ("arguments", "jsonb", True, "'{}'::jsonb"),
        ("xid", "xid8", True, "pg_current_xact_id()"),
        ("created_at", TS, True, "now()"),
        ("requested_by", "text", True, "CURRENT_USER"),
    ],
    # 0008: unique_for= / unique_states= claims, and what retries by hand replaced.
    "unique_claims": [
        ("key", "text", True, None),
        ("job_id", "uuid", True, None),
        ("states", "text[]", False, None),
        ("expires_at", TS, False, None),
        ("claimed_at", TS, True, "now()"),
        ("xid", "xid8", True, "pg_current_xact_id()"),
    ],
    "job_history": [
        ("id", "bigint", True, None),
        ("job_id", "uuid", True, None),
        ("task", "text", True, None),
        ("state", "text", True, None),
        ("attempt", "integer", True, None),
        ("error", "text", False, None),
        ("traceback", "text", False, None),
        ("result", "jsonb", False, None),
        ("worker", "text", False, None),
        ("started_at", TS, False, None),
        ("finished_at", TS, True, None),
        ("retried_at", TS, True, "now()"),
        ("retried_by", "text", True, "CURRENT_USER"),
    ],
    "flow_limits": [
        ("scope", "text", True, None),
        ("name", "text", True, None),
        ("paused", "boolean", True, "false"),
        ("concurrency", "integer", False, None),
        ("rate_count", "double precision", False, None),
        ("rate_seconds", "double precision", False, None),
        ("next_start_at", TS, True, "'-infinity'::timestamp with time zone"),
        ("source", "text", True, "'control'::text"),
        ("updated_at", TS, True, "now()"),
    ],
    "canvas_steps": [
        ("id", "uuid", True, None),
        ("task", "text", True, None),
        ("root_id", "uuid", False, None),
        ("parent_id", "uuid", False, None),
        ("group_id", "uuid", False, None),
        ("job", "jsonb", True, None),
        ("after", "uuid[]", True, None),
        ("remaining", "integer", True, None),
        ("runs_on", "text", True, None),
        ("pass", "text", True, None),
        ("culprit", "uuid", False, None),
        ("created_at", TS, True, "now()"),
    ],
    "canvas_edges": [
        ("before", "uuid", True, None),
        ("step", "uuid", True, None),
    ],
    "canvas_groups": [
        ("id", "uuid", True, None),
        ("members", "uuid[]", True, None),
        ("created_at", TS, True, "now()"),
    ],
    # a starter job's claim on the workflow it sends (0011)
    "canvas_starts": [
        ("starter", "uuid", True, None),
        ("result_id", "text", False, None),
        ("created_at", TS, True, "now()"),
    ],
    "control_replies": [
        ("request_id", "bigint", True, None),
        ("worker", "text", True, None),
        ("node", "text", True, None),
        ("reply", "jsonb", True, None),
        ("created_at", TS, True, "now()"),
    ],
    # who listens for events, refreshed while they listen (0012)
    "event_listeners": [
        ("id", "text", True, None),
        ("node", "text", True, "''::text"),
        ("seen_at", TS, True, "now()"),
    ],
    # ids whose result finished before the time in the id, less an hour (0013)
    "results_early": [
        ("id", "uuid", True, None),
        ("noted_at", TS, True, "now()"),
    ],
    "schema_version": [
        ("version", "integer", True, None),
        ("name", "text", True, None),
        ("applied_at", TS, True, "now()"),
    ],
}
# The identity column of control_requests.
EXPECTED_SEQUENCES = {"control_requests_id_seq", "job_history_id_seq"}
# `workers` and `control_replies` hold nothing that must survive a crash of the server.
EXPECTED_UNLOGGED = {"workers", "control_replies", "event_listeners"}

# index -> definition, with the schema written as SCHEMA
EXPECTED_INDEXES = {
    "jobs_pkey": "CREATE UNIQUE INDEX jobs_pkey ON SCHEMA.jobs USING btree (id)",
    "jobs_claim_idx": "CREATE INDEX jobs_claim_idx ON SCHEMA.jobs USING btree "
                      "(queue, priority DESC, run_at, id) WHERE (state = 'queued'::text)",
    "jobs_due_idx": "CREATE INDEX jobs_due_idx ON SCHEMA.jobs USING btree (run_at) "
                    "WHERE (state = ANY (ARRAY['scheduled'::text, 'retry'::text]))",
    "jobs_lease_idx": "CREATE INDEX jobs_lease_idx ON SCHEMA.jobs USING btree "
                      "(lease_expires_at) WHERE (state = 'started'::text)",
    "jobs_unique_key_idx": "CREATE UNIQUE INDEX jobs_unique_key_idx ON SCHEMA.jobs USING "
                           "btree (unique_key) WHERE (unique_key IS NOT NULL)",
    "jobs_task_id_idx": "CREATE INDEX jobs_task_id_idx ON SCHEMA.jobs USING btree (task_id) "
                        "WHERE (task_id IS NOT NULL)",
    "results_pkey": "CREATE UNIQUE INDEX results_pkey ON SCHEMA.results USING btree (id)",
    "results_finished_at_idx": "CREATE INDEX results_finished_at_idx ON SCHEMA.results "
                               "USING btree (finished_at)",
    "results_unique_key_idx": "CREATE INDEX results_unique_key_idx ON SCHEMA.results USING "
                              "btree (unique_key) WHERE (unique_key IS NOT NULL)",
    "results_task_id_idx": "CREATE INDEX results_task_id_idx ON SCHEMA.results USING btree "
                           "(task_id) WHERE (task_id IS NOT NULL)",
    "schedules_pkey": "CREATE UNIQUE INDEX schedules_pkey ON SCHEMA.schedules USING btree "
                      "(name)",
    "schedules_due_idx": "CREATE INDEX schedules_due_idx ON SCHEMA.schedules USING btree "
                         "(next_run_at) WHERE enabled",
    "workers_pkey": "CREATE UNIQUE INDEX workers_pkey ON SCHEMA.workers USING btree (id)",
    "leader_pkey": "CREATE UNIQUE INDEX leader_pkey ON SCHEMA.leader USING btree (id)",
    "control_requests_pkey": "CREATE UNIQUE INDEX control_requests_pkey ON "
                             "SCHEMA.control_requests USING btree (id)",
    "control_requests_xid_idx": "CREATE INDEX control_requests_xid_idx ON "
                                "SCHEMA.control_requests USING btree (xid)",
    "control_requests_created_at_idx": "CREATE INDEX control_requests_created_at_idx ON "
                                       "SCHEMA.control_requests USING btree (created_at)",
    "jobs_keyed_claim_idx": "CREATE INDEX jobs_keyed_claim_idx ON SCHEMA.jobs USING btree "
                            "(queue, priority DESC, run_at, id) WHERE ((state = "
                            "'queued'::text) AND (concurrency_key IS NOT NULL))",
    "jobs_keyed_started_idx": "CREATE INDEX jobs_keyed_started_idx ON SCHEMA.jobs USING "
                              "btree (concurrency_key) WHERE ((state = 'started'::text) "
                              "AND (concurrency_key IS NOT NULL))",
    "flow_limits_pkey": "CREATE UNIQUE INDEX flow_limits_pkey ON SCHEMA.flow_limits USING "
                        "btree (scope, name)",
    "control_replies_pkey": "CREATE UNIQUE INDEX control_replies_pkey ON "
                            "SCHEMA.control_replies USING btree (request_id, worker)",
    "control_replies_created_at_idx": "CREATE INDEX control_replies_created_at_idx ON "
                                      "SCHEMA.control_replies USING btree (created_at)",
    "results_early_pkey": "CREATE UNIQUE INDEX results_early_pkey ON "
                          "SCHEMA.results_early USING btree (id)",
    "event_listeners_pkey": "CREATE UNIQUE INDEX event_listeners_pkey ON "
                            "SCHEMA.event_listeners USING btree (id)",
    "schema_version_pkey": "CREATE UNIQUE INDEX schema_version_pkey ON SCHEMA.schema_version "
                           "USING btree (version)",
    "unique_claims_pkey": "CREATE UNIQUE INDEX unique_claims_pkey ON SCHEMA.unique_claims "
                          "USING btree (key)",
    "unique_claims_expires_at_idx": "CREATE INDEX unique_claims_expires_at_idx ON "
                                    "SCHEMA.unique_claims USING btree (expires_at) "
                                    "WHERE (expires_at IS NOT NULL)",
    "job_history_pkey": "CREATE UNIQUE INDEX job_history_pkey ON SCHEMA.job_history USING "
                        "btree (id)",
    "job_history_job_id_idx": "CREATE INDEX job_history_job_id_idx ON SCHEMA.job_history "
                              "USING btree (job_id)",
    "job_history_retried_at_idx": "CREATE INDEX job_history_retried_at_idx ON "
                                  "SCHEMA.job_history USING btree (retried_at)",
    "canvas_steps_pkey": "CREATE UNIQUE INDEX canvas_steps_pkey ON SCHEMA.canvas_steps "
                         "USING btree (id)",
    "canvas_steps_root_idx": "CREATE INDEX canvas_steps_root_idx ON SCHEMA.canvas_steps "
                             "USING btree (root_id)",
    "canvas_edges_pkey": "CREATE UNIQUE INDEX canvas_edges_pkey ON SCHEMA.canvas_edges "
                         "USING btree (before, step)",
    "canvas_groups_pkey": "CREATE UNIQUE INDEX canvas_groups_pkey ON SCHEMA.canvas_groups "
                          "USING btree (id)",
    "canvas_groups_created_idx": "CREATE INDEX canvas_groups_created_idx ON "
                                 "SCHEMA.canvas_groups USING btree (created_at, id)",
    "canvas_starts_pkey": "CREATE UNIQUE INDEX canvas_starts_pkey ON SCHEMA.canvas_starts "
                          "USING btree (starter)",
    "jobs_parent_idx": "CREATE INDEX jobs_parent_idx ON SCHEMA.jobs USING btree (parent_id) "
                       "WHERE (parent_id IS NOT NULL)",
    "results_parent_idx": "CREATE INDEX results_parent_idx ON SCHEMA.results USING btree "
                          "(parent_id) WHERE (parent_id IS NOT NULL)",
    "jobs_root_idx": "CREATE INDEX jobs_root_idx ON SCHEMA.jobs USING btree (root_id) "
                     "WHERE (root_id IS NOT NULL)",
    "results_root_idx": "CREATE INDEX results_root_idx ON SCHEMA.results USING btree "
                        "(root_id) WHERE (root_id IS NOT NULL)",
}

EXPECTED_CHECKS = {
    ("jobs", "CHECK ((state = ANY (ARRAY['scheduled'::text, 'queued'::text, "
             "'started'::text, 'retry'::text])))"),
    ("jobs", "CHECK (((priority >= 0) AND (priority <= 9)))"),
    ("jobs", "CHECK (((state = 'started'::text) = (worker IS NOT NULL)))"),
    ("jobs", "CHECK ((isfinite(run_at) AND isfinite(created_at) AND ((expires_at IS NULL) "
             "OR isfinite(expires_at)) AND ((started_at IS NULL) OR isfinite(started_at)) "
             "AND ((lease_expires_at IS NULL) OR isfinite(lease_expires_at))))"),
    ("jobs", "CHECK ((attempt >= 0))"),
    ("results", "CHECK ((state = ANY (ARRAY['SUCCESS'::text, 'FAILURE'::text, "
                "'REVOKED'::text])))"),
    ("schedules", "CHECK (((cron IS NULL) <> (every IS NULL)))"),
    ("schedules", "CHECK ((source = ANY (ARRAY['code'::text, 'db'::text])))"),
    ("leader", "CHECK ((id = 1))"),
    ("flow_limits", "CHECK ((scope = ANY (ARRAY['queue'::text, 'task'::text])))"),
    ("flow_limits", "CHECK ((concurrency >= 1))"),
    ("flow_limits", "CHECK (((rate_count > (0)::double precision) AND (rate_count <= "
                    "('1000000000'::numeric)::double precision)))"),
    ("flow_limits", "CHECK (((rate_seconds > (0)::double precision) AND (rate_seconds <= "
                    "(86400)::double precision)))"),
    ("flow_limits", "CHECK ((source = ANY (ARRAY['code'::text, 'control'::text])))"),
    ("flow_limits", "CHECK (((rate_count IS NULL) = (rate_seconds IS NULL)))"),
    ("flow_limits", "CHECK (((scope = 'queue'::text) OR ((concurrency IS NULL) AND (NOT "
                    "paused))))"),
    ("canvas_steps", "CHECK ((runs_on = ANY (ARRAY['success'::text, 'failure'::text])))"),
    ("canvas_steps", "CHECK ((pass = ANY (ARRAY['one'::text, 'list'::text, 'none'::text, "
                     "'error'::text])))"),
}
# What advances workflows: whatever moves a job into results fires it (0006_canvas.sql).
EXPECTED_TRIGGERS = {
    ("results", "canvas_advance_inserted", "canvas_advance"),
    ("results", "canvas_advance_updated", "canvas_advance"),
    ("results", "results_early_note", "results_early_note"),
}
# A workflow's steps and states in plain SQL.
EXPECTED_WORKFLOW_VIEW_COLUMNS = [
    ("root_id", "uuid"), ("id", "uuid"), ("task", "text"), ("parent_id", "uuid"),
    ("group_id", "uuid"), ("state", "text"), ("job_state", "text"), ("result", "jsonb"),
    ("error", "text"), ("created_at", TS), ("finished_at", TS),
]

# The view every state can be read from with plain SQL, in Celery's vocabulary.
EXPECTED_VIEW_COLUMNS = [
    ("id", "uuid"), ("queue", "text"), ("task", "text"), ("state", "text"),
    ("job_state", "text"), ("priority", "smallint"), ("args", "jsonb"), ("kwargs", "jsonb"),
    ("result", "jsonb"), ("error", "text"), ("attempt", "integer"), ("worker", "text"),
    ("run_at", TS), ("created_at", TS), ("started_at", TS), ("finished_at", TS),
    ("task_id", "text"),
]


def describe(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """Everything about a schema that the code depends on, in comparable form."""
    relations = {
        name: (kind, persistence)
        for name, kind, persistence in conn.execute(
            """SELECT c.relname, c.relkind, c.relpersistence FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'S', 'f')
                  AND NOT c.relispartition""",
            [schema]).fetchall()
    }
    columns: dict[str, list[tuple[str, str, bool, str | None]]] = {}
    for table, column, typ, not_null, default in conn.execute(
        """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE n.nspname = %s AND a.attnum > 0 AND NOT a.attisdropped
              AND NOT c.relispartition
            ORDER BY c.relname, a.attnum""", [schema]).fetchall():
        columns.setdefault(table, []).append((column, typ, not_null, default))
    indexes = {
        name: definition.replace(f"{schema}.", "SCHEMA.")
        for name, definition in conn.execute(
            """SELECT indexname, indexdef FROM pg_indexes
                WHERE schemaname = %s
                  AND NOT (SELECT relispartition FROM pg_class
                            WHERE oid = format('%%I.%%I', schemaname, tablename)::regclass)""",
            [schema]).fetchall()
    }
    checks = set(conn.execute(
        """SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE connamespace = (SELECT oid FROM pg_namespace WHERE nspname = %s)
              AND contype = 'c'
              AND NOT (SELECT relispartition FROM pg_class WHERE oid = conrelid)""",
        [schema]).fetchall())
    checks = {(table.rpartition(".")[2], definition) for table, definition in checks}
    triggers = set(conn.execute(
        """SELECT c.relname, t.tgname, p.proname FROM pg_trigger t
             JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_proc p ON p.oid = t.tgfoid
            WHERE n.nspname = %s AND NOT t.tgisinternal
              AND t.tgparentid = 0  -- not a row trigger's clone on a partition""",
        [schema]).fetchall())
    return {"relations": relations, "columns": columns, "indexes": indexes, "checks": checks,
            "triggers": triggers}


@pytest.fixture
def fresh_schema(pg_dsn: str) -> Iterator[str]:
    """A schema name nobody has created yet; dropped afterwards."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    yield name
    drop_schema(pg_dsn, name)  # and the roles `pgqueue migrate` made for it


def assert_expected_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    found = describe(conn, schema)
    tables = {name for name, (kind, _) in found["relations"].items() if kind in ("r", "p")}
    views = {name for name, (kind, _) in found["relations"].items() if kind == "v"}
    assert tables == set(EXPECTED_TABLES)
    assert views == {"all_jobs", "workflow_steps"}
    sequences = {name for name, (kind, _) in found["relations"].items() if kind == "S"}
    assert sequences == EXPECTED_SEQUENCES
    assert set(found["relations"]) == tables | views | sequences  # no other strays
    for table, expected in EXPECTED_TABLES.items():
        assert found["columns"][table] == expected, f"columns of {table}"
    unlogged = {name for name, (_, persistence) in found["relations"].items()
                if persistence == "u"}
    assert unlogged == EXPECTED_UNLOGGED
    assert found["indexes"] == EXPECTED_INDEXES
    assert found["checks"] == EXPECTED_CHECKS
    view_columns = [(c, t) for c, t, _, _ in found["columns"]["all_jobs"]]
    assert view_columns == EXPECTED_VIEW_COLUMNS
    workflow_columns = [(c, t) for c, t, _, _ in found["columns"]["workflow_steps"]]
    assert workflow_columns == EXPECTED_WORKFLOW_VIEW_COLUMNS
    assert found["triggers"] == EXPECTED_TRIGGERS


def test_fresh_migrate_gives_exactly_the_expected_schema(pg_dsn: str, fresh_schema: str) -> None:
    applied = migrations.migrate(pg_dsn, fresh_schema)
    assert [m.version for m in applied] == [m.version for m in migrations.available()]
    with psycopg.connect(pg_dsn) as conn:
        assert_expected_schema(conn, fresh_schema)
        versions = conn.execute(sql.SQL("SELECT version, name FROM {}.schema_version ORDER BY 1")
                                .format(sql.Identifier(fresh_schema))).fetchall()
    assert versions == [(m.version, m.name) for m in migrations.available()]


def test_rerunning_migrate_is_a_no_op(pg_dsn: str, fresh_schema: str) -> None:
    migrations.migrate(pg_dsn, fresh_schema)
    with psycopg.connect(pg_dsn) as conn:
        before = describe(conn, fresh_schema)
    assert migrations.migrate(pg_dsn, fresh_schema) == []
    with psycopg.connect(pg_dsn) as conn:
        assert describe(conn, fresh_schema) == before
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}.schema_version")
                             .format(sql.Identifier(fresh_schema))).fetchone()
    assert count == (len(migrations.available()),)


def test_migrate_command_reports_and_is_a_no_op_the_second_time(
    pg_dsn: str, fresh_schema: str
) -> None:
    command = [PGQUEUE, "migrate", "--dsn", pg_dsn, "--schema", fresh_schema]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial.sql" in first.stdout
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout and "applied" not in second.stdout


def test_migrate_sql_output_applies_with_psql_and_gives_the_same_schema(
    pg_dsn: str, fresh_schema: str
) -> None:
    printed = subprocess.run([PGQUEUE, "migrate", "--sql", "--dsn", pg_dsn, "--schema",
                              fresh_schema], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    with psycopg.connect(pg_dsn) as conn:  # --sql changes nothing by itself
        assert describe(conn, fresh_schema)["relations"] == {}
    applied = subprocess.run(["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-q", pg_dsn],
                             input=printed.stdout, capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr
    assert "ERROR" not in applied.stderr
    with psycopg.connect(pg_dsn) as conn:
        assert_expected_schema(conn, fresh_schema)
    # pgqueue recognises the result as migrated: nothing left to do.
    assert migrations.migrate(pg_dsn, fresh_schema) == []


def test_migrate_sql_without_a_database_prints_every_migration(fresh_schema: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PGQUEUE_DSN", "DATABASE_URL")}
    printed = subprocess.run(
        [PGQUEUE, "migrate", "--sql", "--dsn", "postgresql://nobody@127.0.0.1:1/none",
         "--schema", fresh_schema], capture_output=True, text=True, timeout=60, env=env)
    assert printed.returncode == 0, printed.stderr
    for migration in migrations.available():
        assert f"-- {migration.path.name}" in printed.stdout
    assert printed.stdout.startswith("BEGIN;") and printed.stdout.rstrip().endswith("COMMIT;")


def test_migrate_sql_of_an_up_to_date_schema_has_nothing_to_apply(
    pg_dsn: str, fresh_schema: str
) -> None:
    migrations.migrate(pg_dsn, fresh_schema)
    printed = subprocess.run([PGQUEUE, "migrate", "--sql", "--dsn", pg_dsn, "--schema",
                              fresh_schema], capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert "CREATE TABLE jobs" not in printed.stdout


def test_concurrent_migrates_apply_each_migration_once(pg_dsn: str, fresh_schema: str) -> None:
    barrier = threading.Barrier(6)
    outcomes: list[Any] = []

    def run() -> None:
        barrier.wait()
        try:
            outcomes.append(migrations.migrate(pg_dsn, fresh_schema))
        except BaseException as error:  # reported by the assertions below
            outcomes.append(error)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors
    assert len(outcomes) == 6
    assert sorted(len(o) for o in outcomes) == [0] * 5 + [len(migrations.available())]
    with psycopg.connect(pg_dsn) as conn:
        assert_expected_schema(conn, fresh_schema)


def test_concurrent_migrate_commands_all_succeed(pg_dsn: str, fresh_schema: str) -> None:
    command = [PGQUEUE, "migrate", "--dsn", pg_dsn, "--schema", fresh_schema]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    assert [rc for rc, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    assert sum("applied 0001_initial.sql" in out for _, out, _ in results) == 1


def _positional(query: bytes) -> tuple[bytes, int]:
    """``%(name)s`` placeholders as ``$n``, as psycopg sends them."""
    names: dict[bytes, int] = {}

    def number(match: re.Match[bytes]) -> bytes:
        return b"$%d" % names.setdefault(match.group(1), len(names) + 1)

    return re.sub(rb"%\((\w+)\)s", number, query), len(names)


# Statements for a results table partitioned by `pgqueue migrate --partition-results`.
PARTITIONED_ONLY = {"result_prune_default"}


@pytest.fixture(scope="module")
def fresh_layouts(pg_dsn: str) -> Iterator[dict[str, str]]:
    """A freshly migrated schema of each layout of results, for every statement of the
    module: preparing a statement changes nothing, so they share them (one schema a
    statement cost a migration each, 2 minutes of CI)."""
    with fresh_schema_of(pg_dsn, "t_") as plain, fresh_schema_of(pg_dsn, "t_") as parted:
        assert migrations.partition_results(pg_dsn, parted)
        yield {"plain": plain, "partitioned": parted}


@pytest.mark.parametrize("layout", ["plain", "partitioned"])
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_named_query_prepares_against_a_fresh_schema(
    pg_dsn: str, fresh_layouts: dict[str, str], name: str, layout: str
) -> None:
    """The code's statements and the migrated schema agree (tables, columns, types), on
    both layouts of results."""
    if layout == "plain" and name in PARTITIONED_ONLY:
        pytest.skip("needs the partitioned layout")
    query, _ = _positional(Queries(fresh_layouts[layout])[name])
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        result = conn.pgconn.prepare(b"", query)
        assert result.status == psycopg.pq.ExecStatus.COMMAND_OK, (
            result.error_message.decode())


def test_a_converted_schema_differs_only_in_the_layout_and_indexes_of_results(
    pg_dsn: str, schema: str
) -> None:
    """`pgqueue migrate --partition-results` carries columns, defaults, checks, triggers
    and indexes over; the primary key on id becomes an index on id (in every partition)."""
    with_group_roles(pg_dsn, schema)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        before = describe(conn, schema)
        grants_before = table_grants(conn, schema)
    assert migrations.partition_results(pg_dsn, schema)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        after = describe(conn, schema)
        grants_after = table_grants(conn, schema)
    assert after["columns"].pop("results_id_idx") == before["columns"].pop("results_pkey")
    for part in ("columns", "checks", "triggers"):
        assert after[part] == before[part], part
    assert after["relations"] == {**before["relations"],
                                  "results": ("p", before["relations"]["results"][1])}
    expected = {name: definition.replace("ON SCHEMA.results ", "ON ONLY SCHEMA.results ")
                for name, definition in before["indexes"].items() if name != "results_pkey"}
    expected["results_id_idx"] = ("CREATE INDEX results_id_idx ON ONLY SCHEMA.results "
                                  "USING btree (id)")
    assert after["indexes"] == expected
    assert grants_after == grants_before and grants_before


def table_grants(conn: psycopg.Connection[Any], schema: str) -> set[tuple[str, ...]]:
    return set(conn.execute(
        """SELECT grantee, table_name, privilege_type FROM information_schema.table_privileges
            WHERE table_schema = %s AND table_name NOT LIKE 'results\\_%%'
           UNION ALL
           SELECT grantee, table_name || '.' || column_name, privilege_type
             FROM information_schema.column_privileges
            WHERE table_schema = %s AND table_name = 'results'""",
        [schema, schema]).fetchall())
