"""pgbench reference rows: what one commit per job costs on this server, with no queue code.

* one INSERT per transaction, 1 client: the ceiling of any unbatched enqueue;
* insert + claim (``FOR UPDATE SKIP LOCKED``) + delete of one job per transaction, 4
  clients: the ceiling of any queue that commits once per job.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import psycopg

from . import env

SCHEMA = env.SCHEMAS["reference"]

INSERT_ONE = f"INSERT INTO {SCHEMA}.jobs (payload) VALUES ('{{}}');\n"
QUEUE_CYCLE = f"""BEGIN;
INSERT INTO {SCHEMA}.queue (payload) VALUES ('{{}}');
WITH c AS (SELECT id FROM {SCHEMA}.queue ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
DELETE FROM {SCHEMA}.queue q USING c WHERE q.id = c.id;
COMMIT;
"""


def setup() -> None:
    with psycopg.connect(env.database_dsn(harness=True), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        for table in ("jobs", "queue"):
            conn.execute(f"CREATE TABLE {SCHEMA}.{table} (id bigserial PRIMARY KEY, "
                         "payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")


def pgbench(script: str, clients: int, seconds: int) -> float:
    """Transactions per second of ``script`` (excluding connection time)."""
    parsed = urlparse(env.SERVER_DSN)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.sql"
        path.write_text(script)
        argv = ["pgbench", "-n", "-f", str(path), "-c", str(clients), "-j", str(clients),
                "-T", str(seconds), "-h", parsed.hostname or "127.0.0.1",
                "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres",
                env.DATABASE]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    match = re.search(r"tps = ([\d.]+) \((?:without initial connection time|excluding)", out)
    if not match:
        raise RuntimeError(f"could not read tps from pgbench output:\n{out}")
    return float(match.group(1))


def run(seconds: int) -> dict[str, float] | None:
    """Both reference figures, or None when pgbench is not installed."""
    if shutil.which("pgbench") is None:
        env.log("pgbench not found: reference rows skipped (apt-get install postgresql-client)")
        return None
    setup()
    return {
        "insert_1client": pgbench(INSERT_ONE, 1, seconds),
        "queue_cycle_4clients": pgbench(QUEUE_CYCLE, 4, seconds),
    }
