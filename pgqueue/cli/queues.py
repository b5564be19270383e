"""``pgqueue queue list|pause|resume|limit``: queues at run time, for every worker."""

from __future__ import annotations

import click

from pgqueue.cli.base import app_option, dsn_option, main, make_app, print_rows, schema_option

_LIST_COLUMNS = ["name", "state", "queued", "running", "waiting", "concurrency",
                 "rate_limit", "source", "workers"]


@main.group()
def queue() -> None:
    """List, pause, resume and limit queues; every worker sees a change within a second."""


@queue.command("list")
@app_option
@dsn_option
@schema_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(app_path: str | None, dsn: str | None, schema: str | None, as_json: bool) -> None:
    """Each queue: active or paused, jobs queued, running and waiting for their time,
    its limits (and whether the code or a command set them), live workers on it."""
    app = make_app(app_path, dsn, schema)
    states = app.control.queues()
    print_rows(_LIST_COLUMNS, [[s.as_dict()[c] for c in _LIST_COLUMNS] for s in states],
               as_json)


@queue.command()
@click.argument("name")
@app_option
@dsn_option
@schema_option
@click.option("--create", is_flag=True,
              help="Pause it even if no job, worker or limit names it yet.")
def pause(name: str, app_path: str | None, dsn: str | None, schema: str | None,
          create: bool) -> None:
    """Start no new job of queue NAME on any worker; running jobs finish."""
    make_app(app_path, dsn, schema).control.pause_queue(name, create=create)
    click.echo(f"queue {name} paused")


@queue.command()
@click.argument("name")
@app_option
@dsn_option
@schema_option
def resume(name: str, app_path: str | None, dsn: str | None, schema: str | None) -> None:
    """Start the jobs of queue NAME again."""
    make_app(app_path, dsn, schema).control.resume_queue(name)
    click.echo(f"queue {name} resumed")


def _concurrency(value: str | None) -> int | None | bool:
    if value is None:
        return False
    if value.strip().lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"must be a whole number or 'none', got {value!r}") from None


@queue.command()
@click.argument("name")
@click.argument("concurrency", required=False, metavar="[N|none]")
@click.option("--rate", metavar="N/s|N/m|N/h|none",
              help="At most this many starts per second, minute or hour, fleet-wide.")
@app_option
@dsn_option
@schema_option
@click.option("--create", is_flag=True, help="Limit it even if nothing names it yet.")
def limit(name: str, concurrency: str | None, rate: str | None, app_path: str | None,
          dsn: str | None, schema: str | None, create: bool) -> None:
    """At most N jobs of queue NAME running at once on all workers together ('none'
    removes the limit); --rate limits its starts. A limit not given stays as it is."""
    value = _concurrency(concurrency)
    if value is False and rate is None:
        raise click.UsageError("give a concurrency (N or none), --rate, or both")
    make_app(app_path, dsn, schema).control.queue_limit(
        name, value, False if rate is None else rate, create=create)
    click.echo(f"queue {name} limited" if value is not None or rate not in (None, "none")
               else f"queue {name} limit removed")
