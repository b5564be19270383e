"""Django database connections around tasks that a worker runs.

A worker thread runs many tasks. Like Django does around each request, the connections
of that thread are closed before and after each task when they are broken or older than
``CONN_MAX_AGE``, so one lost connection does not fail every later task of the thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pgqueue.contrib import wrap_runs
from pgqueue.request import inside_task
from pgqueue.task import Task


@contextmanager
def fresh_connections(task_class: Any = None) -> Iterator[None]:
    """Close stale connections around a task run by a worker (not one called directly:
    inside a view's ``atomic()`` that would close the connection mid-transaction)."""
    if not inside_task.get():
        yield
        return
    from django.db import close_old_connections

    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()


class DjangoTask(Task):
    """The base of every task of the Django project's App."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        wrap_runs(cls, fresh_connections)
