"""``-P asyncio``: ``async def`` tasks run as coroutines on one event loop.

``size`` coroutines run at once. A plain function task runs in a thread of the loop's
default executor so it cannot block the loop. A hard ``time_limit`` cancels the
coroutine and the job ends FAILURE with :class:`TimeLimitExceeded`; ``soft_time_limit``
is not supported here (cancellation is the only interruption asyncio has), so it is
applied as the hard limit when no hard limit is set.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future

from pgqueue.worker.execution import ClaimedJob, crashed, execute_async, safe_repr
from pgqueue.worker.pools.base import JobContext, Slots, terminated_outcome, time_limit_outcome

logger = logging.getLogger("pgqueue.worker")


class AsyncioPool(Slots):
    def __init__(self, size: int, context: JobContext) -> None:
        super().__init__(size)
        self.context = context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="pgqueue-asyncio",
                                        daemon=True)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._terminated: set[str] = set()
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
        self._tasks[job.id] = current
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
            if job.id not in self._terminated:
                raise
            self._terminated.discard(job.id)
            outcome = terminated_outcome(self.context, job)
        finally:
            self._tasks.pop(job.id, None)
        ctx.finished(outcome)

    def take_unstarted(self) -> list[ClaimedJob]:
        return []  # every submitted job starts at once

    def terminate(self, job_id: str) -> bool:
        task = self._tasks.get(job_id)
        if task is None:
            return False
        self._terminated.add(job_id)
        self._loop.call_soon_threadsafe(task.cancel)
        return True

    def shutdown(self) -> None:
        self._closing = True
        self._loop.call_soon_threadsafe(self._loop.stop)
