"""Enqueueing: turn calls into job rows and insert them in one statement."""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from pgqueue import celery_compat, db, limits, tracing
from pgqueue.client import publish
from pgqueue.db.connection import Statement
from pgqueue.exceptions import ConfigurationError, DuplicateJob
from pgqueue.result import AsyncResult
from pgqueue.utils import check_json, json_dumps, utcnow, uuid, uuids

if TYPE_CHECKING:
    from pgqueue.app import App
    from pgqueue.task import Task

#: Options ``apply_async`` and ``send_task`` accept: those pgqueue/celery_compat.py does
#: not refuse.
SEND_OPTIONS = celery_compat.accepted(celery_compat.SEND_OPTIONS)
#: What ``on_duplicate`` may say, when a live job holds the ``unique_key``: hand out that
#: job's result (flagged ``duplicate``), or raise :class:`DuplicateJob`.
ON_DUPLICATE = ("return", "raise")
_UNSUPPORTED_SEND_OPTIONS = celery_compat.reasons(celery_compat.SEND_OPTIONS,
                                                  celery_compat.REFUSED)
#: The states ``unique_states=`` may name: a live job's (``jobs.state``) and a finished
#: one's (``results.state`` in lower case).
UNIQUE_STATES = ("scheduled", "queued", "retry", "started", "success", "failure", "revoked")
#: Names for sets of them: "live" (not finished), "waiting" (not started either), "all"
#: (whatever the state, even once the job's row is gone: the default with unique_for=).
UNIQUE_STATE_GROUPS: dict[str, tuple[str, ...] | None] = {
    "live": ("scheduled", "queued", "retry", "started"),
    "waiting": ("scheduled", "queued", "retry"),
    "all": None,
}


def _check_send_options(task_name: str, options: dict[str, Any]) -> None:
    limits.check_names(task_name, options, SEND_OPTIONS, _UNSUPPORTED_SEND_OPTIONS,
                       kind="apply_async option")
    celery_compat.warn_ignored("apply_async option", options, celery_compat.SEND_OPTIONS)


#: What a ``task_routes`` entry may carry: what the builder reads from it.
ROUTE_OPTIONS = frozenset({"queue", "routing_key", "priority", "ignore_result", "serializer",
                           "expires"})
_UNSUPPORTED_ROUTE_OPTIONS = {
    **{key: "a route carries " + ", ".join(sorted(ROUTE_OPTIONS)) + "; give it to "
       "apply_async or @app.task" for key in SEND_OPTIONS - ROUTE_OPTIONS},
    **_UNSUPPORTED_SEND_OPTIONS,
}


def _check_route(task_name: str, routed: dict[str, Any]) -> None:
    """A route's keys are refused as ``apply_async`` refuses them (``exchange``), or when
    a route cannot carry them; its values are checked as options are."""
    where = f"{task_name}: task_routes"
    limits.check_names(where, routed, ROUTE_OPTIONS, _UNSUPPORTED_ROUTE_OPTIONS,
                       kind="route option")
    limits.check_options(where, routed)


def _as_utc(value: datetime, zone: str, what: str) -> datetime:
    """A naive datetime is read in the app's ``timezone`` (UTC by default), as Celery
    does, so ported ``datetime.utcnow() + ...`` code keeps its meaning."""
    def convert(value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc if zone == "UTC" else ZoneInfo(zone))
        return value.astimezone(timezone.utc)

    return limits.moment(what, value, convert)


def _expires_at(expires: Any, now: datetime, zone: str, what: str) -> datetime | None:
    if expires is None:
        return None
    if isinstance(expires, datetime):
        return _as_utc(expires, zone, what)
    if isinstance(expires, timedelta):
        return now + timedelta(seconds=limits.delay(what, expires.total_seconds()))
    if isinstance(expires, (int, float)):
        return now + timedelta(seconds=limits.delay(what, expires))
    raise TypeError(f"{what} must be seconds, a timedelta or a datetime, "
                    f"not {limits.show(expires)}")


def unique_scope(where: str, unique_for: Any, unique_states: Any
                 ) -> tuple[float | None, list[str] | None] | None:
    """``unique_for=`` and ``unique_states=`` checked: (period in seconds or None, states
    or None for all), or None when neither is given (a plain ``unique_key``)."""
    if unique_for is None and unique_states is None:
        return None
    period = None
    if unique_for is not None:
        if isinstance(unique_for, timedelta):
            unique_for = unique_for.total_seconds()
        if not isinstance(unique_for, (int, float)) or isinstance(unique_for, bool) \
                or not 0 < unique_for <= limits.MAX_DELAY:
            raise ValueError(f"{where}: unique_for must be a number of seconds above 0 and "
                             f"at most {limits.MAX_DELAY:,} (or a timedelta), got "
                             f"{limits.show(unique_for)}")
        period = float(unique_for)
    if unique_states is None:
        return period, None
    if isinstance(unique_states, str):
        if unique_states in UNIQUE_STATE_GROUPS:
            group = UNIQUE_STATE_GROUPS[unique_states]
            return period, None if group is None else list(group)
        unique_states = [unique_states]
    if not isinstance(unique_states, (list, tuple, set, frozenset)) or not unique_states:
        raise ValueError(f"{where}: unique_states must be 'live', 'waiting', 'all' or a "
                         f"non-empty list of {', '.join(UNIQUE_STATES)}; got "
                         f"{limits.show(unique_states)}")
    for state in unique_states:
        if state not in UNIQUE_STATES:
            hint = limits.did_you_mean(str(state).lower(), UNIQUE_STATES) \
                if isinstance(state, str) else ""
            raise ValueError(f"{where}: unique_states: unknown state {limits.show(state)}"
                             f"{hint} (states: {', '.join(UNIQUE_STATES)}; or 'live', "
                             "'waiting', 'all')")
    return period, sorted(set(unique_states), key=UNIQUE_STATES.index)


