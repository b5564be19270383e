"""The ``pgqueue`` command. Thin: it parses options and calls the library."""

from __future__ import annotations

import contextlib
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
from pgqueue.cli import logs
from pgqueue.config import resolve_dsn
from pgqueue.db import migrations, roles
from pgqueue.exceptions import ConfigurationError, PgQueueError
from pgqueue.utils import hostname, import_object

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
def migrate(app_path: str | None, dsn: str | None, schema: str | None, print_sql: bool,
            print_roles: bool) -> None:
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
        click.echo(migrations.render_sql(app.schema, todo), nl=False)
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


def _queues(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [q.strip() for q in value.split(",") if q.strip()]


@main.command()
@app_option
@dsn_option
@schema_option
@click.option("-c", "--concurrency", type=click.IntRange(min=1), metavar="N",
              help="Jobs run at once. Default: worker_concurrency, else 32 threads (8 per "
                   "CPU above 4 CPUs), one process per CPU, or 100 coroutines.")
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
@click.option("--logfile", metavar="PATH",
              help="Append the log to PATH instead of stderr; %n, %h, %p, %i and %I are "
                   "expanded as in Celery (%n: the node name before the @).")
@click.option("--pidfile", metavar="PATH",
              help="Write the worker's pid to PATH and remove it on exit; refuses to start "
                   "while the pid in an existing PATH runs. %n, %h, %p expand as in --logfile.")
@click.option("--detach", is_flag=True,
              help="Refused: pgqueue runs in the foreground; let systemd, supervisor or "
                   "your container runtime keep it running.")
@click.option("-E", "--task-events", is_flag=True,
              help="Accepted and ignored, with a warning: pgqueue sends no events; the jobs "
                   "and results tables are the event log (pgqueue inspect).")
@click.option("-O", "optimization", type=click.Choice(["default", "fair"],
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
def worker(app_path: str | None, dsn: str | None, schema: str | None, concurrency: int | None,
           pool: str | None, queues: str | None, name: str | None, loglevel: str,
           logfile: str | None, pidfile: str | None, detach: bool, task_events: bool,
           optimization: str | None, beat: bool, lease: float | None,
           poll_interval: float | None, shutdown_timeout: float | None,
           time_limit: float | None, soft_time_limit: float | None,
           max_tasks_per_child: int | None, max_memory_per_child: int | None) -> None:
    """Run a worker: claim jobs, run them, record their results."""
    from pgqueue.cli import process

    if detach:
        raise ConfigurationError("--detach is not supported: run pgqueue worker in the "
                                 "foreground under systemd, supervisor or your container "
                                 "runtime, which restart it and keep its logs")
    if not app_path:
        raise ConfigurationError("pgqueue worker needs -A/--app: the module defining your "
                                 "tasks, e.g. -A proj.tasks")
    name = process.host_format(name) if name else None
    nodename = name or f"pgqueue@{hostname()}"
    setup_logging(loglevel, process.node_format(logfile, nodename) if logfile else None)
    if task_events:
        logging.getLogger("pgqueue.worker").warning(
            "-E: pgqueue sends no events; the jobs and results tables are the event log "
            "(pgqueue inspect)")
    app = make_app(app_path, dsn, schema)
    logs.hand_over(loglevel)
    from pgqueue.worker.worker import Worker

    node = Worker(app, queues=_queues(queues), concurrency=concurrency, pool=pool, name=name,
                  lease=lease, poll_interval=poll_interval, shutdown_timeout=shutdown_timeout,
                  beat=beat, time_limit=time_limit, soft_time_limit=soft_time_limit,
                  max_tasks_per_child=max_tasks_per_child,
                  max_memory_per_child=max_memory_per_child)
    with process.pidfile(process.node_format(pidfile, nodename)) if pidfile \
            else contextlib.nullcontext():
        node.run()


@main.command()
@app_option
@dsn_option
@schema_option
@click.option("-Q", "--queues", metavar="A,B", help="Only these queues. Default: all.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def purge(app_path: str | None, dsn: str | None, schema: str | None, queues: str | None,
          force: bool) -> None:
    """Delete every job waiting to run (queued, scheduled, retry). Running jobs stay."""
    app = make_app(app_path, dsn, schema)
    names = _queues(queues)
    where = f"queues {', '.join(names)}" if names else "all queues"
    if not force and not click.confirm(f"Delete all waiting jobs of {where}?"):
        raise click.Abort()
    count = app.control.purge(names)
    click.echo(f"purged {count} jobs from {where}")


@main.command()
@click.argument("what", type=click.Choice(["queues", "active", "workers"]), default="queues")
@app_option
@dsn_option
@schema_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(what: str, app_path: str | None, dsn: str | None, schema: str | None,
            as_json: bool) -> None:
    """Show queues (jobs by state), active (running jobs) or workers.

    A worker is alive when its heartbeat was seen within worker_lease_seconds; the row of a
    dead one is deleted after four of those.
    """
    app = make_app(app_path, dsn, schema)
    query = {"queues": "job_counts", "active": "job_list_started", "workers": "worker_list"}
    headers = {
        "queues": ["queue", "state", "jobs", "oldest_run_at"],
        "active": ["id", "task", "worker", "attempt", "started_at", "lease_expires_at",
                   "state", "meta"],
        "workers": ["id", "hostname", "pid", "queues", "concurrency", "pool", "started_at",
                    "last_seen_at", "seen_seconds_ago", "alive"],
    }[what]
    params = {"alive_within": float(app.conf.worker_lease_seconds)}
    _print_rows(headers, app.execute(query[what], params if what == "workers" else None),
                as_json)


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def _json_value(value: Any) -> Any:
    """A value as JSON has it: numbers, booleans, null, lists and objects as they are."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _print_rows(headers: list[str], rows: list[Any], as_json: bool) -> None:
    if as_json:
        records = [dict(zip(headers, map(_json_value, r), strict=True)) for r in rows]
        click.echo(json.dumps(records, indent=2, default=str))
        return
    table = [headers] + [[_text(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for i, row in enumerate(table):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))
    if not rows:
        click.echo("(none)")


@main.command()
@click.argument("task_id")
@app_option
@dsn_option
@schema_option
@click.option("--traceback", "show_traceback", is_flag=True,
              help="Print the traceback of a failed job.")
@click.option("--wait", type=float, metavar="SECONDS",
              help="Wait up to SECONDS for the job to finish.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: id, state, result, error and traceback (null when none).")
def result(task_id: str, app_path: str | None, dsn: str | None, schema: str | None,
           show_traceback: bool, wait: float | None, as_json: bool) -> None:
    """Show the state and result of a job."""
    app = make_app(app_path, dsn, schema)
    res = app.AsyncResult(task_id)
    if wait:
        res.get(timeout=wait, propagate=False)
    state = res.state
    value = res.result
    if as_json:
        failed = isinstance(value, BaseException)
        click.echo(json.dumps({
            "id": task_id, "state": state, "result": None if failed else value,
            "error": f"{type(value).__name__}: {value}" if failed else None,
            "traceback": res.traceback or None}, indent=2, default=str))
        return
    click.echo(f"{task_id}  {state}")
    if isinstance(value, BaseException):
        click.echo(f"{type(value).__name__}: {value}")
    elif value is not None:
        click.echo(json.dumps(value, default=str))
    if show_traceback and res.traceback:
        click.echo(res.traceback)


@main.command()
@click.argument("task_name")
@app_option
@dsn_option
@schema_option
@click.option("-a", "--args", "args_json", default="[]", metavar="JSON",
              help="Positional arguments as a JSON array.")
@click.option("-k", "--kwargs", "kwargs_json", default="{}", metavar="JSON",
              help="Keyword arguments as a JSON object.")
@click.option("-Q", "--queue", help="Queue to send to.")
@click.option("--countdown", type=float, metavar="SECONDS", help="Run no earlier than this.")
@click.option("--eta", type=click.DateTime(), help="Run at this time (ISO 8601, UTC).")
@click.option("--expires", type=float, metavar="SECONDS",
              help="Revoke if not started within SECONDS.")
@click.option("--priority", type=click.IntRange(0, 9), help="0-9, higher runs first.")
def call(task_name: str, app_path: str | None, dsn: str | None, schema: str | None,
         args_json: str, kwargs_json: str, queue: str | None, countdown: float | None,
         eta: datetime | None, expires: float | None, priority: int | None) -> None:
    """Send a task by name and print its id."""
    from datetime import timezone

    app = make_app(app_path, dsn, schema)
    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"--args/--kwargs must be JSON: {e}") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ConfigurationError("--args must be a JSON array and --kwargs a JSON object")
    if app_path and task_name not in app.tasks:
        raise ConfigurationError(f"no task named {task_name!r} in {app_path}; known: "
                                 f"{', '.join(sorted(app.tasks)) or '(none)'}")
    options: dict[str, Any] = {"queue": queue, "countdown": countdown, "expires": expires,
                               "priority": priority}
    if eta is not None:
        options["eta"] = eta.replace(tzinfo=eta.tzinfo or timezone.utc)
    res = app.send_task(task_name, args, kwargs,
                        **{k: v for k, v in options.items() if v is not None})
    click.echo(res.id)
