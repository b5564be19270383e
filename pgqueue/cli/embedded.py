"""``pgqueue db …`` (the embedded PostgreSQL server) and ``pgqueue demo``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from pgqueue.cli.base import LOG_LEVELS, dsn_option, main, setup_logging
from pgqueue.db import embedded

dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar=embedded.DIR_ENV,
    help=f"Directory of the embedded server. Default: ${embedded.DIR_ENV}, else "
         f"{embedded.ROOT_DIR}/<environment>-<hash> as root (one per Python environment), "
         "else the user data directory (~/.local/share/pgqueue on Linux).")

NOT_RUNNING = 3  # like `pg_ctl status`


@main.group()
def db() -> None:
    """The embedded PostgreSQL server that pgqueue runs when no DSN is configured.

    Needs `pip install 'pgqueue-tasks[embedded]'`. One server per user (per Python
    environment as root), shared by the pgqueue processes of the environment that started
    it; it keeps running until `pgqueue db stop`.
    """


@db.command()
@dir_option
def status(data_dir: Path | None) -> None:
    """Show where the server keeps its data and whether it runs (exit code 3 if not)."""
    info = embedded.status(data_dir)
    click.echo(f"directory: {info.directory}")
    if not info.installed:
        click.echo(f"state:     unavailable ({embedded.NOT_INSTALLED})")
        sys.exit(NOT_RUNNING)
    click.echo(f"postgres:  {info.postgres_version} (from {embedded.PACKAGE})")
    if info.running:
        click.echo(f"state:     running (pid {info.pid})")
        click.echo(f"url:       {info.url}")
        if info.started_by:
            click.echo(f"python:    {info.started_by} (started it; other environments "
                       "refuse to share it)")
    else:
        click.echo("state:     " + ("stopped" if info.initialized else "not created yet"))
    for variable in ("PGQUEUE_DSN", "DATABASE_URL"):
        if os.environ.get(variable):
            click.echo(f"note:      {variable} is set, so pgqueue uses that server, not this one")
            break
    if not info.running:
        sys.exit(NOT_RUNNING)


@db.command()
@dir_option
def start(data_dir: Path | None) -> None:
    """Start the server (created on first use) and migrate pgqueue's default schema."""
    dsn = embedded.ensure_server(data_dir)
    click.echo(f"embedded PostgreSQL is running in {embedded.status(data_dir).directory}")
    click.echo(f"url: {dsn}")


@db.command()
@dir_option
def stop(data_dir: Path | None) -> None:
    """Stop the server. Workers using it lose their connection until it starts again."""
    click.echo("stopped" if embedded.stop(data_dir) else "not running")


@db.command()
@dir_option
def url(data_dir: Path | None) -> None:
    """Print the server's URL for psql, Django or SQLAlchemy (starts it if needed)."""
    click.echo(embedded.ensure_server(data_dir))


@db.command()
@dir_option
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def destroy(data_dir: Path | None, yes: bool) -> None:
    """Stop the server and delete all its data (every job and result in it)."""
    where = embedded.status(data_dir).directory
    if not yes and not click.confirm(f"Delete the embedded server's data in {where}?"):
        raise click.Abort()
    click.echo("deleted" if embedded.destroy(data_dir) else "nothing to delete")


@main.command()
@dsn_option
@click.option("--keep", is_flag=True,
              help="Keep the demo's schema and jobs afterwards (its name is printed), and the "
                   "embedded server running when the demo started it.")
@click.option("--timeout", type=click.FloatRange(min=1), default=25, show_default=True,
              metavar="SECONDS", help="Give up when the jobs have not all finished by then.")
@click.option("-l", "--loglevel", default="WARNING", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False),
              help="Logging level of the worker running the demo's jobs.")
def demo(dsn: str | None, keep: bool, timeout: float, loglevel: str) -> None:
    """Run example jobs end to end and show them live (exit code 0 if all went as designed).

    Uses the configured database (--dsn, $PGQUEUE_DSN, $DATABASE_URL), else the embedded
    server. Works in a schema of its own that is dropped at the end. An embedded server it
    started is stopped at the end unless --keep, or another client uses it.
    """
    setup_logging(loglevel)
    from pgqueue.cli.demo import run_demo

    if not run_demo(dsn=dsn, keep=keep, timeout=timeout):
        sys.exit(1)