def _route(app: App, task_name: str) -> dict[str, Any]:
    routes = app.conf.task_routes
    if not routes:
        return {}
    for router in routes if isinstance(routes, (list, tuple)) else [routes]:
        if callable(router):
            found = router(task_name, (), {}, {})
            if found:
                return {"queue": found} if isinstance(found, str) else dict(found)
            continue
        for pattern, route in router.items():
            if pattern == task_name or fnmatch.fnmatchcase(task_name, pattern):
                return {"queue": route} if isinstance(route, str) else dict(route)
    return {}


class JobBuilder:
    """Validates one set of options once, then turns each call into a row."""

    def __init__(
        self, app: App, task_name: str, task: Task | None, options: dict[str, Any]
    ) -> None:
        _check_send_options(task_name, options)
        limits.name("task name", task_name)
        limits.check_options(task_name, options)
        conf = app.conf
        self.task_name = task_name
        if options.get("queue") is None and options.get("routing_key") is not None:
            # No exchanges to bind: a routing key names the queue, as a direct one would.
            options = {**options, "queue": options["routing_key"]}
        routed = _route(app, task_name)
        _check_route(task_name, routed)
        if routed.get("queue") is None and routed.get("routing_key") is not None:
            routed["queue"] = routed["routing_key"]  # as for apply_async(routing_key=)

        def pick(key: str, task_attr: Any, default: Any) -> Any:
            if options.get(key) is not None:
                return options[key]
            if routed.get(key) is not None:
                return routed[key]
            if task_attr is not None:
                return task_attr
            return default

        # Task attributes and settings may not have passed a check (a Task class written
        # by hand): the values used are checked too.
        self.queue: str = limits.name(f"{task_name}: queue", pick(
            "queue", getattr(task, "queue", None), conf.task_default_queue))
        self.priority: int = limits.priority(f"{task_name}: priority", pick(
            "priority", getattr(task, "priority", None), conf.task_default_priority))
        self.ignore_result = bool(
            pick("ignore_result", getattr(task, "ignore_result", None), conf.task_ignore_result)
        )
        # A Task class written by hand, or a base=, may say pickle without a check.
        limits.serializer(f"{task_name}: serializer", pick(
            "serializer", getattr(task, "serializer", None), conf.task_serializer))
        default_max = task.max_retries if task is not None else conf.task_default_max_retries
        self.max_retries = limits.max_retries(f"{task_name}: max_retries",
                                              options.get("max_retries", default_max))
        self.now = utcnow()
        zone = str(conf.timezone)
        countdown, eta = options.get("countdown"), options.get("eta")
        if countdown is not None and eta is not None:
            raise ValueError(f"{task_name}: give countdown or eta, not both")
        self.run_at: datetime | None = None
        if countdown is not None:
            eta = self.now + timedelta(seconds=countdown)  # request.eta, as Celery's
            if countdown > 0:
                self.run_at = eta
        elif eta is not None:
            self.run_at = eta = _as_utc(eta, zone, f"{task_name}: eta")
        self.expires_at = _expires_at(
            pick("expires", getattr(task, "expires", None), None), self.now, zone,
            f"{task_name}: expires")
        self.unique_key: str | None = options.get("unique_key")
        on_duplicate = options.get("on_duplicate")
        self.on_duplicate: str = "return" if on_duplicate is None else on_duplicate
        if self.on_duplicate not in ON_DUPLICATE:
            raise ValueError(f"{task_name}: on_duplicate must be 'return' or 'raise', "
                             f"not {limits.show(self.on_duplicate)}")
        self.scope = unique_scope(task_name, options.get("unique_for"),
                                  options.get("unique_states"))
        # Any string is a task id (checked above): the row's uuid, and the string as given
        # when the uuid does not say it already (limits.row_id).
        self.task_id: str | None = options.get("task_id")
        self.row_id: str | None = None
        self.given_id: str | None = None
        if self.task_id is not None:
            self.row_id = limits.row_id(self.task_id)
            self.given_id = limits.given_id(self.task_id)
        self.parent_id = _row_id(options.get("parent_id"))
        self.root_id = _row_id(options.get("root_id"))
        self.group_id = _row_id(options.get("group_id"))
        self.job_options = self._job_options(app, task, options, eta)
        self.max_bytes = int(conf.task_max_args_bytes)
        self.max_depth = int(conf.task_max_args_depth)
        self._shared: dict[str, Any] | None = None
        #: Cached for a send without options, and no task-sent events: see send_plain.
        self.plain = False

    def _job_options(
        self, app: App, task: Task | None, options: dict[str, Any], eta: datetime | None
    ) -> dict[str, Any]:
        conf = app.conf
        opts: dict[str, Any] = {}
        name = self.task_name
        time_limit = options.get("time_limit") or getattr(task, "time_limit", None) \
            or conf.task_time_limit
        soft = options.get("soft_time_limit") or getattr(task, "soft_time_limit", None) \
            or conf.task_soft_time_limit
        lease = options.get("lease") or getattr(task, "lease", None)
        track = options.get("track_started")
        if track is None:
            track = getattr(task, "track_started", None)
        if track is None:
            track = conf.task_track_started
        if time_limit:
            opts["time_limit"] = limits.seconds(f"{name}: time_limit", time_limit)
        if soft:
            opts["soft_time_limit"] = limits.seconds(f"{name}: soft_time_limit", soft)
        if lease:
            lease = limits.seconds(f"{name}: lease", lease)
        # A claim must outlive the longest legitimate run, or a healthy job gets rescued.
        lease_needed = min(limits.MAX_SECONDS, max(
            float(lease or 0), float(time_limit or 0) + 5 if time_limit else 0))
        if lease_needed:
            opts["lease"] = lease_needed
        if track:
            opts["track_started"] = True
        if eta is not None:
            opts["eta"] = eta.isoformat()
        if options.get("shadow") is not None:
            opts["shadow"] = limits.name(f"{name}: shadow", options["shadow"])
        if "max_retries" in options:  # the sender's, which self.retry() obeys over the task's
            opts["max_retries"] = self.max_retries
        if options.get("concurrency_key") is not None:  # see docs/flow-control.md
            opts["concurrency_key"] = options["concurrency_key"]
            opts["concurrency_limit"] = limits.concurrency(
                f"{name}: concurrency_limit", getattr(task, "concurrency_limit", None) or 1)
        return opts

    def row(self, args: Any, kwargs: Any, row_id: str | None = None) -> dict[str, Any]:
        """One job's row; ``row_id`` an id made ahead (``uuids``) when no task_id is
        given."""
        if args is None:
            args = []
        elif not isinstance(args, (list, tuple)):
            raise TypeError(f"{self.task_name}: args must be a list or tuple, "
                            f"not {type(args).__name__}")
        if kwargs is None:
            kwargs = {}
        elif not isinstance(kwargs, dict):
            raise TypeError(f"{self.task_name}: kwargs must be a dict, "
                            f"not {type(kwargs).__name__}")
        for key in kwargs:
            if not isinstance(key, str):  # JSON would turn 1 into "1" without a word
                raise TypeError(f"{self.task_name}: keyword names must be strings, "
                                f"got {limits.show(key)}")
        if self.given_id is not None:
            return {"id": self.row_id, "task_id": self.given_id, "args": list(args),
                    "kwargs": kwargs}
        return {"id": self.row_id or row_id or uuid(), "args": list(args), "kwargs": kwargs}

    def shared(self) -> dict[str, Any]:
        """The values every job of this call shares, as statement parameters. Plain
        strings and numbers, so that any DB-API driver (psycopg 2 under Django, say)
        binds them. Callers copy it before adding to it."""
        if self._shared is None:
            self._shared = self._shared_params()
        return self._shared

    def _shared_params(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "task": self.task_name,
            "priority": self.priority,
            "run_at": self.run_at.isoformat() if self.run_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "max_retries": self.max_retries,
            "unique_key": self.unique_key,
            "parent_id": self.parent_id,
            "root_id": self.root_id,
            "group_id": self.group_id,
            "ignore_result": self.ignore_result,
            "options": json_dumps(self.job_options),
        }


