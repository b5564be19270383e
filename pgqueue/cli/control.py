"""``pgqueue control`` (Celery's remote-control commands) and ``pgqueue status``.

Each subcommand is a few lines: its arguments, and one call of ``app.control`` through
:func:`send`, which waits for the replies and prints them. Adding a command is adding
one such function (and, for a new worker command, its ``cmd_<name>`` method in
``pgqueue/worker/remote.py``).
"""

from __future__ import annotations

from typing import Any

import click

from pgqueue.cli.base import app_option, dsn_option, main, make_app, schema_option
from pgqueue.cli.replies import (
    NO_REPLIES,
    Commands,
    app_of,
    destination_of,
    flat,
    options,
    remote_options,
    show,
)
from pgqueue.control import DEFAULT_TIMEOUT


@main.group(cls=Commands)
@remote_options
def control(**given: Any) -> None:
    """Act on the workers, as `celery control` does; each worker's reply is printed
    (`-> w1@host: OK`). No reply within the timeout: exit status 69."""


def send(ctx: click.Context, /, given: dict[str, Any], command: str, *args: Any,
         **kwargs: Any) -> None:
    """Call ``app.control.<command>(*args, **kwargs)`` with the shared options, wait for
    the replies and print them."""
    opts = options(ctx, given)
    app = app_of(opts)
    method = getattr(app.control, command)
    replies = method(*args, **kwargs, destination=destination_of(opts), reply=True,
                     timeout=opts["timeout"] or DEFAULT_TIMEOUT)
    show(flat(replies), bool(opts["as_json"]), online=False)


@control.command("shutdown")
@remote_options
@click.pass_context
def shutdown(ctx: click.Context, /, **given: Any) -> None:
    """Warm shutdown: stop claiming, let running jobs finish, exit."""
    send(ctx, given, "shutdown")


@control.command("pool_restart")
@click.option("--modules", metavar="A,B", help="Modules to import (or reload) first.")
@click.option("--reload", "reload_", is_flag=True,
              help="Reload the modules already imported.")
@remote_options
@click.pass_context
def pool_restart(ctx: click.Context, /, modules: str | None, reload_: bool,
                 **given: Any) -> None:
    """Replace the child processes of -P processes workers (worker_pool_restarts)."""
    names = [m.strip() for m in modules.split(",") if m.strip()] if modules else None
    send(ctx, given, "pool_restart", modules=names, reload=reload_)


@control.command("pool_grow")
@click.argument("n", type=int, default=1)
@remote_options
@click.pass_context
def pool_grow(ctx: click.Context, /, n: int, **given: Any) -> None:
    """Add N slots to each worker's pool."""
    send(ctx, given, "pool_grow", n)


@control.command("pool_shrink")
@click.argument("n", type=int, default=1)
@remote_options
@click.pass_context
def pool_shrink(ctx: click.Context, /, n: int, **given: Any) -> None:
    """Remove N slots from each worker's pool (never below 1)."""
    send(ctx, given, "pool_shrink", n)


@control.command("autoscale")
@click.argument("max_", metavar="MAX", type=int)
@click.argument("min_", metavar="MIN", type=int)
@remote_options
@click.pass_context
def autoscale(ctx: click.Context, /, max_: int, min_: int, **given: Any) -> None:
    """New bounds for workers started with --autoscale."""
    send(ctx, given, "autoscale", max_, min_)


@control.command("time_limit")
@click.argument("task_name")
@click.argument("soft", type=float)
@click.argument("hard", type=float, required=False)
@remote_options
@click.pass_context
def time_limit(ctx: click.Context, /, task_name: str, soft: float, hard: float | None,
               **given: Any) -> None:
    """Set TASK_NAME's soft and hard time limits (seconds) in the workers."""
    send(ctx, given, "time_limit", task_name, soft, hard)


@control.command("add_consumer")
@click.argument("queue")
@remote_options
@click.pass_context
def add_consumer(ctx: click.Context, /, queue: str, **given: Any) -> None:
    """Make the workers claim from QUEUE too."""
    send(ctx, given, "add_consumer", queue)


@control.command("cancel_consumer")
@click.argument("queue")
@remote_options
@click.pass_context
def cancel_consumer(ctx: click.Context, /, queue: str, **given: Any) -> None:
    """Make the workers stop claiming from QUEUE."""
    send(ctx, given, "cancel_consumer", queue)


@control.command("enable_events")
@remote_options
@click.pass_context
def enable_events(ctx: click.Context, /, **given: Any) -> None:
    """Make the workers send task events (as worker -E)."""
    send(ctx, given, "enable_events")


@control.command("disable_events")
@remote_options
@click.pass_context
def disable_events(ctx: click.Context, /, **given: Any) -> None:
    """Stop the workers' task events."""
    send(ctx, given, "disable_events")


@control.command("revoke")
@click.argument("ids", nargs=-1, required=True)
@click.option("--terminate", is_flag=True, help="Stop the jobs that are running too.")
@click.option("-s", "--signal", metavar="TERM",
              help="Only TERM (Celery's default): the pool decides how a job stops.")
@remote_options
@click.pass_context
def revoke(ctx: click.Context, /, ids: tuple[str, ...], terminate: bool, signal: str | None,
           **given: Any) -> None:
    """Revoke the jobs IDS: those not started never run; with --terminate, running ones
    are stopped. Done in the tables: no worker needs to answer."""
    opts = options(ctx, given)
    if opts["destination"]:
        raise click.UsageError("revoke takes no --destination: every worker honours a "
                               "revoke, which is a row in the table")
    from pgqueue import limits

    app = app_of(opts)
    checked = [limits.job_id("revoke id", i) for i in ids]
    revoked = app.control.revoke(checked, terminate=terminate, signal=signal)
    others = [i for i in checked if i not in revoked]
    answer = {"revoked": revoked,
              ("terminating" if terminate else "running_or_finished"): others}
    if opts["as_json"]:
        import json

        click.echo(json.dumps(answer, indent=2))
        return
    if revoked:
        click.echo(f"revoked before start: {', '.join(revoked)}")
    if others:
        what = "terminate requested" if terminate else \
            "not revoked (running or finished; --terminate stops a running job)"
        click.echo(f"{what}: {', '.join(others)}")


@control.command("rate_limit")
@click.argument("task")
@click.argument("rate", metavar="RATE")
@app_option
@dsn_option
@schema_option
def rate_limit(task: str, rate: str, app_path: str | None, dsn: str | None,
               schema: str | None) -> None:
    """At most RATE starts of TASK (10/s, 100/m, 500/h; a number is per second; none
    removes the limit) on all workers together, within a second, until changed again.
    A row in the database, not a message: no worker needs to answer."""
    make_app(app_path, dsn, schema).control.rate_limit(task, rate)
    click.echo(f"rate limit of {task}: {rate}")


@main.command()
@remote_options
@click.pass_context
def status(ctx: click.Context, /, **given: Any) -> None:
    """The live workers, as `celery status` lists them (each is pinged)."""
    opts = options(ctx, given)
    app = app_of(opts)
    replies = app.control.ping(destination=destination_of(opts),
                               timeout=opts["timeout"] or DEFAULT_TIMEOUT)
    show(flat(replies), bool(opts["as_json"]), body=False)


__all__ = ["NO_REPLIES", "control", "status"]
