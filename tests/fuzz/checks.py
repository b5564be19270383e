"""Runs one fuzz batch against a live worker and lists what went wrong.

The properties, checked after every batch:
  door      a producer call is accepted, or refused with one line (a pgqueue error,
            TypeError or ValueError) that writes nothing; a plain call is accepted
  final     every accepted job and raw row ends final before a deadline (a job parked in
            the future or on another queue is revoked, and must then be REVOKED)
  outcome   a plain call's job ends as its plan says (echoed values come back unchanged;
            any raise, BaseExceptions included, ends FAILURE)
  once      no attempt ran twice, no job ran to its end twice, and only jobs that retried
            or lost their process ran more than once
  alive     the worker process lives and runs ``-c`` canary jobs at the same time (a
            barrier): it still claims and has lost no slot
  empty     nothing is left in ``jobs``
"""

from __future__ import annotations

import json
import reprlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import psycopg

from pgqueue.exceptions import PgQueueError
from tests.conftest import wait_until

from .fuzz_tasks import decode
from .strategies import Batch, Call, RawRow

if TYPE_CHECKING:
    from .test_fuzz_jobs import Rig

#: Seconds for a batch's jobs to end, and for the canaries' barrier.
DEADLINE = 15.0
BARRIER = 15.0  # a barrier that all reach ends at once: slack costs nothing
#: Case counts per pool, printed at the end of the session (see conftest.py).
STATS: dict[str, Counter[str]] = {}
#: Refusals a producer may answer with.
REFUSALS = (PgQueueError, TypeError, ValueError)

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlevel = 2
_short.maxlist = _short.maxdict = 3
_UNSET = object()


def short(value: Any) -> str:
    return _short.repr(value)


def is_plain(value: Any, depth: int = 0) -> bool:
    """A JSON value every producer must accept and store unchanged: str keys, finite
    floats, storable strings, shallow and small."""
    if depth > 20:
        return False
    if value is None or isinstance(value, (bool, int)):
        return True
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, str):
        return "\x00" not in value and len(value) < 65_536 and _encodable(value)
    if isinstance(value, list):
        return all(is_plain(v, depth + 1) for v in value) and (
            depth > 0 or len(json.dumps(value)) < 65_536)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(k) and is_plain(v, depth + 1)
                   for k, v in value.items()) and (depth > 0 or len(json.dumps(value)) < 65_536)
    return False


def same(stored: Any, sent: Any) -> bool:
    """``stored == sent``, but a float may come back as an int: jsonb keeps numbers as
    numeric, and writes 1e+20 without a decimal point."""
    if isinstance(sent, float) and isinstance(stored, int) and not isinstance(stored, bool):
        return float(stored) == sent
    if isinstance(sent, list) and isinstance(stored, list):
        return len(sent) == len(stored) and all(map(same, stored, sent))
    if isinstance(sent, dict) and isinstance(stored, dict):
        return sent.keys() == stored.keys() and all(same(stored[k], sent[k]) for k in sent)
    return type(stored) is type(sent) and bool(stored == sent)


def _encodable(text: str) -> bool:
    try:
        text.encode()
        return True
    except UnicodeEncodeError:
        return False


@dataclass
class Job:
    """A job the batch expects to end: sent by a producer call, or a raw row."""

    id: str
    label: str
    plan: Any
    #: Final states its outcome may have; None: any.
    states: frozenset[str] | None = None
    result: Any = _UNSET
    may_skip_result: bool = False


def expectation(call: Call, plan: dict[str, Any], args: list[Any],
                kwargs: dict[Any, Any]) -> tuple[frozenset[str] | None, Any]:
    """What a job of a call ends as, when the call is plain enough to say."""
    if call.odd_option or not call.task.startswith("fuzz.act"):
        return None, _UNSET
    plain_args = is_plain(args) and is_plain(kwargs)
    do = plan["do"]
    if do == "echo" and plain_args:
        return frozenset({"SUCCESS"}), {"args": args, "kwargs": kwargs}
    if do == "return" and "lit" in plan["value"]:
        value = decode(plan["value"]["lit"])
        if is_plain(value) and plain_args:
            return frozenset({"SUCCESS"}), value
    if do == "raise":
        return frozenset({"FAILURE"}), _UNSET
    if do == "retry" and isinstance(decode(plan["when"]), (int, float)) \
            and 0 <= decode(plan["when"]) < 1 and plain_args:
        # self.retry() counts the task's max_retries (3); a fix may count the job's
        return frozenset({"SUCCESS", "FAILURE"} if "max_retries" in call.options
                         else {"SUCCESS"}), _UNSET
    return None, _UNSET