def _row_id(value: str | None) -> str | None:
    """The row uuid of a parent, root or group id given as any (checked) string."""
    return None if value is None else limits.row_id(value)


def known_id(row: dict[str, Any]) -> str:
    """The task id of a row as its sender knows it: the string given, else the uuid."""
    known: str = row.get("task_id") or row["id"]
    return known


@dataclass
class JobBatch:
    """The jobs of one call: what they share, and each one's id and arguments."""

    task: str
    shared: dict[str, Any]
    rows: list[dict[str, Any]]
    connection: Any = None
    #: ``task_max_args_bytes`` and ``task_max_args_depth``.
    max_bytes: int = 10 * 1024 * 1024
    max_depth: int = 100
    #: ``headers=`` and ``retry_policy=`` as given, for the publish signals.
    headers: Any = None
    retry_policy: Any = None
    #: ``on_duplicate=``: "return" or "raise".
    on_duplicate: str = "return"
    #: After the insert: each row skipped for its ``unique_key`` (its task id, as known)
    #: -> the live job holding it (the same).
    duplicates: dict[str, str] = field(default_factory=dict)
    #: ``unique_for=``/``unique_states=`` given: the keys are claims (``claim_key`` in each
    #: row), not the jobs' ``unique_key`` (see ``unique_claims``).
    scoped: bool = False
    #: The ids were made here (no ``task_id=``): a result under one can only be this
    #: send's own job.
    made_ids: bool = False
    #: The named statement that inserts the batch (one built on ``queries._insert_jobs``
    #: that answers as ``job_insert`` does), and its parameters beyond the batch's: a
    #: workflow writes its waiting steps in the statement of its jobs.
    statement: str = "job_insert"
    extra: dict[str, Any] = field(default_factory=dict)

    def claim_key(self, row: dict[str, Any]) -> str | None:
        key: str | None = row.get("claim_key")
        return key

    @property
    def ids(self) -> list[str]:
        """The task ids as the sender knows them (see :func:`known_id`)."""
        return [known_id(row) for row in self.rows]

    def params(self) -> dict[str, Any]:
        """Parameters of the statements built on ``queries._insert_jobs``."""
        # The document nests each argument in the list of rows, a row, its args or kwargs;
        # those add 3 brackets per row and 1.
        text = self._encode(self.rows, levels=3, brackets=3 * len(self.rows) + 1)
        if len(text) * 4 > self.max_bytes and len(text.encode()) > self.max_bytes:
            for row in self.rows:  # only when the whole batch is over the limit
                self._check_size(row, len(json_dumps(row["args"]).encode())
                                 + len(json_dumps(row["kwargs"]).encode()))
        return {"jobs": text, **self.shared}

    def key(self, row: dict[str, Any]) -> str | None:
        """The row's ``unique_key``: its own (``apply_many``) or the call's."""
        key: str | None = row.get("unique_key") or self.shared["unique_key"]
        return key

    @property
    def keyed(self) -> bool:
        return self.scoped or self.shared["unique_key"] is not None or any(
            "unique_key" in row for row in self.rows)

    @property
    def single(self) -> bool:
        """One job that no ``unique_key`` can collide with: ``job_insert_one`` fits."""
        return len(self.rows) == 1 and not self.keyed and self.statement == "job_insert"

    def single_params(self) -> dict[str, Any]:
        """Parameters of ``job_insert_one``: the shared fields and the one row's."""
        return one_params(self.task, self.shared, self.rows[0], self.max_bytes,
                          self.max_depth)

    def _encode(self, value: Any, levels: int, brackets: int) -> str:
        return encode_arguments(self.task, self.rows, value, levels, brackets,
                                self.max_depth)

    def _check_size(self, row: dict[str, Any], size: int) -> None:
        _check_size(self.task, row, size, self.max_bytes)


