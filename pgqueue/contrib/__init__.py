"""Optional integrations: Django (``pgqueue.contrib.django``), Flask (``pgqueue.contrib.flask``)
and Celery-compatible extras such as ``pgqueue.contrib.abortable``.

Nothing here is imported by pgqueue itself; each integration needs its framework installed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any


def wrap_runs(cls: type, around: Callable[[type], AbstractContextManager[Any]]) -> None:
    """Make the ``run`` that a task class defines execute inside ``around(cls)``.

    For a framework's Task base, from its ``__init_subclass__``: wrapping ``run`` (not
    ``__call__``) keeps the framework's context (Flask's app context, Django's connection
    hygiene) around the task body even under a user's own ``__call__`` override.
    ``async def`` tasks are left as they are.
    """
    run = cls.__dict__.get("run")
    fun = run.__func__ if isinstance(run, staticmethod) else run
    if not callable(fun) or inspect.iscoroutinefunction(fun):
        return

    @functools.wraps(fun)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with around(cls):
            return fun(*args, **kwargs)

    cls.run = staticmethod(wrapped) if isinstance(run, staticmethod) else wrapped  # type: ignore[attr-defined]
