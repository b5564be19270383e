"""The application: configuration, the task registry, and the way to the database."""

from __future__ import annotations

import functools
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, overload

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from pgqueue import db, signals
from pgqueue.annotations import annotate, prepare_annotations
from pgqueue.client.producer import JobBatch, build_rows, insert_jobs, send_plain
from pgqueue.config import (
    Settings,
    load_object,
    resolve_dsn,
    resolve_listen_dsn,
    resolve_schema,
)
from pgqueue.db import roles
from pgqueue.db.connection import Parking, Statement
from pgqueue.db.queries import Queries
from pgqueue.exceptions import ConfigurationError, NotRegistered
from pgqueue.signals import Signal
from pgqueue.task import Task as BaseTask
from pgqueue.task import check_task_options, make_task_class
from pgqueue.utils import current_pid, import_object

if TYPE_CHECKING:
    from pgqueue.control import Control
    from pgqueue.events import Events
    from pgqueue.result import AsyncResult, ResultWaiter

#: What ``autodiscover_tasks`` takes: package names, a callable returning them, or None.
Packages = Iterable[str] | Callable[[], Iterable[str]] | None
F = TypeVar("F", bound=Callable[..., Any])

_current_app: App | None = None
_all_apps: weakref.WeakSet[App] = weakref.WeakSet()
_shared_tasks: list[tuple[Callable[..., Any], dict[str, Any]]] = []


def current_app() -> App:
    """The most recently created app (Celery's ``current_app``)."""
    if _current_app is None:
        raise ConfigurationError("no pgqueue App has been created yet")
    return _current_app


# In a forked child (a prefork pool's), what the parent's threads were doing at the
# fork is lost, so every app gets fresh locks and makes its own pool and result
# listener. The parent's pool object is kept, never collected: collecting it would run its
# shutdown, which takes locks its (absent) threads may have held.
_inherited: list[object] = []


def _fresh_state_in_child() -> None:
    for each in list(_all_apps):
        each._lock = threading.RLock()
        _inherited.extend(x for x in (each._pool, each._waiter, each._parking)
                          if x is not None)
        each._pool, each._pool_pid, each._waiter = None, 0, None
        each._parking = Parking()  # the parent's connections stay the parent's


os.register_at_fork(after_in_child=_fresh_state_in_child)