def one_call(rig: Rig, call: Call, stats: Counter[str]) -> tuple[list[Job], list[str]]:
    """Make the producer call; returns the jobs it made and the door's problems."""
    tag = uuid.uuid4().hex
    jobs = [({**plan, "tag": tag}, args, kwargs) for plan, args, kwargs in call.jobs]
    label = f"{call.api} {short(call.task)} opts={short(call.options)}"
    producer = rig.producer
    try:
        if call.api == "delay":
            plan, args, kwargs = jobs[0]
            ids = [producer.tasks[call.task].delay(plan, *args, **kwargs).id]
        elif call.api == "apply_async":
            plan, args, kwargs = jobs[0]
            ids = [producer.tasks[call.task].apply_async(
                [plan, *args], kwargs, **call.options).id]
        elif call.api == "send_task":
            plan, args, kwargs = jobs[0]
            ids = [producer.send_task(call.task, [plan, *args], kwargs, **call.options).id]
        else:
            ids = [r.id for r in producer.tasks[call.task].apply_many(
                [([p, *a], k) for p, a, k in jobs], **call.options)]
    except Exception as exc:
        stats["calls refused"] += 1
        return [], _refusal_problems(rig, call, tag, label, exc)
    stats["calls accepted"] += 1
    stats["jobs enqueued"] += len(ids)
    problems = []
    if call.odd_option and must_refuse(call.odd_option, call.options[call.odd_option]):
        problems.append(f"door: {label}: accepted {call.odd_option}="
                        f"{short(call.options[call.odd_option])}, which no job can honour")
    if len(call.task) >= 2**20 or len(str(call.options.get("queue", ""))) > 8000:
        problems.append(f"door: {label}: accepted a name of over 8,000 characters")
    made = []
    for job_id, (plan, args, kwargs) in zip(ids, jobs, strict=True):
        states, result = expectation(call, plan, args, kwargs)
        what = {k: v for k, v in plan.items() if k != "tag"}
        shown = f"{label} plan={short(what)} args={short(args)} kwargs={short(kwargs)}"
        made.append(Job(job_id, shown, plan, states, result,
                        may_skip_result=bool(call.options.get("ignore_result"))))
    return made, problems


_SECONDS = {"countdown", "expires", "time_limit", "soft_time_limit", "lease"}


