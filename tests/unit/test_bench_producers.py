"""`python -m bench --producers`: the table's shape with the Celery rows, and a failed
peer run shown as a row, not a crash."""

from __future__ import annotations

from typing import Any

from bench import producers


def figures(jobs_per_s: float) -> dict[str, Any]:
    return {"jobs_per_s": jobs_per_s, "p50_ms": 1.0, "p99_ms": 9.0, "client_cpu_us": 300.0}


def test_celery_rows_get_both_ratios_and_a_failed_one_its_error() -> None:
    table = producers.render({
        "pgbench_durable": figures(1000), "pgqueue_processes_durable": figures(900),
        "celery_redis_processes": figures(600),
        "celery_rabbitmq_processes": producers._summary([{"error": "TimeoutError: 3 of 9"}]),
    }, 5, 1)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()[4:]}
    redis = rows[producers.LABELS["celery_redis_processes"]]
    assert "| 600 | 0.60 | 1.50 |" in redis  # × pgbench, then pgqueue ÷ Celery
    assert "failed: TimeoutError: 3 of 9" in rows[producers.LABELS["celery_rabbitmq_processes"]]
    assert table.splitlines()[2].count("|") == table.splitlines()[4].count("|")


def test_medians_leave_out_failed_repeats() -> None:
    summary = producers._summary([{"error": "x"}, figures(10), figures(30)])
    assert summary["jobs_per_s"] == 20


def test_systems_without_celery_run_no_celery_row() -> None:
    assert producers._celery_systems(["pgqueue"]) == []
    assert set(producers.CELERY_ROWS) <= set(producers.LABELS)
