"""Exceptions, under the names Celery users already catch."""

from __future__ import annotations

from datetime import datetime
from typing import Any


class PgQueueError(Exception):
    """Base class of pgqueue's own errors."""


class ConfigurationError(PgQueueError):
    """A setting, DSN or option is wrong; the message says which and how to fix it."""


class DatabaseUnavailable(PgQueueError):
    """The database cannot be reached (wrong DSN, server down)."""


class SchemaMissing(PgQueueError):
    """The pgqueue tables are not there: run `pgqueue migrate`."""


class PermissionDenied(PgQueueError):
    """The database role lacks a grant; the message names the group role it needs."""


class DuplicateJob(PgQueueError):
    """A job with this ``task_id`` exists and has not finished, or (``on_duplicate=
    "raise"``) a live job holds the ``unique_key``: ``job_id`` names that job."""

    def __init__(self, message: str, job_id: str | None = None,
                 unique_key: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.unique_key = unique_key


class MalformedJob(PgQueueError, ValueError):
    """A claimed job's row holds what no producer writes (plain SQL went around the
    checks): the job ends FAILURE without running."""


class NotRegistered(PgQueueError, KeyError):
    """A job names a task this process does not know."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not registered"


class Retry(PgQueueError):
    """Raised by ``Task.retry()``: the job is to run again later.

    Raise it (``raise self.retry(...)``) so that the code after it cannot run.
    """

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | datetime | None = None,
        args_override: list[Any] | None = None,
        kwargs_override: dict[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.exc = exc
        self.when = when
        self.args_override = args_override
        self.kwargs_override = kwargs_override
        super().__init__(message, exc, when)

    def humanize(self) -> str:
        if isinstance(self.when, (int, float)):
            return f"in {self.when}s"
        return f"at {self.when}"

    def __str__(self) -> str:
        if self.message:
            return self.message
        if self.exc is not None:
            return f"Retry {self.humanize()}: {self.exc!r}"
        return f"Retry {self.humanize()}"


class Snooze(PgQueueError):
    """Raised by ``Task.snooze(seconds)``: the job is to run again in ``seconds``,
    without spending an attempt (``raise self.snooze(60)``)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(seconds)

    def __str__(self) -> str:
        return f"Snooze for {self.seconds:g}s"


class MaxRetriesExceededError(PgQueueError):
    """The task asked to retry but has no retries left."""


class TaskRevokedError(PgQueueError):
    """The job was revoked (by a user, or because it expired) and did not complete."""


class TimeoutError(PgQueueError):  # noqa: A001 - Celery's name
    """``AsyncResult.get()`` waited longer than its timeout."""


class SoftTimeLimitExceeded(PgQueueError):
    """Raised inside a task when it runs past its ``soft_time_limit``."""


class TimeLimitExceeded(PgQueueError):
    """The task ran past its hard ``time_limit`` and was stopped."""


class WorkerLostError(PgQueueError):
    """The worker running the job died (its lease ran out)."""


class TaskError(PgQueueError):
    """Stands in for a task's exception whose class cannot be imported here."""

    def __init__(self, exc_type: str, message: Any) -> None:
        self.exc_type = exc_type
        super().__init__(f"{exc_type}: {message}")


class ChordError(PgQueueError):
    """A chord's body did not run: a member of its header failed or was revoked (the
    message names it, as Celery's does)."""


class ImproperlyConfigured(ConfigurationError):
    """Celery's name for a configuration error."""


class ExceptionInfo:
    """What ``on_failure``, ``on_retry`` and the failure signals get as ``einfo``: the
    exception and its traceback (the parts of Celery's ``billiard.einfo.ExceptionInfo``
    that handlers read)."""

    def __init__(self, exception: BaseException, internal: bool = False) -> None:
        self.exception = exception
        self.type = type(exception)
        self.tb = exception.__traceback__
        self.internal = internal
        self._text: str | None = None

    @property
    def traceback(self) -> str:
        """The formatted traceback, as ``traceback.format_exception`` gives it."""
        if self._text is None:
            import traceback

            try:
                self._text = "".join(traceback.format_exception(self.exception))
            except BaseException:  # a hostile __str__: still a traceback of sorts
                self._text = f"{self.type.__name__} (its traceback could not be formatted)"
        return self._text

    @property
    def exc_info(self) -> tuple[type[BaseException], BaseException, Any]:
        return self.type, self.exception, self.tb

    def __str__(self) -> str:
        return self.traceback

    def __repr__(self) -> str:
        return f"<ExceptionInfo: {self.type.__name__}>"
