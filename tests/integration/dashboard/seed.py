"""A schema that looks lived in: live and finished jobs of a few tasks over the last hour,
failures with tracebacks, a workflow, a schedule, a worker holding a job, and a job whose
arguments are markup (which the pages must show as text)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgqueue import App

TRACEBACK = ('Traceback (most recent call last):\n  File "shop/tasks.py", line 12, in charge\n'
             "CardDeclined: declined")
HOSTILE = "<script>alert('pwned')</script><img src=x onerror=alert(1)>"


@dataclass
class Seeded:
    queued: str          # a queued job (revocable)
    hostile: str         # a queued job whose argument is markup
    failed: str          # a FAILURE result with a traceback (retriable)
    succeeded: str       # a SUCCESS result (deletable)
    parent: str          # a workflow's first step, finished
    child: str           # its child, queued
    running: str         # held by the worker
    worker: str
    schedule: str


def seed(app: App, dsn: str) -> Seeded:
    queued = app.send_task("shop.send_email", args=["ann@example.com"], queue="mail").id
    hostile = app.send_task("shop.render", args=[HOSTILE], kwargs={"title": HOSTILE}).id
    app.send_task("shop.report", countdown=3600)
    parent, child, failed, succeeded, running = (str(uuid.uuid4()) for _ in range(5))
    worker = "celery@host1"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(app.schema)))
        _history(conn)
        conn.execute("""
            INSERT INTO results (id, queue, task, state, result, error, traceback, args,
                                 attempt, worker, created_at, started_at, finished_at)
            VALUES (%(failed)s, 'default', 'shop.charge', 'FAILURE',
                    '{"exc_type": "CardDeclined", "exc_message": ["declined"]}',
                    'CardDeclined: declined',
                    %(traceback)s,
                    '[42, "EUR"]', 3, %(worker)s, now() - interval '3 min',
                    now() - interval '2 min', now() - interval '2 min'),
                   (%(succeeded)s, 'default', 'shop.send_email', 'SUCCESS', '"sent"', NULL,
                    NULL, '["bob@example.com"]', 1, %(worker)s, now() - interval '61 s',
                    now() - interval '60 s', now() - interval '59 s'),
                   (%(parent)s, 'default', 'shop.fetch_order', 'SUCCESS', '{"order": 7}',
                    NULL, NULL, '[7]', 1, %(worker)s, now() - interval '5 min',
                    now() - interval '5 min', now() - interval '5 min')
            """, {"failed": failed, "succeeded": succeeded, "parent": parent,
                  "worker": worker, "traceback": TRACEBACK})
        conn.execute("""
            INSERT INTO jobs (id, queue, task, args, parent_id, root_id)
            VALUES (%(child)s, 'default', 'shop.ship_order', '[{"order": 7}]',
                    %(parent)s, %(parent)s)
            """, {"child": child, "parent": parent})
        conn.execute("""
            INSERT INTO workers (id, hostname, pid, queues, concurrency, pool)
            VALUES (%(worker)s, 'host1', 4242, '{default,mail}', 4, 'prefork')
            """, {"worker": worker})
        conn.execute("""
            INSERT INTO jobs (id, queue, task, args, state, worker, attempt, started_at,
                              lease_expires_at)
            VALUES (%(running)s, 'default', 'shop.resize_image', '["cat.png"]', 'started',
                    %(worker)s, 1, now(), now() + interval '1 hour')
            """, {"running": running, "worker": worker})
        conn.execute("""
            INSERT INTO schedules (name, task, args, cron, next_run_at)
            VALUES ('nightly-report', 'shop.report', '["daily"]', '0 3 * * *',
                    now() + interval '5 hours')
            """)
    return Seeded(queued=queued, hostile=hostile, failed=failed, succeeded=succeeded,
                  parent=parent, child=child, running=running, worker=worker,
                  schedule="nightly-report")


def _history(conn: psycopg.Connection[Any]) -> None:
    """Finished jobs spread over the last hour: mostly successes, some failures."""
    conn.execute("""
        INSERT INTO results (id, queue, task, state, error, args, attempt, created_at,
                             started_at, finished_at)
        SELECT gen_random_uuid(), CASE WHEN i % 3 = 0 THEN 'mail' ELSE 'default' END,
               (ARRAY['shop.send_email', 'shop.resize_image', 'shop.charge'])[1 + i % 3],
               CASE WHEN i % 11 = 0 THEN 'FAILURE' WHEN i % 29 = 0 THEN 'REVOKED'
                    ELSE 'SUCCESS' END,
               CASE WHEN i % 11 = 0 THEN 'TimeoutError: upstream' END,
               jsonb_build_array(i), 1,
               now() - make_interval(secs => i * 12 + 2),
               now() - make_interval(secs => i * 12 + 1),
               now() - make_interval(secs => i * 12 - (i % 5) * 0.3)
          FROM generate_series(1, 290) i
        """)
