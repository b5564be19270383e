"""What the dashboard's pages show, read from the tables in read-only transactions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from pgqueue import flow, limits
from pgqueue.dashboard.queries import DashboardQueries

if TYPE_CHECKING:
    from pgqueue.app import App

LIVE_STATES = ("queued", "scheduled", "retry", "started")
FINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED")
MAX_PAGE = 200
DEFAULT_PAGE = 50
# A worker not seen for this long is shown as gone.
ALIVE_WITHIN = 30.0
# A read that takes longer than this is cancelled by the server (an argument search over
# millions of rows, say): the page says so rather than hanging.
READ_TIMEOUT_MS = 5000
_SETUP = f"SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = {READ_TIMEOUT_MS}"


class BadFilter(ValueError):
    """A filter or cursor that cannot be read; the message names it."""


class Reader:
    """Runs the dashboard's reads, each in its own read-only transaction."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.queries = DashboardQueries(app.schema)

    def rows(self, name: str, params: dict[str, Any] | None = None) -> list[Any]:
        with self.app.connection("reader") as conn, conn.transaction():
            conn.execute(_SETUP.encode())
            statement = self.queries[name] if name.startswith("dashboard_") \
                else self.app.queries[name]
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []


# -- the job list ---------------------------------------------------------------------------
@dataclass
class JobFilter:
    state: str | None = None
    task: str | None = None
    queue: str | None = None
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: tuple[datetime, uuid.UUID] | None = None
    limit: int = DEFAULT_PAGE
    errors: list[str] = field(default_factory=list)

    def query(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (for links), with ``changes`` applied."""
        values: dict[str, Any] = {
            "state": self.state, "task": self.task, "queue": self.queue, "q": self.text,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "limit": self.limit if self.limit != DEFAULT_PAGE else None}
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


def _moment(name: str, value: str) -> datetime:
    try:
        text = value.strip().replace("Z", "+00:00")
        if len(text) > 16 and text[-6] == " ":  # an unencoded "+" of a URL: a space
            text = f"{text[:-6]}+{text[-5:]}"
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"{name}: not a date and time (e.g. 2026-01-31T12:00), "
                        f"got {limits.show(value)}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if not datetime(1970, 1, 1, tzinfo=timezone.utc) <= moment \
            <= datetime(9000, 1, 1, tzinfo=timezone.utc):
        raise BadFilter(f"{name}: out of range, got {limits.show(value)}")
    return moment


def _text(name: str, value: str | None, longest: int = 200) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > longest or "\x00" in value:
        raise BadFilter(f"{name}: at most {longest} characters, no NUL")
    return value


def parse_filter(params: dict[str, str]) -> JobFilter:
    """The job list's filter from query parameters; each bad one is dropped, with a note
    in ``errors`` (the page shows them)."""
    found = JobFilter()
    steps: list[tuple[str, Any]] = [
        ("state", lambda v: _state(v)), ("task", lambda v: _text("task", v)),
        ("queue", lambda v: _text("queue", v)), ("q", lambda v: _text("search", v)),
        ("since", lambda v: _moment("since", v) if v.strip() else None),
        ("until", lambda v: _moment("until", v) if v.strip() else None),
        ("before", _cursor), ("limit", _limit)]
    attrs = {"q": "text"}
    for key, parse in steps:
        if key not in params:
            continue
        try:
            value = parse(params[key])
        except BadFilter as error:
            found.errors.append(str(error))
            continue
        if value is not None:
            setattr(found, attrs.get(key, key), value)
    return found


def _state(value: str) -> str | None:
    if not value.strip() or value == "any":
        return None
    for state in LIVE_STATES + FINAL_STATES:
        if value.strip().lower() == state.lower():
            return state
    raise BadFilter(f"state: one of {', '.join(LIVE_STATES + FINAL_STATES)}, got "
                    f"{limits.show(value)}")


def _cursor(value: str) -> tuple[datetime, uuid.UUID] | None:
    if not value:
        return None
    moment, _, row = value.rpartition("_")
    try:
        return _moment("page", moment), uuid.UUID(row)
    except (BadFilter, ValueError):
        raise BadFilter("page: not a page of this list (start again from the first)") from None


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadFilter(f"limit: a whole number, got {limits.show(value)}") from None
    if not 1 <= number <= MAX_PAGE:
        raise BadFilter(f"limit: 1 to {MAX_PAGE}, got {number}")
    return number


def cursor_of(row: Any) -> str:
    return f"{row['ts'].isoformat()}_{row['id']}"


def job_page(reader: Reader, wanted: JobFilter) -> tuple[list[dict[str, Any]], str | None]:
    """One page of jobs, newest first, and the cursor of the next page (None: the last)."""
    before_ts, before_id = wanted.before or (None, None)
    rows = reader.rows("dashboard_job_page", {
        "state": wanted.state, "task": wanted.task, "queue": wanted.queue,
        "text": wanted.text, "since": wanted.since, "until": wanted.until,
        "before_ts": before_ts, "before_id": before_id, "limit": wanted.limit + 1,
        "live": wanted.state is None or wanted.state in LIVE_STATES,
        "final": wanted.state is None or wanted.state in FINAL_STATES})
    names = ("id", "task_id", "task", "queue", "state", "attempt", "worker", "args",
             "kwargs", "created_at", "started_at", "finished_at", "ts")
    jobs = [dict(zip(names, row, strict=True)) for row in rows]
    more = len(jobs) > wanted.limit
    jobs = jobs[:wanted.limit]
    return jobs, cursor_of(jobs[-1]) if more and jobs else None


# -- one job -------------------------------------------------------------------------------
_JOB_COLUMNS = ("final", "id", "task_id", "task", "queue", "state", "attempt", "max_retries",
                "priority", "args", "kwargs", "result", "error", "traceback", "worker",
                "parent_id", "root_id", "group_id", "progress_state", "meta", "options",
                "headers", "created_at", "run_at", "started_at", "finished_at", "expires_at")


def job(reader: Reader, job_id: str) -> dict[str, Any] | None:
    """A job by row id or task id, with its history, parent, children and workflow."""
    row_id = limits.row_id(job_id)
    rows = reader.rows("dashboard_job_get", {"id": row_id}) if row_id else []
    if not rows:
        return None
    found = dict(zip(_JOB_COLUMNS, rows[0], strict=True))
    found["history"] = [dict(zip(("state", "attempt", "error", "traceback", "result", "worker",
                                  "started_at", "finished_at", "retried_at", "retried_by"),
                                 r, strict=True))
                        for r in reader.rows("job_history_get", {"id": found["id"]})]
    found["parent"] = None
    if found["parent_id"] is not None:
        parent = reader.rows("dashboard_job_label", {"id": found["parent_id"]})
        found["parent"] = {"id": found["parent_id"], "task": parent[0][1] if parent else None,
                           "state": parent[0][2] if parent else "gone"}
    found["children"] = [dict(zip(("id", "task", "state", "created_at"), r, strict=True))
                         for r in reader.rows("dashboard_job_children",
                                              {"id": found["id"], "limit": 100})]
    root = found["root_id"] or found["id"]
    found["workflow"] = [dict(zip(("id", "task", "parent_id", "state", "job_state",
                                   "created_at", "finished_at"), r, strict=True))
                         for r in reader.rows("dashboard_workflow_steps",
                                              {"root": root, "limit": 200})]
    if not any(step["id"] != found["id"] for step in found["workflow"]):
        found["workflow"] = []
    found["timeline"] = timeline(found)
    return found


def timeline(found: dict[str, Any]) -> list[tuple[datetime, str]]:
    events: list[tuple[datetime | None, str]] = [(found["created_at"], "sent")]
    for entry in found["history"]:
        events.append((entry["started_at"], f"attempt {entry['attempt']} started"))
        events.append((entry["finished_at"], f"ended {entry['state']}"))
        events.append((entry["retried_at"], f"retried by {entry['retried_by']}"))
    if found["run_at"] is not None and found["run_at"] > found["created_at"] \
            and found["state"] in ("scheduled", "retry"):
        events.append((found["run_at"], "due"))
    events.append((found["started_at"], f"attempt {found['attempt']} started"))
    events.append((found["finished_at"], f"ended {found['state']}"))
    return sorted(((t, what) for t, what in events if t is not None), key=lambda e: e[0])


# -- overview, queues, workers, schedules ---------------------------------------------------
def throughput(reader: Reader, minutes: int = 60) -> list[tuple[datetime, int, int, int]]:
    """Per minute of the last ``minutes`` (empty minutes included): succeeded, failed,
    revoked."""
    rows = {r[0]: (int(r[1]), int(r[2]), int(r[3]))
            for r in reader.rows("dashboard_throughput", {"minutes": minutes})}
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    series = []
    for back in range(minutes - 1, -1, -1):
        minute = now - timedelta(minutes=back)
        series.append((minute, *rows.get(minute, (0, 0, 0))))
    return series


def latency(reader: Reader, minutes: int = 60) -> dict[str, float | int | None]:
    count, wait, wait95, run, run95 = reader.rows("dashboard_latency", {"minutes": minutes})[0]
    return {"count": int(count), "wait": wait, "wait95": wait95, "run": run, "run95": run95}


def queues(app: App) -> list[flow.QueueState]:
    return flow.queues(app)


def workers(reader: Reader) -> list[dict[str, Any]]:
    names = ("id", "hostname", "pid", "queues", "concurrency", "pool", "started_at",
             "last_seen_at", "seen_ago", "alive")
    found = [dict(zip(names, r, strict=True))
             for r in reader.rows("worker_list", {"alive_within": ALIVE_WITHIN})]
    held: dict[str, list[dict[str, Any]]] = {w["id"]: [] for w in found}
    for row in reader.rows("job_list_held", {"ids": None}):
        held.setdefault(row[2], []).append({"id": row[0], "task": row[1], "attempt": row[5],
                                            "queue": row[7], "started": row[8]})
    for worker in found:
        worker["jobs"] = held.get(worker["id"], [])
    return found


def schedules(reader: Reader) -> list[dict[str, Any]]:
    names = ("name", "task", "args", "kwargs", "options", "cron", "every", "timezone",
             "enabled", "catch_up", "next_run_at", "last_run_at", "total_run_count", "source")
    return [dict(zip(names, r, strict=True)) for r in reader.rows("schedule_list")]


# -- privileges ----------------------------------------------------------------------------
#: What the pages read: <schema>_reader has it all.
READ_PRIVILEGES = [(t, "SELECT") for t in ("jobs", "results", "workers", "schedules",
                                           "flow_limits", "job_history", "canvas_steps")]
#: What the actions write, beyond the reads: <schema>_control has it all.
ACTION_PRIVILEGES = [("jobs", "INSERT"), ("jobs", "DELETE"), ("results", "INSERT"),
                     ("results", "UPDATE"), ("results", "DELETE"), ("schedules", "UPDATE"),
                     ("flow_limits", "INSERT"), ("flow_limits", "UPDATE"),
                     ("job_history", "INSERT"), ("control_requests", "INSERT")]


def missing_privileges(reader: Reader, read_only: bool) -> list[str]:
    """``table: PRIVILEGE`` for each privilege the mode needs and the role lacks."""
    wanted = READ_PRIVILEGES + ([] if read_only else ACTION_PRIVILEGES)
    rows = reader.rows("dashboard_missing_privileges", {
        "schema": reader.app.schema, "tables": [t for t, _ in wanted],
        "privileges": [p for _, p in wanted]})
    return [f"{table}: {privilege}" for table, privilege in rows]
