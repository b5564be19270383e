"""The worker: claim as many jobs as there are free slots, run them, record the outcomes.

Threads of one worker process:
  main         the claim loop below (and, with ``-P solo``, the jobs themselves)
  listener     LISTEN for new jobs; wakes the claim loop
  executors    the pool's threads running jobs
  finisher     batches outcomes into fenced finish/retry statements
  maintenance  heartbeat, leader election, and (when leader) stager, rescuer, pruner
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from pgqueue import __version__, db, limits, signals
from pgqueue.control import ControlInbox
from pgqueue.db import roles
from pgqueue.db.connection import Dedicated, is_connection_error
from pgqueue.db.listener import Listener
from pgqueue.events import EventDispatcher, short, worker_fields
from pgqueue.exceptions import ConfigurationError, MalformedJob, NotRegistered
from pgqueue.services.maintenance import Maintenance, leader_services
from pgqueue.utils import hostname, uuid7
from pgqueue.worker import aborts
from pgqueue.worker.autoscale import Autoscaler
from pgqueue.worker.claiming import ClaimCursors
from pgqueue.worker.execution import SNOOZED, ClaimedJob, Outcome, failure, make_request
from pgqueue.worker.finisher import Finisher
from pgqueue.worker.gates import Gates
from pgqueue.worker.heartbeat import Heartbeat
from pgqueue.worker.holdings import Holdings
from pgqueue.worker.pools.base import (
    JobContext,
    Pool,
    discarded_outcome,
    terminated_outcome,
)
from pgqueue.worker.pools.solo import SoloPool
from pgqueue.worker.pools.threads import ThreadPool
from pgqueue.worker.remote import RemoteControl
from pgqueue.worker.sizing import ShortJobSizing

if TYPE_CHECKING:
    from pgqueue.app import App
    from pgqueue.services.scheduler import Scheduler

logger = logging.getLogger("pgqueue.worker")

POOLS = ("threads", "processes", "solo", "asyncio")
# Celery's pool names: one is ours under another name, two have an alternative here.
POOL_ALIASES = {"prefork": "processes"}
POOLS_REFUSED = {
    "gevent": "use -P asyncio for async def tasks, or -P threads for blocking I/O",
    "eventlet": "use -P asyncio for async def tasks, or -P threads for blocking I/O",
}


def pool_name(name: str) -> str:
    """The pool ``name`` means (Celery's ``prefork`` is ``processes``); refuses the rest."""
    name = POOL_ALIASES.get(name.lower(), name.lower())
    if name in POOLS_REFUSED:
        raise ConfigurationError(f"pool {name!r} is not supported: {POOLS_REFUSED[name]}")
    if name not in POOLS:
        raise ConfigurationError(
            f"unknown pool {name!r}; choose one of {', '.join(POOLS)} (or prefork)")
    return name


def default_concurrency(pool: str) -> int:
    """Slots when none are configured. A claim takes at most the free slots, so for the
    short I/O-bound jobs threads are for, more slots mean fewer statements per job
    (measured: 10 -> 100 threads drained 2.8x faster); an idle thread costs little."""
    cpus = os.cpu_count() or 1
    if pool == "processes":
        return cpus
    if pool == "asyncio":
        return 100
    return max(32, cpus * 8)


#: The most slots a default ``-P threads`` worker grows to for short jobs
#: (:mod:`pgqueue.worker.sizing`).
SHORT_JOB_CONCURRENCY = 100


class Worker:
    """``pgqueue worker``, usable in-process too: ``Worker(app).run()`` until ``stop()``."""

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        pool: str | None = None,
        name: str | None = None,
        lease: float | None = None,
        poll_interval: float | None = None,
        shutdown_timeout: float | None = None,
        beat: bool = False,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        install_signal_handlers: bool = True,
        autoscale: tuple[int, int] | None = None,
        task_events: bool | None = None,
    ) -> None:
        conf = app.conf
        self.app = app
        self.hostname = hostname()
        self.nodename = name or f"pgqueue@{self.hostname}"
        options = {"queues": queues, "concurrency": concurrency, "pool": pool, "name": name,
                   "lease": lease, "poll_interval": poll_interval, "beat": beat,
                   "shutdown_timeout": shutdown_timeout, "time_limit": time_limit,
                   "soft_time_limit": soft_time_limit,
                   "max_tasks_per_child": max_tasks_per_child,
                   "max_memory_per_child": max_memory_per_child}
        # First, as in Celery: a receiver may still change the settings read below.
        signals.celeryd_init.send_contained(sender=self.nodename, instance=self, conf=conf,
                                            options=options)
        self.queues = [limits.name("queue", q) for q in queues or [conf.task_default_queue]]
        self.pool_name = pool_name(str(conf.worker_pool if pool is None else pool))
        self.concurrency = 1 if self.pool_name == "solo" else int(
            concurrency or conf.worker_concurrency or default_concurrency(self.pool_name))
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.autoscale = self._autoscale_bounds(autoscale)
        if self.autoscale is not None:
            self.concurrency = self.autoscale[1]  # from MIN up, as in Celery
        #: Grows a default threads pool for short jobs; None once a size was chosen.
        self.sizing: ShortJobSizing | None = None
        if (self.pool_name == "threads" and not concurrency and not conf.worker_concurrency
                and self.autoscale is None and self.concurrency < SHORT_JOB_CONCURRENCY):
            self.sizing = ShortJobSizing(self.concurrency, SHORT_JOB_CONCURRENCY)
        # Unique per process: every write of this worker is fenced on it.
        self.worker_id = f"{self.nodename}:{os.getpid()}:{uuid7().hex[-6:]}"
        self.lease = limits.seconds("lease", lease or conf.worker_lease_seconds)
        self.poll_interval = float(poll_interval or conf.worker_poll_interval)
        self.shutdown_timeout = float(
            conf.worker_shutdown_timeout if shutdown_timeout is None else shutdown_timeout)
        self.beat = beat
        self.install_signal_handlers = install_signal_handlers
        self.claim_batch = int(conf.worker_claim_batch_size)
        self.time_limit = time_limit or conf.task_time_limit
        self.soft_time_limit = soft_time_limit or conf.task_soft_time_limit
        for what, value in (("time_limit", self.time_limit),
                            ("soft_time_limit", self.soft_time_limit)):
            if value:
                limits.seconds(what, value)
        if self.time_limit:
            # a claim must outlive the longest run this worker allows
            self.lease = max(self.lease, float(self.time_limit) + 5)
        self.max_tasks_per_child = max_tasks_per_child or conf.worker_max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child or conf.worker_max_memory_per_child
        recycle = ("max_tasks_per_child" if self.max_tasks_per_child else
                   "max_memory_per_child" if self.max_memory_per_child else None)
        if recycle and self.pool_name != "processes":
            raise ConfigurationError(
                f"{recycle} needs -P processes: only -P processes recycles children (this "
                f"worker's pool is {self.pool_name})")

        self.holdings = Holdings()
        self.cursors = ClaimCursors(self.queues, rescan_interval=self.poll_interval)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.started = threading.Event()
        self.stopped = threading.Event()
        self._signals = 0
        self._stop_signal: str | None = None
        self.scheduler: Scheduler | None = None
        self.processed = 0
        self.remote = RemoteControl(self)
        self.autoscaler: Autoscaler | None = None
        self._new_queues: list[str] | None = None  # set by remote control, for the claim loop
        self._started_at: dict[str, float] = {}  # job id -> when it started (events)
        self.events = EventDispatcher(app, self.nodename, heartbeat=self._event_counts)
        self._events_on = bool(conf.worker_send_task_events if task_events is None
                               else task_events)
        #: Told of every job claimed, started and finished, in this process whatever the
        #: pool (``claimed(job)``, ``started(job)``, ``finished(outcome)``): the metrics.
        self.observers: list[Any] = []

    # -- lifecycle ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the worker to shut down gracefully (what SIGTERM does)."""
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        """Run until :meth:`stop` or a signal; returns after a graceful shutdown."""
        app = self.app
        signals.worker_init.send_contained(sender=self)
        app.finalize()
        queries = app.queries
        dsn = app.dsn
        self.claimer = Dedicated(dsn, app.schema, "claimer", durable=False,
                                 indexed_plans=True)
        roles.check_worker(self.claimer, app.schema, self.beat)  # one line if a grant lacks
        services = self._services()  # checks beat schedules before the worker registers
        self._register()
        self.gates = Gates(queries, self.queues)
        self.gates.sync(self.claimer, app)  # the code's limits; those set at run time win
        self.holdings.on_forget = self._outcomes_written
        self.finisher = Finisher(dsn, queries, self.worker_id, self.holdings,
                                 int(app.conf.worker_finish_batch_size))
        self.pool = self._make_pool()
        self.listener = Listener(app.listen_dsn, [queries.jobs_channel, queries.control_channel],
                                 self._on_notify, self._on_listen, name="pgqueue-listener",
                                 application_name=db.application_name(app.schema, "listener"),
                                 poll_interval=self.poll_interval)
        aborts.track_locally()
        self.control = ControlInbox([self.worker_id, self.nodename])
        self.control.read(app)  # from now on: requests before this are not ours
        self.maintenance = Maintenance(app, self.worker_id, services)
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        signals.celeryd_after_setup.send_contained(sender=self.nodename, instance=self,
                                                   conf=app.conf)
        for part in (self.finisher, self.pool, self.listener, self.maintenance):
            part.start()
        if self._events_on:
            self.events.enable()
        if self.scheduler is not None:
            signals.beat_init.send_contained(sender=self.scheduler)
            signals.beat_embedded_init.send_contained(sender=self.scheduler)
        self._banner()
        signals.worker_ready.send_contained(sender=self)
        self.started.set()
        try:
            self._claim_loop()
        finally:
            self._shutdown()
            self.stopped.set()

    def _services(self) -> list[Any]:
        services: list[Any] = [
            Heartbeat(self.app.queries, self.worker_id, self.holdings, self.lease,
                      liveness=float(self.app.conf.worker_lease_seconds)),
            *leader_services(self.app),
        ]
        if self.autoscale is not None:
            self.autoscaler = Autoscaler(self, *self.autoscale)
            services.append(self.autoscaler)
        if self.beat:
            from pgqueue.services.scheduler import Scheduler

            self.scheduler = Scheduler(self.app)
            services.append(self.scheduler)
        return services

    def _make_pool(self) -> Pool:
        context = JobContext(self.app, self.worker_id, self.nodename, self._job_started,
                             self._job_finished, self.time_limit, self.soft_time_limit)
        self._job_context = context
        if self.pool_name == "solo":
            return SoloPool(context)
        if self.pool_name == "processes":
            from pgqueue.worker.pools.processes import ProcessPool

            return ProcessPool(self.concurrency, context, self.max_tasks_per_child,
                               self.max_memory_per_child)
        if self.pool_name == "asyncio":
            from pgqueue.worker.pools.aio import AsyncioPool

            return AsyncioPool(self.concurrency, context)
        return ThreadPool(self.concurrency, context)

    def _register(self) -> None:
        self.claimer.execute(self.app.queries["worker_register"], {
            "id": self.worker_id, "hostname": self.hostname, "pid": os.getpid(),
            "queues": self.queues, "concurrency": self.concurrency, "pool": self.pool_name})

    def _banner(self) -> None:
        tasks = sorted(n for n in self.app.tasks if not n.startswith("pgqueue."))
        logger.info(
            "pgqueue %s worker %s ready\n  database: %s (schema %s)\n  queues: %s\n"
            "  pool: %s, concurrency %s, lease %.0fs\n  task events: %s\n  tasks:\n%s",
            __version__, self.worker_id, db.describe(self.app.dsn), self.app.schema,
            ", ".join(self.queues), self.pool_name,
            f"{self.concurrency} (autoscale {self.autoscale[1]} to {self.autoscale[0]})"
            if self.autoscale else self.concurrency, self.lease,
            "on" if self.events.wanted else "off (-E turns them on)",
            "\n".join(f"    . {t}" for t in tasks) or "    (none)")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        self._stop_signal = signal.Signals(signum).name
        if self._signals > 1:
            logger.warning("Second signal: exiting now; held jobs return after their lease")
            os._exit(1)
        logger.warning("%s received: stopping (waiting up to %.0fs for running jobs; "
                       "send it again to exit now)", signal.Signals(signum).name,
                       self.shutdown_timeout)
        self.stop()

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == self.app.queries.control_channel:
            self.gates.changed()  # limits are read again at the next claim
            self._wake.set()
            self._apply_control()  # the payload is only a wake-up: anyone can NOTIFY
        elif payload in self.queues:
            self.gates.notified(payload)
            self._wake.set()

    def _on_listen(self) -> None:
        """After every (re)connect: claim at once, and apply control requests written
        while the listener was away."""
        self.gates.changed()
        self._wake.set()
        self._apply_control()

    def _outcomes_written(self, job_ids: list[str]) -> None:
        """A keyed job's slot is free once its outcome is written: claim again now."""
        if self.gates.finished(job_ids):
            self._wake.set()

    def _apply_control(self) -> None:
        if self.stopped.is_set():  # the listener may outlive the worker by a moment
            return
        try:
            requests = self.control.read(self.app)
        except Exception as error:
            logger.warning("could not read control requests: %s", error)
            return
        for request in requests:
            if request.action not in ("abort", "terminate"):
                self.remote.handle(request)  # the remote-control commands; replies
                continue
            # A job claimed but not registered yet gets it when registered (_claim).
            held = self.holdings.held_or_remember(request.action, request.job_ids)
            if request.action == "abort" and held:
                logger.info("Abort requested for %s", ", ".join(held))
                aborts.mark(held)
            elif request.action == "terminate":
                for job_id in held:
                    logger.info("Terminating job %s on request", job_id)
                    self.pool.terminate(job_id)

    # -- the loop ---------------------------------------------------------------------------
    def _claim_loop(self) -> None:
        more_likely = True  # claim once at start: jobs may be waiting already
        while not self._stopping.is_set():
            if self.sizing is not None:
                self._follow_run_times(self.sizing)
            free = self.pool.free_slots()
            if free <= 0:
                self.pool.wait_for_slot(self.poll_interval)
                continue
            if not more_likely:
                self._wake.wait(self.gates.wait_time(self.poll_interval))
                if self._stopping.is_set():
                    break
                free = self.pool.free_slots()  # the pool may have shrunk meanwhile
                if free <= 0:
                    continue
            self._wake.clear()
            jobs = self._claim(min(free, self.claim_batch))
            for job in jobs:
                if job.fault is None:
                    self._received(job)
                    self.pool.submit(job)
                else:
                    self._reject(job)
            more_likely = len(jobs) == min(free, self.claim_batch) and bool(jobs)

    def _follow_run_times(self, sizing: ShortJobSizing) -> None:
        size = sizing.wanted(self.pool.size, self.cursors.in_backlog)
        if size is not None:
            logger.info("Pool %s to %d threads: jobs take %.1f ms on average",
                        "grows" if size > self.pool.size else "shrinks", size,
                        (sizing.average or 0) * 1000)
            self.remote.resize(size)

    def _claim(self, limit: int) -> list[ClaimedJob]:
        if self._new_queues is not None:  # add_consumer / cancel_consumer
            self.cursors = ClaimCursors(self._new_queues, rescan_interval=self.poll_interval)
            self.gates.set_queues(self._new_queues)
            self._new_queues = None
        try:
            jobs = self.gates.claim(self.claimer, self.cursors, limit, self.worker_id,
                                    self.lease)
        except Exception as error:
            if not is_connection_error(error):
                logger.exception("claim failed")
            self._stopping.wait(self.claimer.failed(error))
            return []
        stopped = []
        for job in jobs:
            early = self.holdings.add(job.id, job.attempt)
            # The abort flag is on the row: set before a rescue, or while claimed here.
            if "abort" in early or job.options.get("aborted") is True:
                aborts.mark([job.id])
            for observer in self.observers:
                observer.claimed(job)
            if "terminate" in early:
                logger.info("Terminating job %s on request", job.id)
                stopped.append(job)
            elif job.options.get("revoked") is True:  # revoked while it ran before
                stopped.append(job)
        for job in stopped:
            self._job_finished(discarded_outcome(self._job_context, job)
                               if job.options.get("revoked") is True
                               else terminated_outcome(self._job_context, job))
        return [job for job in jobs if job.id not in {s.id for s in stopped}] if stopped else jobs

    def _received(self, job: ClaimedJob) -> None:
        """``task_received``, and ``task_unknown`` for a task this worker does not know
        (the pool fails the job with ``NotRegistered``)."""
        if self.events.enabled:
            self._event_received(job)
        self.remote.total[job.task] += 1
        if signals.task_received.has_receivers_for(self):
            signals.task_received.send_contained(
                sender=self, request=make_request(job, self.worker_id, self.nodename))
        if signals.task_unknown.has_receivers_for(self) and job.task not in self.app.tasks:
            signals.task_unknown.send_contained(
                sender=self, name=job.task, id=job.id, message=job,
                exc=NotRegistered(f"Task of kind {job.task!r} never registered"))

    def _reject(self, job: ClaimedJob) -> None:
        """Fail, without running it, a job whose row no producer wrote."""
        error = MalformedJob(f"job {job.id} cannot run: {job.fault}")
        logger.error("Task %s[%s] rejected: %s", job.display, job.id, error)
        signals.task_rejected.send_contained(sender=self, message=job, exc=error)
        self._job_finished(failure(job, error, with_traceback=False))

    def _job_started(self, job: ClaimedJob) -> None:
        self.holdings.start(job.id)
        if self.events.enabled:
            self.events.send("task-started", uuid=job.id)
        for observer in self.observers:
            observer.started(job)

    def _job_finished(self, outcome: Outcome) -> bool:
        accepted = self.finisher.put(outcome)
        if not accepted:  # settled before (the finisher logs it): counted then, once
            return False
        aborts.discard(outcome.job_id)
        if self.sizing is not None:
            self.sizing.finished(outcome.runtime)
        self.processed += 1
        if self.events.enabled:
            self._event_finished(outcome)
        elif self._started_at:  # events turned off while it ran
            self._started_at.pop(outcome.job_id, None)
        for observer in self.observers:
            observer.finished(outcome)
        return accepted

    # -- remote control and events (pgqueue.worker.remote, pgqueue.events) -----------------
    def set_queues(self, queues: list[str]) -> None:
        """Claim from ``queues`` from the next claim on (add/cancel_consumer)."""
        self.queues = list(queues)
        self._new_queues = list(queues)
        self._wake.set()

    def _autoscale_bounds(self, autoscale: tuple[int, int] | None) -> tuple[int, int] | None:
        if autoscale is None:
            return None
        if self.pool_name not in ("threads", "processes", "asyncio"):
            raise ConfigurationError(f"--autoscale needs a pool that can grow: the "
                                     f"{self.pool_name} pool runs one job at a time")
        high, low = (int(n) for n in autoscale)
        if not 1 <= low <= high:
            raise ConfigurationError(f"autoscale=({high}, {low}): MAX must be at least MIN, "
                                     "and MIN at least 1")
        return high, low

    def _event_counts(self) -> dict[str, Any]:
        return {**worker_fields(), "active": len(self.holdings.snapshot()[0]),
                "processed": self.processed, "loadavg": list(os.getloadavg())}

    def _event_received(self, job: ClaimedJob) -> None:
        self._started_at[job.id] = time.monotonic()
        eta = job.options.get("eta")
        self.events.send(
            "task-received", uuid=job.id, name=job.task, args=short(job.args),
            kwargs=short(job.kwargs), retries=max(0, job.attempt - 1),
            eta=eta if isinstance(eta, str) else None,
            expires=job.expires_at.isoformat() if job.expires_at else None,
            root_id=job.root_id, parent_id=job.parent_id, queue=job.queue)

    def _event_finished(self, outcome: Outcome) -> None:
        runtime = outcome.runtime or time.monotonic() - self._started_at.get(
            outcome.job_id, time.monotonic())
        self._started_at.pop(outcome.job_id, None)
        if outcome.state == SNOOZED:  # put off, not ended: its next run sends its events
            return
        if outcome.state == "SUCCESS":
            self.events.send("task-succeeded", uuid=outcome.job_id,
                             result=short(outcome.result), runtime=runtime)
        elif outcome.state == "RETRY":
            self.events.send("task-retried", uuid=outcome.job_id,
                             exception=outcome.error, traceback=outcome.traceback)
        elif outcome.state == "REVOKED":
            error = outcome.error or ""
            self.events.send("task-revoked", uuid=outcome.job_id,
                             terminated="terminated" in error, signum=None,
                             expired="expire" in error)
        else:
            self.events.send("task-failed", uuid=outcome.job_id, exception=outcome.error,
                             traceback=outcome.traceback)

    # -- shutdown -------------------------------------------------------------------------
    def _shutdown(self) -> None:
        signals.worker_shutting_down.send_contained(sender=self.nodename, sig=self._stop_signal,
                                                    how="Warm", exitcode=0)
        unstarted = self.pool.take_unstarted()
        if unstarted:
            self._release([j.id for j in unstarted], [j.attempt for j in unstarted],
                          [False] * len(unstarted))
        if not self._wait_for_running_jobs():
            logger.warning("Shutdown timeout (%.0fs): handing running jobs back to the queue",
                           self.shutdown_timeout)
        self.pool.shutdown()
        self.finisher.stop()
        ids, attempts, started = self.holdings.unsettled()
        if ids:
            self._release(ids, attempts, started)
        self.listener.stop()
        self.maintenance.stop()
        self.events.stop()
        try:
            self.claimer.execute(self.app.queries["worker_deregister"], {"id": self.worker_id})
        except Exception as error:
            logger.warning("could not deregister worker: %s", error)
        self.claimer.close()
        logger.info("Worker %s stopped after %d jobs", self.worker_id, self.processed)
        signals.worker_shutdown.send_contained(sender=self)
        if self.pool.abandoned:
            logger.warning("%d abandoned tasks (threads or coroutines that went on past "
                           "their time limit or terminate) may still be running until the "
                           "process exits", self.pool.abandoned)

    def _wait_for_running_jobs(self) -> bool:
        """Wait until every held job has an outcome. A thread still running a job that
        was already settled (past its hard time limit, or terminated) is not waited for."""
        deadline = time.monotonic() + self.shutdown_timeout
        while time.monotonic() < deadline:
            if self.pool.join(0.05) or not self.holdings.unsettled()[0]:
                return True
        return not self.holdings.unsettled()[0]

    def _release(self, ids: list[str], attempts: list[int], started: list[bool]) -> None:
        deadline = time.monotonic() + 5
        while True:
            try:
                rows = self.claimer.execute(self.app.queries["job_release"], {
                    "ids": ids, "attempts": attempts, "started": started,
                    "worker": self.worker_id, **self.app.queries.channels()})
                logger.info("Handed %d claimed jobs back to the queue", len(rows))
                self.holdings.forget(list(zip(ids, attempts, strict=True)))
                return
            except Exception as error:
                delay = self.claimer.failed(error)
                if time.monotonic() + delay > deadline:
                    logger.error("could not hand back %d jobs (%s); they return when their "
                                 "leases expire", len(ids), error)
                    return
                time.sleep(delay)