def must_refuse(option: str, value: Any) -> bool:
    """Option values no job can honour: the issue asks producers to refuse them."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if value != value or value in (float("inf"), float("-inf")):
        return option in _SECONDS | {"priority", "max_retries"}
    if option in _SECONDS:
        # past any timestamp a statement can hold; or a negative limit
        return abs(value) >= 1e13 or (value < 0 and option not in ("countdown", "expires"))
    if option == "priority":
        return not 0 <= value <= 9
    return option == "max_retries" and value >= 2**31


def _refusal_problems(rig: Rig, call: Call, tag: str, label: str,
                      exc: Exception) -> list[str]:
    problems = []
    message = str(exc)
    if not isinstance(exc, REFUSALS):
        problems.append(f"door: {label}: refused with {type(exc).__module__}."
                        f"{type(exc).__name__}, not a one-line pgqueue/TypeError/ValueError: "
                        f"{short(message)}")
    elif "\n" in message.strip() or len(message) > 2000:
        problems.append(f"door: {label}: refusal is not one short line "
                        f"({len(message)} chars): {short(message)}")
    plain = all(is_plain(a) and is_plain(k) and is_plain(p) for p, a, k in call.jobs)
    if plain and call.odd_option is None and call.task.startswith("fuzz.act"):
        problems.append(f"door: {label}: a plain call was refused: "
                        f"{type(exc).__name__}: {short(message)}")
    elif (plain and call.odd_option and isinstance(exc, REFUSALS)
          and call.task.startswith("fuzz.act") and call.odd_option not in message):
        problems.append(f"door: {label}: the refusal does not name option "
                        f"{call.odd_option!r}: {short(message)}")
    written = _count(rig, "SELECT (SELECT count(*) FROM jobs WHERE args->0->>'tag' = %s) "
                          "+ (SELECT count(*) FROM results WHERE args->0->>'tag' = %s)", tag, tag)
    if written:
        problems.append(f"door: {label}: refused but wrote {written} rows")
    return problems


_TIMES = {"now": lambda: "now", "past": lambda: _iso(-3600), "future": lambda: _iso(3600),
          "infinity": lambda: "infinity", "-infinity": lambda: "-infinity"}


def _iso(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def insert_raw(rig: Rig, row: RawRow, stats: Counter[str]) -> list[Job]:
    """Write the row as a careless script would; a row the schema refuses (a CHECK
    constraint, say) is a refusal at the door too, and counts as fine."""
    job_id = str(uuid.uuid4())
    started = row.state == "started"
    try:
        rig.db.execute(
            "INSERT INTO jobs (id, queue, task, args, kwargs, options, state, attempt, "
            "max_retries, priority, run_at, expires_at, created_at, worker, lease_expires_at) "
            "VALUES (%s, 'default', %s, %s::jsonb, %s::jsonb, %s::jsonb, %s, %s, %s, %s, "
            "%s::timestamptz, %s::timestamptz, %s::timestamptz, %s, %s::timestamptz)",
            (job_id, row.task, row.args, row.kwargs, row.options, row.state, row.attempt,
             row.max_retries, row.priority, _TIMES[row.run_at](),
             _TIMES[row.expires_at]() if row.expires_at else None, _TIMES[row.created_at](),
             "ghost:1:dead" if started else None, _iso(-60) if started else None))
    except (psycopg.errors.IntegrityError, psycopg.errors.DataException,
            psycopg.errors.RaiseException):
        stats["raw rows refused by the schema"] += 1
        return []
    stats["raw rows"] += 1
    plan = _first_arg(row.args)
    odd = ", ".join(f"{column}={short(getattr(row, column))}" for column in row.odd)
    return [Job(job_id, f"raw row {odd} (args={short(row.args)})", plan)]


def _first_arg(args_json: str) -> Any:
    try:
        args = json.loads(args_json)
    except (RecursionError, ValueError):
        return None
    return args[0] if isinstance(args, list) and args else None


def _count(rig: Rig, query: str, *params: Any) -> int:
    row = rig.db.execute(query.encode(), params).fetchone()
    return int(row[0]) if row else 0


_PARKED = ("(state IN ('scheduled', 'retry') AND run_at > now() + interval '30 seconds') "
           "OR (state = 'queued' AND queue <> 'default')")


def settle(rig: Rig, jobs: list[Job]) -> list[str]:
    """Wait for every job to end or park; revoke the parked ones. Problems for the rest."""
    ids = [j.id for j in jobs]
    pending = f"SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[]) AND NOT ({_PARKED})"
    try:
        wait_until(lambda: _count(rig, pending, ids) == 0, timeout=DEADLINE, interval=0.05,
                   message="jobs to end")
    except AssertionError:
        labels = {j.id: j.label for j in jobs}
        rows = rig.db.execute(
            f"SELECT id::text, state, attempt, last_error FROM jobs "
            f"WHERE id = ANY(%s::uuid[]) AND NOT ({_PARKED})", (ids,)).fetchall()
        return [f"final: {labels[i]}: still {state} after {DEADLINE:.0f}s (attempt {attempt}, "
                f"last error {short(error)})" for i, state, attempt, error in rows]
    parked = [str(r[0]) for r in rig.db.execute(
        f"SELECT id FROM jobs WHERE id = ANY(%s::uuid[]) AND ({_PARKED})", (ids,))]
    if parked:
        rig.producer.control.revoke(parked)
    return []


def outcomes(rig: Rig, jobs: list[Job]) -> list[str]:
    problems = []
    rows = {r[0]: r[1:] for r in rig.db.execute(
        "SELECT id::text, state, attempt, error, "
        "       CASE WHEN octet_length(result::text) < 100000 THEN result END "
        "  FROM results WHERE id = ANY(%s::uuid[])", ([j.id for j in jobs],))}
    runs = {r[0]: r[1:] for r in rig.db.execute(
        "SELECT job_id::text, count(*), sum(runs) - count(*), count(*) FILTER (WHERE ended), "
        "       max(attempt) FROM executions WHERE job_id = ANY(%s::uuid[]) GROUP BY 1",
        ([j.id for j in jobs],))}
    for job in jobs:
        row = rows.get(job.id)
        executions, repeats, ended, last_run = runs.get(job.id, (0, 0, 0, 0))
        do = job.plan.get("do") if isinstance(job.plan, dict) else None
        if row is None and not job.may_skip_result:
            problems.append(f"final: {job.label}: gone from jobs without a result row")
        if row is not None:
            state, attempt, error, result = row
            if job.states is not None and state not in job.states:
                problems.append(f"outcome: {job.label}: ended {state}, expected "
                                f"{'/'.join(sorted(job.states))} ({short(error)})")
            elif job.result is not _UNSET and state == "SUCCESS" \
                    and not same(result, job.result):
                problems.append(f"outcome: {job.label}: result {short(result)} is not what "
                                f"was sent, {short(job.result)}")
            if last_run > attempt:
                problems.append(f"once: {job.label}: attempt {last_run} ran, but the result "
                                f"says attempt {attempt}")
        if repeats:
            problems.append(f"once: {job.label}: an attempt ran twice")
        if ended > 1:
            problems.append(f"once: {job.label}: ran to its end {ended} times")
        if executions > 1 and do not in ("retry", "exit"):
            problems.append(f"once: {job.label}: ran {executions} times")
    return problems


def canaries(rig: Rig) -> list[str]:
    """The worker lives, claims, and runs ``-c`` jobs at once."""
    if rig.worker.proc.poll() is not None:
        return [f"alive: the worker exited with code {rig.worker.proc.returncode}"]
    tag = uuid.uuid4().hex
    needed = rig.concurrency
    ids = [r.id for r in rig.producer.tasks["fuzz.canary"].apply_many(
        [((tag, needed, BARRIER), {})] * needed)]
    done = "SELECT count(*) FROM results WHERE id = ANY(%s::uuid[])"
    try:
        wait_until(lambda: _count(rig, done, ids) == needed, timeout=2 * BARRIER,
                   interval=0.05, message="canaries")
    except AssertionError:
        return [f"alive: {needed - _count(rig, done, ids)} of {needed} canaries never ended: "
                "the worker no longer claims, or lost slots"]
    seen = rig.db.execute("SELECT state, result FROM results WHERE id = ANY(%s::uuid[])",
                          (ids,)).fetchall()
    if any(state != "SUCCESS" or result != needed for state, result in seen):
        return [f"alive: {needed} canaries did not run at once (saw {sorted(seen)}): "
                "slots were lost"]
    return []


def run_batch(rig: Rig, batch: Batch) -> list[str]:
    """The whole round: raw rows, producer calls, then every property above."""
    stats = STATS.setdefault(rig.pool, Counter())
    stats["batches"] += 1
    jobs: list[Job] = []
    problems: list[str] = []
    for row in batch.raw:
        jobs += insert_raw(rig, row, stats)
    for call in batch.calls:
        made, door = one_call(rig, call, stats)
        jobs += made
        problems += door
    started = time.monotonic()
    problems += settle(rig, jobs)
    if not any(p.startswith("final:") for p in problems):
        problems += outcomes(rig, jobs)
    problems += canaries(rig)
    left = rig.db.execute("SELECT id, task, state FROM jobs LIMIT 5").fetchall()
    if left and not any(p.startswith("final:") for p in problems):
        problems.append(f"empty: rows left in jobs: {short(left)}")
    stats["seconds waiting"] += time.monotonic() - started
    return problems
