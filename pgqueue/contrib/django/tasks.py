"""A backend for Django's tasks framework (``django.tasks``, Django 6.0+) on pgqueue::

    TASKS = {"default": {"BACKEND": "pgqueue.contrib.django.tasks.PgQueueBackend"}}

``@task`` functions then run on ``manage.py pgqueue worker``, with ``priority``,
``queue_name``, ``run_after``, results (``get_result``), retries and LISTEN/NOTIFY wake-ups.
On Django 5.2 the same works with the ``django-tasks`` backport (``django_tasks``).

Priorities: Django's -100..100 (higher first) map onto pgqueue's 0..9 (higher first) as
``(priority + 100) * 9 // 200``: -100 -> 0, 0 (the default) -> 4, 100 -> 9. Order between
two Django priorities is kept, though neighbours may share a pgqueue level.

``OPTIONS``: ``MAX_RETRIES`` (default 0: a task that raises is FAILED, as in Django's own
backends), ``RETRY_DELAY`` seconds before the first retry (default 1), doubled at each
following one up to ``RETRY_DELAY_MAX`` (default 600).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from pgqueue import limits
from pgqueue.contrib.django.conf import get_app
from pgqueue.result import exception_class
from pgqueue.task import Task as PgQueueTask

logger = logging.getLogger("pgqueue.django.tasks")

_framework: Any
try:
    _framework = importlib.import_module("django.tasks")
except ImportError:  # Django before 6.0: the backport, when installed
    try:
        _framework = importlib.import_module("django_tasks")
    except ImportError:
        raise ImportError(
            "PgQueueBackend needs Django's tasks framework: Django 6.0 or later, or "
            "`pip install django-tasks` (the backport) on Django 5.2"
        ) from None

_base: Any = importlib.import_module(f"{_framework.__name__}.base")
_backends_base: Any = importlib.import_module(f"{_framework.__name__}.backends.base")
_exceptions: Any = importlib.import_module(f"{_framework.__name__}.exceptions")
_signals: Any = importlib.import_module(f"{_framework.__name__}.signals")

TaskResult = _base.TaskResult
TaskResultStatus = _base.TaskResultStatus
TaskContext = _base.TaskContext
TaskError = _base.TaskError
TaskResultDoesNotExist = _exceptions.TaskResultDoesNotExist

OPTION_DEFAULTS: dict[str, float] = {"MAX_RETRIES": 0, "RETRY_DELAY": 1.0,
                                     "RETRY_DELAY_MAX": 600.0}

# Django Task objects by module path, for workers and get_result to find them by name.
_known: dict[str, Any] = {}


def pgqueue_priority(priority: int) -> int:
    """Django's -100..100 onto pgqueue's 0..9, keeping the order."""
    return max(0, min(9, (int(priority) + 100) * 9 // 200))


class PgQueueBackend(_backends_base.BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = {str(k).upper(): v for k, v in self.options.items()}
        for key in options:
            if key not in OPTION_DEFAULTS:
                close = difflib.get_close_matches(key, OPTION_DEFAULTS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ImproperlyConfigured(
                    f"TASKS[{alias!r}]['OPTIONS']: unknown option {key!r}{hint}")
        settings = {**OPTION_DEFAULTS, **options}
        self.max_retries = int(settings["MAX_RETRIES"])
        self.retry_delay = float(settings["RETRY_DELAY"])
        self.retry_delay_max = float(settings["RETRY_DELAY_MAX"])

    # -- enqueueing -----------------------------------------------------------------------
    def validate_task(self, task: Any) -> None:
        super().validate_task(task)
        self._register(task)

    def _register(self, task: Any) -> PgQueueTask:
        """The pgqueue task that runs ``task`` on workers, named by its module path."""
        name = task.module_path
        _known.setdefault(name, task)
        app = get_app()
        existing = app.tasks.get(name)
        if existing is not None:
            return existing
        backend = self

        def run_django_task(self: PgQueueTask, *args: Any, **kwargs: Any) -> Any:
            return backend._run(self, name, list(args), kwargs)

        run_django_task.__module__ = task.func.__module__
        run_django_task.__qualname__ = task.func.__qualname__
        return app.task(name=name, bind=True, max_retries=self.max_retries)(run_django_task)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        result = self._task_result(task, None, TaskResultStatus.READY, list(args), dict(kwargs))
        options: dict[str, Any] = {"queue": task.queue_name,
                                   "priority": pgqueue_priority(task.priority)}
        if task.run_after is not None:
            run_after = task.run_after
            if timezone.is_naive(run_after):
                run_after = timezone.make_aware(run_after)
            options["eta"] = run_after
        app = get_app()
        sent = app.send_task(task.module_path, result.args, result.kwargs,
                             _task=self._register(task), **options)
        object.__setattr__(result, "id", sent.id)
        object.__setattr__(result, "enqueued_at", timezone.now())
        _signals.task_enqueued.send(type(self), task_result=result)
        return result

    # -- results --------------------------------------------------------------------------
    def get_result(self, result_id: str) -> Any:
        from pgqueue.contrib.django.models import Job, Result

        row_id = limits.row_id(str(result_id))  # any string is a task id
        if row_id is None:  # one that no job can have
            raise TaskResultDoesNotExist(result_id)
        # Live first: a job moves to results in one statement, so one missing from jobs
        # is in results by the time the second read runs.
        live = Job.objects.filter(pk=row_id).first()
        final = None if live is not None else Result.objects.filter(pk=row_id).first()
        row = final or live
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        task = self._task_named(row.task, result_id)
        if final is not None:
            return self._final_result(task, final)
        assert live is not None
        status = TaskResultStatus.RUNNING if live.state == "started" else TaskResultStatus.READY
        result = self._task_result(task, live.known_id, status, live.args, live.kwargs,
                                   worker=live.worker, attempts=live.attempt)
        object.__setattr__(result, "enqueued_at", live.created_at)
        object.__setattr__(result, "started_at", live.started_at)
        object.__setattr__(result, "last_attempted_at", live.started_at)
        return result

    def _final_result(self, task: Any, row: Any) -> Any:
        status = (TaskResultStatus.SUCCESSFUL if row.state == "SUCCESS"
                  else TaskResultStatus.FAILED)
        result = self._task_result(task, row.known_id, status, row.args, row.kwargs,
                                   worker=row.worker, attempts=row.attempt)
        for name, value in (("enqueued_at", row.created_at), ("started_at", row.started_at),
                            ("last_attempted_at", row.started_at),
                            ("finished_at", row.finished_at)):
            object.__setattr__(result, name, value)
        if row.state == "SUCCESS":
            object.__setattr__(result, "_return_value", row.result)
        else:
            result.errors.append(_task_error(row))
        return result

    def _task_named(self, name: str, result_id: str) -> Any:
        """The Task a row names, among those this process knows; never imports: a row is
        data, and importing the module it names would run that module's code here."""
        task = _known.get(name) or _imported_task(name)
        if task is None:
            raise TaskResultDoesNotExist(
                f"{result_id} is a job of {name!r}, which is not a django.tasks task known "
                "to this process (import the module that defines it first)")
        return task

    def _task_result(self, task: Any, result_id: str | None, status: Any, args: list[Any],
                     kwargs: dict[str, Any], worker: str | None = None,
                     attempts: int = 0) -> Any:
        return TaskResult(
            task=task, id=result_id or "", status=status, enqueued_at=None, started_at=None,
            finished_at=None, last_attempted_at=None, args=args, kwargs=kwargs,
            backend=self.alias, errors=[],
            # Only the last worker is known; it stands for every attempt.
            worker_ids=[worker or "?"] * attempts,
        )

    # -- on the worker --------------------------------------------------------------------
    def _run(self, job: PgQueueTask, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        task = _known[name]
        request = job.request
        result = self._task_result(task, str(request.id), TaskResultStatus.RUNNING, args,
                                   kwargs, worker=request.worker, attempts=request.attempt)
        now = timezone.now()
        object.__setattr__(result, "started_at", now)
        object.__setattr__(result, "last_attempted_at", now)
        _signals.task_started.send(type(self), task_result=result)
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
        except Exception as exc:
            if request.retries < self.max_retries:
                delay = min(self.retry_delay_max, self.retry_delay * 2 ** request.retries)
                raise job.retry(exc=exc, countdown=delay) from exc
            object.__setattr__(result, "status", TaskResultStatus.FAILED)
            object.__setattr__(result, "finished_at", timezone.now())
            result.errors.append(TaskError(exception_class_path=_class_path(type(exc)),
                                           traceback=""))
            _signals.task_finished.send(type(self), task_result=result)
            raise
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "finished_at", timezone.now())
        object.__setattr__(result, "_return_value", value)
        _signals.task_finished.send(type(self), task_result=result)
        return value

    def check(self, **kwargs: Any) -> list[Any]:
        from django.apps import apps
        from django.core import checks

        errors = list(super().check(**kwargs))
        if not apps.is_installed("pgqueue.contrib.django"):
            errors.append(checks.Error(
                "PgQueueBackend needs the pgqueue app: add 'pgqueue.contrib.django' to "
                "INSTALLED_APPS", id="pgqueue.E001"))
        return errors


def _imported_task(name: str) -> Any:
    """The Task at ``name`` (``module.qualname``) if its module is imported already."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        found: Any = sys.modules.get(".".join(parts[:cut]))
        if found is None:
            continue
        for attr in parts[cut:]:  # static: a module's __getattr__ may import
            found = inspect.getattr_static(found, attr, None)
        if isinstance(found, _base.Task):
            return found
    return None


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _task_error(row: Any) -> Any:
    if row.state == "REVOKED":
        path = "pgqueue.exceptions.TaskRevokedError"
    elif isinstance(row.result, dict) and row.result.get("exc_type"):
        # Django's TaskError.exception_class imports the path it holds: name only a class
        # this process has imported, never a module named by the row.
        module, name = str(row.result.get("exc_module") or "builtins"), str(row.result["exc_type"])
        known = exception_class(module, name)
        path = _class_path(known) if known else "pgqueue.exceptions.TaskError"
    else:
        path = "builtins.Exception"
    return TaskError(exception_class_path=path, traceback=row.traceback or row.error or "")
