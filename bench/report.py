"""The one table: each system's figures and their ratio to pgqueue's."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .measure import median


@dataclass
class Row:
    label: str
    single: float | None = None
    bulk: float | None = None
    drain: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    worker_cpu: float | None = None
    server_cpu: float | None = None
    notes: list[str] = field(default_factory=list)


COLUMNS = [
    ("single", "single enqueue /s", "rate"),
    ("bulk", "bulk enqueue /s", "rate"),
    ("drain", "drain /s", "rate"),
    ("p50", "start p50 ms", "ms"),
    ("p95", "p95 ms", "ms"),
    ("p99", "p99 ms", "ms"),
    ("worker_cpu", "worker CPU µs/job", "us"),
    ("server_cpu", "PG/broker CPU µs/job", "us"),
]


def _number(value: float, kind: str) -> str:
    if kind == "ms":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def cell(value: float | None, base: float | None, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = _number(value, kind)
    if base and value is not None and base > 0:
        text += f" ({value / base:.2f}×)"
    return text


def render(rows: list[Row], base: Row) -> str:
    """A Markdown table (readable as plain text too); ratios are figure ÷ pgqueue's."""
    header = ["system (worker config)"] + [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.label]
        for attr, _, kind in COLUMNS:
            value = getattr(row, attr)
            ratio_base = getattr(base, attr) if row is not base else None
            cells.append(cell(value, ratio_base, kind))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def med(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if key in r and r[key] is not None]
    return median(values) if values else None
