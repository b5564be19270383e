"""Connections, and the translation of driver errors into messages a user can act on."""

from __future__ import annotations

import hashlib
import logging
import operator
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
import psycopg.adapt
from psycopg import generators
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from pgqueue.db import queries, roles
from pgqueue.exceptions import DatabaseUnavailable, SchemaMissing

logger = logging.getLogger("pgqueue.db")

CONNECT_TIMEOUT = 10


def describe(dsn: str) -> str:
    """``user@host:port/dbname`` of a DSN, never its password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    host = info.get("host") or "localhost (socket)"
    port = info.get("port") or 5432
    return f"{info.get('user') or '<default user>'}@{host}:{port}/{info.get('dbname') or '?'}"


# Where a password sits in a DSN that libpq may not parse: a URL's user:password@, a bare
# user:password@host, a key=value password (quoted or not). Greedy up to the last '@'.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)(.*)(@)")
_BARE_PASSWORD = re.compile(r"^(\s*[^:/@=\s]*:)(.*)(@)")
_KEY_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***``, even when it does not parse."""
    text = (_URL_PASSWORD if "://" in dsn else _BARE_PASSWORD).sub(r"\1***\3", dsn)
    return _KEY_PASSWORD.sub(r"\1***", text)


def redact(message: str, dsn: str) -> str:
    """``message`` without the password of ``dsn``, in any spelling it may be quoted in
    (libpq echoes the token it fails on, e.g. "invalid percent-encoded token")."""
    secrets: set[str] = set()
    with suppress(psycopg.Error):
        secrets.add(str(conninfo_to_dict(dsn).get("password") or ""))
    for pattern in (_URL_PASSWORD if "://" in dsn else _BARE_PASSWORD, _KEY_PASSWORD):
        for match in pattern.finditer(dsn):
            raw = match.group(2)
            secrets.update((raw, raw.strip("'")))
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def one_line(error: BaseException) -> str:
    """A driver error on one line: libpq puts the cause and its hint on separate lines
    ("...: Connection refused" / "Is the server running...?"); keep both."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines) or type(error).__name__
    return text.removeprefix("connection failed: ")


def application_name(schema: str, role: str) -> str:
    """How a connection shows in pg_stat_activity: ``pgqueue:<schema>:<role>``."""
    return f"pgqueue:{schema}:{role}"[:63]


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A new autocommit connection; a clear :class:`DatabaseUnavailable` when it fails.
    Through a transaction pooler (see :func:`through_pooler`) it prepares no statement."""
    kwargs.setdefault("autocommit", True)
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
    try:
        conn = psycopg.connect(dsn, **kwargs)
    except psycopg.ProgrammingError as e:
        raise DatabaseUnavailable(redact(f"invalid database DSN: {one_line(e)}", dsn)) from None
    except psycopg.OperationalError as e:
        raise DatabaseUnavailable(redact(
            f"cannot connect to PostgreSQL at {describe(dsn)}: {one_line(e)}", dsn)) from None
    try:
        if through_pooler(dsn, conn):
            conn.prepare_threshold = None
    except BaseException:
        conn.close()
        raise
    return conn


def set_synchronous_commit_off(conn: psycopg.Connection[Any]) -> None:
    """Commits of this session return before their WAL is flushed (see producer_durable)."""
    conn.execute(queries.SESSION_SETTINGS, {"names": ["synchronous_commit"],
                                            "values": ["off"]})


# -- transaction poolers (PgBouncer) ---------------------------------------------------
# A pooler in transaction mode hands each transaction of a client to any server session,
# so nothing may outlive a transaction: no prepared statement (psycopg prepares a
# statement run 5 times; PgBouncer before 1.21 does not carry it to the next session:
# 'prepared statement "_pg3_0" already exists'), no session SET, no LISTEN.
_declared: dict[str, bool] = {}  # DSN -> what the transaction_pooling setting says
_found: dict[str, bool] = {}  # DSN -> what a probe of its first connection found


