"""Cooperative abort, with Celery's names (``celery.contrib.abortable``).

A task based on :class:`AbortableTask` checks ``self.is_aborted()`` now and then and
returns early when asked. ``AbortableAsyncResult(id).abort()`` asks: a job that has not
started ends REVOKED at once; a running one is flagged, and its worker, woken by NOTIFY,
reads the control request and tells the task within milliseconds. The flag is on the
job's row: a job aborted while its worker died is rescued, and the worker that claims it
next sees ``is_aborted()`` True from the start (Celery's reads the result backend, so a
redelivered task sees it too); it ends REVOKED as below.
An aborted job ends **REVOKED** (error "aborted by request"), whatever it returns or
raises, and is never retried. pgqueue has no separate ABORTED state: REVOKED is the one
final state that means "stopped on request", so ``ready()`` and ``get()`` behave.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pgqueue import limits
from pgqueue.control import RETENTION
from pgqueue.result import AsyncResult
from pgqueue.task import Task
from pgqueue.worker import aborts

ABORTED = "REVOKED"


class AbortableTask(Task):
    """Base for tasks that can be asked to stop: ``@app.task(bind=True, base=AbortableTask)``."""

    abortable: ClassVar[bool] = True

    def is_aborted(self, **kwargs: Any) -> bool:
        """True once an abort was requested for the running job."""
        job_id = self.request.id
        if job_id is None or self.request.called_directly:
            return False
        row_id = limits.row_id(job_id)  # request.id is the task id as sent: any string
        return row_id is not None and aborts.is_aborted(self.app, row_id)

    def AsyncResult(self, task_id: str) -> AbortableAsyncResult:  # noqa: N802 - Celery's name
        return AbortableAsyncResult(task_id, app=self.app, task_name=self.name)


class AbortableAsyncResult(AsyncResult):
    """An ``AsyncResult`` that can ask its job to abort."""

    def is_aborted(self) -> bool:
        return self.state == ABORTED and "abort" in str(self.result)

    def abort(self) -> None:
        """Ask the job to stop: revoked if it has not started, flagged if it runs."""
        row_id = self.row_id
        if row_id is None:  # not a task id: no job to abort
            return
        channels = self.app.queries.channels()
        self.app.execute("job_revoke", {"ids": [row_id], "reason": "aborted by request",
                                        "flag_started": False, **channels})
        self.app.execute("job_abort", {"ids": [row_id], "retention": RETENTION, **channels})
