"""Who listens for events: receivers announce themselves, publishers look before sending.

Postgres cannot tell who LISTENs on a channel, so each receiver (``pgqueue events``,
``app.events.Receiver``) keeps a row in ``<schema>.event_listeners`` (migration 0012),
refreshed every :data:`REFRESH` seconds while it listens and deleted when it stops.
A worker with ``-E`` (and a producer with ``task_send_sent_event``) publishes only while
some row is younger than :data:`FRESH` seconds, and looks at most once per
:data:`RECHECK` seconds: nobody listening, events cost one small query a second. A new
receiver gets events within :data:`RECHECK` seconds; one killed without cleanup stops
counting :data:`FRESH` seconds after its last refresh.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

import psycopg

from pgqueue import db
from pgqueue.db import roles

if TYPE_CHECKING:
    from pgqueue.app import App

logger = logging.getLogger("pgqueue.events")

#: Seconds between a receiver's refreshes of its row.
REFRESH = 2.0
#: Seconds a row counts after its last refresh.
FRESH = 10.0
#: Seconds a publisher trusts its last look at the table.
RECHECK = 1.0
#: Rows older than this (seconds) are deleted by the next receiver that starts or stops.
STALE = 3600.0


class ListenerCheck:
    """Whether a fresh receiver exists, asked of the database at most once per
    :data:`RECHECK` seconds. When the question fails (a role without the grant, a schema
    from before 0012) the answer is yes: events go out as they did before receivers
    announced themselves, and one warning says why."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._answer = False
        self._until = 0.0
        self._lock = threading.Lock()
        self._warned = False

    def __call__(self) -> bool:
        if time.monotonic() < self._until:
            return self._answer
        with self._lock:
            if time.monotonic() >= self._until:
                self._answer = self._ask()
                self._until = time.monotonic() + RECHECK
            return self._answer

    def _ask(self) -> bool:
        try:
            rows = self.app.execute("event_listeners_fresh", {"fresh": FRESH})
        except Exception as error:
            if not self._warned:
                self._warned = True
                logger.warning("cannot tell who listens for events, so sending them "
                               "always: %s", str(error).splitlines()[0] if str(error) else
                               type(error).__name__)
            return True
        return bool(rows and rows[0][0])


_checks: weakref.WeakKeyDictionary[App, ListenerCheck] = weakref.WeakKeyDictionary()
_checks_lock = threading.Lock()


def listening(app: App) -> bool:
    """Whether some receiver listens for ``app``'s events (cached, see :class:`ListenerCheck`)."""
    check = _checks.get(app)
    if check is None:
        with _checks_lock:
            check = _checks.setdefault(app, ListenerCheck(app))
    return check()


class Registration:
    """A receiver's row in ``event_listeners``, on the receiver's own connection."""

    def __init__(self, app: App, conn: psycopg.Connection[Any]) -> None:
        from pgqueue.utils import hostname

        self.app = app
        self.conn = conn
        self.id = uuid.uuid4().hex
        self.node = f"{os.getpid()}@{hostname()}"
        self._due = 0.0
        self._run("event_listener_delete", {"id": self.id, "stale": STALE})  # garbage
        self.refresh()

    def refresh(self) -> None:
        """Announce (again) that this receiver listens."""
        self._run("event_listener_upsert", {"id": self.id, "node": self.node})
        self._due = time.monotonic() + REFRESH

    def refresh_due(self) -> None:
        """Refresh when due. A failure is logged, not raised: the receiver goes on
        listening (a dead connection stops it anyway), publishers stop after FRESH."""
        if time.monotonic() < self._due:
            return
        try:
            self.refresh()
        except Exception as error:
            self._due = time.monotonic() + REFRESH
            logger.warning("could not tell publishers this receiver still listens: %s",
                           str(error).splitlines()[0] if str(error) else
                           type(error).__name__)

    def remove(self) -> None:
        """Stop counting at once; best-effort (the row ages out anyway)."""
        try:
            self._run("event_listener_delete", {"id": self.id, "stale": STALE})
        except Exception as error:
            logger.debug("could not remove event listener %s: %s", self.id, error)

    def _run(self, name: str, params: dict[str, Any]) -> None:
        try:
            db.run(self.conn, self.app.queries[name], params)
        except db.SCHEMA_ERRORS as error:
            raise db.missing_schema(self.app.schema, error) from None
        except psycopg.errors.InsufficientPrivilege as error:
            raise roles.missing_grant(self.app.schema, error, None,
                                      self.conn.info.user) from None
