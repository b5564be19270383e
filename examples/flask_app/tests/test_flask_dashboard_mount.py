"""pgqueue's dashboard mounted inside the Flask example under /pgqueue (a2wsgi behind
Werkzeug's DispatcherMiddleware), through Flask's test client: its pages answer there,
its links and cookies keep the prefix, actions are refused in the example's read-only
mount and work, CSRF-checked and authenticated, when a test app enables them."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("jinja2", reason="the dashboard needs `pip install '.[dashboard]'`")
pytest.importorskip("a2wsgi", reason="the Flask mount needs `pip install '.[dashboard]'`")

from pgqueue.dashboard import DashboardSettings  # noqa: E402

TOKEN = "flask-mount-token"
DASHBOARD_CSP = "frame-ancestors 'self'"


def queued_job(client: Any) -> str:
    """A long task that stays queued (no worker here): its id."""
    started = client.post("/longtask")
    assert started.status_code == 202
    return str(started.get_json()["id"])


def test_the_dashboard_answers_read_only_under_the_prefix(flask_app: Any) -> None:
    client = flask_app.test_client()
    job_id = queued_job(client)
    listing = client.get("/pgqueue/jobs", query_string={"task": "progress_app.long_task"})
    assert listing.status_code == 200
    text = listing.get_data(as_text=True)
    assert f'href="/pgqueue/jobs/{job_id}"' in text
    assert 'href="/pgqueue/static/dashboard.css"' in text
    for page in ("/pgqueue/", "/pgqueue/queues", "/pgqueue/workers", f"/pgqueue/jobs/{job_id}",
                 "/pgqueue/static/dashboard.js"):
        answer = client.get(page)  # read to the end, as a server would
        assert answer.status_code == 200 and answer.get_data(), page
    assert client.get("/pgqueue").headers["Location"].endswith("/pgqueue/")
    cookie = client.get_cookie("pgqueue_csrf", path="/pgqueue")
    assert cookie is not None and cookie.path == "/pgqueue"
    refused = client.post("/pgqueue/actions/revoke", data={"id": job_id, "csrf": cookie.value})
    assert refused.status_code == 403
    assert client.get(f"/status/{job_id}").get_json()["state"] == "PENDING"  # Flask's own


def test_an_action_with_csrf_and_auth_through_the_mount(flask_schema: tuple[str, str]) -> None:
    from progress_app import create_app, long_task

    dsn, schema = flask_schema
    app = create_app({"TESTING": True, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema,
                      "DASHBOARD_SETTINGS": DashboardSettings(read_only=False, token=TOKEN)})
    client = app.test_client()
    job_id = queued_job(client)
    assert client.get("/pgqueue/jobs").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    page = client.get(f"/pgqueue/jobs/{job_id}", headers=auth)
    assert page.status_code == 200 and 'action="/pgqueue/actions/revoke"' in page.get_data(
        as_text=True)
    token = client.get_cookie("pgqueue_csrf", path="/pgqueue").value
    no_token = client.post("/pgqueue/actions/revoke", headers=auth, data={"id": job_id})
    assert no_token.status_code == 403
    other_origin = client.post("/pgqueue/actions/revoke", data={"id": job_id, "csrf": token},
                               headers={**auth, "Origin": "http://evil.example"})
    assert other_origin.status_code == 403
    assert long_task.AsyncResult(job_id).state == "PENDING"
    done = client.post("/pgqueue/actions/revoke", headers=auth,
                       data={"id": job_id, "csrf": token, "next": f"/jobs/{job_id}"})
    assert done.status_code == 303 and done.headers["Location"] == f"/pgqueue/jobs/{job_id}"
    assert long_task.AsyncResult(job_id).state == "REVOKED"
    flashed = client.get(done.headers["Location"], headers=auth).get_data(as_text=True)
    assert f"job {job_id} revoked" in flashed


def test_dot_segments_do_not_cross_between_the_dashboard_and_flask(flask_app: Any) -> None:
    """/pgqueue/../status/x stays in the dashboard (a 404 there); /status/../pgqueue/
    and /pgqueueadmin stay in Flask. Werkzeug's client sends the path as given."""
    client = flask_app.test_client()
    for path in ("/pgqueue/../status/x", "/pgqueue/%2e%2e/status/x"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert DASHBOARD_CSP in answer.headers["Content-Security-Policy"], path
    for path in ("/status/../pgqueue/", "/pgqueueadmin", "/pgqueue.."):
        answer = client.get(path)
        assert "Content-Security-Policy" not in answer.headers, path
