"""``-P asyncio``: ``async def`` tasks run as coroutines on one event loop; plain
function tasks run in threads of the pool's own.

``size`` jobs run at once, coroutines and threads together. A plain function must not
block the loop, so it runs as in ``-P threads`` (which this pool extends): the pool
starts ``size`` threads of its own with the first plain task (a worker that never gets
one starts none), a job counts as started when its thread begins it, and time limits
and ``revoke(terminate=True)`` act as in :mod:`.threads`: the terminate is raised in the
thread, and one that the task swallows costs it its thread after ``TERMINATE_GRACE``
(abandoned, counted, at most ``size`` at once) while a new thread takes the slot.

For a coroutine, as for a thread, the pool records the outcome first and then
interrupts: ``revoke(terminate=True)`` records the job REVOKED, and a hard
``time_limit`` FAILURE with :class:`TimeLimitExceeded`, sending ``task_failure`` from a
thread of the pool, not the loop (``soft_time_limit`` is not
supported there: cancellation is the only interruption asyncio has, so it is applied as
the hard limit when no hard limit is set); then its coroutine is cancelled. Whatever the
coroutine does from then on (it may catch the ``CancelledError`` and return) is logged
at INFO and dropped. One that is still running ``TERMINATE_GRACE`` after the cancel is
abandoned as a thread is: its slot takes the next job, it runs on (counted with the
abandoned threads, at most ``size`` at once) and gives nothing back when it ends.

A terminate that comes after the claim but before the job began (the worker holds the
job, the claim loop has not handed it over, or the loop or a thread has not begun it) is
kept and applied when it begins: it then never runs.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pgqueue import states
from pgqueue.canvas.builtins import builtin_task
from pgqueue.db.connection import Dedicated, is_connection_error
from pgqueue.worker.execution import (
    ClaimedJob,
    Outcome,
    crashed,
    execute_async,
    is_async,
    safe_repr,
)
from pgqueue.worker.pools.base import (
    JobContext,
    QueuePool,
    Slots,
    ended_after_stop,
    log_time_limit,
    settle_run,
    terminated_outcome,
    time_limit_outcome,
    time_limit_reached,
)
from pgqueue.worker.pools.threads import TERMINATE_GRACE, ThreadPool

if TYPE_CHECKING:
    from pgqueue.app import App

logger = logging.getLogger("pgqueue.worker")


class StartedConnections:
    """The connections the STARTED writes of coroutines run on: their own, at most
    ``most`` (opened as needed), not the app's producer pool, which tasks that send or
    ``get()`` a lot keep busy (measured: 19 coroutines sending from threads held those
    writes back 2 to 3 times their round trip). Not durable, as the claim that they
    follow is not: a crash loses no more than a progress mark."""

    def __init__(self, app: App, most: int) -> None:
        self.app = app
        self.most = max(1, most)
        self._free: queue.SimpleQueue[Dedicated] = queue.SimpleQueue()
        self._opened: list[Dedicated] = []
        self._lock = threading.Lock()

    def execute(self, name: str, params: dict[str, Any]) -> list[Any]:
        """Run statement ``name`` (``App.execute``'s shape) on one of these connections;
        once more on a new connection when the one taken turns out dead."""
        db = self._take()
        try:
            try:
                return db.execute(self.app.queries[name], params)
            except Exception as error:
                if not is_connection_error(error):
                    raise
                db.close()
                return db.execute(self.app.queries[name], params)
        finally:
            self._free.put(db)

    def _take(self) -> Dedicated:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._opened) < self.most:
                db = Dedicated(self.app.dsn, self.app.schema, "started", durable=False)
                self._opened.append(db)
                return db
        return self._free.get()

    def close(self) -> None:
        """Close them all; call when no write runs any more."""
        with self._lock:
            opened = list(self._opened)
        for db in opened:
            db.close()


class AsyncioPool(ThreadPool):
    thread_name = "pgqueue-asyncio-thread"

    def __init__(self, size: int, context: JobContext) -> None:
        super().__init__(size, context)
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._serve_loop, name="pgqueue-asyncio",
                                             daemon=True)
        #: Running coroutines: job id -> (its task, the job).
        self._tasks: dict[str, tuple[asyncio.Task[None], ClaimedJob]] = {}
        #: Coroutines still running whose slot went to the next job (see _stop_coroutine).
        self._abandoned_tasks: set[asyncio.Task[None]] = set()
        self._threads_started = False
        #: STARTED writes of coroutines (see execute_async): as many at once as slots,
        #: never behind what the tasks run in the loop's default executor, on
        #: connections of their own (never behind the tasks' own sends).
        self._writer = ThreadPoolExecutor(size, thread_name_prefix="pgqueue-asyncio-started")
        self._writer_size = size
        self._started_on = StartedConnections(context.app,
                                              int(context.app.conf.producer_pool_size))

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
        self.take()  # given back when the coroutine ends (or is abandoned)
        asyncio.run_coroutine_threadsafe(self._run_coroutine(job), self._loop)

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
        self._loop.call_soon_threadsafe(self._resize_writer, size)

    def _resize_writer(self, size: int) -> None:
        """On the loop, where coroutines hand it their writes: none goes to the old one
        after its shutdown (the writes it has go on)."""
        if size == self._writer_size:
            return
        old, self._writer = self._writer, ThreadPoolExecutor(
            size, thread_name_prefix="pgqueue-asyncio-started")
        self._writer_size = size
        old.shutdown(wait=False)

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
            if job.stopped is not None:
                ended_after_stop(job, "with an error")
            else:
                self.context.finished(crashed(job, exc))
        finally:
            self._coroutine_ended(job)

    async def _run_job(self, job: ClaimedJob) -> None:
        current = asyncio.current_task()
        assert current is not None
        with self._running_lock:
            first = self._terminate_first.take(job.id)
            if not first:
                self._tasks[job.id] = (current, job)
        if first:
            self.context.finished(terminated_outcome(self.context, job))
            return
        hard, soft = self.context.limits(job)
        limit = hard or soft
        ctx = self.context
        timer = None if limit is None else self._loop.call_later(
            limit, self._coroutine_overrun, job, current, limit)
        outcome: Outcome | None = None
        cancelled: asyncio.CancelledError | None = None
        try:
            ctx.started(job)
            outcome = await execute_async(ctx.app, job, ctx.worker_id, ctx.hostname,
                                          self._writer, self._started_on.execute)
        except asyncio.CancelledError as exc:
            cancelled = exc
        finally:
            if timer is not None:
                timer.cancel()
            with self._running_lock:  # from here, job.stopped is final
                self._tasks.pop(job.id, None)
        if job.stopped is not None:  # terminate() or the time limit recorded the outcome
            if outcome is not None:
                ended_after_stop(job, outcome.state)
            return
        if cancelled is not None:
            raise cancelled
        assert outcome is not None
        settle_run(ctx, job, outcome)

    def terminate(self, job_id: str) -> bool:
        """Stop ``job_id``, which the worker holds: record it REVOKED and cancel its
        coroutine, stop its thread as ``-P threads`` does, or, when it has not begun,
        make sure it never runs."""
        with self._running_lock:  # the coroutine's begin and end take it too: no gap
            entry = self._tasks.get(job_id)
            if entry is not None:
                if entry[1].stopped is not None:
                    return True  # stopped already (terminated, or past its time limit)
                entry[1].stopped = states.REVOKED
            elif job_id not in self._running:
                self._terminate_first.add(job_id)
                return True
        if entry is None:
            return super().terminate(job_id)  # in a thread
        task, job = entry
        self.context.finished(terminated_outcome(self.context, job))
        self._loop.call_soon_threadsafe(self._stop_coroutine, job, task,
                                        "did not stop when terminated")
        return True

    def _coroutine_overrun(self, job: ClaimedJob, task: asyncio.Task[None], limit: float
                           ) -> None:
        """At the hard time limit (on the loop): record the failure, then cancel."""
        with self._running_lock:
            entry = self._tasks.get(job.id)
            if entry is None or entry[0] is not task or job.stopped is not None:
                return
            job.stopped = states.FAILURE
        self.context.finished(time_limit_outcome(job, limit))
        log_time_limit(job, limit, "recorded FAILURE, cancelling it")
        self._stop_coroutine(job, task, f"exceeded its time limit ({limit:.1f}s)")
        # Off the loop: a receiver (an error tracker's network call) must not hold it.
        try:
            self._writer.submit(time_limit_reached, self.context, job, limit)
        except RuntimeError:  # shut down: the worker is stopping
            time_limit_reached(self.context, job, limit)

    def _stop_coroutine(self, job: ClaimedJob, task: asyncio.Task[None], why: str) -> None:
        """Cancel a coroutine whose outcome is recorded; if it is still running after
        ``TERMINATE_GRACE`` (it swallowed the cancel), give its slot to the next job."""
        task.cancel()
        self._loop.call_later(TERMINATE_GRACE, self._abandon_coroutine, job, task, why)

    def _abandon_coroutine(self, job: ClaimedJob, task: asyncio.Task[None], why: str
                           ) -> None:
        if task.done():
            return
        with self._cond:
            if task in self._abandoned_tasks or self._closing:
                return
            if self.abandoned >= self.max_abandoned:
                logger.error("Task %s[%s] %s; %d abandoned already (the most this pool "
                             "abandons): this slot stays busy until the task returns",
                             job.display, job.id, why, self.abandoned)
                return
            self._abandoned_tasks.add(task)
            self.abandoned += 1
            self._busy -= 1
            self._cond.notify_all()
            abandoned = self.abandoned
        logger.warning("Task %s[%s] %s: its coroutine is abandoned and may still be running "
                       "(%d abandoned now); its slot takes the next job", job.display,
                       job.id, why, abandoned)

    def _coroutine_ended(self, job: ClaimedJob) -> None:
        """Give the slot back, unless it was given when the coroutine was abandoned."""
        task = asyncio.current_task()
        with self._cond:
            if task not in self._abandoned_tasks:
                self._busy -= 1
                self._cond.notify_all()
                return
            self._abandoned_tasks.discard(task)
            self.abandoned -= 1
            abandoned = self.abandoned
        logger.warning("Task %s[%s]: its abandoned coroutine returned (%d abandoned now)",
                       job.display, job.id, abandoned)

    def shutdown(self) -> None:
        super().shutdown()
        self._loop.call_soon_threadsafe(self._close_writer)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _close_writer(self) -> None:
        """On the loop (no write is handed to the writer after this): its connections
        are closed once the writes it has are done, in a thread, not to hold the loop."""
        writer = self._writer

        def close() -> None:
            writer.shutdown(wait=True)
            self._started_on.close()

        threading.Thread(target=close, name="pgqueue-asyncio-started-close",
                         daemon=True).start()
