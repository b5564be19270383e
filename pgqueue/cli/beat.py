"""``pgqueue beat`` and ``pgqueue schedule list|add|remove|enable|disable|run-now``."""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
from collections.abc import Iterator
from typing import Any

import click

from pgqueue.app import App
from pgqueue.celery_compat import BEAT_FLAGS
from pgqueue.cli import logs, process
from pgqueue.cli.base import (
    LOG_LEVELS,
    app_option,
    dsn_option,
    main,
    make_app,
    print_rows,
    schema_option,
    setup_logging,
)
from pgqueue.cli.flags import celery_flags, warn_ignored
from pgqueue.client import schedule_actions
from pgqueue.client.periodic import make_entry, split_scope
from pgqueue.client.producer import build_rows
from pgqueue.client.schedule_actions import UnknownSchedule
from pgqueue.exceptions import ConfigurationError
from pgqueue.schedules import check_timezone
from pgqueue.services.beat import Beat
from pgqueue.utils import hostname, json_dumps, utcnow


@main.command()
@celery_flags(BEAT_FLAGS)
@app_option
@dsn_option
@schema_option
@click.option("-n", "--hostname", "name", metavar="NAME",
              help="Name of this process in logs and in the leader table; %h, %n, %d "
                   "expand as for the worker. Default: beat@host.")
@click.option("-l", "--loglevel", default="INFO", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False),
              help="Logging level; DEBUG also prints tracebacks of errors.")
@click.option("-f", "--logfile", metavar="PATH",
              help="Append the log to PATH instead of stderr; %n, %h, %p expand as for the "
                   "worker.")
@click.option("--pidfile", metavar="PATH",
              help="Write beat's pid to PATH and remove it on exit; refuses to start while "
                   "the pid in an existing PATH runs.")
@click.option("--max-interval", type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Longest sleep between two looks at the schedules table, so schedules "
                   "added at runtime start within it. Default: beat_max_loop_interval (5).")
def beat(app_path: str | None, dsn: str | None, schema: str | None, name: str | None,
         loglevel: str, logfile: str | None, pidfile: str | None,
         max_interval: float | None) -> None:
    """Run the periodic-task scheduler without a worker.

    Any number of `pgqueue beat` and `pgqueue worker --beat` may run: each fire inserts
    exactly one job, whichever of them gets there first. Like a worker, it takes part in
    the election for the maintenance lease and, while it holds it, runs the stager, the
    rescuer and the result pruner. With -A, the app's schedules are written to the
    schedules table; without it, only the table's schedules run.
    """
    name = process.host_format(name) if name else None
    nodename = name or f"beat@{hostname()}"
    setup_logging(loglevel, process.node_format(logfile, nodename) if logfile else None)
    warn_ignored(logging.getLogger("pgqueue.beat"))
    app = make_app(app_path, dsn, schema)
    logs.hand_over(loglevel, app.conf)
    if max_interval:
        app.conf.beat_max_loop_interval = max_interval
    with process.pidfile(process.node_format(pidfile, nodename)) if pidfile \
            else contextlib.nullcontext():
        Beat(app, name=name, code_schedules=app_path is not None).run()


@main.group("schedule")
def schedule_group() -> None:
    """List and change periodic schedules stored in the database."""


@schedule_group.command("list")
@app_option
@dsn_option
@schema_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_schedules(app_path: str | None, dsn: str | None, schema: str | None,
                   as_json: bool) -> None:
    """Show every schedule, when it runs next and how often it ran."""
    app = make_app(app_path, dsn, schema)
    with app.connection("reader") as conn:
        rows = conn.execute(app.queries["schedule_list"]).fetchall()
    headers = ["name", "task", "schedule", "timezone", "enabled", "next_run_at",
               "last_run_at", "runs", "source"]
    table = [(r[0], r[1], r[5] or f"every {r[6]:g}s", r[7], bool(r[8]), r[10],
              r[11], r[12], r[13]) for r in rows]
    print_rows(headers, table, as_json)


