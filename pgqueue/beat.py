"""Periodic tasks: their definitions, the scheduler service, and ``pgqueue beat``.

The ``schedules`` table is the source of truth. Code schedules (``beat_schedule``,
``add_periodic_task``, ``@app.periodic``) are validated when they are defined or when a
scheduler starts, and written to the table when it starts. A fire moves ``next_run_at`` on
with a compare-and-set and inserts its job (``unique_key = beat:<name>:<fire time>``) in the
same statement, so schedulers racing insert each fire once.

Every scheduler process attempts the fires; the database picks one per fire. The scheduler
does not wait for the maintenance lease: every worker campaigns for that lease, ``--beat``
or not, and a plain worker holding it would otherwise stop all schedules.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from pgqueue.maintenance import optional_services

from . import __version__, db
from .db import Dedicated
from .exceptions import ConfigurationError, PgQueueError
from .maintenance import Maintenance, Pruner, Rescuer, Stager
from .producer import SEND_OPTIONS, build_rows
from .schedules import (
    UTC,
    Schedule,
    as_schedule,
    check_timezone,
    crontab,
    parse_cron,
    schedule,
)
from .utils import check_json, hostname, json_dumps, uuid7

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger("pgqueue.beat")

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
    for key in options:
        if key in _PER_FIRE_OPTIONS:
            raise ValueError(f"{where}: option {key!r} cannot be used on a schedule: "
                             f"{_PER_FIRE_OPTIONS[key]}")
        if key not in SEND_OPTIONS:
            close = difflib.get_close_matches(key, SEND_OPTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{where}: unknown option {key!r}{hint}")


def make_entry(name: Any, spec: Any, *, timezone: str = "UTC", catch_up: bool = True) -> Entry:
    """An :class:`Entry` from a ``beat_schedule`` item; a clear error for bad input."""
    if not isinstance(name, str) or not name.strip():
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
    from .canvas import Signature

    if hasattr(sig, "s") and hasattr(sig, "name") and not isinstance(sig, Mapping):
        sig = sig.s()  # a task rather than a signature
    if not isinstance(sig, Mapping) or "task" not in sig:
        raise TypeError(f"add_periodic_task needs a signature such as mytask.s(1, 2), "
                        f"not {sig!r}")
    zone_name, catch_up = opts.pop("timezone", None), opts.pop("catch_up", None)
    merged = Signature(sig["task"], [*args, *sig.get("args", ())],
                       {**sig.get("kwargs", {}), **kwargs}, {**sig.get("options", {}), **opts})
    spec = {"name": name or repr(merged), "task": merged.task, "schedule": timetable,
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
            if entry.task not in app.tasks:
                close = difflib.get_close_matches(entry.task, list(app.tasks), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"periodic task {name!r}: no task named {entry.task!r} is "
                                 f"registered{hint} (import its module, e.g. with "
                                 "App(include=[...]), or fix the name)")
            build_rows(app, entry.task, app.tasks[entry.task],
                       [(entry.args, entry.kwargs)], entry.options).params()
        except (ValueError, TypeError, PgQueueError) as error:
            message = str(error)
            if not message.startswith("periodic task"):
                message = f"periodic task {name!r}: {message}"
            raise ConfigurationError(message) from None
        entries[name] = entry
    return list(entries.values())


@functools.lru_cache(maxsize=256)
def timetable_of(cron: str | None, every: float | None, zone_name: str) -> Schedule:
    """The timetable of a stored schedule row (cached: rows repeat every loop)."""
    if cron is not None:
        return parse_cron(cron, zone_name)
    return schedule(every)


class Scheduler:
    """Fires due schedules; a maintenance service of every `beat`/`worker --beat` process."""

    name = "scheduler"
    leader_only = False  # see the module doc: the compare-and-set, not the lease, decides

    def __init__(self, app: App, *, code_schedules: bool = True,
                 clock: Callable[[], datetime] | None = None, batch: int = 100) -> None:
        self.app = app
        self.queries = app.queries
        # Validated now, so that bad input stops the process at start, not at 3 a.m.
        self.entries = code_entries(app) if code_schedules else None
        conf = app.conf
        self.max_interval = float(conf.beat_max_loop_interval)
        # A fire this late was missed (no scheduler ran), not just delayed by a failover.
        self.grace = timedelta(seconds=float(conf.leader_ttl_seconds) + self.max_interval)
        self.clock = clock
        self.batch = batch
        self._synced = False

    def run_once(self, db: Dedicated) -> float:
        rows = db.execute(self.queries["schedule_due"], {
            "now": self.clock() if self.clock else None, "limit": self.batch})
        now, next_due = rows[0][0], rows[0][-1]
        if not self._synced:
            if self.entries is not None:
                self.sync(db, now)
            self._synced = True
            return 0.0  # read again: the sync may have changed what is due
        due = [row for row in rows if row[1] is not None]
        upcoming = [next_due] if next_due is not None else []
        for row in due:
            following = self._fire(db, row, now)
            if following is not None:
                upcoming.append(following)
        if len(due) >= self.batch:
            return 0.0
        if not upcoming:
            return self.max_interval
        return max(0.0, min(self.max_interval, float((min(upcoming) - now).total_seconds())))

    def sync(self, db: Dedicated, now: datetime) -> None:
        """Write the code's schedules to the table (each scheduler, when it starts)."""
        assert self.entries is not None
        rows = db.execute(self.queries["schedule_sync"], {
            "schedules": json_dumps([e.row(now) for e in self.entries])})
        changed, removed = rows[0]
        if changed:
            logger.info("Schedules written from code: %s", ", ".join(changed))
        if removed:
            logger.warning("Schedules removed (no longer in the code): %s", ", ".join(removed))

    def _fire(self, db: Dedicated, row: Any, now: datetime) -> datetime | None:
        """Handle one due schedule; returns its next fire time."""
        _, name, task, args, kwargs, options, cron, every, zone_name, catch_up, due, _ = row
        try:
            timetable = timetable_of(cron, every, check_timezone(zone_name))
        except (ValueError, TypeError) as error:
            logger.error("Schedule %r is invalid and was disabled: %s", name, error)
            db.execute(self.queries["schedule_set_enabled"], {
                "name": name, "enabled": False, "next_run_at": None})
            return None
        if due is None:  # written by plain SQL without a first fire time
            following = timetable.first_run_after(now, zone_name)
            self._advance(db, name, due, following)
            return following
        fire = timetable.last_at_or_before(now, due, zone_name)
        following = timetable.next_after(fire, zone_name)
        if not catch_up and now - fire > self.grace:
            logger.warning("Schedule %r: skipped fires missed since %s (catch_up is off)",
                           name, due.isoformat())
            self._advance(db, name, due, following)
            return following
        key = f"beat:{name}:{fire.astimezone(UTC).isoformat()}"
        try:
            job = build_rows(self.app, task, self.app.tasks.get(task),
                             [(args, kwargs)], {**options, "unique_key": key}).params()
        except (ValueError, TypeError, PgQueueError) as error:
            logger.error("Schedule %r: cannot build its job, fire at %s skipped: %s",
                         name, fire.isoformat(), error)
            self._advance(db, name, due, following)
            return following
        result = db.execute(self.queries["schedule_fire"], {
            "name": name, "due": due, "next_run_at": following, "now": now,
            **job, "jobs_channel": self.queries.jobs_channel})
        touched, job_id, _ = result[0]
        if touched and job_id is not None:
            missed = f" (coalescing the fires missed since {due.isoformat()})" \
                if fire > due else ""
            logger.info("Scheduler: sent %s[%s] for schedule %r, fire time %s%s",
                        task, job_id, name, fire.isoformat(), missed)
        return following

    def _advance(self, db: Dedicated, name: str, due: datetime | None,
                 following: datetime) -> None:
        db.execute(self.queries["schedule_advance"], {
            "name": name, "due": due, "next_run_at": following})