def one_params(task: str, shared: dict[str, Any], row: dict[str, Any], max_bytes: int,
               max_depth: int) -> dict[str, Any]:
    """Parameters of ``job_insert_one`` for ``row``, a job of ``task`` (``shared``: the
    parameters of its builder, ``max_bytes``, ``max_depth``: task_max_args_bytes and
    task_max_args_depth)."""
    # no arguments is the common case, and worth skipping the encoder for
    args = encode_arguments(task, (row,), row["args"], 1, 1, max_depth) \
        if row["args"] else "[]"
    kwargs = encode_arguments(task, (row,), row["kwargs"], 1, 1, max_depth) \
        if row["kwargs"] else "{}"
    if (len(args) + len(kwargs)) * 4 > max_bytes:
        _check_size(task, row, len(args.encode()) + len(kwargs.encode()), max_bytes)
    headers = row.get("headers")
    return {**shared, "id": row["id"], "args": args, "kwargs": kwargs,
            "headers": None if headers is None else json_dumps(headers),
            "task_id": row.get("task_id")}


def encode_arguments(task: str, rows: Sequence[dict[str, Any]], value: Any, levels: int,
                     brackets: int, max_depth: int) -> str:
    """``value`` (arguments of ``rows``, jobs of ``task``) as JSON text, each argument
    ``levels`` deep in it, which adds ``brackets`` of its own. Arguments that are not
    JSON, nest deeper than ``max_depth`` (a worker could not decode them) or hold text
    jsonb refuses are named in the error. Cheap tests of the text come first (arguments
    with fewer brackets than the limit cannot nest deeper); values are walked only when
    one fails."""
    try:
        text = json_dumps(value)
    except (TypeError, ValueError, RecursionError):
        _fault(task, rows, max_depth)
        raise
    if (text.count("[") + text.count("{") - brackets > max_depth
            and limits.text_depth_over(text, max_depth + levels)) \
            or limits.suspicious(text):
        _fault(task, rows, max_depth)
    return text


def _fault(task: str, rows: Sequence[dict[str, Any]], max_depth: int) -> None:
    """Raise for the first argument at fault, naming it (returns if none is)."""
    for row in rows:
        for what, key, value in _arguments(task, row):
            if limits.depth_over([value], max_depth + 1):
                raise ValueError(f"{what} nests lists and dicts more than "
                                 f"{max_depth} levels deep (task_max_args_depth)")
            check_json(value, what)
            bad = limits.bad_text([key, value])
            if bad is not None:
                raise ValueError(
                    f"{what} holds text PostgreSQL cannot store ({limits.show(bad)}): "
                    "jsonb takes no NUL character (\\u0000) and no lone surrogate")


