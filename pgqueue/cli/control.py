"""``pgqueue control``: Celery's remote-control commands, as rows every worker reads."""

from __future__ import annotations

import click

from pgqueue.cli.base import app_option, dsn_option, main, make_app, schema_option


@main.group()
def control() -> None:
    """Change what every worker does, at run time (Celery's `celery control`)."""


@control.command("rate_limit")
@click.argument("task")
@click.argument("rate", metavar="RATE")
@app_option
@dsn_option
@schema_option
def rate_limit(task: str, rate: str, app_path: str | None, dsn: str | None,
               schema: str | None) -> None:
    """At most RATE starts of TASK (10/s, 100/m, 500/h; a number is per second; none
    removes the limit) on all workers together, within a second, until changed again."""
    make_app(app_path, dsn, schema).control.rate_limit(task, rate)
    click.echo(f"rate limit of {task}: {rate}")
