"""``python -m bench.trigger``: what the canvas trigger costs a plain drain (issue 15).

``canvas_advance`` (``sql/migrations/0006_canvas.sql``) runs after every statement that
inserts or updates ``results``, so after every finish batch of every worker, whether or
not a finished job belongs to a workflow; with ``ignore_result`` tasks the finish's
``INSERT`` writes no row, and the statement trigger still runs. The A/B: one ``pgqueue
worker -P threads -c 100`` drains ``--drain-jobs`` jobs with no workflow, on a fresh
schema as migrated and on one whose two ``canvas_advance`` triggers were dropped (a
scratch schema of the bench: never a way to run pgqueue), taking turns, for stored
results (``noop_stored``: the trigger sees rows) and ignored ones (``noop``). Each figure
is the median of each run's rate over the run without the trigger just before it.

Writes ``bench/results/trigger-*.json`` and prints a small table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

from . import env
from .flow import TABLE_HEAD, compare, describe, drain, table_row


def drop_canvas_trigger(db: psycopg.Connection[Any], schema: str) -> None:
    """The bench-only baseline: ``results`` without the canvas triggers."""
    for trigger in ("canvas_advance_inserted", "canvas_advance_updated"):
        db.execute(sql.SQL("DROP TRIGGER {} ON {}.results").format(
            sql.Identifier(trigger), sql.Identifier(schema)))


#: The proposed shortcut (not in a migration: the lead places it): a finish batch none of
#: whose jobs a workflow step waits for ends the trigger after one probe of the edges.
EARLY_EXIT = """
    IF NOT EXISTS (SELECT FROM canvas_edges e JOIN finished f ON e.before = f.id) THEN
        RETURN NULL;
    END IF;
"""


def early_exit(db: psycopg.Connection[Any], schema: str) -> None:
    """The bench-only variant: ``canvas_advance`` as migrated, with :data:`EARLY_EXIT`
    before its first statement (only in this scratch schema)."""
    row = db.execute("SELECT pg_get_functiondef(%s::regprocedure)",
                     [f"{schema}.canvas_advance()"]).fetchone()
    assert row is not None
    source = str(row[0])
    at = source.index("\nBEGIN\n") + len("\nBEGIN")
    db.execute(source[:at] + EARLY_EXIT + source[at:])


SIDES = {"without": drop_canvas_trigger, "with": None, "early-exit": early_exit}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trigger", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--drain-jobs", type=int, default=20_000)
    parser.add_argument("--early-exit", action="store_true",
                        help="a third side: the trigger with the proposed early exit")
    parser.add_argument("--tasks", default="noop_stored,noop",
                        help="comma-separated: noop_stored (results stored), noop (ignored)")
    options = parser.parse_args(argv)
    env.ensure_database()
    this = env.REPO_ROOT
    out: dict[str, Any] = {}
    with psycopg.connect(env.database_dsn(harness=True), autocommit=True) as db:
        for task in options.tasks.split(","):
            sides = ["without", "with"] + (["early-exit"] if options.early_exit else [])
            runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
            for _ in range(options.repeats):
                for side in sides:
                    run = drain(db, this, f"bench_trigger_{side.replace('-', '_')}",
                                options.drain_jobs, task=task, strip=SIDES[side])
                    runs[side].append(run)
                    env.log(f"drain {task} {side} the trigger: {describe(run)}")
            out[task] = {"runs": runs, **compare(runs["with"], runs["without"])}
            if options.early_exit:
                out[f"{task}, early exit"] = {
                    "runs": runs, **compare(runs["early-exit"], runs["without"])}
    env.RESULTS_DIR.mkdir(exist_ok=True)
    path = env.RESULTS_DIR / f"trigger-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(TABLE_HEAD)
    for task, figures in out.items():
        what = "with the early exit" if "early exit" in task else "with"
        print(table_row(f"drain of {task.split(',')[0]}, 1 worker c100: without "
                        f"canvas_advance → {what}", figures))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
