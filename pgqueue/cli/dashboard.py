"""``pgqueue dashboard``: the web dashboard (the ``dashboard`` extra), served by uvicorn."""

from __future__ import annotations

import sys

import click

from pgqueue.cli.base import app_option, dsn_option, main, make_app, schema_option
from pgqueue.exceptions import ConfigurationError, PermissionDenied


@main.command()
@app_option
@dsn_option
@schema_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Any other than loopback needs authentication: "
                   "PGQUEUE_DASHBOARD_TOKEN, or PGQUEUE_DASHBOARD_USER and _PASSWORD.")
@click.option("--port", default=8008, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--read-only", is_flag=True,
              help="Show everything, change nothing: actions are neither shown nor accepted "
                   "(a role granted only <schema>_reader is enough).")
@click.option("--refresh", default=3.0, show_default=True, type=click.FloatRange(0.5, 3600),
              help="Seconds between two live updates of a page.")
@click.option("-l", "--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="uvicorn's log level.")
def dashboard(app_path: str | None, dsn: str | None, schema: str | None, host: str,
              port: int, read_only: bool, refresh: float, loglevel: str) -> None:
    """Serve the web dashboard: overview, queues, workers, jobs, schedules, and actions
    (retry, revoke, delete, pause, run a schedule now) unless --read-only."""
    try:
        import uvicorn

        from pgqueue.dashboard import DashboardSettings, create_app
        from pgqueue.dashboard.data import Reader, missing_privileges
        from pgqueue.dashboard.settings import check_bind
    except ImportError as error:
        raise ConfigurationError(f"pgqueue dashboard needs the dashboard extra: pip install "
                                 f"'pgqueue-tasks[dashboard]' ({error.name} is missing)")
    settings = DashboardSettings.from_env(read_only=read_only, refresh=refresh)
    try:
        check_bind(host, settings)
    except ConfigurationError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    app = make_app(app_path, dsn, schema)
    missing = missing_privileges(Reader(app), read_only)
    if missing:
        needs = f"{app.schema}_reader" + ("" if read_only else f" and {app.schema}_control")
        raise PermissionDenied(f"the dashboard{' (read-only)' if read_only else ''} needs "
                               f"{needs}; this role lacks {', '.join(missing[:3])}"
                               + ("" if read_only else " (or run it with --read-only)"))
    click.echo(f"pgqueue dashboard on http://{host}:{port}/ (schema {app.schema}, "
               f"{'read-only' if read_only else 'actions enabled'}, "
               f"auth {'on' if settings.authenticated else 'off'})", err=True)
    uvicorn.run(create_app(app, settings), host=host, port=port, log_level=loglevel.lower(),
                server_header=False)