class App:
    """A pgqueue application. ``Celery`` is an alias, so ported code keeps working.

    ``App("proj", dsn="postgresql://...")``; ``broker=``/``backend=`` accept the same
    Postgres URL. Without a DSN, ``PGQUEUE_DSN`` then ``DATABASE_URL`` are used.
    """

    Task: type[BaseTask] = BaseTask

    def __init__(
        self,
        main: str | None = None,
        *,
        dsn: str | None = None,
        broker: str | None = None,
        backend: str | None = None,
        schema: str | None = None,
        include: Sequence[str] | None = None,
        config_source: Any = None,
        set_as_current: bool = True,
        task_cls: type[BaseTask] | str | None = None,
        **settings: Any,
    ) -> None:
        self.main = main
        self.tasks: dict[str, BaseTask] = {}
        self._annotations: list[Any] = []
        self.conf = Settings()
        self.conf.hooks["task_annotations"] = self._set_annotations
        for setting in ("imports", "include"):
            self.conf.hooks[setting] = functools.partial(_names, setting=setting)
        if config_source is not None:
            self.config_from_object(config_source)
        for url in (backend, broker, dsn):  # the most specific wins
            if url:
                self.conf.dsn = url
        if schema:
            self.conf.schema = schema
        self.conf.update(settings)
        if isinstance(task_cls, str):
            task_cls = import_object(task_cls)
        if task_cls is not None:
            self.Task = task_cls  # type: ignore[assignment]
        self.include = list(include or ())
        self.on_after_configure = Signal("on_after_configure")
        self.on_after_finalize = Signal("on_after_finalize")
        self._configured = False
        self._discoveries: list[tuple[Packages, str]] = []
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        # Task name -> (cache key, JobBuilder, settings it was built from): see producer.
        self._builders: dict[str, tuple[tuple[Any, ...], Any, Settings]] = {}
        self._pool_pid = 0
        self._parking = Parking()
        self._lock = threading.RLock()
        self._queries: Queries | None = None
        self._waiter: ResultWaiter | None = None
        self._control: Control | None = None
        # Settings the pooled connections are made with: a new value means a new pool.
        for setting in ("producer_durable", "transaction_pooling"):
            self.conf.hooks[setting] = lambda _value: self._drop_pool()
        # Returns the connection whose transaction an enqueue without ``connection=`` joins,
        # or None for pgqueue's own pool. Framework integrations set it (Django: inside
        # ``transaction.atomic()``, its connection).
        self.connection_provider: Callable[[], Any] | None = None
        self.periodic_tasks: list[dict[str, Any]] = []
        global _current_app
        if set_as_current:
            _current_app = self
        _all_apps.add(self)
        for fun, options in _shared_tasks:
            self._register(fun, dict(options))

    def __repr__(self) -> str:
        return f"<pgqueue.App {self.main or '__main__'}>"

    # -- configuration ----------------------------------------------------------------
    def config_from_object(
        self, obj: Any, namespace: str | None = None, silent: bool = False
    ) -> None:
        """Load settings from a module, class, dict or dotted path (``namespace='CELERY'``
        reads ``CELERY_BROKER_URL`` as ``broker_url``)."""
        try:
            self.conf.update(load_object(obj, namespace))
        except ConfigurationError:
            if not silent:
                raise

    def _set_annotations(self, setting: Any) -> None:
        """Apply ``task_annotations`` to every task, or leave all as they were."""
        before, self._annotations = self._annotations, prepare_annotations(setting)
        try:
            for task in self.tasks.values():
                annotate(task, self._annotations)
        except Exception:
            self._annotations = before
            for task in self.tasks.values():
                annotate(task, before)
            raise

    def config_from_envvar(self, variable_name: str, silent: bool = False) -> None:
        module = os.environ.get(variable_name)
        if not module:
            if silent:
                return
            raise ConfigurationError(f"environment variable {variable_name} is not set")
        self.config_from_object(module, silent=silent)

    @property
    def dsn(self) -> str:
        dsn = resolve_dsn(self.conf.dsn)
        db.declare_pooling(dsn, self.conf.transaction_pooling)
        return dsn

    @property
    def listen_dsn(self) -> str | None:
        """Where LISTEN connections go: the ``listen_dsn`` setting (or PGQUEUE_LISTEN_DSN),
        else the DSN, unless that goes through a transaction pooler, where a LISTEN hears
        nothing: None then, and workers and ``get()`` poll (docs/deploying.md)."""
        explicit = resolve_listen_dsn(self.conf)
        if explicit:
            return explicit
        dsn = self.dsn
        return None if db.through_pooler(dsn) else dsn

    @property
    def schema(self) -> str:
        return resolve_schema(self.conf)

    @property
    def queries(self) -> Queries:
        schema = self.schema
        if self._queries is None or self._queries.schema != schema:
            self._queries = Queries(schema)
        return self._queries

    def finalize(self) -> None:
        """Import the modules of ``include=`` and of the ``imports``/``include`` settings,
        and fire ``on_after_configure`` once."""
        with self._lock:
            if self._configured:
                return
            self._configured = True
        signals.import_modules.send(sender=self)
        for packages, related_name in self._discoveries:
            _discover(packages, related_name)
        conf = self.conf
        for module in [*self.include, *_names(conf.imports, "imports"),
                       *_names(conf.include, "include")]:
            import_object(module)
        self.on_after_configure.send(sender=self)
        self.on_after_finalize.send(sender=self)

    def autodiscover_tasks(
        self, packages: Packages = None, related_name: str = "tasks", force: bool = False,
    ) -> None:
        """Import ``<package>.<related_name>`` for each package that has one, as Celery
        does: when the app is finalized (a worker or beat starting), or at once with
        ``force=True`` or on an app already finalized. ``packages`` may be a callable,
        called then; without it, the installed apps of Django (``DJANGO_SETTINGS_MODULE``).
        """
        if packages is None and not _django_configured():
            raise ConfigurationError(
                "autodiscover_tasks() without packages finds the tasks of Django's installed "
                "apps, but Django is not configured (DJANGO_SETTINGS_MODULE is unset): pass "
                "the packages, e.g. app.autodiscover_tasks(['proj.orders'])")
        with self._lock:
            if not (force or self._configured):
                self._discoveries.append((packages, related_name))
                return
        _discover(packages, related_name)

    # -- tasks ------------------------------------------------------------------------
    @overload
    def task(self, fun: F) -> BaseTask: ...
    @overload
    def task(self, fun: None = None, **options: Any) -> Callable[[F], BaseTask]: ...
    def task(self, fun: Any = None, **options: Any) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(bind=True, ...)``."""
        if fun is not None and callable(fun) and not options:
            return self._register(fun, {})
        if fun is not None:
            raise TypeError("use @app.task or @app.task(option=...), with keyword options only")

        def decorator(f: F) -> BaseTask:
            return self._register(f, dict(options))

        return decorator

    def _register(self, fun: Callable[..., Any], options: dict[str, Any]) -> BaseTask:
        check_task_options(options, f"@task {getattr(fun, '__qualname__', fun)!r}")
        name = options.pop("name", None) or self.gen_task_name(fun.__name__, fun.__module__)
        if name in self.tasks and getattr(self.tasks[name], "__wrapped__", None) is fun:
            return self.tasks[name]
        task = make_task_class(self, fun, options, name)()
        annotate(task, self._annotations)
        self.tasks[name] = task
        return task

    def gen_task_name(self, name: str, module: str) -> str:
        if module == "__main__" and self.main:
            module = self.main
        return f"{module}.{name}"

    def register_task(self, task: BaseTask) -> BaseTask:
        """Register an instance of a Task subclass written by hand."""
        if not task.name:
            task.name = self.gen_task_name(type(task).__name__, type(task).__module__)
        task.app = self
        annotate(task, self._annotations)
        self.tasks[task.name] = task
        return task

    def get_task(self, name: str) -> BaseTask:
        try:
            return self.tasks[name]
        except KeyError:
            raise NotRegistered(
                f"Task of kind {name!r} never registered, please make sure it's imported."
            ) from None

    # -- periodic tasks -----------------------------------------------------------------
    def add_periodic_task(
        self, schedule: Any, sig: Any, args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None, name: str | None = None, **opts: Any,
    ) -> str:
        """Send ``sig`` on ``schedule`` (seconds, a timedelta, ``crontab(...)``), Celery's
        way; ``opts`` are send options (``queue=``, ``expires=``...) plus ``timezone=`` and
        ``catch_up=``. Checked now; returns the schedule's name."""
        from pgqueue.client.periodic import remember, signature_spec

        spec = signature_spec(schedule, sig, args, kwargs or {}, name, dict(opts))
        remember(self.periodic_tasks, spec)
        return str(spec["name"])

    def periodic(
        self, cron: Any = None, every: Any = None, name: str | None = None,
        timezone: str | None = None, catch_up: bool | None = None, **task_options: Any,
    ) -> Callable[[F], BaseTask]:
        """Register a task that runs on a schedule: ``@app.periodic(cron="0 6 * * 4")`` or
        ``@app.periodic(every=30)``; other keywords are ``@app.task`` options."""
        from pgqueue.client.periodic import periodic_spec, remember

        spec = periodic_spec(cron, every, timezone, catch_up)

        def decorator(fun: F) -> BaseTask:
            options = {**task_options, **({"name": name} if name else {})}
            task = self._register(fun, options)
            remember(self.periodic_tasks, {**spec, "name": task.name, "task": task.name})
            return task

        return decorator

    # -- sending ----------------------------------------------------------------------
    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        _task: BaseTask | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Enqueue task ``name`` (which this process need not import)."""
        if "link" in options or "link_error" in options:
            from pgqueue.canvas import Signature

            return Signature(name, args, kwargs, app=self).apply_async(  # type: ignore[no-any-return]
                **options)
        task = _task or self.tasks.get(name)
        if not options and task is not None:  # delay(): the short way, when it applies
            sent = send_plain(self, name, task, args, kwargs)
            if sent is not None:
                return sent
        batch = build_rows(self, name, task, [(args, kwargs)], options, pairs=True)
        insert_jobs(self, batch)
        return self._results(batch)[0]

    def send_many(
        self,
        name: str,
        calls: Iterable[tuple[Sequence[Any], dict[str, Any]] | Sequence[Any]],
        _task: BaseTask | None = None,
        **options: Any,
    ) -> list[AsyncResult]:
        """Enqueue many calls of task ``name`` with one INSERT and one NOTIFY."""
        task = _task or self.tasks.get(name)
        batch = build_rows(self, name, task, calls, options)
        insert_jobs(self, batch)
        return self._results(batch)

    def _results(self, batch: JobBatch) -> list[AsyncResult]:
        """A result per call; for a row skipped for its ``unique_key``, the result of the
        live job holding it, flagged ``duplicate``."""
        from pgqueue.result import AsyncResult

        results = []
        for job_id in batch.ids:
            holder = batch.duplicates.get(job_id)
            result = AsyncResult(holder or job_id, app=self, task_name=batch.task)
            result.duplicate = holder is not None
            results.append(result)
        return results

    def retry(
        self,
        ids: Iterable[str] | None = None,
        *,
        task: str | None = None,
        state: str | Sequence[str] | None = None,
        since: Any = None,
        limit: int | None = None,
    ) -> list[AsyncResult]:
        """Send finished jobs again, under their own ids, and return their results.

        By id (``app.retry([id1, id2])``: each must have ended FAILURE or REVOKED, or
        none is retried), or by filter: ``task=``, ``state=`` ("FAILURE", the default;
        "REVOKED"; "any"), ``since=`` (a datetime, timedelta or seconds ago: finished
        since then), ``limit=``. The outcome each leaves is kept in its history
        (``AsyncResult.history()``); see docs/unique-and-retry.md."""
        from pgqueue.client.retry import retry_jobs
        from pgqueue.result import AsyncResult

        if isinstance(ids, str):
            ids = [ids]
        moved = retry_jobs(self, ids, task=task, state=state, since=since, limit=limit)
        return [AsyncResult(job_id, app=self) for job_id in moved]

    def AsyncResult(self, task_id: str, task_name: str | None = None) -> AsyncResult:  # noqa: N802
        from pgqueue.result import AsyncResult

        return AsyncResult(task_id, app=self, task_name=task_name)

    @property
    def control(self) -> Control:
        from pgqueue.control import Control

        if self._control is None:
            self._control = Control(self)
        return self._control

    @property
    def events(self) -> Events:
        """Celery's ``app.events``: ``app.events.Receiver(handlers={...}).capture()``."""
        from pgqueue.events import Events

        return Events(self)

    @property
    def result_waiter(self) -> ResultWaiter:
        from pgqueue.result import ResultWaiter

        with self._lock:
            if self._waiter is None or not self._waiter.is_alive():
                self._waiter = ResultWaiter(self)
                self._waiter.start()
            return self._waiter

    # -- database ---------------------------------------------------------------------
    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new dedicated connection (autocommit), with a clear error when it fails."""
        return db.connect(self.dsn, **kwargs)

    @contextmanager
    def connection(self, needs: str = "producer") -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection; errors come out as pgqueue's clear ones
        (``needs``: the group role a refused statement calls for, see pgqueue.roles)."""
        # getconn/putconn rather than pool.connection(): on this path (every delay()) the
        # layers of context managers cost more than the pool itself. The connection is
        # in autocommit; putconn rolls back one left in a transaction.
        pool, conn = self._take()
        try:
            yield conn
        except db.SCHEMA_ERRORS as e:  # translate_errors, without its context manager
            raise db.missing_schema(self.schema, e) from None
        except psycopg.errors.InsufficientPrivilege as e:
            raise roles.missing_grant(self.schema, e, needs, conn.info.user) from None
        finally:
            self._parking.give(pool, conn)

    def run_pooled(self, query: bytes | Statement, params: dict[str, Any] | None,
                   needs: str = "producer") -> list[Any]:
        """Run one statement on a pooled connection and return its rows: what
        ``connection()`` does around one ``db.run``, without the context managers (the
        producer's single send takes this way, once per ``delay()``). A
        :class:`~pgqueue.db.connection.Statement` runs through libpq, its rows unread."""
        pool, conn = self._take()
        try:
            if isinstance(query, Statement):
                query.run(conn, params or {})
                return []
            cur = db.run(conn, query, params)
            return cur.fetchall() if cur.description else []
        except db.SCHEMA_ERRORS as e:
            raise db.missing_schema(self.schema, e) from None
        except psycopg.errors.InsufficientPrivilege as e:
            raise roles.missing_grant(self.schema, e, needs, conn.info.user) from None
        finally:
            self._parking.give(pool, conn)

    def _take(self) -> tuple[ConnectionPool[psycopg.Connection[Any]], psycopg.Connection[Any]]:
        """A pooled connection (a parked one if any, see db.Parking) and its pool; give
        it back with ``self._parking.give(pool, conn)``."""
        pool = self._get_pool()
        try:
            return pool, self._parking.take(pool)
        except PoolTimeout:
            db.connect(self.dsn).close()  # raises DatabaseUnavailable with the real cause
            raise

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pool = self._pool
        if pool is not None and self._pool_pid == current_pid():
            return pool
        with self._lock:
            if self._pool is None or self._pool_pid != current_pid():
                dsn = self.dsn
                db.connect(dsn).close()  # fail fast with the server's own reason
                self._pool = ConnectionPool(
                    dsn,
                    min_size=1,
                    max_size=max(1, int(self.conf.producer_pool_size)),
                    kwargs={"autocommit": True,
                            "application_name": db.application_name(self.schema, "app"),
                            "prepare_threshold": db.prepare_threshold(dsn)},
                    configure=self._producer_session(dsn),
                    timeout=10,
                    name=f"pgqueue:{self.main or 'app'}",
                    open=True,
                )
                self._pool_pid = current_pid()
            return self._pool

    def _producer_session(self, dsn: str) -> Callable[[psycopg.Connection[Any]], None] | None:
        """What each new pooled connection runs first: ``producer_durable=False`` turns
        synchronous_commit off for its session (never through a pooler, where the session
        is shared with other clients)."""
        if self.conf.producer_durable:
            return None
        if db.through_pooler(dsn):
            raise ConfigurationError(
                "producer_durable=False needs a direct connection: through a transaction "
                "pooler a session setting would reach other clients; set it on the "
                "sending role instead (ALTER ROLE ... SET synchronous_commit = off)")
        return db.set_synchronous_commit_off

    def _drop_pool(self) -> None:
        """Close the pool; the next use opens one with the current settings."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == current_pid():
            self._parking.unpark()
            pool.close()

    def execute(self, name: str, params: dict[str, Any] | None = None,
                query: bytes | None = None) -> list[Any]:
        """Run the named statement on a pooled connection and return its rows.

        For statements that are safe to repeat: if the connection turns out dead (the
        server restarted while it sat in the pool), the pool is checked and it runs again.
        ``query``: a form of the statement composed for this call (``Queries.window``),
        run in its place; ``name`` still says which role a refusal calls for.
        """
        if query is None:
            query = self.queries[name]
        for attempt in (1, 2):
            try:
                return self.run_pooled(query, params, roles.needed_for(name))
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
                self.check_pool()
        raise AssertionError("unreachable")

    def check_pool(self) -> None:
        """Replace the pooled connections that died (e.g. with a server restart)."""
        with self._lock:
            pool = self._pool if self._pool_pid == current_pid() else None
        if pool is not None:
            self._parking.unpark()  # into the pool, whose check tries each
            pool.check()

    def close(self) -> None:
        """Close the connection pool, the result listener and the standby connections."""
        from pgqueue import reads

        reads.close(self)
        with self._lock:
            if self._waiter is not None:
                self._waiter.stop()
                self._waiter = None
            if self._pool is not None and self._pool_pid == current_pid():
                self._parking.unpark()
                self._pool.close()
            self._pool = None

    # -- running ------------------------------------------------------------------------
    def Worker(self, **options: Any) -> Any:  # noqa: N802 - Celery's name
        from pgqueue.worker.worker import Worker

        return Worker(self, **options)


Celery = App


def _names(value: Any, setting: str) -> list[str]:
    """The module names of the ``imports``/``include`` settings (a name or a list)."""
    names = [value] if isinstance(value, str) else list(value) \
        if isinstance(value, (list, tuple, set, frozenset)) else [value]
    if not all(isinstance(name, str) and name for name in names):
        raise ConfigurationError(f"setting {setting!r} must list module names, got {value!r}")
    return names


def shared_task(*args: Any, **options: Any) -> Any:
    """A task for reusable apps: registered with every App, present and future."""

    def create(fun: Callable[..., Any]) -> Any:
        _shared_tasks.append((fun, dict(options)))
        for app in list(_all_apps):
            app._register(fun, dict(options))
        return _SharedTaskProxy(fun, options)

    if len(args) == 1 and callable(args[0]) and not options:
        return create(args[0])
    return create


class _SharedTaskProxy:
    """Resolves to the task of the current app at each use."""

    def __init__(self, fun: Callable[..., Any], options: dict[str, Any]) -> None:
        self._fun = fun
        self._name = options.get("name")

    def _task(self) -> BaseTask:
        app = current_app()
        name = self._name or app.gen_task_name(self._fun.__name__, self._fun.__module__)
        return app.tasks[name]

    def __getattr__(self, item: str) -> Any:
        return getattr(self._task(), item)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._task()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<@shared_task: {self._fun.__module__}.{self._fun.__name__}>"


# Installed Django apps whose tasks.py is not tasks: pgqueue's own is the django.tasks backend.
_NOT_TASK_PACKAGES = frozenset({"pgqueue.contrib.django"})


def _django_configured() -> bool:
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        return True
    settings = getattr(sys.modules.get("django.conf"), "settings", None)
    return bool(settings is not None and settings.configured)


def _django_packages() -> list[str]:
    """The installed apps of Django, setting Django up first when nothing has (a worker
    started with ``-A proj`` rather than ``manage.py``)."""
    import django
    from django.apps import apps

    if not apps.apps_ready:
        django.setup()
    return [config.name for config in apps.get_app_configs()
            if config.name not in _NOT_TASK_PACKAGES]


def _discover(packages: Packages, related_name: str) -> None:
    import importlib

    if packages is None:
        names: Iterable[str] = _django_packages()
    else:
        names = packages() if callable(packages) else packages
    for package in names:
        try:
            importlib.import_module(f"{package}.{related_name}")
        except ModuleNotFoundError as e:
            if e.name == package:
                raise ConfigurationError(f"autodiscover_tasks: there is no package {package!r} "
                                         "to import tasks from") from None
            if e.name != f"{package}.{related_name}":
                raise