def _check_size(task: str, row: dict[str, Any], size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValueError(
            f"{task}: the arguments of job {known_id(row)} are {size:,} bytes as JSON, "
            f"over task_max_args_bytes ({max_bytes:,}); store large data "
            "elsewhere and pass a reference to it")


def _arguments(task: str, row: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """Each argument of a row: how to name it, its keyword (or ""), its value."""
    for i, arg in enumerate(row["args"]):
        yield f"{task}: argument {i} ({type(arg).__name__})", "", arg
    for key, value in row["kwargs"].items():
        yield f"{task}: keyword argument {limits.show(key)} ({type(value).__name__})", \
            key, value


def insert_jobs(app: App, batch: JobBatch) -> int:
    """Insert the batch with one statement and one NOTIFY per queue; returns how many
    went in. A job whose ``unique_key`` a live job holds is skipped: ``batch.duplicates``
    then names that job, or :class:`DuplicateJob` is raised (``on_duplicate="raise"``;
    on the pooled connection nothing of the batch is then inserted).

    With a connection the insert joins that connection's transaction: the jobs exist
    only if it commits, and workers are notified on commit.
    """
    if not batch.rows:
        return 0
    traced = tracing.publishing(batch.task, batch.shared.get("queue"), batch.rows)
    if traced is None:
        return _insert_batch(app, batch, None)
    with traced:
        return _insert_batch(app, batch, traced)


def _insert_batch(app: App, batch: JobBatch, traced: tracing.Publishing | None) -> int:
    sent = None
    if publish.wanted(batch.task):  # before the rows are encoded: receivers may change them
        sent = publish.messages(batch.task, batch.shared, batch.rows, batch.headers)
        publish.before(batch.task, sent, batch.retry_policy)
        for row, message in zip(batch.rows, sent, strict=True):
            row["headers"] = publish.stored_headers(batch.task, message, batch.headers)
    elif batch.headers is not None:
        for row in batch.rows:
            row["headers"] = batch.headers
    if traced is not None:
        traced.inject(batch.rows)
    queries = app.queries
    if batch.scoped:
        query = queries["job_insert_claimed"]
        params = {}  # per try: see _insert_claimed
    elif batch.single:
        query = queries["job_insert_one"]
        params = batch.single_params()
    else:
        query = queries[batch.statement]
        params = {**batch.params(), **batch.extra}
    params["jobs_channel"] = queries.jobs_channel
    if batch.connection is None:
        inserted = _insert_pooled(app, query, params, batch)
    else:
        connection = batch.connection
        inserted = _insert(app, lambda q, p: _execute_on(connection, q, p, batch),
                           query, params, batch)
    if sent and inserted:  # none when a live job held the unique_key (one job per batch)
        publish.after(batch.task, sent)
    if inserted and app.conf.task_send_sent_event:
        from pgqueue.events import send_task_sent

        send_task_sent(app, batch.task, batch.shared, batch.rows)
    return inserted


Run = Callable[[bytes, dict[str, Any]], list[Any]]


def _insert(app: App, run: Run, query: bytes, params: dict[str, Any],
            batch: JobBatch) -> int:
    """Run the insert; for the rows it skipped, find the live jobs holding their keys."""
    if batch.scoped:
        return _insert_claimed(app, run, batch)
    result = run(query, params)
    if batch.single:
        return 1
    inserted = int(result[0][0])
    if inserted < len(batch.rows):
        ids = set((result[0][2] or "").split(","))  # those that went in with a key
        _find_holders(app, run, batch, [r for r in batch.rows
                                        if batch.key(r) is not None and r["id"] not in ids])
    return inserted


# How many times a skipped row is looked up and inserted again, when the holder of its
# key finished between the insert and the look-up (each time is such a race).
_HOLDER_TRIES = 5


def _find_holders(app: App, run: Run, batch: JobBatch, skipped: list[dict[str, Any]]) -> None:
    """Fill ``batch.duplicates`` for the skipped rows. A key whose holder finished
    meanwhile is free again: its row is inserted then. Never an id that does not exist:
    after ``_HOLDER_TRIES`` races in a row, DuplicateJob says so. (In a REPEATABLE READ
    transaction of the caller, a holder its snapshot cannot see fails the insert itself
    with Postgres's SerializationFailure, which such callers retry.)"""
    queries = app.queries
    for _ in range(_HOLDER_TRIES):
        keys = sorted({str(batch.key(row)) for row in skipped})
        holders = dict(run(queries["job_unique_holders"], {"keys": json_dumps(keys)}))
        gone = []
        for row in skipped:
            holder = holders.get(batch.key(row))
            if holder is None:
                gone.append(row)
            elif holder != known_id(row):  # else: a first try that did land (_insert_pooled)
                batch.duplicates[known_id(row)] = holder
        if not gone:
            break
        again = replace(batch, rows=gone, duplicates={})
        result = run(queries["job_insert"],
                     {**again.params(), "jobs_channel": queries.jobs_channel})
        ids = set((result[0][2] or "").split(","))
        skipped = [row for row in gone if row["id"] not in ids]
        if not skipped:
            break
    else:
        raise DuplicateJob(
            f"{batch.task}: unique_key {batch.key(skipped[0])!r}: its holder finished and "
            f"another took it, {_HOLDER_TRIES} times while it was looked up; send again")
    if batch.duplicates and batch.on_duplicate == "raise":
        row_id, holder = next(iter(batch.duplicates.items()))
        row = next(r for r in batch.rows if known_id(r) == row_id)
        raise DuplicateJob(f"{batch.task}: unique_key {batch.key(row)!r} is held by the live "
                           f"job {holder}", job_id=holder, unique_key=batch.key(row))


def _insert_claimed(app: App, run: Run, batch: JobBatch) -> int:
    """Insert a batch sent with ``unique_for``/``unique_states``: each row whose key is
    free takes its claim and goes in, in one statement. A row that did not is looked up
    in a statement of its own (a fresh snapshot): its key's holder if the claim holds,
    or the row is sent again (its holder left the states that count meanwhile, or a
    snapshot could not see it yet). Later rows of a key in the batch share the first's
    fate."""
    queries = app.queries
    first: dict[str, dict[str, Any]] = {}
    pending = []
    for row in batch.rows:
        key = batch.claim_key(row)
        if key is None or key not in first:
            pending.append(row)
            if key is not None:
                first[key] = row
    inserted = 0
    for _ in range(_HOLDER_TRIES):
        # Claims are taken in key order: two batches with the same keys never wait for
        # each other's rows in opposite orders (a deadlock).
        pending.sort(key=lambda row: batch.claim_key(row) or "")
        part = replace(batch, rows=pending, duplicates={})
        result = run(queries["job_insert_claimed"],
                     {**part.params(), "jobs_channel": queries.jobs_channel})
        inserted += int(result[0][0])
        ids = set((result[0][2] or "").split(","))
        skipped = [row for row in pending if row["id"] not in ids]
        if not skipped:
            break
        keys = sorted({str(batch.claim_key(row)) for row in skipped})
        holders = {key: (holder, holds) for key, holder, holds in run(
            queries["unique_claim_holders"], {"keys": json_dumps(keys)})}
        pending = []
        for row in skipped:
            holder, holds = holders.get(batch.claim_key(row), (None, False))
            if holder == row["id"]:  # a first try that did land (_insert_pooled)
                inserted += 1
            elif holds:
                batch.duplicates[row["id"]] = holder
            else:
                pending.append(row)
        if not pending:
            break
    else:
        raise DuplicateJob(
            f"{batch.task}: unique_key {batch.claim_key(pending[0])!r}: its claim changed "
            f"hands {_HOLDER_TRIES} times while it was looked up; send again")
    for row in batch.rows:
        key = batch.claim_key(row)
        if key is not None and first[key] is not row:
            head = first[key]["id"]
            batch.duplicates[row["id"]] = batch.duplicates.get(head, head)
    if batch.duplicates and batch.on_duplicate == "raise":
        row_id, holder = next(iter(batch.duplicates.items()))
        row = next(r for r in batch.rows if r["id"] == row_id)
        raise DuplicateJob(f"{batch.task}: unique_key {batch.claim_key(row)!r} is held by "
                           f"the job {holder} (unique_for/unique_states)",
                           job_id=holder, unique_key=batch.claim_key(row))
    return inserted


def _insert_pooled(app: App, query: bytes, params: dict[str, Any], batch: JobBatch) -> int:
    """Insert on a pooled connection, once more on a checked pool if the first was dead.

    Pooled connections are not pinged before use (that would cost a round trip per
    enqueue); one that died idle (server restart) fails here instead. Retrying is safe:
    ids are made here, so if the first insert did land, the retry meets its own rows,
    and that counts as success. A single job with an id made here is sent again only if
    it has no result either: after a failover the first try may have committed, and its
    job run and finished, before the retry (job_insert_one_again).
    """
    try:
        return _insert_on_pool(app, query, params, batch)
    except psycopg.OperationalError:
        app.check_pool()  # after a server restart every idle connection is dead
        batch.duplicates.clear()
    if batch.single and batch.made_ids:  # the first try may have landed and run (failover)
        query = app.queries["job_insert_one_again"]
    try:
        return _insert_on_pool(app, query, params, batch)
    except DuplicateJob:
        if batch.keyed:
            raise
        return len(batch.rows)


def _insert_on_pool(app: App, query: bytes, params: dict[str, Any], batch: JobBatch) -> int:
    if batch.single:  # one statement and nothing after it: the pool's shortest way
        try:
            app.run_pooled(Statement.of(query), params)
        except psycopg.errors.UniqueViolation as e:
            raise _duplicate_id(e, batch.ids) from None
        return 1
    with app.connection() as conn:
        def run(q: bytes, p: dict[str, Any]) -> list[Any]:
            return _execute(conn, q, p, batch)

        if not batch.keyed:
            return _insert(app, run, query, params, batch)
        # One transaction: on_duplicate="raise" leaves none of the batch behind.
        with conn.transaction():
            return _insert(app, run, query, params, batch)


def _execute(conn: psycopg.Connection[Any], query: bytes, params: dict[str, Any],
             batch: JobBatch) -> list[Any]:
    try:
        return db.run(conn, query, params).fetchall()
    except psycopg.errors.UniqueViolation as e:
        raise _duplicate_id(e, batch.ids) from None


def _duplicate_id(error: Exception, job_ids: list[str]) -> DuplicateJob:
    ids = ", ".join(limits.show(i) for i in job_ids[:3])
    return DuplicateJob(f"a job with this task_id already exists and has not finished "
                        f"({ids}{'...' if len(job_ids) > 3 else ''}): send it again once "
                        "that job has finished, or under another task_id")


def _execute_on(connection: Any, query: bytes, params: dict[str, Any],
                batch: JobBatch) -> list[Any]:
    """Run the insert on a caller's connection, inside the caller's transaction."""
    if isinstance(connection, psycopg.Connection):
        with connection.cursor(row_factory=tuple_row) as cur:
            try:
                cur.execute(query, params)
            except psycopg.errors.UniqueViolation as e:
                raise _duplicate_id(e, batch.ids) from None
            return cur.fetchall()
    dbapi = _dbapi_connection(connection)
    cur = dbapi.cursor()
    try:
        cur.execute(query.decode(), params)
        return [r if isinstance(r, (tuple, list)) else (r,) for r in cur.fetchall()]
    finally:
        cur.close()


def _dbapi_connection(connection: Any) -> Any:
    """The DB-API connection behind a SQLAlchemy Connection/Session or Django connection."""
    module = type(connection).__module__
    if module.startswith("sqlalchemy"):
        if hasattr(connection, "get_bind"):  # Session: joins its current transaction
            connection = connection.connection()
        elif not connection.in_transaction():
            connection.begin()  # as SQLAlchemy's autobegin would: conn.commit() commits the job
        raw = connection.connection  # the pool's proxy of the DB-API connection
        # dbapi_connection, not driver_connection: under an AsyncSession (``run_sync``) only
        # SQLAlchemy's adapter offers a blocking cursor; for sync drivers they are the same.
        return getattr(raw, "dbapi_connection", raw)
    if module.startswith("django"):
        connection.ensure_connection()
        return connection.connection
    if hasattr(connection, "cursor"):
        return connection
    raise ConfigurationError(
        f"connection={type(connection).__name__} is not supported: pass a psycopg "
        "connection, a SQLAlchemy Connection or Session, or django.db.connection"
    )


# The task attributes a JobBuilder reads; with the settings' generation they key its cache.
_task_defaults = operator.attrgetter(
    "queue", "priority", "ignore_result", "max_retries", "expires", "time_limit",
    "soft_time_limit", "lease", "track_started")


def _builder(app: App, task_name: str, task: Task | None,
             options: dict[str, Any]) -> JobBuilder:
    """The builder for these options; for a plain ``delay()`` of a task, a cached one.

    A builder depends only on the options, the task's defaults and the settings, except
    when a time is involved (``expires`` counts from now) or a router may answer
    differently per call; those are never cached."""
    if options or task is None or app.conf.task_routes:
        return JobBuilder(app, task_name, task, options)
    conf = app.conf  # kept in the cache entry, so its id is not reused
    key = (id(conf), conf.generation, _task_defaults(task))
    cached = app._builders.get(task_name)
    if cached is not None and cached[0] == key:
        return cast("JobBuilder", cached[1])
    builder = JobBuilder(app, task_name, task, options)
    if builder.expires_at is None:
        builder.plain = not conf.task_send_sent_event
        app._builders[task_name] = (key, builder, conf)
    return builder


def send_plain(app: App, name: str, task: Task, args: Any, kwargs: Any
               ) -> AsyncResult | None:
    """``task.delay(*args, **kwargs)``, a send without options, on pgqueue's own pool,
    the shortest way: the new job's result; None when anything calls for the general way
    (``build_rows`` and ``insert_jobs``): no cached builder for these settings and task
    attributes yet (the general way makes it), a connection provider, publish signal
    receivers, tracing, task-sent events. The row and the statement are the general
    way's, as are the checks of the arguments and the retry on a dead connection; what
    it leaves out is the work that cannot apply."""
    conf = app.conf
    cached = app._builders.get(name)
    if (cached is None or cached[0] != (id(conf), conf.generation, _task_defaults(task))
            or not cached[1].plain or app.connection_provider is not None
            or publish.wanted(name) or tracing.tracer() is not None):
        return None
    builder: JobBuilder = cached[1]
    row = builder.row(args, kwargs)
    queries = app.queries
    params = one_params(name, builder.shared(), row, builder.max_bytes, builder.max_depth)
    params["jobs_channel"] = queries.jobs_channel
    statement = Statement.of(queries["job_insert_one"])
    try:
        app.run_pooled(statement, params)
    except psycopg.errors.UniqueViolation as e:
        raise _duplicate_id(e, [known_id(row)]) from None
    except psycopg.OperationalError:  # a dead pooled connection: as _insert_pooled does
        app.check_pool()
        again = queries["job_insert_one_again" if builder.row_id is None else "job_insert_one"]
        with suppress(psycopg.errors.UniqueViolation):  # the first try did land
            app.run_pooled(Statement.of(again), params)
    return AsyncResult(row["id"], app=app, task_name=name)


def build_rows(
    app: App,
    task_name: str,
    task: Task | None,
    calls: Iterable[tuple[Sequence[Any], dict[str, Any]] | Sequence[Any]],
    options: dict[str, Any],
    pairs: bool = False,
) -> JobBatch:
    """The jobs for ``calls``; with ``pairs`` each call is exactly ``(args, kwargs)``."""
    for option in ("link", "link_error"):
        if options.get(option):  # apply_async and send_task send these as a workflow
            raise TypeError(f"{task_name}: {option}= is taken by apply_async and send_task, "
                            f"not by apply_many; send a group(...) with the {option}")
    options = dict(options)
    connection = options.pop("connection", None)
    if connection is None and app.connection_provider is not None:
        connection = app.connection_provider()
    keys = options.get("unique_key")
    if isinstance(keys, (list, tuple)):
        del options["unique_key"]
    else:
        keys = None
    builder = _builder(app, task_name, task, options)
    if not isinstance(calls, (list, tuple)):
        try:
            calls = list(calls)
        except TypeError:
            raise TypeError(f"{task_name}: the calls must be an iterable of (args, kwargs) "
                            f"or args, not {type(calls).__name__}") from None
    # the ids in one call, a quarter of the cost of one uuid() each (10,000 jobs: ~4 ms)
    ids = iter(uuids(len(calls)) if builder.row_id is None else [])
    rows = []
    row = builder.row
    for call in calls:
        if pairs or (isinstance(call, tuple) and len(call) == 2 and isinstance(call[1], dict)
                     and isinstance(call[0], (list, tuple))):
            rows.append(row(call[0], call[1], next(ids, None)))
        else:
            rows.append(row(call, None, next(ids, None)))
    if keys is not None:
        _give_keys(task_name, rows, keys)
    for option in ("task_id", "unique_key"):
        if getattr(builder, option) is not None and len(rows) > 1:
            raise ValueError(f"{task_name}: {option} cannot be shared by {len(rows)} jobs; "
                             f"give apply_many a list, one {option} per call")
    headers = options.get("headers")
    shadow = builder.job_options.get("shadow")
    if shadow is not None:  # kept with the result too, under protocol 2's header name
        headers = {**(headers or {}), "shadow": shadow}
    shared = builder.shared()
    scoped = builder.scope is not None
    if scoped:
        shared = _claim_rows(task_name, builder, shared, rows)
    return JobBatch(task_name, shared, rows, connection, builder.max_bytes,
                    builder.max_depth, headers, options.get("retry_policy"),
                    builder.on_duplicate, scoped=scoped, made_ids=builder.row_id is None)


def _claim_rows(task_name: str, builder: JobBuilder, shared: dict[str, Any],
                rows: list[dict[str, Any]]) -> dict[str, Any]:
    """With ``unique_for``/``unique_states``, each row's key becomes its ``claim_key``
    (the jobs' ``unique_key`` column stays NULL: its index allows one live job per key,
    whatever the scope); returns the shared parameters with the claim's."""
    assert builder.scope is not None
    period, states = builder.scope
    keyed = False
    for row in rows:
        key = row.pop("unique_key", None) or builder.unique_key
        if key is not None:
            row["claim_key"] = key
            keyed = True
    if not keyed:
        raise ValueError(f"{task_name}: unique_for and unique_states need a unique_key, "
                         "the key no second job may take meanwhile")
    return {**shared, "unique_key": None, "claim_for": period,
            "claim_states": None if states is None else json_dumps(states)}


def _give_keys(task_name: str, rows: list[dict[str, Any]], keys: Sequence[Any]) -> None:
    """``apply_many(calls, unique_key=[...])``: one key (or None) per call."""
    if len(keys) != len(rows):
        raise ValueError(f"{task_name}: unique_key lists {len(keys)} keys for "
                         f"{len(rows)} calls; give one per call (None for no key)")
    for i, (row, key) in enumerate(zip(rows, keys, strict=True)):
        if key is not None:
            limits.check_options(f"{task_name}: call {i}", {"unique_key": key})
            row["unique_key"] = key


def update_progress(task: Task, task_id: str | None, state: str, meta: Any) -> None:
    """Write a custom state and its metadata for the running job (fenced on its attempt),
    or for job ``task_id`` while it runs, from anywhere (as Celery's backend would)."""
    request = task.request
    if meta is not None:
        check_json(meta, f"{task.name}: update_state meta")
    # Another job's id, in any spelling: the string it was sent with names its row too.
    own_row = limits.row_id(request.id) if request.id is not None else None
    if task_id is not None and task_id != request.id \
            and limits.row_id(limits.job_id(f"{task.name}: update_state task_id",
                                            task_id)) != own_row:
        rows = task.app.execute("job_progress_other", {
            "id": limits.row_id(task_id), "state": state,
            "meta": Jsonb(meta) if meta is not None else None})
        if not rows:
            raise ValueError(f"{task.name}: update_state(task_id={task_id!r}): that job is "
                             "not running (queued, finished or unknown); a state is kept "
                             "only while a job runs")
        return
    job_id = own_row
    if job_id is None or request.called_directly and task_id is None:
        return  # called outside a worker: nothing to record, like Celery's eager mode
    task.app.execute("job_progress", {
        "id": job_id,
        "state": state,
        "meta": Jsonb(meta) if meta is not None else None,
        "attempt": request.attempt,
        "worker": request.worker,
    })
