"""Retry by hand: final jobs (FAILURE, REVOKED) sent again under their own id.

One statement (``result_retry``) moves each chosen row from ``results`` back to ``jobs``,
queued, with a fresh count of attempts, and keeps the outcome it leaves in
``job_history``. The max_retries, time limits and ``ignore_result`` of the new run are
the task's as this process defines it now (a result row does not keep the options of
the call that sent it); a task this process does not know gets the settings' defaults.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from pgqueue import db, limits, states
from pgqueue.client.producer import JobBuilder, _as_utc
from pgqueue.db import roles
from pgqueue.utils import json_dumps, utcnow

if TYPE_CHECKING:
    from pgqueue.app import App

#: The final states a retry by hand takes.
RETRIABLE = (states.FAILURE, states.REVOKED)


def retry_states(state: Any) -> list[str]:
    """``state=``: "FAILURE", "REVOKED", a list of them, or "any" (both)."""
    if isinstance(state, str) and state.lower() == "any":
        return list(RETRIABLE)
    names = [state] if isinstance(state, str) else state
    if not isinstance(names, (list, tuple, set, frozenset)) or not names:
        raise ValueError(f"retry: state must be 'FAILURE', 'REVOKED', 'any' or a list of "
                         f"them, got {limits.show(state)}")
    found = []
    for name in names:
        upper = name.upper() if isinstance(name, str) else name
        if upper not in RETRIABLE:
            hint = " (a job that succeeded is not retried: send a new one)" \
                if upper == states.SUCCESS else ""
            raise ValueError(f"retry: state {limits.show(name)} cannot be retried; "
                             f"give FAILURE, REVOKED or any{hint}")
        found.append(upper)
    return sorted(set(found))


def since_moment(app: App, since: Any) -> datetime | None:
    """``since=``: a datetime (naive: in the app's timezone), a timedelta or a number of
    seconds before now."""
    if since is None:
        return None
    if isinstance(since, datetime):
        return _as_utc(since, str(app.conf.timezone), "retry: since")
    if isinstance(since, timedelta):
        since = since.total_seconds()
    if not isinstance(since, (int, float)) or isinstance(since, bool) \
            or not 0 <= since <= limits.MAX_DELAY:
        raise ValueError(f"retry: since must be a datetime, a timedelta or a number of "
                         f"seconds ago from 0 to {limits.MAX_DELAY:,}, got "
                         f"{limits.show(since)}")
    return utcnow() - timedelta(seconds=float(since))


def _defaults(app: App, task: str | None) -> str:
    """Per task, what a new send would get: max_retries, options, ignore_result."""
    names = [task] if task is not None else list(app.tasks)
    rows = []
    for name in [None, *names]:
        known = app.tasks.get(name) if name is not None else None
        if name is not None and known is None:
            continue
        builder = JobBuilder(app, name or "pgqueue.retry", known, {})
        rows.append({"task": name, "max_retries": builder.max_retries,
                     "options": builder.job_options, "ignore_result": builder.ignore_result})
    return json_dumps(rows)


def retry_jobs(app: App, ids: Iterable[str] | None = None, *, task: str | None = None,
               state: Any = None, since: Any = None,
               limit: int | None = None) -> list[str]:
    """Send final jobs again; returns their ids. With ``ids`` every one must be
    retriable, or none is retried (ValueError naming the first that is not). ``state``:
    by default FAILURE when choosing by filter, FAILURE or REVOKED by id."""
    if ids is not None:
        given = [limits.job_id("retry: task id", str(i)) for i in ids]
        wanted = [limits.row_id(i) for i in given]
        if not wanted:
            return []
        chosen = retry_states("any" if state is None else state)
    else:
        wanted = None
        chosen = retry_states(states.FAILURE if state is None else state)
        if task is None and since is None:
            raise ValueError("retry: give job ids, or task= and/or since= to choose jobs "
                             "(since=0 would take nothing; e.g. since=timedelta(days=1))")
    if task is not None:
        limits.name("retry: task", task)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                              or limit < 1):
        raise ValueError(f"retry: limit must be a whole number above 0, got "
                         f"{limits.show(limit)}")
    params = {"ids": wanted, "task": task, "states": chosen,
              "since": since_moment(app, since), "limit": limit,
              "defaults": _defaults(app, task), "jobs_channel": app.queries.jobs_channel}
    with app.connection(roles.needed_for("result_retry")) as conn, conn.transaction():
        rows = db.run(conn, app.queries["result_retry"], params).fetchall()
        moved = [row[0] for row in rows]
        if wanted is not None and len(set(moved)) < len(set(wanted)):
            missing = next(i for i, row_id in zip(given, wanted, strict=True)
                           if row_id not in set(moved))
            reason = _why_not(conn, app, missing, chosen)
            raise ValueError(reason)  # rolls the others back: all or none
    return [row[2] for row in rows]  # each id as it was given


def _why_not(conn: psycopg.Connection[Any], app: App, job_id: str,
             chosen: list[str]) -> str:
    """Why the job ``job_id`` was not retried, in one line."""
    rows = db.run(conn, app.queries["result_get_state"], {"id": limits.row_id(job_id)}).fetchall()
    live = next((r for r in rows if not r[0]), None)
    if live is not None:
        return (f"retry: job {job_id} is not finished (it is {live[1]}): only a job that "
                "ended FAILURE or REVOKED can be retried; revoke it first to run it again")
    if not rows:
        return (f"retry: there is no job {job_id} (unknown, or its result expired or was "
                "forgotten)")
    state = rows[0][1]
    if state not in chosen:
        return (f"retry: job {job_id} ended {state}; only "
                f"{' or '.join(chosen)} jobs are retried"
                + (" (send a new job to run it again)" if state == states.SUCCESS else ""))
    return (f"retry: job {job_id} cannot be retried now: its unique_key is held by a live "
            "job (or it is being retried meanwhile)")
