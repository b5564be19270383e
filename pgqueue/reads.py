"""Reads that may be served by a hot standby (the ``result_read_dsn`` setting).

A standby replays the primary's WAL a little later, so what it shows may lag by its replay
lag: fine for a status page, wrong for a wait that was told the job finished. Callers that
must not return a stale state re-read on the primary (see ``AsyncResult.get``). When the
standby cannot be reached, reads go to the primary (one warning when that starts, one when
it ends) and the standby is tried again after a backoff of at most five seconds.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from pgqueue import db
from pgqueue.config import resolve_result_read_dsn
from pgqueue.db import roles
from pgqueue.exceptions import DatabaseUnavailable
from pgqueue.utils import current_pid

if TYPE_CHECKING:
    from pgqueue.app import App

# Errors after which a read is sent to the primary instead: the standby is gone, or it
# cancelled the read because replaying the WAL needed what the read was looking at.
_STANDBY_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable,
                   psycopg.errors.SerializationFailure)


class StandbyPool:
    """Reused connections to one standby, at most ``size`` kept idle."""

    def __init__(self, dsn: str, schema: str, size: int) -> None:
        self.dsn = dsn
        self.schema = schema
        self.size = size
        self.pid = current_pid()
        self.outage = db.Outage(f"result reads on the standby {db.describe(dsn)} "
                                "(reading on the primary meanwhile)", max_delay=5.0)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._down_until = 0.0

    @property
    def down(self) -> bool:
        """True while the standby failed lately and reads go to the primary."""
        return time.monotonic() < self._down_until

    def take(self) -> psycopg.Connection[Any] | None:
        """An idle or new connection to the standby; None while it is down."""
        if self.down:
            return None
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            return db.connect(self.dsn, application_name=db.application_name(
                self.schema, "result-reads"))
        except DatabaseUnavailable as error:
            self.failed(error)
            return None

    def give_back(self, conn: psycopg.Connection[Any]) -> None:
        """Keep a connection that served well for the next read (or close it)."""
        self.outage.recovered()
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with self._lock:
                if len(self._idle) < self.size:
                    self._idle.append(conn)
                    return
        conn.close()

    def failed(self, error: BaseException) -> None:
        """The standby failed: reads go to the primary for a backoff."""
        self._down_until = time.monotonic() + self.outage.failed(error)

    def execute(self, name: str, query: bytes, params: dict[str, Any] | None) -> list[Any] | None:
        """The rows of ``query`` on the standby; None when it cannot answer now."""
        conn = self.take()
        if conn is None:
            return None
        try:
            with db.translate_errors(self.schema, roles.needed_for(name), conn):
                cur = db.run(conn, query, params)
                rows = cur.fetchall() if cur.description else []
        except _STANDBY_ERRORS as error:
            conn.close()
            self.failed(error)
            return None
        except BaseException:
            conn.close()
            raise
        self.give_back(conn)
        return rows

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


_pools: weakref.WeakKeyDictionary[App, StandbyPool] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def standby_pool(app: App) -> StandbyPool | None:
    """The app's pool of standby connections; None when ``result_read_dsn`` is unset (and
    PGQUEUE_RESULT_READ_DSN too). A forked child, or a new DSN, gets a new pool."""
    dsn = resolve_result_read_dsn(app.conf)
    if dsn is None:
        return None
    pool = _pools.get(app)
    if pool is not None and pool.dsn == dsn and pool.pid == current_pid():
        return pool
    with _pools_lock:
        pool = _pools.get(app)
        if pool is None or pool.dsn != dsn or pool.pid != current_pid():
            if pool is not None and pool.pid == current_pid():
                pool.close()
            pool = _pools[app] = StandbyPool(dsn, app.schema,
                                             max(1, int(app.conf.producer_pool_size)))
        return pool


def execute(app: App, name: str, params: dict[str, Any] | None = None,
            query: bytes | None = None) -> list[Any]:
    """Run the named read-only statement (``query``: a form of it composed for this call,
    see ``App.execute``) on the standby when there is one and it answers, else on the
    primary (``app.execute``). Its rows may lag by the standby's replay lag."""
    pool = standby_pool(app)
    if pool is not None:
        rows = pool.execute(name, app.queries[name] if query is None else query, params)
        if rows is not None:
            return rows
    return app.execute(name, params, query)


@contextmanager
def connection(app: App) -> Iterator[psycopg.Connection[Any]]:
    """A connection for reads that may lag (a dashboard's): the standby's when it answers,
    else a pooled one of the primary. In autocommit; leave it idle."""
    pool = standby_pool(app)
    conn = pool.take() if pool is not None else None
    if pool is None or conn is None:
        with app.connection() as primary:
            yield primary
        return
    try:
        yield conn
    except _STANDBY_ERRORS as error:
        conn.close()
        pool.failed(error)
        raise
    except BaseException:
        conn.close()
        raise
    pool.give_back(conn)


def close(app: App) -> None:
    """Close the app's standby connections (``App.close`` calls this)."""
    with _pools_lock:
        pool = _pools.pop(app, None)
    if pool is not None and pool.pid == current_pid():
        pool.close()