def declare_pooling(dsn: str, pooled: bool | str) -> None:
    """Record the ``transaction_pooling`` setting for ``dsn``: True, False or "auto"."""
    if isinstance(pooled, bool):
        _declared[dsn] = pooled
    else:
        _declared.pop(dsn, None)


def through_pooler(dsn: str, conn: psycopg.Connection[Any] | None = None) -> bool:
    """Whether ``dsn`` reaches Postgres through a pooler: as declared, else probed once
    per process on ``conn`` (a new connection is opened when none is given).

    The probe: Postgres tells a client its backend's pid when the session starts, and a
    pooler, whose sessions are not the server's, makes up its own (PgBouncer sends
    random bytes). So the pid the session started with differs from the one
    ``pg_backend_pid()`` returns. One statement, on the first connection only."""
    if dsn in _declared:
        return _declared[dsn]
    found = _found.get(dsn)
    if found is None:
        if conn is None:
            connect(dsn).close()  # probes the new connection
            return _found[dsn]
        row = conn.execute(queries.BACKEND_PID, prepare=False).fetchone()
        found = _found[dsn] = row is None or row[0] != conn.info.backend_pid
        if found:
            logger.info("%s: reached through a connection pooler; no prepared statements, "
                        "no session state (docs/deploying.md)", describe(dsn))
    return found


def prepare_threshold(dsn: str) -> int | None:
    """psycopg's ``prepare_threshold`` for connections to ``dsn``: None (never prepare)
    through a pooler, else psycopg's default."""
    return None if through_pooler(dsn) else 5


def run(
    conn: psycopg.Connection[Any], query: bytes | str, params: Any = None
) -> psycopg.Cursor[Any]:
    """``conn.execute`` on a cursor kept with the connection: making a cursor costs about
    a third of a small statement's client time, and the producer's pool hands the same
    few connections out again and again. One thread at a time uses a connection, so
    its cursor is not shared. The cursor is an attribute of the connection (a cycle the
    garbage collector frees), not an entry of a table: a table would keep every
    connection it ever saw alive, open."""
    cur: psycopg.Cursor[Any] | None = getattr(conn, "_pgqueue_cursor", None)
    if cur is None or cur.closed:
        cur = conn.cursor()
        conn._pgqueue_cursor = cur  # type: ignore[attr-defined]
    return cur.execute(query, params)


