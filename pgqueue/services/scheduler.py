"""The scheduler service: fires due periodic tasks from the ``schedules`` table.

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

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgqueue import limits
from pgqueue.client.periodic import check_name, code_entries, split_scope, timetable_of
from pgqueue.client.producer import build_rows
from pgqueue.db.connection import Dedicated
from pgqueue.exceptions import PgQueueError
from pgqueue.schedules import (
    UTC,
    check_timezone,
)
from pgqueue.utils import json_dumps

if TYPE_CHECKING:
    from pgqueue.app import App

logger = logging.getLogger("pgqueue.beat")


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
            check_name(name)
        except ValueError as error:  # a row written by SQL, that no command could manage
            self._disable(db, name, f"{error}; rename it by SQL or remove it with "
                                    "`pgqueue schedule remove`")
            return None
        try:
            timetable = timetable_of(cron, every, check_timezone(zone_name))
        except (ValueError, TypeError) as error:
            self._disable(db, name, str(error))
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
            options, scope = split_scope(f"schedule {name!r}", options)
            batch = build_rows(self.app, task, self.app.tasks.get(task),
                               [(args, kwargs)], {**options, "unique_key": key})
            job = batch.params()
        except (ValueError, TypeError, PgQueueError) as error:
            logger.error("Schedule %r: cannot build its job, fire at %s skipped: %s",
                         name, fire.isoformat(), error)
            self._advance(db, name, due, following)
            return following
        claim: dict[str, Any] = {"claim_key": None, "claim_job_id": None,
                                 "claim_for": None, "claim_states": None}
        if scope is not None:  # unique_for/unique_states: the fires share one claim
            claim = {"claim_key": f"beat:{name}", "claim_job_id": batch.ids[0],
                     "claim_for": scope[0],
                     "claim_states": None if scope[1] is None else json_dumps(scope[1])}
        result = db.execute(self.queries["schedule_fire"], {
            "name": name, "due": due, "next_run_at": following, "now": now,
            **job, **claim, "jobs_channel": self.queries.jobs_channel})
        touched, job_id, _ = result[0]
        if touched and job_id is None and scope is not None:
            logger.info("Scheduler: schedule %r fire at %s skipped: the claim beat:%s of "
                        "an earlier fire holds (unique_for/unique_states)",
                        name, fire.isoformat(), name)
        if touched and job_id is not None:
            missed = f" (coalescing the fires missed since {due.isoformat()})" \
                if fire > due else ""
            logger.info("Scheduler: sent %s[%s] for schedule %r, fire time %s%s",
                        task, job_id, name, fire.isoformat(), missed)
        return following

    def _disable(self, db: Dedicated, name: str, why: str) -> None:
        logger.error("Schedule %s is invalid and was disabled: %s", limits.show(name), why)
        db.execute(self.queries["schedule_set_enabled"], {
            "name": name, "enabled": False, "next_run_at": None})

    def _advance(self, db: Dedicated, name: str, due: datetime | None,
                 following: datetime) -> None:
        db.execute(self.queries["schedule_advance"], {
            "name": name, "due": due, "next_run_at": following})
