"""pgbench reference rows: what one commit per job costs on this server, with no queue code.

* one INSERT per transaction, 1 client: the ceiling of any unbatched enqueue;
* pgqueue's own one-job enqueue statement (``job_insert_one``: its ``jobs`` table with
  the claim index, and the NOTIFY) per transaction, 1 client: the ceiling of
  ``delay()`` for any client, what the server's side of a pgqueue job costs;
* the one INSERT again, throttled to about 50 transactions/s so that every transaction
  starts after an idle gap, as the latency probes do: its latency p50/p95/p99 is what one
  commit costs a C client on this machine when the processes involved were asleep, the
  floor under any enqueue→start figure that includes a durable enqueue;
* insert + claim (``FOR UPDATE SKIP LOCKED``) + delete of one job per transaction, 4
  clients: the ceiling of any queue that commits once per job.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlparse

import psycopg

from . import env
from .measure import percentile

if TYPE_CHECKING:
    from pgqueue import App

SCHEMA = env.SCHEMAS["reference"]
#: A pgqueue installation of its own, for the row of pgqueue's enqueue statement.
PGQUEUE_SCHEMA = f"{SCHEMA}_pgq"
#: Transactions per second of the throttled run: gaps of 20 ms on average (Poisson
#: arrivals), like the latency probes' 10-30 ms.
THROTTLED_RATE = 50

INSERT_ONE = f"INSERT INTO {SCHEMA}.jobs (payload) VALUES ('{{}}');\n"
QUEUE_CYCLE = f"""BEGIN;
INSERT INTO {SCHEMA}.queue (payload) VALUES ('{{}}');
WITH c AS (SELECT id FROM {SCHEMA}.queue ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
DELETE FROM {SCHEMA}.queue q USING c WHERE q.id = c.id;
COMMIT;
"""


class Script(NamedTuple):
    """A pgbench script and the variables it reads (``-D name=value``)."""

    text: str
    variables: dict[str, str] = {}


def setup() -> Script:
    """Create the reference tables; returns pgqueue's enqueue statement as a script."""
    from pgqueue import App
    from pgqueue.db import migrations

    with psycopg.connect(env.database_dsn(harness=True), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"DROP SCHEMA IF EXISTS {PGQUEUE_SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        for table in ("jobs", "queue"):
            conn.execute(f"CREATE TABLE {SCHEMA}.{table} (id bigserial PRIMARY KEY, "
                         "payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
    migrations.migrate(env.database_dsn(), PGQUEUE_SCHEMA)
    return pgqueue_enqueue_script(App("bench-reference", dsn=env.database_dsn(),
                                      schema=PGQUEUE_SCHEMA))


def pgqueue_enqueue_script(app: App) -> Script:
    """``job_insert_one`` with the parameters a plain ``noop.delay()`` binds, as pgbench
    variables: with ``-M prepared`` pgbench sends each ``:name`` as a parameter of the
    prepared statement, untyped text as pgqueue's producer does, so the server parses
    and casts the same values (three jsonb among them) on every execution. A NULL
    parameter is a NULL literal (pgbench cannot bind one), which has nothing to parse.

    The id is ``gen_random_uuid()`` (pgbench has no uuid7): random ids land anywhere in
    the primary key instead of at its end, which on a table this small and cached costs
    nothing measurable.
    """
    from pgqueue.client.producer import build_rows

    batch = build_rows(app, "noop", None, [((), {})], {"ignore_result": True}, pairs=True)
    params: dict[str, Any] = batch.single_params()
    params["jobs_channel"] = app.queries.jobs_channel
    variables = {}

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        value = params[name]
        if name == "id":
            return "gen_random_uuid()"
        if value is None:
            return "NULL"
        variables[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return f":{name}"

    text = re.sub(r"%\((\w+)\)s", placeholder, app.queries["job_insert_one"].decode())
    text = text.replace("gen_random_uuid()::uuid", "gen_random_uuid()")
    return Script(text.strip() + ";\n", variables)


def _pgbench_argv(path: Path, clients: int, seconds: int, prepared: bool = False,
                  variables: dict[str, str] | None = None) -> list[str]:
    parsed = urlparse(env.SERVER_DSN)
    defines = [arg for name, value in (variables or {}).items()
               for arg in ("-D", f"{name}={value}")]
    return ["pgbench", "-n", "-f", str(path), "-c", str(clients), "-j", str(clients),
            "-M", "prepared" if prepared else "simple", *defines,
            "-T", str(seconds), "-h", parsed.hostname or "127.0.0.1",
            "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres", env.DATABASE]


def _text(script: str | Script) -> tuple[str, dict[str, str]]:
    return (script.text, script.variables) if isinstance(script, Script) else (script, {})


def pgbench(script: str | Script, clients: int, seconds: int, prepared: bool = False) -> float:
    """Transactions per second of ``script`` (excluding connection time); ``prepared``
    plans each statement once, as pgqueue's producer does (it prepares its one-row
    insert once per connection)."""
    text, variables = _text(script)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.sql"
        path.write_text(text)
        out = subprocess.run(_pgbench_argv(path, clients, seconds, prepared, variables),
                             capture_output=True, text=True, check=True).stdout
    match = re.search(r"tps = ([\d.]+) \((?:without initial connection time|excluding)", out)
    if not match:
        raise RuntimeError(f"could not read tps from pgbench output:\n{out}")
    return float(match.group(1))


def pgbench_latency(script: str | Script, clients: int, seconds: int, prepared: bool = False,
                    options: str | None = None) -> dict[str, float]:
    """Transactions per second of ``script`` (as ``jobs_per_s``) with the p50/p99 of one
    transaction in ms, from pgbench's per-transaction log; ``options`` goes to each
    session as PGOPTIONS (e.g. ``-c synchronous_commit=off``)."""
    environ = {**os.environ, **({"PGOPTIONS": options} if options else {})}
    text, variables = _text(script)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.sql"
        path.write_text(text)
        argv = _pgbench_argv(path, clients, seconds, prepared, variables) + [
            "--log", f"--log-prefix={Path(tmp) / 'txn'}"]
        out = subprocess.run(argv, capture_output=True, text=True, check=True,
                             env=environ).stdout
        samples = [int(line.split()[2]) / 1000 for log in Path(tmp).glob("txn*")
                   for line in log.read_text().splitlines()]
    match = re.search(r"tps = ([\d.]+) \((?:without initial connection time|excluding)", out)
    if not match or not samples:
        raise RuntimeError(f"could not read pgbench's figures:\n{out}")
    return {"jobs_per_s": float(match.group(1)), "p50_ms": percentile(samples, 50),
            "p99_ms": percentile(samples, 99)}


def throttled_latency(script: str, rate: int, seconds: int) -> dict[str, float]:
    """Latency percentiles (ms) of ``script`` run by 1 client at about ``rate``/s.

    pgbench's per-transaction log gives each transaction's time; with ``--rate`` that
    time counts from the scheduled start, so the schedule lag (the last field) is taken
    off to keep only the transaction itself.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.sql"
        path.write_text(script)
        argv = _pgbench_argv(path, 1, seconds) + [
            "--rate", str(rate), "--log", f"--log-prefix={Path(tmp) / 'txn'}"]
        subprocess.run(argv, capture_output=True, text=True, check=True)
        samples = []
        for log in Path(tmp).glob("txn*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                # client, transaction, time µs, script, epoch s, epoch µs, schedule lag µs
                samples.append((int(fields[2]) - int(fields[6])) / 1000)
    if not samples:
        raise RuntimeError("pgbench --log wrote no transactions")
    return {f"p{q}_ms": percentile(samples, q) for q in (50, 95, 99)}


def run(seconds: int) -> dict[str, float] | None:
    """The reference figures, or None when pgbench is not installed."""
    if shutil.which("pgbench") is None:
        env.log("pgbench not found: reference rows skipped (apt-get install postgresql-client)")
        return None
    enqueue_script = setup()
    return {
        "insert_1client": pgbench(INSERT_ONE, 1, seconds),
        "pgqueue_insert_1client": pgbench(enqueue_script, 1, seconds, prepared=True),
        "queue_cycle_4clients": pgbench(QUEUE_CYCLE, 4, seconds),
        **{f"insert_idle_{k}": v for k, v in
           throttled_latency(INSERT_ONE, THROTTLED_RATE, max(6, 2 * seconds)).items()},
    }