class Statement:
    """One statement sent again and again on pooled connections, straight through
    libpq: the producer's one-row insert, once per ``delay()``.

    ``cursor.execute`` spends some 70 Python calls on bookkeeping around the two libpq
    calls that matter (converting the query, its cache of prepared statements, the
    result's description), as much client CPU as the rest of ``delay()``; with 16
    producer processes on 2 cores that CPU sets the pace (bench ``--producers``).
    Here: the ``%(name)s`` placeholders become ``$n`` once, the parameters are dumped as
    text by psycopg's own dumpers (the statement's casts type them, as the server infers
    a parameter's type from its cast), and the statement is prepared once per
    connection under a name of its own; unprepared, as one unnamed statement, through
    a transaction pooler or with ``prepare_threshold=None``. Its rows are not read:
    for statements whose result is not wanted.
    """

    def __init__(self, query: bytes) -> None:
        names: list[bytes] = []

        def number(match: re.Match[bytes]) -> bytes:
            if match.group(1) is None:
                return b"%"  # %%
            if match.group(1) not in names:
                names.append(match.group(1))
            return b"$%d" % (names.index(match.group(1)) + 1)

        self.query = query
        self.text = _PLACEHOLDER.sub(number, query)
        if b"%" in _PLACEHOLDER.sub(b"", query):
            raise ValueError("a Statement takes %(name)s placeholders only")
        self.names = tuple(name.decode() for name in names)
        pick = operator.itemgetter(*self.names) if self.names else lambda _params: ()
        # the values in placeholder order, always a tuple (itemgetter of one name is not)
        self._pick = pick if len(self.names) > 1 else lambda params: (pick(params),)
        self.name = b"pgqueue_" + hashlib.sha1(self.text).hexdigest()[:20].encode()
        self.formats = [psycopg.adapt.PyFormat.TEXT] * len(names)

    def run(self, conn: psycopg.Connection[Any], params: dict[str, Any]) -> None:
        """Run it with ``params`` on ``conn`` (in autocommit); errors are psycopg's."""
        state: _ConnectionState | None = getattr(conn, "_pgqueue_state", None)
        if state is None:
            state = conn._pgqueue_state = _ConnectionState(conn)  # type: ignore[attr-defined]
        values = state.transformer.dump_sequence(self._pick(params), self.formats)
        pgconn = conn.pgconn
        with conn.lock:
            if conn.prepare_threshold is None:  # nothing may outlive the statement
                pgconn.send_query_params(self.text, values)
                _check(conn, conn.wait(generators.execute(pgconn)))
                return
            if self.name not in state.prepared:
                self._prepare(conn, state)
            pgconn.send_query_prepared(self.name, values)
            try:
                _check(conn, conn.wait(generators.execute(pgconn)))
            except psycopg.errors.InvalidSqlStatementName:
                # A DEALLOCATE on this connection (someone's, through app.connection())
                # dropped it; the statement did not run: prepare it again, run it once more.
                self._prepare(conn, state)
                pgconn.send_query_prepared(self.name, values)
                _check(conn, conn.wait(generators.execute(pgconn)))

    def _prepare(self, conn: psycopg.Connection[Any], state: _ConnectionState) -> None:
        state.prepared.discard(self.name)
        conn.pgconn.send_prepare(self.name, self.text)
        # Already there: the session prepared it before (its name is its text's hash).
        with suppress(psycopg.errors.DuplicatePreparedStatement):
            _check(conn, conn.wait(generators.execute(conn.pgconn)))
        state.prepared.add(self.name)

    @classmethod
    def of(cls, query: bytes) -> Statement:
        """The Statement of ``query``, made once per query text."""
        found = _statements.get(query)
        if found is None:
            found = _statements[query] = cls(query)
        return found


_PLACEHOLDER = re.compile(rb"%\((\w+)\)s|%%")
_statements: dict[bytes, Statement] = {}


class _ConnectionState:
    """What a connection keeps for :class:`Statement`: its dumpers (they follow the
    connection's encoding and adapters) and the statements it prepared."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.transformer = psycopg.adapt.Transformer(conn)
        self.prepared: set[bytes] = set()


def _check(conn: psycopg.Connection[Any], results: list[psycopg.pq.abc.PGresult]) -> None:
    """Raise what ``cursor.execute`` would raise for these results of one statement."""
    if not results:
        raise psycopg.InternalError("got no result from the query")
    for result in results:
        status = result.status
        if status == _FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
        if status != _TUPLES_OK and status != _COMMAND_OK:
            raise psycopg.InterfaceError(
                f"unexpected result from the server: {psycopg.pq.ExecStatus(status).name}")


_FATAL_ERROR = psycopg.pq.ExecStatus.FATAL_ERROR
_TUPLES_OK = psycopg.pq.ExecStatus.TUPLES_OK
_COMMAND_OK = psycopg.pq.ExecStatus.COMMAND_OK


class Parking:
    """Pooled connections given back by an app's threads, kept out of the pool for the
    next use: an enqueue that finds one parked calls nothing of the pool.

    psycopg_pool's ``getconn``/``putconn`` are some 25 Python calls (logging, locks,
    statistics, deadlines), a quarter of a ``delay()``'s client instructions. A
    connection is parked only when it is idle (not in a transaction, not broken) and
    no thread is waiting in the pool's ``getconn``: while one is, connections go back
    to the pool, which hands them to it (a parked one could otherwise sit idle while a
    thread waits). One the pool handed out more than ``SECONDS`` ago goes back to it,
    so that the pool's own care (``max_lifetime``, ``max_idle``, ``check``, its
    statistics) reaches every connection within that time. ``unpark`` empties it
    (after a dead connection, before the pool closes); a forked child starts with an
    empty one (see App).
    """

    SECONDS = 30.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parked: list[tuple[ConnectionPool[Any], psycopg.Connection[Any]]] = []
        self.waiting = 0  # threads in the pool's getconn

    def take(self, pool: ConnectionPool[Any]) -> psycopg.Connection[Any]:
        """A connection of ``pool``: a parked one, else the pool's."""
        stale = None
        with self.lock:
            while self.parked:
                owner, conn = self.parked.pop()
                if owner is pool:
                    return conn
                stale = (stale or []) + [(owner, conn)]  # of a pool since replaced
            self.waiting += 1
        try:
            for owner, conn in stale or ():
                owner.putconn(conn)
            fresh: psycopg.Connection[Any] = pool.getconn()
        finally:
            with self.lock:
                self.waiting -= 1
        fresh._pgqueue_since = time.monotonic()  # type: ignore[attr-defined]
        return fresh

    def give(self, pool: ConnectionPool[Any], conn: psycopg.Connection[Any]) -> None:
        """Park ``conn`` (taken from ``pool``), or give it back to ``pool``."""
        if (conn.pgconn.transaction_status == _IDLE and not pool.closed
                and time.monotonic() - conn._pgqueue_since  # type: ignore[attr-defined]
                < self.SECONDS):
            with self.lock:
                if not self.waiting:
                    self.parked.append((pool, conn))
                    return
        pool.putconn(conn)

    def unpark(self) -> None:
        """Give every parked connection back to its pool."""
        with self.lock:
            parked, self.parked = self.parked, []
        for pool, conn in parked:
            pool.putconn(conn)


