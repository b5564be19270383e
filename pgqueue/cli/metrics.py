"""``pgqueue metrics``: what the database knows, as Prometheus metrics.

Queue depth by state, the oldest waiting job's age, live workers, schedules' next fires
and recent results, read with four short statements at each scrape (``--once`` prints
them). A worker's own counters are served by ``pgqueue worker --metrics-port``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from pgqueue.cli.base import app_option, dsn_option, main, make_app, schema_option
from pgqueue.worker.metrics import prometheus, serve

if TYPE_CHECKING:
    from pgqueue.app import App

logger = logging.getLogger("pgqueue.metrics")


class DatabaseCollector:
    """A ``prometheus_client`` collector reading the tables at each collect. When the
    database cannot be read, ``pgqueue_database_up`` is 0 and the rest is left out (with
    ``strict``, the error is raised instead: ``--once`` exits with one line)."""

    def __init__(self, app: App, window: float, strict: bool = False) -> None:
        self.app = app
        self.window = window
        self.strict = strict
        self.core = prometheus().core

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        gauge = self.core.GaugeMetricFamily
        try:
            families = self._read()
        except Exception as error:  # a scrape reports the outage instead of failing
            if self.strict:
                raise
            logger.warning("metrics: cannot read the database: %s", str(error).splitlines()[0])
            yield gauge("pgqueue_database_up", "Whether the last read of the tables worked",
                        value=0)
            return
        yield gauge("pgqueue_database_up", "Whether the last read of the tables worked",
                    value=1)
        yield from families

    def _read(self) -> list[Any]:
        gauge = self.core.GaugeMetricFamily
        app = self.app
        depth = gauge("pgqueue_queue_jobs", "Jobs in the jobs table by queue and state "
                      "(queued, scheduled, retry, started)", labels=["queue", "state"])
        oldest = gauge("pgqueue_queue_oldest_job_age_seconds", "Age of the oldest queued "
                       "job per queue, from when it could run", labels=["queue"])
        for queue, state, count, age in app.execute("job_metrics"):
            depth.add_metric([queue, state], count)
            if state == "queued":
                oldest.add_metric([queue], age)
        results = gauge("pgqueue_results_recent_jobs",
                        f"Jobs finished within the last {self.window:g} seconds, by queue, "
                        "task and state", labels=["queue", "task", "state"])
        for queue, task, state, count in app.execute("result_metrics",
                                                     {"window": self.window}):
            results.add_metric([queue, task, state], count)
        alive, dead, slots = app.execute(
            "worker_metrics", {"alive_within": float(app.conf.worker_lease_seconds)})[0]
        workers = gauge("pgqueue_workers", "Registered workers, alive (heartbeat within "
                        "worker_lease_seconds) or not", labels=["state"])
        workers.add_metric(["alive"], alive)
        workers.add_metric(["dead"], dead)
        capacity = gauge("pgqueue_workers_pool_slots", "Pool slots of the live workers",
                         value=slots)
        fires = gauge("pgqueue_schedule_next_fire_timestamp_seconds",
                      "When each enabled schedule fires next (Unix time)",
                      labels=["schedule", "task"])
        for name, task, at in app.execute("schedule_metrics"):
            fires.add_metric([name, task], at)
        return [depth, oldest, results, workers, capacity, fires]


def registry(app: App, window: float, strict: bool = False) -> Any:
    """A registry holding only the database's metrics."""
    client = prometheus()
    reg = client.CollectorRegistry(auto_describe=False)
    reg.register(DatabaseCollector(app, window, strict))
    return reg


@main.command()
@app_option
@dsn_option
@schema_option
@click.option("--port", type=click.IntRange(min=1, max=65535), metavar="PORT",
              help="Serve http://HOST:PORT/metrics until stopped (SIGINT/SIGTERM).")
@click.option("--host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="The address --port listens on (0.0.0.0: every interface).")
@click.option("--once", is_flag=True,
              help="Print the metrics once, in Prometheus' text format, and exit.")
@click.option("--window", type=click.FloatRange(min=1, max=86400 * 30), default=300.0,
              show_default=True, metavar="SECONDS",
              help="pgqueue_results_recent_jobs counts results finished this recently.")
def metrics(app_path: str | None, dsn: str | None, schema: str | None, port: int | None,
            host: str, once: bool, window: float) -> None:
    """Prometheus metrics of what the database knows: queue depth by state, the oldest
    queued job's age, live workers, schedules' next fires, recent results by state.

    Needs the metrics extra (pip install "pgqueue-tasks[metrics]"). A worker's own
    counters and run times: pgqueue worker --metrics-port.
    """
    client = prometheus()
    if once == (port is not None):
        raise click.UsageError("give either --once (print) or --port (serve)")
    app = make_app(app_path, dsn, schema)
    reg = registry(app, window, strict=once)
    if once:
        click.echo(client.generate_latest(reg).decode(), nl=False)
        return
    assert port is not None
    server = serve(reg, host, port)
    click.echo(f"Serving metrics on http://{host}:{port}/metrics", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
