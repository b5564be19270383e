"""``pgqueue worker``: run a worker, with Celery's option shapes."""

from __future__ import annotations

import contextlib
import logging

import click

from pgqueue.celery_compat import WORKER_FLAGS
from pgqueue.cli import logs
from pgqueue.cli.base import (
    LOG_LEVELS,
    app_option,
    dsn_option,
    main,
    make_app,
    schema_option,
    setup_logging,
    split_queues,
)
from pgqueue.cli.flags import celery_flags, warn_ignored
from pgqueue.exceptions import ConfigurationError
from pgqueue.utils import hostname


@main.command()
@celery_flags(WORKER_FLAGS)
@app_option
@dsn_option
@schema_option
@click.option("-c", "--concurrency", type=click.IntRange(min=1), metavar="N",
              help="Jobs run at once. Default: worker_concurrency, else 32 threads (8 per "
                   "CPU above 4 CPUs; growing to 100 through a backlog of jobs shorter "
                   "than 10 ms), one process per CPU, or 100 coroutines.")
@click.option("-P", "--pool", metavar="[threads|processes|solo|asyncio]",
              help="threads (default): a thread per slot, for I/O-bound tasks; processes "
                   "(or Celery's prefork): a forked child per slot, for CPU-bound tasks and "
                   "hard time limits; solo: jobs run one by one in the main thread; asyncio: "
                   "async def tasks as coroutines on one event loop. gevent and eventlet "
                   "are refused: use asyncio or threads.")
@click.option("-Q", "--queues", metavar="A,B",
              help="Comma-separated queues to consume. Default: task_default_queue.")
@click.option("-n", "--hostname", "name", metavar="NAME",
              help="Node name shown in logs and the workers table; %h is replaced by the "
                   "host name, %n by its first label, %d by its domain (-n w1@%h). "
                   "Default: pgqueue@host.")
@click.option("-l", "--loglevel", default="INFO", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False),
              help="Logging level, in any case (-l info); DEBUG also prints tracebacks of "
                   "errors.")
@click.option("-I", "--include", metavar="A,B",
              help="Comma-separated modules to import at start, besides the app's "
                   "include and imports settings (-I proj.more_tasks).")
@click.option("-f", "--logfile", metavar="PATH",
              help="Append the log to PATH instead of stderr; %n, %h, %p, %i and %I are "
                   "expanded as in Celery (%n: the node name before the @).")
@click.option("--pidfile", metavar="PATH",
              help="Write the worker's pid to PATH and remove it on exit; refuses to start "
                   "while the pid in an existing PATH runs. %n, %h, %p expand as in --logfile.")
@click.option("-E", "--task-events", "--events", "task_events", is_flag=True,
              help="Send Celery's task events (task-received, -started, -succeeded...) and "
                   "worker events over NOTIFY, for `pgqueue events` and app.events; the "
                   "same as worker_send_task_events = True.")
@click.option("--autoscale", metavar="MAX,MIN",
              help="Grow the pool up to MAX slots while jobs wait, and shrink it back to "
                   "MIN when they do not (docs/operations.md); threads, processes or "
                   "asyncio pools.")
@click.option("-O", "--optimization", "optimization", type=click.Choice(["default", "fair"],
                                                       case_sensitive=False),
              help="Accepted: pgqueue always schedules fairly (a worker claims only as many "
                   "jobs as it has free slots), which is what -O fair asks of Celery.")
@click.option("-B", "--beat", is_flag=True,
              help="Also run the periodic-task scheduler (safe on many: each fire runs once).")
@click.option("--lease", type=click.FloatRange(min=1), metavar="SECONDS",
              help="How long a claim lasts without a heartbeat. Default: 30.")
@click.option("--poll-interval", type=click.FloatRange(min=0.01), metavar="SECONDS",
              help="Safety-net poll when no notification arrives. Default: 1.")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="On SIGTERM, how long running jobs may finish before they are handed "
                   "back. Default: 30.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Hard limit for tasks without their own: the job ends FAILURE "
                   "(TimeLimitExceeded); with -P processes the child is killed and replaced.")
@click.option("--soft-time-limit", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS",
              help="Soft limit for tasks without their own: SoftTimeLimitExceeded is raised "
                   "inside the task, which may catch it to clean up.")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1), metavar="N",
              help="With -P processes: replace a child after it ran N jobs. Refused with "
                   "the other pools, which have no children to replace.")
@click.option("--max-memory-per-child", type=click.IntRange(min=1), metavar="KIB",
              help="With -P processes: replace a child after a job leaves its peak resident "
                   "memory above KIB kilobytes. Refused with the other pools.")
@click.option("--metrics-port", type=click.IntRange(min=1, max=65535), metavar="PORT",
              help="Serve this worker's Prometheus metrics (jobs by outcome, run and wait "
                   "times, busy slots) on http://HOST:PORT/metrics. Needs the metrics extra.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="The address --metrics-port listens on (0.0.0.0: every interface).")
def worker(app_path: str | None, dsn: str | None, schema: str | None, concurrency: int | None,
           pool: str | None, queues: str | None, name: str | None, include: str | None,
           loglevel: str, logfile: str | None, pidfile: str | None,
           optimization: str | None, beat: bool, lease: float | None,
           poll_interval: float | None, shutdown_timeout: float | None,
           time_limit: float | None, soft_time_limit: float | None,
           max_tasks_per_child: int | None, max_memory_per_child: int | None,
           task_events: bool, autoscale: str | None, metrics_port: int | None,
           metrics_host: str) -> None:
    """Run a worker: claim jobs, run them, record their results.

    Celery's flags that pgqueue refuses stop it in one line naming the alternative; those
    meaningless here are logged once and ignored (docs/migrating-from-celery.md).
    """
    from pgqueue.cli import process

    if not app_path:
        raise ConfigurationError("pgqueue worker needs -A/--app: the module defining your "
                                 "tasks, e.g. -A proj.tasks")
    metrics = None
    if metrics_port:
        from pgqueue.worker.metrics import WorkerMetrics

        metrics = WorkerMetrics()  # without the extra: one line, before anything starts
    name = process.host_format(name) if name else None
    nodename = name or f"pgqueue@{hostname()}"
    setup_logging(loglevel, process.node_format(logfile, nodename) if logfile else None)
    warn_ignored(logging.getLogger("pgqueue.worker"))
    from pgqueue.worker import autoscale as autoscaling

    bounds = autoscaling.parse(autoscale) if autoscale else None
    app = make_app(app_path, dsn, schema)
    if include:
        given = app.conf.include
        app.conf.include = [*([given] if isinstance(given, str) else given or ()),
                            *(split_queues(include) or ())]
    logs.hand_over(loglevel, app.conf)
    from pgqueue.worker.worker import Worker

    node = Worker(app, queues=split_queues(queues), concurrency=concurrency, pool=pool, name=name,
                  lease=lease, poll_interval=poll_interval, shutdown_timeout=shutdown_timeout,
                  beat=beat, time_limit=time_limit, soft_time_limit=soft_time_limit,
                  max_tasks_per_child=max_tasks_per_child,
                  max_memory_per_child=max_memory_per_child, autoscale=bounds,
                  task_events=True if task_events else None)
    server = None
    if metrics is not None and metrics_port:
        from pgqueue.worker.metrics import serve

        server = serve(metrics.attach(node).registry, metrics_host, metrics_port)
    with process.pidfile(process.node_format(pidfile, nodename)) if pidfile \
            else contextlib.nullcontext():
        try:
            node.run()
        finally:
            if server is not None:
                server.shutdown()