_IDLE = psycopg.pq.TransactionStatus.IDLE


#: What a statement raises when ``pgqueue migrate`` has not run on its schema.
SCHEMA_ERRORS = (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)


@contextmanager
def translate_errors(schema: str, needs: str | None = None,
                     conn: psycopg.Connection[Any] | None = None) -> Iterator[None]:
    """Turn 'relation does not exist' into an instruction to run ``pgqueue migrate``, and
    'permission denied' into the grant that is missing (``needs``: a kind of
    :mod:`pgqueue.roles`)."""
    try:
        yield
    except SCHEMA_ERRORS as e:
        raise missing_schema(schema, e) from None
    except psycopg.errors.InsufficientPrivilege as e:
        raise roles.missing_grant(schema, e, needs, conn.info.user if conn else None) from None


def missing_schema(schema: str, error: Exception | None = None) -> SchemaMissing:
    detail = f" ({str(error).splitlines()[0]})" if error else ""
    return SchemaMissing(
        f"the pgqueue tables are not in schema {schema!r} of this database{detail}: "
        f"run `pgqueue migrate` (with the same DSN and --schema {schema})"
    )


def is_connection_error(error: BaseException) -> bool:
    """True for errors that mean the connection is gone (retry after reconnecting)."""
    return isinstance(
        error, (DatabaseUnavailable, psycopg.OperationalError, psycopg.InterfaceError))


class Outage:
    """Capped exponential backoff that logs one line when an outage starts and one when
    it ends, however many attempts fail in between."""

    def __init__(self, role: str, first_delay: float = 0.1, max_delay: float = 5.0) -> None:
        self.role = role
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.delay = first_delay
        self.since: float | None = None

    def failed(self, error: BaseException) -> float:
        """Record a failure; returns how long to wait before the next attempt."""
        if self.since is None:
            self.since = time.monotonic()
            reason = one_line(error)
            logger.warning("%s: database connection lost (%s); reconnecting with backoff",
                           self.role, reason)
            self.delay = self.first_delay
        else:
            self.delay = min(self.max_delay, self.delay * 2)
        return self.delay

    def recovered(self) -> None:
        if self.since is not None:
            logger.warning("%s: reconnected after %.1fs", self.role, time.monotonic() - self.since)
        self.since = None
        self.delay = self.first_delay


