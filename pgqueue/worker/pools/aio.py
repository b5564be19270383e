"""``-P asyncio``: ``async def`` tasks run as coroutines on one event loop; plain
function tasks run in threads of the pool's own.

``size`` jobs run at once, coroutines and threads together. A plain function must not
block the loop, so it runs as in ``-P threads`` (which this pool extends): the pool
starts ``size`` threads of its own with the first plain task (a worker that never gets
one starts none), a job counts as started when its thread begins it, and time limits
and ``revoke(terminate=True)`` act as in :mod:`.threads`: the terminate is raised in the
thread, and one that the task swallows costs it its thread after ``TERMINATE_GRACE``
(abandoned, counted, at most ``size`` at once) while a new thread takes the slot.

For a coroutine, a hard ``time_limit`` cancels it and the job ends FAILURE with
:class:`TimeLimitExceeded`; ``soft_time_limit`` is not supported there (cancellation is
the only interruption asyncio has), so it is applied as the hard limit when no hard
limit is set. ``revoke(terminate=True)`` cancels the job's coroutine and the job ends
REVOKED.

A terminate that comes after the claim but before the job began (the worker holds the
job, the claim loop has not handed it over, or the loop or a thread has not begun it) is
kept and applied when it begins: it then never runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future

from pgqueue.canvas.builtins import builtin_task
from pgqueue.worker.execution import ClaimedJob, crashed, execute_async, is_async, safe_repr
from pgqueue.worker.pools.base import (
    JobContext,
    QueuePool,
    Slots,
    terminated_outcome,
    time_limit_outcome,
)
from pgqueue.worker.pools.threads import ThreadPool

logger = logging.getLogger("pgqueue.worker")


class AsyncioPool(ThreadPool):
    thread_name = "pgqueue-asyncio-thread"

    def __init__(self, size: int, context: JobContext) -> None:
        super().__init__(size, context)
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._serve_loop, name="pgqueue-asyncio",
                                             daemon=True)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Ids of running coroutines that terminate() cancelled (a cancel of the pool's).
        self._cancelled: set[str] = set()
        self._threads_started = False

    def start(self) -> None:
        self._loop_thread.start()

    def submit(self, job: ClaimedJob) -> None:
        if self._runs_in_a_thread(job):
            with self._cond:
                if not self._threads_started:
                    self._threads_started = True
                    for _ in range(self.size):
                        self._add_executor()
            super().submit(job)
            return
        self.take()
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._run_coroutine(job),
                                                                self._loop)
        future.add_done_callback(lambda _: self.give())

    def _runs_in_a_thread(self, job: ClaimedJob) -> bool:
        """A plain function task; an unknown task's coroutine only records its failure."""
        app = self.context.app
        task = app.tasks.get(job.task) or builtin_task(app, job.task)
        return task is not None and not is_async(task)

    def resize(self, size: int) -> None:
        with self._cond:
            if self._threads_started:
                QueuePool.resize(self, size)
            else:  # the first plain task starts the threads, as many as the size then
                Slots.resize(self, size)

    def _serve_loop(self) -> None:
        """Run the loop until shutdown. A task can make it return (``loop.stop()``) or let
        an exception through it (a callback raising ``SystemExit``): it runs on, with the
        coroutines it holds."""
        while True:
            try:
                self._loop.run_forever()
            except BaseException as exc:
                logger.error("%s escaped the event loop of the asyncio pool; it runs on",
                             safe_repr(exc), exc_info=exc)
                if self._loop.is_closed():
                    return
                continue
            if self._closing:
                return
            logger.error("A task stopped the event loop of the asyncio pool; it runs on")

    async def _run_coroutine(self, job: ClaimedJob) -> None:
        try:
            await self._run_job(job)
        except BaseException as exc:  # nothing a job does may stop the loop
            self.context.finished(crashed(job, exc))

    async def _run_job(self, job: ClaimedJob) -> None:
        current = asyncio.current_task()
        assert current is not None
        with self._running_lock:
            first = self._terminate_first.take(job.id)
            if not first:
                self._tasks[job.id] = current
        if first:
            self.context.finished(terminated_outcome(self.context, job))
            return
        hard, soft = self.context.limits(job)
        limit = hard or soft
        ctx = self.context
        try:
            ctx.started(job)
            outcome = await asyncio.wait_for(
                execute_async(ctx.app, job, ctx.worker_id, ctx.hostname), limit)
        except asyncio.TimeoutError:
            assert limit is not None
            outcome = time_limit_outcome(job, limit)
        except asyncio.CancelledError:
            with self._running_lock:
                if job.id not in self._cancelled:
                    raise
            outcome = terminated_outcome(self.context, job)
        finally:
            with self._running_lock:
                self._tasks.pop(job.id, None)
                self._cancelled.discard(job.id)
        ctx.finished(outcome)

    def terminate(self, job_id: str) -> bool:
        """Stop ``job_id``, which the worker holds: cancel its coroutine, stop its thread
        as ``-P threads`` does, or, when it has not begun, make sure it never runs."""
        with self._running_lock:  # the coroutine's begin takes it too: no gap between
            task = self._tasks.get(job_id)
            if task is not None:
                self._cancelled.add(job_id)
            elif job_id not in self._running:
                self._terminate_first.add(job_id)
                return True
        if task is None:
            return super().terminate(job_id)  # in a thread
        self._loop.call_soon_threadsafe(task.cancel)
        return True

    def shutdown(self) -> None:
        super().shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