class Beat:
    """``pgqueue beat``: the scheduler, and the maintenance services when it holds the
    lease, without a worker. Any number may run, alongside ``pgqueue worker --beat`` too.
    """

    def __init__(self, app: App, *, name: str | None = None, code_schedules: bool = True,
                 install_signal_handlers: bool = True) -> None:
        app.finalize()
        self.app = app
        self.holder = f"{name or 'beat@' + hostname()}:{os.getpid()}:{uuid7().hex[-6:]}"
        self.scheduler = Scheduler(app, code_schedules=code_schedules)
        self.install_signal_handlers = install_signal_handlers
        self.started = threading.Event()
        self._stopping = threading.Event()
        self._signals = 0

    def services(self) -> list[Any]:
        conf = self.app.conf
        queries = self.app.queries
        return [
            Stager(queries, float(conf.stage_interval)),
            Rescuer(queries, float(conf.maintenance_interval)),
            Pruner(queries, conf.seconds("result_expires"),
                   worker_ttl=float(conf.worker_lease_seconds) * 4),
            *optional_services(self.app),
            self.scheduler,
        ]

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Run until :meth:`stop` or SIGTERM/SIGINT."""
        app = self.app
        with app.connection() as conn:  # a clear error now if the schema is missing
            conn.execute(app.queries["leader_get"])
        maintenance = Maintenance(app, self.holder, self.services(), name="pgqueue-beat")
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        maintenance.start()
        entries = self.scheduler.entries
        logger.info("pgqueue %s beat %s ready\n  database: %s (schema %s)\n"
                    "  schedules from code: %s", __version__, self.holder,
                    db.describe(app.dsn), app.schema,
                    "not managed (no app given)" if entries is None
                    else ", ".join(e.name for e in entries) or "(none)")
        self.started.set()
        try:
            while not self._stopping.wait(1.0):
                pass
        finally:
            maintenance.stop()
            app.close()
            logger.info("Beat %s stopped", self.holder)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(1)
        logger.warning("%s received: stopping", signal.Signals(signum).name)
        self.stop()
