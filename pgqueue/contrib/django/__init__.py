"""Django integration: ``INSTALLED_APPS = [..., "pgqueue.contrib.django"]``.

- configuration from ``PGQUEUE_*`` settings, the database from ``DATABASES["default"]``
  (``PGQUEUE_DATABASE`` names another alias);
- ``tasks.py`` of every installed app is imported when Django starts;
- inside ``transaction.atomic()``, ``task.delay()`` enqueues on Django's connection, so the
  job commits or rolls back with the rows the view wrote;
- ``manage.py pgqueue worker|beat|migrate|...`` and a Django migration for the schema;
- admin pages for jobs, results and schedules;
- :class:`pgqueue.contrib.django.tasks.PgQueueBackend` for Django's ``django.tasks``.

Tasks are declared with ``@app.task`` on the project's App::

    from pgqueue.contrib.django import app

    @app.task
    def send_welcome(user_id): ...

(``from pgqueue import shared_task`` works too.) See docs/django.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgqueue.contrib.django.conf import DjangoApp

    app: DjangoApp


def get_app() -> DjangoApp:
    """The project's pgqueue App, configured from Django's settings."""
    from pgqueue.contrib.django.conf import get_app as _get_app

    return _get_app()


def __getattr__(name: str) -> Any:
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
