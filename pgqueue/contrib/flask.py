"""Flask integration: a pgqueue App that is also a Flask extension.

::

    from pgqueue.contrib.flask import PgQueue

    queue = PgQueue()              # a pgqueue App: @queue.task, `pgqueue worker -A mod:queue`

    @queue.task(bind=True)
    def long_task(self, n): ...    # runs inside the Flask app context on the worker

    def create_app():
        app = Flask(__name__)
        app.config["PGQUEUE_DSN"] = "postgresql://..."   # or SQLALCHEMY_DATABASE_URI
        queue.init_app(app)
        return app

Configuration comes from ``app.config``: ``PGQUEUE_X`` is pgqueue's ``x`` setting
(``PGQUEUE_DSN``, ``PGQUEUE_SCHEMA``, ``PGQUEUE_TASK_DEFAULT_QUEUE``, ...). Without
``PGQUEUE_DSN``, a PostgreSQL ``SQLALCHEMY_DATABASE_URI`` is used, then the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pgqueue.app import App
from pgqueue.contrib import wrap_runs
from pgqueue.task import Task

PREFIX = "PGQUEUE_"


@contextmanager
def app_context(task_class: Any) -> Iterator[None]:
    """The Flask app context of the task's App, unless one is active already."""
    from flask import has_app_context

    flask_app = getattr(task_class.app, "flask_app", None)
    if flask_app is None or has_app_context():
        yield
        return
    with flask_app.app_context():
        yield


class FlaskTask(Task):
    """The base of tasks of a :class:`PgQueue`: they run inside the Flask app context."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        wrap_runs(cls, app_context)


class PgQueue(App):
    """A pgqueue :class:`~pgqueue.App` configured from a Flask app's ``config``."""

    Task = FlaskTask

    def __init__(self, flask_app: Any = None, main: str | None = None, **options: Any) -> None:
        super().__init__(main or "flask", **options)
        self.flask_app: Any = None
        if flask_app is not None:
            self.init_app(flask_app)

    def init_app(self, flask_app: Any) -> None:
        """Read ``PGQUEUE_*`` from ``flask_app.config``; tasks run in its app context."""
        settings = {key[len(PREFIX):].lower(): value for key, value in flask_app.config.items()
                    if key.startswith(PREFIX)}
        self.conf.update(settings)
        database_uri = flask_app.config.get("SQLALCHEMY_DATABASE_URI")
        if not self.conf.dsn and isinstance(database_uri, str) \
                and database_uri.startswith(("postgresql", "postgres")):
            self.conf.dsn = database_uri
        self.flask_app = flask_app
        flask_app.extensions["pgqueue"] = self
