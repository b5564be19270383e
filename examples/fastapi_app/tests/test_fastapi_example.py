"""The FastAPI example: async endpoints, a real worker, an async SQLAlchemy transaction."""

from __future__ import annotations

from typing import Any

from tests.conftest import running_worker, wait_until


def count(client: Any, table: str) -> int:
    import api_app
    import psycopg
    from psycopg import sql

    with psycopg.connect(api_app.settings["url"]) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(api_app.settings["search_path"]), sql.Identifier(table))
        return int(conn.execute(query).fetchone()[0])  # type: ignore[index]


def test_a_signup_and_its_job_commit_together_and_the_job_sees_the_row(client: Any) -> None:
    import api_app

    response = client.post("/signups", json={"email": "ada@example.com"})
    assert response.status_code == 201
    body = response.json()
    assert count(client, "signups") == 1 and count(client, "jobs") == 1
    with running_worker(api_app.queue):
        result = api_app.queue.AsyncResult(body["job"])
        assert result.get(timeout=10) == f"welcomed signup {body['id']}"


def test_a_refused_signup_leaves_neither_the_row_nor_the_job(client: Any) -> None:
    response = client.post("/signups", json={"email": "bob@example.com",
                                             "fail_after_enqueue": True})
    assert response.status_code == 409
    assert count(client, "signups") == 0
    assert count(client, "jobs") == 0


def test_a_report_is_accepted_and_its_status_follows_it_to_the_result(client: Any) -> None:
    import api_app

    response = client.post("/reports", json={"pages": 4, "seconds_per_page": 0.1})
    assert response.status_code == 202
    location = response.headers["Location"]
    assert location == f"/reports/{response.json()['id']}"
    assert client.get(location).json() == {"state": "PENDING", "current": 0, "total": 1}

    seen: list[dict[str, Any]] = []

    def finished() -> bool:
        seen.append(client.get(location).json())
        return seen[-1]["state"] == "SUCCESS"

    with running_worker(api_app.queue):
        wait_until(finished, timeout=20, message="the report to finish")
    assert any(s["state"] == "PROGRESS" and s["total"] == 4 for s in seen), seen
    assert seen[-1] == {"state": "SUCCESS", "current": 4, "total": 4,
                        "result": {"current": 4, "total": 4, "pages": 4}}


def test_the_status_of_an_id_no_job_has_is_pending(client: Any) -> None:
    """Any string is a task id, as in Celery: a bogus one answers PENDING, not HTTP 500."""
    for task_id in ("bogus", "not-a-uuid", "%C3%BCn%C3%AFc%C3%B8d%C3%A9", "x" * 600):
        response = client.get(f"/reports/{task_id}")
        assert response.status_code == 200, task_id
        assert response.json()["state"] == "PENDING"
