"""Periodic task definitions: ``beat_schedule`` entries, ``add_periodic_task`` and
``@app.periodic`` specs, validated when they are defined or when a scheduler starts."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgqueue import celery_compat, limits
from pgqueue.client.producer import SEND_OPTIONS, build_rows, unique_scope
from pgqueue.exceptions import ConfigurationError, PgQueueError
from pgqueue.schedules import (
    Schedule,
    as_schedule,
    check_timezone,
    crontab,
    parse_cron,
    schedule,
)
from pgqueue.utils import check_json

if TYPE_CHECKING:
    from pgqueue.app import App


_ENTRY_KEYS = ("task", "schedule", "args", "kwargs", "options", "relative", "timezone",
               "catch_up", "name")
# Send options a recurring job cannot take: each fire is a job of its own.
_PER_FIRE_OPTIONS = {
    "task_id": "each fire is a new job with its own id",
    "unique_key": "the scheduler sets it to beat:<name>:<fire time>",
    "eta": "a fixed time cannot recur; use countdown",
    "connection": "the scheduler inserts jobs on its own connection",
}


@dataclass(frozen=True)
class Entry:
    """A validated periodic task: what to send, and when."""

    name: str
    task: str
    schedule: Schedule
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    timezone: str
    catch_up: bool

    def row(self, now: datetime) -> dict[str, Any]:
        timetable = self.schedule
        return {
            "name": self.name, "task": self.task, "args": self.args, "kwargs": self.kwargs,
            "options": self.options, "timezone": self.timezone, "catch_up": self.catch_up,
            "cron": timetable.cron if isinstance(timetable, crontab) else None,
            "every": timetable.seconds if isinstance(timetable, schedule) else None,
            "next_run_at": timetable.first_run_after(now, self.timezone).isoformat(),
        }


def check_options(where: str, options: Mapping[str, Any]) -> None:
    # What apply_async refuses is refused here with its alternative (the registry's).
    limits.check_names(where, [k for k in options if k not in _PER_FIRE_OPTIONS],
                       SEND_OPTIONS, celery_compat.reasons(celery_compat.SEND_OPTIONS,
                                                           celery_compat.REFUSED))
    limits.check_names(where, options, SEND_OPTIONS, _PER_FIRE_OPTIONS,
                       refusal="cannot be used on a schedule", refusal_error=ValueError)


def split_scope(where: str, options: Mapping[str, Any]
                ) -> tuple[dict[str, Any], tuple[float | None, list[str] | None] | None]:
    """A schedule's send options without ``unique_for``/``unique_states``, and those
    checked: they make the schedule's fires share the claim ``beat:<name>`` (a fire is
    skipped while the claim holds), apart from each fire's own ``unique_key``."""
    rest = dict(options)
    scope = unique_scope(where, rest.pop("unique_for", None), rest.pop("unique_states", None))
    return rest, scope


def check_name(name: Any) -> str:
    """A schedule's name, as the operator's commands take it (``pgqueue schedule
    run-now|enable|disable``, the dashboard): a schedule they refuse could be made but
    never managed, so every way of making one checks it first."""
    try:
        return limits.name("schedule name", name)
    except ValueError as error:
        size = f" ({len(name):,} characters)" if isinstance(name, str) \
            and len(name) > limits.MAX_NAME else ""
        raise ValueError(f"{error}{size}") from None