def _json(text: str, what: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{what} must be JSON: {error}") from None
    if not isinstance(value, kind):
        raise ConfigurationError(f"{what} must be a JSON {'array' if kind is list else 'object'}")
    return value


def _check_task(app: App, app_path: str | None, task: str) -> None:
    from pgqueue.canvas.builtins import builtin_task

    if app_path and task not in app.tasks and builtin_task(app, task) is None:
        close = difflib.get_close_matches(task, list(app.tasks), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(f"no task named {task!r} in {app_path}{hint} (known: "
                                 f"{', '.join(sorted(app.tasks)) or 'none'})")


@schedule_group.command("add")
@click.argument("name")
@click.argument("task_name", metavar="TASK")
@app_option
@dsn_option
@schema_option
@click.option("--cron", metavar="EXPR",
              help="When to run: a five-field cron expression ('minute hour day-of-month "
                   "month day-of-week', e.g. '30 7 * * 1') or @hourly, @daily, @weekly...")
@click.option("--every", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="When to run: every SECONDS (instead of --cron).")
@click.option("-a", "--args", "args_json", default="[]", metavar="JSON",
              help="Positional arguments as a JSON array.")
@click.option("-k", "--kwargs", "kwargs_json", default="{}", metavar="JSON",
              help="Keyword arguments as a JSON object.")
@click.option("-Q", "--queue", help="Queue to send to. Default: the task's routing.")
@click.option("--priority", type=click.IntRange(0, 9), help="0-9, higher runs first.")
@click.option("--expires", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Revoke a job not started within SECONDS of its fire.")
@click.option("--options", "options_json", default="{}", metavar="JSON",
              help="Other send options as a JSON object, e.g. '{\"time_limit\": 60}'.")
@click.option("--timezone", "zone_name", metavar="TZ",
              help="IANA time zone the cron expression is read in, e.g. Europe/Berlin. "
                   "Default: the app's timezone setting (UTC).")
@click.option("--catch-up/--no-catch-up", default=None,
              help="After downtime, run missed fires once (default: setting beat_catch_up, "
                   "on), or skip them.")
@click.option("--disabled", is_flag=True, help="Create it disabled; see `schedule enable`.")
@click.option("--replace", is_flag=True,
              help="Replace a schedule of the same name instead of failing.")
def add(name: str, task_name: str, app_path: str | None, dsn: str | None, schema: str | None,
        cron: str | None, every: float | None, args_json: str, kwargs_json: str,
        queue: str | None, priority: int | None, expires: float | None, options_json: str,
        zone_name: str | None, catch_up: bool | None, disabled: bool, replace: bool) -> None:
    """Create a schedule NAME that sends TASK. With -A the task name is checked."""
    app = make_app(app_path, dsn, schema)
    if (cron is None) == (every is None):
        raise ConfigurationError("give exactly one of --cron EXPR and --every SECONDS")
    options = _json(options_json, "--options", dict)
    options.update({k: v for k, v in (("queue", queue), ("priority", priority),
                                      ("expires", expires)) if v is not None})
    entry = make_entry(name, {
        "task": task_name, "schedule": cron if cron is not None else every,
        "args": _json(args_json, "--args", list), "kwargs": _json(kwargs_json, "--kwargs", dict),
        "options": options, "timezone": zone_name, "catch_up": catch_up,
    }, timezone=check_timezone(app.conf.timezone), catch_up=bool(app.conf.beat_catch_up))
    _check_task(app, app_path, task_name)
    checked, _ = split_scope(f"schedule {name!r}", options)  # unique_for/unique_states
    build_rows(app, task_name, app.tasks.get(task_name), [(entry.args, entry.kwargs)],
               checked).params()  # checks the options and that the arguments are JSON
    row = entry.row(utcnow())
    params = {**row, "args": json_dumps(row["args"]), "kwargs": json_dumps(row["kwargs"]),
              "options": json_dumps(row["options"]), "enabled": not disabled,
              "replace": replace}
    with app.connection("control") as conn:
        added = conn.execute(app.queries["schedule_insert"], params).fetchall()
    if not added:
        raise ConfigurationError(f"a schedule named {name!r} already exists; pass --replace to "
                                 f"overwrite it, or run `pgqueue schedule remove {name}` first")
    when = "disabled" if disabled else f"next run at {row['next_run_at']}"
    click.echo(f"schedule {name!r} added: {task_name} {cron or f'every {every:g}s'} "
               f"({entry.timezone}); {when}")


@schedule_group.command("remove")
@click.argument("name")
@app_option
@dsn_option
@schema_option
def remove(name: str, app_path: str | None, dsn: str | None, schema: str | None) -> None:
    """Delete schedule NAME (jobs it already sent are not touched)."""
    app = make_app(app_path, dsn, schema)
    with app.connection("control") as conn:
        row = conn.execute(app.queries["schedule_delete"], {"name": name}).fetchone()
    if row is None:
        raise ConfigurationError(f"no schedule named {name!r}; see `pgqueue schedule list`")
    click.echo(f"schedule {name!r} removed")
    if row[0] == "code":
        click.echo(f"note: {name!r} is defined in code; the scheduler writes it back when it "
                   "next starts, unless it is removed from the code. To pause it, use "
                   "`pgqueue schedule disable`.", err=True)


@contextlib.contextmanager
def _listed_hint() -> Iterator[None]:
    """An unknown name's error points at `pgqueue schedule list`."""
    try:
        yield
    except UnknownSchedule as error:
        raise ConfigurationError(f"{error}; see `pgqueue schedule list`") from None


def _set_enabled(app: App, name: str, enabled: bool) -> None:
    with _listed_hint():
        schedule_actions.set_enabled(app, name, enabled)
    click.echo(f"schedule {name!r} {'enabled' if enabled else 'disabled'}")


@schedule_group.command("enable")
@click.argument("name")
@app_option
@dsn_option
@schema_option
def enable(name: str, app_path: str | None, dsn: str | None, schema: str | None) -> None:
    """Resume schedule NAME from its next fire time (missed fires are not run)."""
    _set_enabled(make_app(app_path, dsn, schema), name, True)


@schedule_group.command("disable")
@click.argument("name")
@app_option
@dsn_option
@schema_option
def disable(name: str, app_path: str | None, dsn: str | None, schema: str | None) -> None:
    """Pause schedule NAME; it stays paused across scheduler restarts."""
    _set_enabled(make_app(app_path, dsn, schema), name, False)


@schedule_group.command("run-now")
@click.argument("name")
@app_option
@dsn_option
@schema_option
def run_now(name: str, app_path: str | None, dsn: str | None, schema: str | None) -> None:
    """Send schedule NAME's job now, once; its timetable is unchanged. Prints the job id."""
    app = make_app(app_path, dsn, schema)
    with _listed_hint():
        job_id = schedule_actions.run_now(app, name)
    click.echo(job_id)
