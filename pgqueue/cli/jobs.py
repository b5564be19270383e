"""``pgqueue purge``, ``result`` and ``call``: act on jobs and look at one
(``pgqueue inspect`` is in :mod:`.inspect`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from pgqueue import limits
from pgqueue.cli.base import (
    app_option,
    dsn_option,
    main,
    make_app,
    schema_option,
    split_queues,
)
from pgqueue.exceptions import ConfigurationError


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
    names = split_queues(queues)
    where = f"queues {', '.join(names)}" if names else "all queues"
    if not force and not click.confirm(f"Delete all waiting jobs of {where}?"):
        raise click.Abort()
    count = app.control.purge(names)
    click.echo(f"purged {count} jobs from {where}")


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
    """Show the state and result of a job. Any string is a task id, as in Celery; one no
    job has is PENDING."""
    limits.job_id("task id", task_id)  # one that no job can have: one Error: line
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
@click.option("--task-id", metavar="ID",
              help="The job's id: any string (a UUID is made when not given).")
def call(task_name: str, app_path: str | None, dsn: str | None, schema: str | None,
         args_json: str, kwargs_json: str, queue: str | None, countdown: float | None,
         eta: datetime | None, expires: float | None, priority: int | None,
         task_id: str | None) -> None:
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
                               "priority": priority, "task_id": task_id}
    if eta is not None:
        options["eta"] = eta.replace(tzinfo=eta.tzinfo or timezone.utc)
    res = app.send_task(task_name, args, kwargs,
                        **{k: v for k, v in options.items() if v is not None})
    click.echo(res.id)
