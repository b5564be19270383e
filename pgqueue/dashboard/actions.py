"""What the dashboard's buttons do, through the library where it has the operation
(retry: :mod:`pgqueue.client.retry`, revoke: ``app.control``, queues: :mod:`pgqueue.flow`).

Each returns one line for the page to show, or raises :class:`ActionRefused` (or a
:class:`~pgqueue.exceptions.PgQueueError`) with one. Schedules' run-now and
enable/disable are :mod:`pgqueue.client.schedule_actions`, shared with
``pgqueue schedule run-now|enable|disable``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgqueue import flow, limits
from pgqueue.client import schedule_actions
from pgqueue.client.retry import retry_jobs
from pgqueue.dashboard.queries import DashboardQueries
from pgqueue.exceptions import PgQueueError

if TYPE_CHECKING:
    from pgqueue.app import App


class ActionRefused(ValueError):
    """An action that cannot be done; the message says why."""


def _job_id(value: str) -> str:
    try:
        return limits.job_id("job id", value)
    except ValueError as error:
        raise ActionRefused(str(error)) from None


def retry(app: App, job_id: str) -> str:
    try:
        retry_jobs(app, [_job_id(job_id)])
    except ValueError as error:
        raise ActionRefused(str(error)) from None
    return f"job {job_id} sent again"


def revoke(app: App, job_id: str, terminate: bool = False) -> str:
    revoked = app.control.revoke(_job_id(job_id), terminate=terminate)
    if revoked:
        return f"job {job_id} revoked"
    if terminate:
        return f"job {job_id}: asked its worker to stop it (if it was running)"
    raise ActionRefused(f"job {job_id} was not revoked: it is running (use terminate), "
                        "already finished, or unknown")


def delete(app: App, job_id: str) -> str:
    """Delete a final job's result row; a live job is revoked first (it may be running)."""
    row = limits.row_id(_job_id(job_id))
    with app.connection("producer") as conn:
        gone = conn.execute(DashboardQueries(app.schema)["dashboard_result_delete"],
                            {"id": row}).fetchall()
    if not gone:
        raise ActionRefused(f"job {job_id} was not deleted: only a finished job can be "
                            "(revoke a live one first), or it is already gone")
    return f"job {job_id} deleted"


def _name(what: str, value: str) -> str:
    try:
        return limits.name(f"{what} name", value)
    except ValueError as error:
        raise ActionRefused(str(error)) from None


def schedule_enable(app: App, name: str, enabled: bool) -> str:
    """Enable (from its next fire time: missed fires are not run) or disable a schedule."""
    schedule_actions.set_enabled(app, name, enabled)
    return f"schedule {name!r} {'enabled' if enabled else 'disabled'}"


def schedule_run_now(app: App, name: str) -> str:
    """Send the schedule's job once now; its timetable is unchanged."""
    return f"schedule {name!r} sent job {schedule_actions.run_now(app, name)}"


def queue_pause(app: App, name: str, paused: bool) -> str:
    try:
        if paused:
            flow.pause(app, _name("queue", name))
        else:
            flow.resume(app, _name("queue", name))
    except PgQueueError as error:
        raise ActionRefused(str(error)) from None
    return f"queue {name} {'paused' if paused else 'resumed'}"


def queue_limit(app: App, name: str, concurrency: str, rate: str) -> str:
    """``concurrency``: a number, 'none' (no limit) or '' (unchanged); ``rate``: '10/s',
    'none' or ''."""
    value: int | None | bool = False
    if concurrency.strip().lower() == "none":
        value = None
    elif concurrency.strip():
        try:
            value = int(concurrency)
        except ValueError:
            raise ActionRefused(f"concurrency: a whole number or 'none', got "
                                f"{limits.show(concurrency)}") from None
    given_rate: Any = False if not rate.strip() else \
        None if rate.strip().lower() == "none" else rate.strip()
    if value is False and given_rate is False:
        raise ActionRefused("give a concurrency, a rate, or both")
    try:
        flow.limit_queue(app, _name("queue", name), value, given_rate)
    except (PgQueueError, ValueError) as error:
        raise ActionRefused(str(error)) from None
    return f"queue {name} limits changed"
