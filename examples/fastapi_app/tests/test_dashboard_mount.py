"""pgqueue's dashboard mounted inside the FastAPI example under /pgqueue: its pages answer
there, its links keep the prefix, a report the API started shows up, and actions are
refused (the example mounts it read-only)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("jinja2", reason="the dashboard needs `pip install '.[dashboard]'`")


def test_the_dashboard_answers_under_the_prefix(client: Any) -> None:
    started = client.post("/reports", json={"pages": 2, "seconds_per_page": 0})
    job_id = started.json()["id"]
    listing = client.get("/pgqueue/jobs", params={"task": "api_app.generate_report"})
    assert listing.status_code == 200
    assert f'href="/pgqueue/jobs/{job_id}"' in listing.text
    assert 'href="/pgqueue/static/dashboard.css"' in listing.text
    for page in ("/pgqueue/", "/pgqueue/queues", "/pgqueue/workers", f"/pgqueue/jobs/{job_id}"):
        assert client.get(page).status_code == 200, page
    assert client.get("/pgqueue/static/dashboard.js").status_code == 200
    refused = client.post("/pgqueue/actions/revoke", data={"id": job_id})
    assert refused.status_code == 403
    assert client.get(f"/reports/{job_id}").status_code == 200  # the API is still itself
