"""A worker's own Prometheus metrics: ``pgqueue worker --metrics-port N``.

An observer of the worker's claim, start and finish callbacks. Those run in the worker's
main process whatever the pool (under ``-P processes`` the children run the tasks and the
parent receives their outcomes), so each job is counted once, where its outcome arrives.
Every metric lives in this worker's own registry, served on its own port; Prometheus
adds the ``instance`` label.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pgqueue import states
from pgqueue.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pgqueue.worker.execution import ClaimedJob, Outcome
    from pgqueue.worker.worker import Worker

INSTALL_HINT = 'pip install "pgqueue-tasks[metrics]"'

# Seconds: from a millisecond job to a long batch job; waits reach further (a backlog).
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900,
               3600)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600,
                86400)

# Which counter an outcome's state adds to (SNOOZED jobs run again, like RETRY, without
# spending an attempt: counted as neither).
_OUTCOMES = {states.SUCCESS: "succeeded", states.FAILURE: "failed", states.RETRY: "retried",
             states.REVOKED: "revoked"}


def prometheus() -> Any:
    """The ``prometheus_client`` module, or one clear line naming the extra."""
    try:
        import prometheus_client
        import prometheus_client.core  # the metric families of custom collectors
    except ImportError:
        raise ConfigurationError(
            f"metrics need the prometheus_client package: {INSTALL_HINT}") from None
    return prometheus_client


def serve(registry: Any, host: str, port: int) -> Any:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread; returns the
    server (``shutdown()`` stops it). A port that cannot be bound is one clear line."""
    client = prometheus()
    try:
        server, _thread = client.start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
    return server


class WorkerMetrics:
    """Counters and histograms of one worker; ``attach(worker)`` hooks them in."""

    def __init__(self) -> None:
        client = prometheus()
        self.registry = client.CollectorRegistry(auto_describe=True)
        counter, histogram = client.Counter, client.Histogram
        labels = ("task", "queue")
        self.jobs: dict[str, Any] = {
            what: counter(f"pgqueue_jobs_{what}", f"Jobs {what} by this worker",
                          labels, registry=self.registry)
            for what in ("started", "succeeded", "failed", "retried", "revoked")}
        self.run_seconds = histogram(
            "pgqueue_job_run_seconds", "Run time of a job's attempt, by task", ("task",),
            buckets=RUN_BUCKETS, registry=self.registry)
        self.wait_seconds = histogram(
            "pgqueue_job_wait_seconds",
            "Time from when a job could run (enqueued, or its eta/retry time) to its start",
            ("queue",), buckets=WAIT_BUCKETS, registry=self.registry)
        self._held: dict[str, tuple[str, str]] = {}  # job id -> (task, queue)
        self._running: dict[str, float] = {}  # job id -> monotonic start
        self._lock = threading.Lock()
        self._worker: Worker | None = None
        self._children: dict[tuple[str, str, str], Any] = {}  # .labels() costs a lock
        self.registry.register(_PoolCollector(self, client))

    def attach(self, worker: Worker) -> WorkerMetrics:
        self._worker = worker
        worker.observers.append(self)
        return self

    # -- the worker's callbacks ---------------------------------------------------------
    def claimed(self, job: ClaimedJob) -> None:
        with self._lock:
            self._held[job.id] = (job.task, job.queue)

    def started(self, job: ClaimedJob) -> None:
        with self._lock:
            self._held[job.id] = (job.task, job.queue)
            self._running[job.id] = time.monotonic()
        self._child("started", job.task, job.queue).inc()
        waited = time.time() - max(job.run_at, job.created_at).timestamp()
        self._child("wait", "", job.queue).observe(max(waited, 0.0))

    def finished(self, outcome: Outcome) -> None:
        with self._lock:
            task, queue = self._held.pop(outcome.job_id, ("", ""))
            began = self._running.pop(outcome.job_id, None)
        what = _OUTCOMES.get(outcome.state)
        if what is not None and task:
            self._child(what, task, queue).inc()
        if began is not None:
            runtime = outcome.runtime or time.monotonic() - began
            self._child("run", task, "").observe(runtime)

    def _child(self, what: str, task: str, queue: str) -> Any:
        """The labelled series of one metric (``run``, ``wait``, or a counter's name)."""
        key = (what, task, queue)
        child = self._children.get(key)
        if child is None:
            child = (self.run_seconds.labels(task) if what == "run" else
                     self.wait_seconds.labels(queue) if what == "wait" else
                     self.jobs[what].labels(task, queue))
            self._children[key] = child
        return child

    def busy(self) -> int:
        with self._lock:
            return len(self._running)

    def capacity(self) -> int:
        return self._worker.concurrency if self._worker is not None else 0


class _PoolCollector:
    """Read at each scrape: the pool's slots and the worker's identity."""

    def __init__(self, metrics: WorkerMetrics, client: Any) -> None:
        self.metrics = metrics
        self.core = client.core

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        gauge = self.core.GaugeMetricFamily
        yield gauge("pgqueue_worker_pool_slots", "Slots of this worker's pool (concurrency)",
                    value=self.metrics.capacity())
        yield gauge("pgqueue_worker_pool_busy_slots", "Slots running a job now",
                    value=self.metrics.busy())
        worker = self.metrics._worker
        if worker is not None:
            info = self.core.InfoMetricFamily(
                "pgqueue_worker", "This worker: its id, node name and pool",
                value={"worker_id": worker.worker_id, "nodename": worker.nodename,
                       "pool": worker.pool_name})
            yield info
