"""The ``pgqueue`` group, the options every command shares, and finding the app.

Thin: commands parse options and call the library. Each command group is a module of
this package (migrate, worker, jobs, beat, embedded).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import datetime
from typing import Any

import click
import psycopg
from click.core import ParameterSource

from pgqueue import __version__
from pgqueue.app import App
from pgqueue.exceptions import ConfigurationError, PgQueueError
from pgqueue.utils import import_object

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL"]
_debug = False


def find_app(path: str) -> App:
    """The App named by ``-A``: ``module:attr``, ``module.attr`` or a module holding one."""
    import os

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `celery -A`, modules in the cwd import
    obj = import_object(path)
    if isinstance(obj, App):
        return obj
    for attr in ("app", "celery"):
        candidate = getattr(obj, attr, None)
        if isinstance(candidate, App):
            return candidate
    apps = [v for v in vars(obj).values() if isinstance(v, App)] if hasattr(obj, "__dict__") \
        else []
    if len(apps) == 1:
        return apps[0]
    raise ConfigurationError(
        f"-A {path}: no pgqueue App found there; name it, e.g. -A {path}:app"
    )


def make_app(app_path: str | None, dsn: str | None, schema: str | None) -> App:
    app = find_app(app_path) if app_path else App("pgqueue", set_as_current=False)
    if dsn:
        app.conf.dsn = dsn
    if schema:
        app.conf.schema = schema
    return app


def setup_logging(level: str, logfile: str | None = None) -> None:
    global _debug
    _debug = level.upper() == "DEBUG"
    try:
        logging.basicConfig(
            level=level.upper(),
            format="[%(asctime)s: %(levelname)s/%(threadName)s] %(message)s",
            **({"filename": logfile} if logfile else {"stream": sys.stderr}),
        )
    except OSError as error:
        raise ConfigurationError(f"--logfile {logfile}: {error.strerror}") from None
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)


def _inherit(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An option given before the command (``pgqueue -A proj worker``, Celery's order)
    counts as given after it; given in both places, it must say the same."""
    before = ctx.find_root().params.get(param.name or "")
    if before is None:
        return value
    if ctx.get_parameter_source(param.name or "") is ParameterSource.COMMANDLINE:
        if value != before:
            raise ConfigurationError(f"{param.opts[-1]} is given twice, before the command "
                                     f"({before}) and after it ({value})")
        return value
    return before


app_option = click.option(
    "-A", "--app", "app_path", metavar="MODULE[:ATTR]", callback=_inherit,
    help="Where your App is: 'proj.tasks', 'proj.tasks:app' or 'proj' (finds proj.app).")
dsn_option = click.option(
    "--dsn", envvar="PGQUEUE_DSN", metavar="URL", callback=_inherit,
    help="PostgreSQL URL. Default: the app's setting, then $PGQUEUE_DSN, then $DATABASE_URL, "
         "then the embedded server when the embedded extra is installed.")
schema_option = click.option(
    "--schema", envvar="PGQUEUE_SCHEMA", metavar="NAME", callback=_inherit,
    help="Schema holding pgqueue's tables. Default: the app's setting, $PGQUEUE_SCHEMA or "
         "'pgqueue'.")


class Group(click.Group):
    """Reports pgqueue's errors as one line (a traceback only with -l DEBUG)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (PgQueueError, ValueError, TypeError) as error:
            if _debug:
                traceback.print_exc()
            click.echo(f"Error: {error}", err=True)
            sys.exit(1)
        except psycopg.errors.InsufficientPrivilege as error:  # a statement not translated
            if _debug:
                traceback.print_exc()
            click.echo(f"Error: {str(error).splitlines()[0]}: this database role lacks a "
                       "grant; see docs/security.md for pgqueue's roles", err=True)
            sys.exit(1)


def _takes(command: click.Command, name: str) -> bool:
    if isinstance(command, click.Group):
        return all(_takes(sub, name) for sub in command.commands.values())
    return any(param.name == name for param in command.params)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pgqueue")
@click.option("-A", "--app", "app_path", metavar="MODULE[:ATTR]",
              help="Your App, for the command that follows (Celery's `celery -A proj "
                   "worker`); the same as -A after the command.")
@click.option("-b", "--broker", "--dsn", "dsn", metavar="URL",
              help="PostgreSQL URL, for the command that follows; the same as --dsn after it.")
@click.option("--schema", metavar="NAME",
              help="Schema of pgqueue's tables, for the command that follows.")
@click.pass_context
def main(ctx: click.Context, app_path: str | None, dsn: str | None,
         schema: str | None) -> None:
    """pgqueue: background tasks on PostgreSQL, with Celery's API.

    Run `pgqueue migrate` once, then `pgqueue worker -A yourapp.tasks`.
    """
    command = main.get_command(ctx, ctx.invoked_subcommand or "")
    for name, option, value in (("app_path", "-A", app_path), ("dsn", "--dsn", dsn),
                                ("schema", "--schema", schema)):
        if value is not None and command is not None and not _takes(command, name):
            raise ConfigurationError(f"pgqueue {ctx.invoked_subcommand} does not take "
                                     f"{option}; leave it out")

def split_queues(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [q.strip() for q in value.split(",") if q.strip()]


def text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def json_value(value: Any) -> Any:
    """A value as JSON has it: numbers, booleans, null, lists and objects as they are."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_rows(headers: list[str], rows: list[Any], as_json: bool) -> None:
    if as_json:
        records = [dict(zip(headers, map(json_value, r), strict=True)) for r in rows]
        click.echo(json.dumps(records, indent=2, default=str))
        return
    table = [headers] + [[text(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for i, row in enumerate(table):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))
    if not rows:
        click.echo("(none)")
