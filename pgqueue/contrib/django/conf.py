"""The Django project's pgqueue App: settings from ``PGQUEUE_*``, database from ``DATABASES``."""

from __future__ import annotations

import os
import threading
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgqueue.app import App
from pgqueue.config import resolve_dsn
from pgqueue.contrib.django.connections import DjangoTask
from pgqueue.db.connection import describe
from pgqueue.exceptions import ConfigurationError

#: Settings of this integration itself; every other ``PGQUEUE_X`` setting is pgqueue's ``x``.
INTEGRATION_SETTINGS: dict[str, Any] = {
    # The Django database alias holding pgqueue's tables, and whose transactions an
    # enqueue inside ``transaction.atomic()`` joins.
    "PGQUEUE_DATABASE": "default",
    # Import ``tasks.py`` of every installed app when Django starts.
    "PGQUEUE_AUTODISCOVER": True,
    # Inside ``transaction.atomic()``, enqueue on Django's connection (commit together).
    "PGQUEUE_ENQUEUE_IN_TRANSACTION": True,
}

# DATABASES[...]["OPTIONS"] keys that Django consumes itself; the rest are libpq parameters.
_DJANGO_ONLY_OPTIONS = frozenset({
    "isolation_level", "server_side_binding", "assume_role", "pool", "cursor_factory",
    "context", "prepare_threshold",
})

_lock = threading.Lock()
_app: DjangoApp | None = None


def _fresh_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_lock_in_child)


def setting(name: str) -> Any:
    from django.conf import settings

    return getattr(settings, name, INTEGRATION_SETTINGS[name])


def pgqueue_settings() -> dict[str, Any]:
    """``PGQUEUE_X = value`` settings as pgqueue's ``{"x": value}``."""
    from django.conf import settings

    found = {}
    for name in dir(settings):
        if name.startswith("PGQUEUE_") and name not in INTEGRATION_SETTINGS:
            found[name[len("PGQUEUE_"):].lower()] = getattr(settings, name)
    return found


def dsn_for_database(alias: str) -> str:
    """A libpq connection string for ``DATABASES[alias]`` (the test database under tests)."""
    from django.db import connections

    try:
        connection = connections[alias]
    except Exception:
        raise ConfigurationError(
            f"PGQUEUE_DATABASE is {alias!r} but DATABASES has no such alias; set it to one "
            "of your PostgreSQL databases or set PGQUEUE_DSN"
        ) from None
    if connection.vendor != "postgresql":
        raise ConfigurationError(
            f"DATABASES[{alias!r}] uses {connection.settings_dict['ENGINE']}, but pgqueue "
            "needs PostgreSQL: point PGQUEUE_DATABASE at a PostgreSQL alias or set PGQUEUE_DSN"
        )
    config = connection.settings_dict
    params: dict[str, Any] = {
        "dbname": config.get("NAME"), "user": config.get("USER"),
        "password": config.get("PASSWORD"), "host": config.get("HOST"),
        "port": config.get("PORT"),
    }
    for key, value in (config.get("OPTIONS") or {}).items():
        if key not in _DJANGO_ONLY_OPTIONS and isinstance(value, (str, int)):
            params[key] = value
    return make_conninfo("", **{k: v for k, v in params.items() if v not in (None, "")})


def _database(dsn: str) -> tuple[str, str, str]:
    """Host, port and dbname: what makes two DSNs the same database (users may differ)."""
    info = conninfo_to_dict(dsn)
    return (str(info.get("host") or ""), str(info.get("port") or "5432"),
            str(info.get("dbname") or info.get("user") or ""))


class DjangoApp(App):
    """An App whose database is Django's: ``settings.PGQUEUE_DSN`` or else
    ``DATABASES[PGQUEUE_DATABASE]``.

    The DSN is read at each use, not at start-up, so it follows Django's test runner
    when it swaps in the test database. A DSN given another way (``--dsn`` or
    ``$PGQUEUE_DSN`` of ``manage.py pgqueue``) must name that same database: the Django
    side enqueues there, so a worker elsewhere would never see its jobs.
    """

    Task = DjangoTask
    database: str = "default"
    settings_dsn: str | None = None

    @property
    def dsn(self) -> str:
        if self.settings_dsn:
            django_dsn, source = resolve_dsn(self.settings_dsn), "settings.PGQUEUE_DSN"
        else:
            django_dsn = dsn_for_database(self.database)
            source = f"DATABASES[{self.database!r}]"
        if not self.conf.dsn or self.conf.dsn == self.settings_dsn:
            return django_dsn
        given = resolve_dsn(self.conf.dsn)
        if _database(given) != _database(django_dsn):
            raise ConfigurationError(
                f"the DSN given to the worker ({describe(given)}, from --dsn or $PGQUEUE_DSN) "
                f"is not the Django project's queue database ({describe(django_dsn)}, from "
                f"{source}), where Django enqueues: unset PGQUEUE_DSN, or set "
                "settings.PGQUEUE_DSN so that both sides use one database")
        return given

def in_transaction_connection(alias: str) -> Any:
    """Django's connection when the calling thread is inside ``atomic()``, else None."""
    from django.db import connections

    connection = connections[alias]
    return connection if connection.in_atomic_block else None


def get_app() -> DjangoApp:
    """The project's App, configured from settings on first use."""
    global _app
    with _lock:
        if _app is None:
            app = DjangoApp("django")
            app.database = setting("PGQUEUE_DATABASE")
            app.conf.update(pgqueue_settings())
            app.settings_dsn = app.conf.dsn
            if setting("PGQUEUE_ENQUEUE_IN_TRANSACTION"):
                alias = app.database
                app.connection_provider = lambda: in_transaction_connection(alias)
            _app = app
        return _app


def reset_app() -> None:
    """Forget the App (for tests that change settings); closes its connections."""
    global _app
    with _lock:
        if _app is not None:
            _app.close()
        _app = None
