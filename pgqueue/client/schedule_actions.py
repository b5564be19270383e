"""What an operator does to a stored schedule: run it now, enable it, disable it.

``pgqueue schedule run-now|enable|disable`` and the dashboard's buttons both call these,
so they take the same input and refuse it with the same one line
(:class:`ScheduleRefused`; :class:`UnknownSchedule` when no schedule has the name).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgqueue.client.periodic import check_name, split_scope, timetable_of
from pgqueue.client.producer import build_rows
from pgqueue.exceptions import PgQueueError
from pgqueue.utils import utcnow, uuid

if TYPE_CHECKING:
    from pgqueue.app import App


class ScheduleRefused(PgQueueError, ValueError):
    """A schedule action that cannot be done; the message says why, in one line."""


class UnknownSchedule(ScheduleRefused, LookupError):
    """No schedule has the name given."""


def _checked_name(name: Any) -> str:
    try:
        return check_name(name)
    except ValueError as error:
        raise ScheduleRefused(str(error)) from None


def _row(app: App, name: Any) -> Any:
    """The schedule's row (``schedule_get`` columns), or :class:`UnknownSchedule`."""
    name = _checked_name(name)
    with app.connection("reader") as conn:
        row = conn.execute(app.queries["schedule_get"], {"name": name}).fetchone()
    if row is None:
        raise UnknownSchedule(f"no schedule named {name!r}")
    return row


def set_enabled(app: App, name: str, enabled: bool) -> None:
    """Enable or disable schedule ``name``. Enabling a disabled schedule resumes it from
    its next fire time (fires missed while it was disabled are not run); an enabled one
    keeps its own."""
    row = _row(app, name)
    following = None
    if enabled:
        try:
            following = timetable_of(row[5], row[6], row[7]).first_run_after(utcnow(), row[7])
        except (PgQueueError, ValueError, TypeError, KeyError) as error:
            # A row written by SQL with a timetable nobody can read: fix it first.
            raise ScheduleRefused(f"schedule {name!r} cannot be enabled: its timetable is "
                                  f"invalid ({str(error).splitlines()[0]}); replace it with "
                                  "`pgqueue schedule add --replace`") from None
    with app.connection("control") as conn:
        changed = conn.execute(app.queries["schedule_set_enabled"], {
            "name": name, "enabled": enabled, "next_run_at": following}).fetchone()
    if changed is None:
        raise ScheduleRefused(f"schedule {name!r} disappeared before it was "
                              f"{'enabled' if enabled else 'disabled'}")


def run_now(app: App, name: str) -> str:
    """Send schedule ``name``'s job once, now, enabled or not; its timetable is unchanged
    and the job takes no ``unique_for`` claim (its ``unique_key`` is
    ``beat:<name>:run-now:<uuid>``). Returns the job's id."""
    row = _row(app, name)
    task, args, kwargs, options = row[1], row[2], row[3], row[4]
    try:
        options, _ = split_scope(f"schedule {name!r}", options)
        job = build_rows(app, task, app.tasks.get(task), [(args, kwargs)],
                         {**options, "unique_key": f"beat:{name}:run-now:{uuid()}"}).params()
    except (PgQueueError, ValueError, TypeError) as error:  # options stored by SQL
        raise ScheduleRefused(f"schedule {name!r} cannot be sent: "
                              f"{str(error).splitlines()[0]}") from None
    with app.connection("control") as conn:
        sent = conn.execute(app.queries["schedule_run_now"], {
            "name": name, **job, "jobs_channel": app.queries.jobs_channel}).fetchone()
    if sent is None or sent[1] is None:
        raise ScheduleRefused(f"schedule {name!r} disappeared before its job was sent")
    return str(sent[1])
