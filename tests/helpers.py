"""Helpers importable by tests: ``from tests.helpers import wait_until``."""

from __future__ import annotations

from typing import Any

import psycopg

from .conftest import running_worker, wait_until

__all__ = ["plan_scans", "running_worker", "wait_until"]


def plan_scans(conn: psycopg.Connection[Any], query: bytes,
               params: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation) of every scan in the plan Postgres picks for ``query``."""
    plan = conn.execute(b"EXPLAIN (FORMAT JSON) " + query, params).fetchone()
    assert plan is not None
    found: list[tuple[str, str]] = []
    nodes = [plan[0][0]["Plan"]]  # psycopg decodes the json
    while nodes:
        node = nodes.pop()
        if "Relation Name" in node:
            found.append((node["Node Type"], node["Relation Name"]))
        nodes.extend(node.get("Plans", []))
    return found
