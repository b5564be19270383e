"""``-P asyncio``: ``async def`` tasks run as coroutines on one event loop.

``size`` coroutines run at once. A plain function task runs in a thread of the loop's
default executor so it cannot block the loop. A hard ``time_limit`` cancels the
coroutine and the job ends FAILURE with :class:`TimeLimitExceeded`; ``soft_time_limit``
is not supported here (cancellation is the only interruption asyncio has), so it is
applied as the hard limit when no hard limit is set.

``revoke(terminate=True)`` cancels the job's coroutine and the job ends REVOKED. One
that comes after the claim but before the coroutine began (the worker holds the job,
the claim loop has not handed it over, or the loop has not run it yet) is kept and
applied when it begins: it then never runs. A plain function task cannot be cancelled
in its thread: its job ends REVOKED and its slot is free at once, but the function runs
on to its end (what it returns is dropped), holding one of the loop's executor threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future

from pgqueue.worker.execution import ClaimedJob, crashed, execute_async, safe_repr
from pgqueue.worker.pools.base import JobContext, Slots, terminated_outcome, time_limit_outcome

logger = logging.getLogger("pgqueue.worker")

#: Seconds a terminate asked for a job this pool has not begun is kept: the gap it
#: covers is the claim loop's, from the claim to the hand-over (as Holdings' EARLY_TTL).
TERMINATE_FIRST_TTL = 30.0


class AsyncioPool(Slots):
    def __init__(self, size: int, context: JobContext) -> None:
        super().__init__(size)
        self.context = context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="pgqueue-asyncio",
                                        daemon=True)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Ids asked to terminate -> when: running coroutines (cancelled), or jobs not
        #: begun yet (never run). Kept only TERMINATE_FIRST_TTL for jobs that ended.
        self._terminated: dict[str, float] = {}
        self._lock = threading.Lock()
        self._closing = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: ClaimedJob) -> None:
        self.take()
        future: Future[None] = asyncio.run_coroutine_threadsafe(self._run(job), self._loop)
        future.add_done_callback(lambda _: self.give())

    def _serve(self) -> None:
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

    async def _run(self, job: ClaimedJob) -> None:
        try:
            await self._run_job(job)
        except BaseException as exc:  # nothing a job does may stop the loop
            self.context.finished(crashed(job, exc))

    async def _run_job(self, job: ClaimedJob) -> None:
        current = asyncio.current_task()
        assert current is not None
        with self._lock:
            first = self._terminated.pop(job.id, None) is not None
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
            with self._lock:
                if self._terminated.pop(job.id, None) is None:
                    raise
            outcome = terminated_outcome(self.context, job)
        finally:
            with self._lock:
                self._tasks.pop(job.id, None)
        ctx.finished(outcome)

    def take_unstarted(self) -> list[ClaimedJob]:
        return []  # every submitted job starts at once

    def terminate(self, job_id: str) -> bool:
        """Stop ``job_id``, which the worker holds: cancel its coroutine, or, when it has
        not begun, make sure it never runs."""
        now = time.monotonic()
        with self._lock:
            if len(self._terminated) > len(self._tasks):  # some are of jobs that ended
                self._terminated = {i: at for i, at in self._terminated.items()
                                    if i in self._tasks or now - at < TERMINATE_FIRST_TTL}
            task = self._tasks.get(job_id)
            self._terminated[job_id] = now
        if task is not None:
            self._loop.call_soon_threadsafe(task.cancel)
        return True

    def shutdown(self) -> None:
        self._closing = True
        self._loop.call_soon_threadsafe(self._loop.stop)
