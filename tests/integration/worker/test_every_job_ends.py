"""Every job ends, and the worker goes on: old correctness gaps, each shown with real
`pgqueue worker` processes (tests/integration/worker/apps/correct_tasks.py) on the
shared server."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue import App
from tests.acceptance.procs import WorkerProcess, workers

pytestmark = pytest.mark.acceptance

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "marks.txt"
    path.touch()
    monkeypatch.setenv("CORRECT_MARKS", str(path))
    return path


@pytest.fixture
def correct_app(pg_dsn: str, schema: str, marks: Path) -> Iterator[App]:
    application = App("correct", dsn=pg_dsn, schema=schema, set_as_current=False)
    yield application
    application.close()


def start(procs: list[WorkerProcess], pg_dsn: str, schema: str, *args: str) -> WorkerProcess:
    worker = WorkerProcess(pg_dsn, schema, "correct_tasks", *args, apps_dir=APPS)
    procs.append(worker)
    worker.wait_ready(60)
    return worker


def lines(path: Path, prefix: str) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()
            if line.startswith(prefix + " ")]


# -- floats keep their type through jsonb ---------------------------------------------------
FLOATS = [1e300, 2.0, -0.0, 1.5e-300, 1e20, 1e16, 123456789012345678.0, 5e-324,
          -1.7976931348623157e308, 0.1, 1e-5, -2.5e22, 9007199254740993.0]


def test_floats_round_trip_as_floats_through_a_worker(
        correct_app: App, pg_dsn: str, schema: str, db: psycopg.Connection[Any]) -> None:
    """jsonb keeps numbers as numeric, and writes 1e20 as 100000000000000000000, which
    Python reads back as an int: args and results must come back as the floats sent."""
    with workers() as procs:
        start(procs, pg_dsn, schema, "-c", "2")
        nested = {"deep": [FLOATS, {"x": 1e25}], "int": 10**20}
        result = correct_app.send_task("correct_tasks.echo", FLOATS,
                                       {"nested": nested}).get(timeout=30)
    assert result["types"] == ["float"] * len(FLOATS), result["types"]
    assert all(type(v) is float for v in result["values"])
    assert result["values"] == FLOATS
    assert result["named"]["nested"] == nested
    assert type(result["named"]["nested"]["deep"][1]["x"]) is float
    assert type(result["named"]["nested"]["int"]) is int  # ints stay ints
    # -0.0 comes back equal, but as 0.0: Postgres' numeric has no negative zero.
    assert math.copysign(1, result["values"][2]) == 1.0
    # A plain SQL reader sees the same numbers (as numeric).
    stored = db.execute("SELECT result->'values'->>4 FROM results").fetchone()[0]
    assert float(stored) == 1e20


def test_any_float_survives_jsonb(db: psycopg.Connection[Any]) -> None:
    """Many floats at the edges, through json_dumps, Postgres' jsonb and back."""
    import json
    import random
    import struct

    from pgqueue.utils import json_dumps

    rng = random.Random(16)
    edges = [float(f"1e{e}") for e in range(-323, 309)] + [
        struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(3000)]
    edges = [x for x in edges if math.isfinite(x)] + [2.0**n for n in range(-1074, 1024)]
    text = db.execute("SELECT %s::jsonb::text", [json_dumps(edges)]).fetchone()[0]
    back = json.loads(text)
    assert [type(x) for x in back] == [float] * len(edges)
    assert back == edges