class Dedicated:
    """One connection owned by one thread of a worker, reconnected after any fault.

    ``durable=False`` makes its commits return before the WAL flush. That is right for
    claims, heartbeats, staging and rescue: a crash can only undo them back to a state
    the system recovers from (a claim undone puts the job back in the queue, and the
    stale finish of that attempt is fenced off). Any later durable commit, such as the
    finish of a claimed job, flushes the WAL up to itself and so the claim before it.
    Finishes and enqueues stay durable.

    ``indexed_plans=True`` is for the hot sessions (claimer, finisher), whose every
    statement is written to find its rows through an index (claim order or primary
    key). It plans each prepared statement once: Postgres otherwise re-plans a
    statement whose generic plan it estimates as dearer, as it does the claim (its
    LIMIT is a parameter), and planning was about half of a claim's round trip. And
    it rules out sequential scans, so that statistics taken while the table was empty
    never make a claim read a backlog inserted since (100 ms per claim until the next
    autoanalyze, measured with 100,000 jobs; 1 ms with this).
    """

    def __init__(self, dsn: str, schema: str, role: str, durable: bool = True,
                 indexed_plans: bool = False) -> None:
        self.dsn = dsn
        self.schema = schema
        self.role = role
        self.settings: dict[str, str] = {}
        if not durable:
            self.settings["synchronous_commit"] = "off"
        if indexed_plans:
            # jit off: a generic plan's estimates can pass jit_above_cost, and compiling
            # took 80 ms of a 1 ms limited claim (bench.flow)
            self.settings.update(plan_cache_mode="force_generic_plan", enable_seqscan="off",
                                 jit="off")
        self.outage = Outage(role)
        self._conn: psycopg.Connection[Any] | None = None
        # Through a pooler the settings cannot be the session's: they would stay with a
        # server session that serves other clients next (a claimer's synchronous_commit
        # =off would make another client's commits non-durable). Each statement then
        # runs in a transaction of its own that sets them locally (see _run_local).
        self._local: bytes | None = None

    def connect(self) -> psycopg.Connection[Any]:
        """The connection, opened (with the session settings) if there is none."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn, application_name=application_name(self.schema,
                                                                              self.role))
            if not self.settings:
                self._local = None
            elif through_pooler(self.dsn):
                self._local = queries.begin_local(self.settings).as_bytes(self._conn)
            else:
                self._local = None
                self._conn.execute(queries.SESSION_SETTINGS, {
                    "names": list(self.settings), "values": list(self.settings.values())})
        return self._conn

    def execute(self, query: bytes, params: dict[str, Any] | None = None) -> list[Any]:
        """Run one statement; returns its rows (empty for statements without any)."""
        conn = self.connect()
        try:
            with translate_errors(self.schema, "worker", conn):
                if self._local is not None:
                    rows = self._run_local(conn, query, params)
                else:
                    cur = run(conn, query, params)
                    rows = cur.fetchall() if cur.description else []
        except BaseException:
            if conn.broken or conn.closed:
                self.close()
            elif conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with suppress(psycopg.Error):
                    conn.execute(b"ROLLBACK")
            raise
        self.outage.recovered()
        return rows

    def _run_local(self, conn: psycopg.Connection[Any], query: bytes,
                   params: dict[str, Any] | None) -> list[Any]:
        """``BEGIN; SET LOCAL ...; <query>; COMMIT`` as one simple query: one round trip,
        as the statement alone (the parameters are bound on the client)."""
        cur: psycopg.ClientCursor[Any] | None = getattr(conn, "_pgqueue_client_cursor", None)
        if cur is None or cur.closed:
            cur = psycopg.ClientCursor(conn)
            conn._pgqueue_client_cursor = cur  # type: ignore[attr-defined]
        cur.execute((self._local or b"") + query + queries.END_LOCAL, params)
        for _ in range(1 + len(self.settings)):  # BEGIN, each SET
            cur.nextset()
        return cur.fetchall() if cur.description else []

    def failed(self, error: BaseException) -> float:
        """Drop the connection after ``error``; returns the backoff delay to wait."""
        self.close()
        return self.outage.failed(error)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
