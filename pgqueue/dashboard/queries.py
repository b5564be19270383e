"""The dashboard's own named statements (the rest it runs are :mod:`pgqueue.db.queries`'s).

Same rules as there: ``{schema}`` is composed in as an identifier, everything else is a
bound parameter. The job list is keyset-paginated on ``(ts, id)`` descending, where ``ts``
is ``finished_at`` for a result and ``created_at`` for a live job, so that a deep page
costs what the first does: each side walks its own index from the cursor on
(``results_finished_at_idx``; the live ``jobs`` table stays small).
"""

from __future__ import annotations

from psycopg import sql

# The filters both sides of the job list share; a NULL parameter is no filter.
_JOB_FILTERS = """
               AND (%(task)s::text IS NULL OR task = %(task)s::text)
               AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
               AND (%(text)s::text IS NULL OR strpos(args::text || ' ' || kwargs::text,
                                                      %(text)s::text) > 0)
"""

TEMPLATES: dict[str, str] = {
    # One page of the job list, newest first, from the cursor (ts, id) on (exclusive).
    "dashboard_job_page": f"""
        SELECT * FROM (
            (SELECT id, coalesce(task_id, id::text) AS task_id, task, queue, state, attempt,
                    worker, args, kwargs, created_at, started_at, NULL::timestamptz,
                    created_at AS ts
               FROM {{schema}}.jobs
              WHERE %(live)s AND (%(state)s::text IS NULL OR state = %(state)s::text)
                AND created_at <= coalesce(%(until)s::timestamptz, 'infinity')
                AND created_at >= coalesce(%(since)s::timestamptz, '-infinity')
                AND (%(before_ts)s::timestamptz IS NULL OR created_at <= %(before_ts)s
                     AND (created_at, id) < (%(before_ts)s, %(before_id)s::uuid))
                {_JOB_FILTERS}
              ORDER BY created_at DESC, id DESC
              LIMIT %(limit)s)
            UNION ALL
            (SELECT id, coalesce(task_id, id::text), task, queue, state, attempt, worker,
                    args, kwargs, created_at, started_at, finished_at, finished_at
               FROM {{schema}}.results
              WHERE %(final)s AND (%(state)s::text IS NULL OR state = %(state)s::text)
                AND finished_at <= coalesce(%(until)s::timestamptz, 'infinity')
                AND finished_at >= coalesce(%(since)s::timestamptz, '-infinity')
                AND (%(before_ts)s::timestamptz IS NULL OR finished_at <= %(before_ts)s
                     AND (finished_at, id) < (%(before_ts)s, %(before_id)s::uuid))
                {_JOB_FILTERS}
              ORDER BY finished_at DESC, id DESC
              LIMIT %(limit)s)
        ) page ORDER BY ts DESC, id DESC LIMIT %(limit)s
    """,
    # A job by its row id (limits.row_id of its task id), live or final.
    "dashboard_job_get": """
        SELECT false AS final, id, coalesce(task_id, id::text), task, queue, state, attempt,
               max_retries, priority, args, kwargs, NULL::jsonb AS result, last_error,
               NULL::text AS traceback, worker, parent_id, root_id, group_id, progress_state,
               meta, options, headers, created_at, run_at, started_at,
               NULL::timestamptz AS finished_at, expires_at
          FROM {schema}.jobs
         WHERE id = %(id)s::uuid
        UNION ALL
        SELECT true, id, coalesce(task_id, id::text), task, queue, state, attempt, NULL,
               priority, args, kwargs, result, error, traceback, worker, parent_id, root_id,
               group_id, NULL, meta, NULL, headers, created_at, NULL, started_at,
               finished_at, NULL
          FROM {schema}.results
         WHERE id = %(id)s::uuid
         LIMIT 1
    """,
    # The jobs a job started (its children), live or final; results_parent_idx.
    "dashboard_job_children": """
        SELECT id, task, state, created_at FROM {schema}.jobs WHERE parent_id = %(id)s
        UNION ALL
        SELECT id, task, state, created_at FROM {schema}.results WHERE parent_id = %(id)s
        ORDER BY created_at LIMIT %(limit)s
    """,
    "dashboard_workflow_steps": """
        SELECT id, task, parent_id, state, job_state, created_at, finished_at
          FROM {schema}.workflow_steps WHERE root_id = %(root)s
         ORDER BY created_at, id LIMIT %(limit)s
    """,
    "dashboard_job_label": """
        SELECT id, task, state FROM {schema}.jobs WHERE id = %(id)s
        UNION ALL
        SELECT id, task, state FROM {schema}.results WHERE id = %(id)s
    """,
    # Finished jobs per minute over the last ``minutes`` (results_finished_at_idx).
    "dashboard_throughput": """
        SELECT date_bin('1 minute', finished_at, 'epoch'::timestamptz) AS minute,
               count(*) FILTER (WHERE state = 'SUCCESS'),
               count(*) FILTER (WHERE state = 'FAILURE'),
               count(*) FILTER (WHERE state = 'REVOKED')
          FROM {schema}.results
         WHERE finished_at > date_bin('1 minute', now(), 'epoch'::timestamptz)
                             - make_interval(mins => %(minutes)s - 1)
         GROUP BY 1 ORDER BY 1
    """,
    # Wait (enqueue to start) and run time of the jobs that finished in the window.
    "dashboard_latency": """
        SELECT count(*),
               avg(extract(epoch FROM started_at - created_at))::float8,
               percentile_cont(0.95) WITHIN GROUP (
                   ORDER BY extract(epoch FROM started_at - created_at))::float8,
               avg(extract(epoch FROM finished_at - started_at))::float8,
               percentile_cont(0.95) WITHIN GROUP (
                   ORDER BY extract(epoch FROM finished_at - started_at))::float8
          FROM {schema}.results
         WHERE finished_at > now() - make_interval(mins => %(minutes)s)
           AND started_at IS NOT NULL
    """,
    # Deleting a final job's row; a live job is revoked instead (it may be running).
    "dashboard_result_delete": """
        DELETE FROM {schema}.results WHERE id = %(id)s RETURNING id
    """,
    # Which of the privileges the dashboard's mode needs its role lacks.
    "dashboard_missing_privileges": """
        SELECT t.name, t.privilege
          FROM unnest(%(tables)s::text[], %(privileges)s::text[]) AS t(name, privilege)
         WHERE NOT has_table_privilege(format('%%I.%%I', %(schema)s::text, t.name),
                                       t.privilege)
    """,
}


class DashboardQueries:
    """:data:`TEMPLATES` composed for one schema."""

    def __init__(self, schema: str) -> None:
        ident = sql.Identifier(schema)
        self._statements = {name: sql.SQL(text).format(schema=ident).as_bytes(None)
                            for name, text in TEMPLATES.items()}

    def __getitem__(self, name: str) -> bytes:
        return self._statements[name]
