"""What the canvas tests of lost and stranded steps share (test_stranded.py,
test_purge_prune_start.py): their tasks, and how many steps and edges still wait."""

from __future__ import annotations

from typing import Any

import psycopg

from pgqueue import App


def make_tasks(app: App) -> dict[str, Any]:
    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="note")
    def note(*args: Any) -> str:
        return "errback ran"

    return {"add": add, "tsum": tsum, "note": note}


def waiting(db: psycopg.Connection[Any]) -> tuple[int, int]:
    row = db.execute("SELECT (SELECT count(*) FROM canvas_steps), "
                     "(SELECT count(*) FROM canvas_edges)").fetchone()
    assert row is not None
    return row[0], row[1]