def make_entry(name: Any, spec: Any, *, timezone: str = "UTC", catch_up: bool = True) -> Entry:
    """An :class:`Entry` from a ``beat_schedule`` item; a clear error for bad input."""
    name = check_name(name)
    if not name.strip():
        raise ValueError(f"a periodic task needs a non-empty name, not {name!r}")
    where = f"periodic task {name!r}"
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where}: expected a dict with 'task' and 'schedule', not {spec!r}")
    for key in spec:
        if key not in _ENTRY_KEYS:
            close = difflib.get_close_matches(str(key), _ENTRY_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{where}: unknown key {key!r}{hint}")
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise ValueError(f"{where}: 'task' must be a task name, e.g. 'proj.tasks.add'")
    if "schedule" not in spec:
        raise ValueError(f"{where}: 'schedule' is missing (seconds, a timedelta or crontab())")
    if spec.get("relative"):
        raise ValueError(f"{where}: 'relative' is not supported")
    args, kwargs = spec.get("args") or [], spec.get("kwargs") or {}
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
        raise TypeError(f"{where}: 'args' must be a list or tuple and 'kwargs' a dict")
    if not isinstance(spec.get("options") or {}, Mapping):
        raise TypeError(f"{where}: 'options' must be a dict of send options")
    options = dict(spec.get("options") or {})
    check_options(where, options)
    try:
        timetable = as_schedule(spec["schedule"])
        zone_name = (timetable.tz if isinstance(timetable, crontab) else None) \
            or spec.get("timezone") or timezone
        zone_name = check_timezone(zone_name)
        for value, what in ((list(args), "args"), (dict(kwargs), "kwargs"),
                            (options, "options")):
            check_json(value, what)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{where}: {error}") from None
    late = spec.get("catch_up")
    if late is not None and not isinstance(late, bool):
        raise TypeError(f"{where}: 'catch_up' must be True or False")
    return Entry(name, task, timetable, list(args), dict(kwargs), options, zone_name,
                 catch_up if late is None else late)


def signature_spec(timetable: Any, sig: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
                   name: str | None, opts: dict[str, Any]) -> dict[str, Any]:
    """``add_periodic_task``'s arguments as a validated ``beat_schedule``-style item."""
    from pgqueue.canvas import Signature

    if hasattr(sig, "s") and hasattr(sig, "name") and not isinstance(sig, Mapping):
        sig = sig.s()  # a task rather than a signature
    if not isinstance(sig, Mapping) or "task" not in sig:
        raise TypeError(f"add_periodic_task needs a signature such as mytask.s(1, 2), "
                        f"not {sig!r}")
    zone_name, catch_up = opts.pop("timezone", None), opts.pop("catch_up", None)
    merged = Signature(sig["task"], [*args, *sig.get("args", ())],
                       {**sig.get("kwargs", {}), **kwargs}, {**sig.get("options", {}), **opts})
    if not name:
        name = repr(merged)
        try:
            check_name(name)
        except ValueError:
            raise ValueError(
                f"add_periodic_task: without name=, the schedule is named after its "
                f"signature, {limits.show(name)} ({len(name):,} characters), but a schedule "
                f"name is 1 to {limits.MAX_NAME} characters without control characters; "
                "pass name='...'") from None
    spec = {"name": name, "task": merged.task, "schedule": timetable,
            "args": merged.args, "kwargs": merged.kwargs, "options": merged.options,
            "timezone": zone_name, "catch_up": catch_up}
    make_entry(spec["name"], spec)
    return spec


def periodic_spec(cron: Any, every: Any, timezone: str | None,
                  catch_up: bool | None) -> dict[str, Any]:
    """``@app.periodic``'s timetable, validated before the task is registered."""
    if (cron is None) == (every is None):
        raise TypeError("@app.periodic needs exactly one of cron='0 6 * * 4' (or "
                        "crontab(...)) and every=seconds (or a timedelta)")
    if cron is not None and not isinstance(cron, (str, crontab)):
        raise TypeError(f"@app.periodic(cron=...) takes a cron string or crontab(), not "
                        f"{cron!r}; use every= for intervals")
    timetable = as_schedule(cron) if cron is not None else (
        every if isinstance(every, schedule) else schedule(every))
    if timezone is not None:
        check_timezone(timezone)
    if catch_up is not None and not isinstance(catch_up, bool):
        raise TypeError("@app.periodic(catch_up=...) must be True or False")
    return {"schedule": timetable, "timezone": timezone, "catch_up": catch_up}


def remember(periodic_tasks: list[dict[str, Any]], spec: dict[str, Any]) -> None:
    """Add a code schedule; a later one of the same name replaces it (as in Celery)."""
    periodic_tasks[:] = [s for s in periodic_tasks if s["name"] != spec["name"]]
    periodic_tasks.append(spec)


def code_entries(app: App) -> list[Entry]:
    """Every schedule the app's code defines, validated against its tasks and settings."""
    from pgqueue.canvas.builtins import builtin_task

    app.finalize()
    try:
        zone_name = check_timezone(app.conf.timezone)
    except ValueError as error:
        raise ConfigurationError(f"setting 'timezone': {error}") from None
    table = app.conf.beat_schedule or {}
    if not isinstance(table, Mapping):
        raise ConfigurationError("setting 'beat_schedule' must be a dict of name -> "
                                 "{'task': ..., 'schedule': ...}")
    entries: dict[str, Entry] = {}
    for name, spec in [*table.items(), *((s["name"], s) for s in app.periodic_tasks)]:
        try:
            entry = make_entry(name, spec, timezone=zone_name,
                               catch_up=bool(app.conf.beat_catch_up))
            if entry.task not in app.tasks and builtin_task(app, entry.task) is None:
                close = difflib.get_close_matches(entry.task, list(app.tasks), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"periodic task {name!r}: no task named {entry.task!r} is "
                                 f"registered{hint} (import its module, e.g. with "
                                 "App(include=[...]), or fix the name)")
            options, _ = split_scope(f"periodic task {name!r}", entry.options)
            build_rows(app, entry.task, app.tasks[entry.task],
                       [(entry.args, entry.kwargs)], options).params()
        except (ValueError, TypeError, PgQueueError) as error:
            message = str(error)
            if not message.startswith(("periodic task", "schedule name")):
                message = f"periodic task {limits.show(name)}: {message}"
            raise ConfigurationError(message) from None
        entries[name] = entry
    return list(entries.values())


@functools.lru_cache(maxsize=256)
def timetable_of(cron: str | None, every: float | None, zone_name: str) -> Schedule:
    """The timetable of a stored schedule row (cached: rows repeat every loop)."""
    if cron is not None:
        return parse_cron(cron, zone_name)
    return schedule(every)
