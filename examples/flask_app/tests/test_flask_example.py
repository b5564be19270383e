"""The long task with progress: Flask's test client and a real pgqueue worker."""

from __future__ import annotations

from typing import Any

from tests.conftest import running_worker, wait_until


def follow(client: Any, location: str, timeout: float = 20) -> list[dict[str, Any]]:
    """Every status the endpoint returned until the task was final."""
    seen: list[dict[str, Any]] = []

    def final() -> bool:
        seen.append(client.get(location).get_json())
        return seen[-1]["state"] in ("SUCCESS", "FAILURE")

    wait_until(final, timeout=timeout, message=f"{location} to be final")
    return seen


def test_longtask_answers_202_with_the_status_location(flask_app: Any) -> None:
    client = flask_app.test_client()
    response = client.post("/longtask")
    assert response.status_code == 202
    task_id = response.get_json()["id"]
    assert response.headers["Location"] == f"/status/{task_id}"
    pending = client.get(response.headers["Location"]).get_json()
    assert pending == {"state": "PENDING", "current": 0, "total": 1, "status": "Pending..."}


def test_the_status_follows_the_progress_to_the_result(flask_app: Any) -> None:
    from progress_app import queue

    client = flask_app.test_client()
    location = client.post("/longtask").headers["Location"]
    with running_worker(queue):
        seen = follow(client, location)
    progress = [s for s in seen if s["state"] == "PROGRESS"]
    assert progress, f"no PROGRESS in {seen}"
    assert all(0 <= s["current"] < s["total"] == 8 and s["status"] for s in progress)
    currents = [s["current"] for s in progress]
    assert currents == sorted(currents)
    assert seen[-1] == {"state": "SUCCESS", "current": 8, "total": 8,
                        "status": "Task completed!", "result": 42}


def test_a_failing_task_reports_its_error(flask_app: Any) -> None:
    from progress_app import queue

    client = flask_app.test_client()
    location = client.post("/longtask", json={"total": 5, "step_seconds": 0.05,
                                              "fail_at": 2}).headers["Location"]
    with running_worker(queue):
        seen = follow(client, location)
    assert seen[-1]["state"] == "FAILURE"
    assert "the task failed at step 2 of 5" in seen[-1]["error"]


def test_tasks_run_inside_the_flask_app_context(flask_app: Any) -> None:
    from flask import current_app
    from progress_app import queue

    @queue.task(name="tests.app_name")
    def app_name() -> str:
        return str(current_app.name)

    with running_worker(queue):
        assert app_name.delay().get(timeout=10) == flask_app.name


def test_config_comes_from_app_config(flask_schema: tuple[str, str]) -> None:
    from flask import Flask

    from pgqueue.contrib.flask import PgQueue

    app = Flask("configured")
    app.config.update(SQLALCHEMY_DATABASE_URI="postgresql+psycopg://u@db.example/shop",
                      PGQUEUE_SCHEMA="jobs", PGQUEUE_TASK_DEFAULT_QUEUE="web")
    queue = PgQueue(app, set_as_current=False)
    assert queue.dsn == "postgresql://u@db.example/shop"
    assert (queue.schema, queue.conf.task_default_queue) == ("jobs", "web")
    assert app.extensions["pgqueue"] is queue


def test_the_status_of_an_id_no_job_has_is_pending(flask_app: Any) -> None:
    """Any string is a task id, as in Celery: a bogus one answers PENDING, not HTTP 500."""
    client = flask_app.test_client()
    for task_id in ("bogus", "not-a-uuid", "%C3%BCn%C3%AFc%C3%B8d%C3%A9", "x" * 600):
        response = client.get(f"/status/{task_id}")
        assert response.status_code == 200, task_id
        assert response.get_json()["state"] == "PENDING"
