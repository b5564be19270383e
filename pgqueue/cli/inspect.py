"""``pgqueue inspect``: Celery's inspect commands (answers per worker), and the tables
of queues and workers (``inspect queues``, the default, and ``inspect workers``)."""

from __future__ import annotations

from typing import Any

import click

from pgqueue.cli.base import main, print_rows
from pgqueue.cli.replies import Commands, app_of, destination_of, options, remote_options, show
from pgqueue.control import DEFAULT_TIMEOUT
from pgqueue.inspection import Inspect


@main.group(cls=Commands, invoke_without_command=True)
@remote_options
@click.pass_context
def inspect(ctx: click.Context, /, **given: Any) -> None:
    """Ask the workers, as `celery inspect` does: active, reserved, scheduled, revoked,
    registered, stats, active_queues, query_task, ping, report, conf. Without a command:
    the queues (jobs by state).

    Each answer is printed per worker (`-> w1@host: OK`); when no worker answers within
    the timeout, the error says so and the exit status is 69, as Celery's.
    """
    if ctx.invoked_subcommand is None:
        _queues(given)


def _inspector(ctx: click.Context, /, given: dict[str, Any]) -> tuple[Inspect, bool]:
    opts = options(ctx, given)
    app = app_of(opts)
    return (app.control.inspect(destination=destination_of(opts),
                                timeout=opts["timeout"] or DEFAULT_TIMEOUT),
            bool(opts["as_json"]))


def _simple(name: str, doc: str) -> None:
    """A subcommand that takes only the shared options."""
    @inspect.command(name=name, help=doc)
    @remote_options
    @click.pass_context
    def command(ctx: click.Context, /, **given: Any) -> None:
        inspector, as_json = _inspector(ctx, given)
        show(getattr(inspector, name)(), as_json)


for _name, _doc in (
    ("active", "The jobs each worker runs now."),
    ("reserved", "Jobs each worker has claimed and not started yet (usually none: a "
                 "worker claims only as many jobs as it has free slots)."),
    ("scheduled", "Jobs waiting for their eta or retry delay in each worker's queues."),
    ("revoked", "Ids revoked lately (the same for every worker)."),
    ("stats", "Each worker's pool, jobs received by task, uptime, resource usage."),
    ("active_queues", "The queues each worker claims from."),
    ("ping", "Ask each worker to answer pong."),
    ("report", "Versions and settings of each worker, for a bug report."),
):
    _simple(_name, _doc)


@inspect.command("registered")
@click.argument("taskinfoitems", nargs=-1)
@remote_options
@click.pass_context
def registered(ctx: click.Context, /, taskinfoitems: tuple[str, ...], **given: Any) -> None:
    """The tasks each worker knows, with the attributes TASKINFOITEMS (e.g. time_limit)."""
    inspector, as_json = _inspector(ctx, given)
    show(inspector.registered(*taskinfoitems), as_json)


@inspect.command("conf")
@click.option("--with-defaults", is_flag=True, help="Every setting, not only those changed.")
@remote_options
@click.pass_context
def conf(ctx: click.Context, /, with_defaults: bool, **given: Any) -> None:
    """Each worker's settings (secrets and passwords masked)."""
    inspector, as_json = _inspector(ctx, given)
    show(inspector.conf(with_defaults=with_defaults), as_json)


@inspect.command("query_task")
@click.argument("ids", nargs=-1, required=True)
@remote_options
@click.pass_context
def query_task(ctx: click.Context, /, ids: tuple[str, ...], **given: Any) -> None:
    """Which worker holds each of the jobs IDS, and in what state."""
    inspector, as_json = _inspector(ctx, given)
    show(inspector.query_task(*ids), as_json)


def _queues(opts: dict[str, Any]) -> None:
    app = app_of(opts)
    print_rows(["queue", "state", "jobs", "oldest_run_at"], app.execute("job_counts"),
               bool(opts["as_json"]))


@inspect.command("queues")
@remote_options
@click.pass_context
def queues(ctx: click.Context, /, **given: Any) -> None:
    """Jobs waiting and running, by queue and state (a table; the default)."""
    _queues(options(ctx, given))


@inspect.command("workers")
@remote_options
@click.pass_context
def workers(ctx: click.Context, /, **given: Any) -> None:
    """The workers' rows (a table). A worker is alive when its heartbeat was seen within
    worker_lease_seconds; the row of a dead one is deleted after four of those."""
    opts = options(ctx, given)
    app = app_of(opts)
    print_rows(["id", "hostname", "pid", "queues", "concurrency", "pool", "started_at",
                "last_seen_at", "seen_seconds_ago", "alive"],
               app.execute("worker_list",
                           {"alive_within": float(app.conf.worker_lease_seconds)}),
               bool(opts["as_json"]))
