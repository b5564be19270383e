"""``pgqueue migrate``: create or upgrade the schema, and the group roles."""

from __future__ import annotations

import click

from pgqueue.cli.base import (
    app_option,
    dsn_option,
    main,
    make_app,
    schema_option,
)
from pgqueue.config import resolve_dsn
from pgqueue.db import migrations, roles
from pgqueue.exceptions import PgQueueError


@main.command()
@app_option
@dsn_option
@schema_option
@click.option("--sql", "print_sql", is_flag=True,
              help="Print the SQL that would run instead of running it (for Alembic, Flyway "
                   "or Django migrations). Without a database: every migration.")
@click.option("--roles", "print_roles", is_flag=True,
              help="Print the SQL that creates the schema's group roles (<schema>_producer, "
                   "_worker, _control, _reader) and grants them their privileges, for an "
                   "administrator to run; needs no database. Without it, migrate creates "
                   "them itself when its role has CREATEROLE, and says so in one line when "
                   "it has not (see docs/security.md).")
@click.option("--partition-results", is_flag=True,
              help="Then convert the results table into day and state partitions, for a "
                   "large history kept for days (see \"History that scales\" in "
                   "docs/deploying.md): retention by dropping partitions, at the price of "
                   "slower finishes and look-ups. Locks results while it copies the rows. "
                   "A no-op once done.")
def migrate(app_path: str | None, dsn: str | None, schema: str | None, print_sql: bool,
            print_roles: bool, partition_results: bool) -> None:
    """Create or upgrade pgqueue's tables and roles. Safe to run again: a no-op when up to
    date."""
    app = make_app(app_path, dsn, schema)
    if print_roles:
        click.echo(roles.render(app.schema), nl=False)
        return
    if print_sql:
        try:
            from pgqueue import db

            with db.connect(resolve_dsn(app.conf.dsn)) as conn:
                todo = migrations.pending(conn, app.schema)
        except PgQueueError:
            todo = None  # no database reachable: print every migration
        click.echo(migrations.render_sql(app.schema, todo,
                                         partition_results=partition_results), nl=False)
        return
    applied = migrations.migrate(app.dsn, app.schema, roles=True,
                                 report=lambda line: click.echo(f"Warning: {line}", err=True))
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.path.name}")
        click.echo(f"schema {app.schema!r} is at version {applied[-1].version}")
    else:
        version = migrations.current_version(app.dsn, app.schema)
        click.echo(f"schema {app.schema!r} is up to date (version {version})")
    if partition_results:
        if migrations.partition_results(app.dsn, app.schema):
            click.echo(f"results of schema {app.schema!r} converted into day partitions")
        else:
            click.echo(f"results of schema {app.schema!r} are partitioned already")
