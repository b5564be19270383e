"""No job can wedge a worker (issue 12): hypothesis fuzzes real workers of every pool.

One `pgqueue worker` per pool runs for the whole module; each example is a batch of
producer calls and raw rows (strategies.py) whose properties checks.py lists. After a
failing batch the worker and its schema are replaced, so every example starts clean and
hypothesis can replay (or shrink) a failure on its own.

CI runs a fixed, small number of examples. By hand:
  PGQUEUE_FUZZ_EXAMPLES=2000   examples per pool
  PGQUEUE_FUZZ_SEED=7          another fixed seed (the default derandomizes)
  PGQUEUE_FUZZ_SHRINK=1        shrink a failure to a minimal batch (slow: each try is a batch)
  PGQUEUE_FUZZ_ONLY=raise,raw  only these families of odd input (see strategies.py)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from psycopg import sql

from pgqueue import App
from tests.acceptance.procs import WorkerProcess
from tests.pgserver import fresh_schema

from .checks import STATS, run_batch
from .fuzz_tasks import register
from .strategies import batches

pytestmark = [pytest.mark.acceptance, pytest.mark.fuzz]

HERE = Path(__file__).resolve().parent
#: Slots per pool: enough to see a lost one, few enough for a 2-core machine.
POOLS = {"threads": 4, "processes": 4, "asyncio": 4, "solo": 1}
EXAMPLES = int(os.environ.get("PGQUEUE_FUZZ_EXAMPLES", "15"))
_SEED = os.environ.get("PGQUEUE_FUZZ_SEED")
_PHASES = [Phase.explicit, Phase.generate] + (
    [Phase.shrink] if os.environ.get("PGQUEUE_FUZZ_SHRINK") else [])


class Rig:
    """A worker of one pool on a schema of its own, and a producer app on that schema."""

    def __init__(self, dsn: str, pool: str) -> None:
        self.dsn = dsn
        self.pool = pool
        self.concurrency = POOLS[pool]
        self.dirty = True
        self._stack = ExitStack()

    def ensure_clean(self) -> None:
        if self.dirty or self.worker.proc.poll() is not None:
            self.restart()

    def restart(self) -> None:
        self.close()
        stack = self._stack = ExitStack()
        self.schema = stack.enter_context(fresh_schema(self.dsn, "fz_"))
        self.db = stack.enter_context(psycopg.connect(self.dsn, autocommit=True))
        self.db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        self.db.execute("CREATE TABLE executions (job_id uuid, attempt int, pid int, "
                        "runs int NOT NULL DEFAULT 1, ended bool NOT NULL DEFAULT false, "
                        "PRIMARY KEY (job_id, attempt))")
        self.db.execute("CREATE TABLE canaries (tag text, job_id uuid)")
        self.producer = App("fuzz-producer", dsn=self.dsn, schema=self.schema,
                            set_as_current=False)
        register(self.producer)
        stack.callback(self.producer.close)
        self.worker = WorkerProcess(self.dsn, self.schema, "fuzz_tasks", "-P", self.pool,
                                    "-c", str(self.concurrency), apps_dir=HERE)
        stack.callback(self.worker.stop)
        self.worker.wait_ready()
        self.dirty = False

    def log_errors(self, most: int = 12) -> str:
        """The worker's distinct warnings and errors, and its last line."""
        lines = self.worker.output().splitlines()
        seen: dict[str, str] = {}
        for line in lines:
            level, _, message = line.partition("] ")
            if ("WARNING" in level or "ERROR" in level) and message[:80] not in seen:
                seen[message[:80]] = line[:300]
        shown = list(seen.values())[:most]
        return "\n".join([*shown, f"(last line) {lines[-1][:300] if lines else ''}"])

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="module", params=list(POOLS))
def rig(request: pytest.FixtureRequest, pg_dsn: str) -> Iterator[Rig]:
    rig = Rig(pg_dsn, request.param)
    yield rig
    rig.close()


def _fuzz_settings(test: object) -> object:
    configured = settings(
        max_examples=EXAMPLES, derandomize=_SEED is None, database=None, deadline=None,
        phases=_PHASES, print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.large_base_example, HealthCheck.filter_too_much],
    )(test)
    return seed(int(_SEED))(configured) if _SEED is not None else configured


@_fuzz_settings
@given(data=st.data())
def test_no_job_wedges_a_worker(rig: Rig, data: st.DataObject) -> None:
    batch = data.draw(batches(rig.pool), label="batch")
    rig.ensure_clean()
    try:
        problems = run_batch(rig, batch)
    except BaseException:
        rig.dirty = True
        raise
    if problems:
        rig.dirty = True
        STATS[rig.pool]["failing batches"] += 1
        raise AssertionError(
            f"{len(problems)} problems in a batch of the {rig.pool} pool:\n  "
            + "\n  ".join(problems) + f"\nworker log:\n{rig.log_errors()}")
