"""pgqueue's dashboard mounted in the shop: shop/asgi.py (ASGI, read-only) and
pgqueue.contrib.django.dashboard.mount / mount_wsgi with actions, through real clients:
Starlette's TestClient on the combined ASGI app, Werkzeug's on the combined WSGI app."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest

pytest.importorskip("jinja2", reason="the dashboard needs `pip install '.[dashboard]'`")
pytest.importorskip("a2wsgi", reason="mount_wsgi needs `pip install '.[dashboard]'`")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx (the dev extra)")

from starlette.testclient import TestClient  # noqa: E402

from pgqueue.dashboard import DashboardSettings  # noqa: E402
from pgqueue.exceptions import ConfigurationError  # noqa: E402

pytestmark = pytest.mark.usefixtures("shop")
TOKEN = "mount-test-token"
DASHBOARD_CSP = "frame-ancestors 'self'"


def place_order() -> str:
    """An order whose fulfilment job stays queued (no worker here): its task id."""
    from django.test import Client
    from orders.models import Order

    assert Client().post("/orders/", {"item": "lamp", "quantity": 1}).status_code == 302
    return str(Order.objects.get().job_id)


def raw_get(application: Any, path: str) -> tuple[int, dict[str, str]]:
    """One GET with ``path`` exactly as given (no client tidies its dots away)."""
    sent: list[dict[str, Any]] = []
    received: list[bool] = []

    async def receive() -> dict[str, Any]:
        if received:  # no disconnect: the response ends the call
            await asyncio.Event().wait()
        received.append(True)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "server": ("testserver", 80),
             "client": ("127.0.0.1", 5000), "headers": [(b"host", b"testserver")]}
    asyncio.run(application(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def test_shop_asgi_serves_the_dashboard_read_only_under_pgqueue() -> None:
    job_id = place_order()
    client = TestClient(importlib.import_module("shop.asgi").application,
                        follow_redirects=False)
    listing = client.get("/pgqueue/jobs")
    assert listing.status_code == 200
    assert f'href="/pgqueue/jobs/{job_id}"' in listing.text
    assert 'href="/pgqueue/static/dashboard.css"' in listing.text
    for page in ("/pgqueue/", "/pgqueue/queues", f"/pgqueue/jobs/{job_id}",
                 "/pgqueue/static/dashboard.js"):
        assert client.get(page).status_code == 200, page
    assert client.get("/pgqueue").headers["location"].endswith("/pgqueue/")
    assert client.post("/pgqueue/actions/revoke", data={"id": job_id}).status_code == 403
    shop_page = client.get("/")
    assert shop_page.status_code == 200 and b"lamp" in shop_page.content  # Django's own


def test_actions_with_csrf_and_auth_through_the_asgi_mount() -> None:
    from django.core.asgi import get_asgi_application

    from pgqueue.contrib.django import get_app
    from pgqueue.contrib.django.dashboard import mount

    job_id = place_order()
    combined = mount(get_asgi_application(), prefix="/ops/queue",
                     settings=DashboardSettings(read_only=False, token=TOKEN))
    client = TestClient(combined, base_url="http://127.0.0.1", follow_redirects=False)
    assert client.get("/ops/queue/").status_code == 401
    client.headers["authorization"] = f"Bearer {TOKEN}"
    page = client.get("/ops/queue/jobs")
    assert page.status_code == 200
    token = client.cookies.get("pgqueue_csrf")
    assert token and "Path=/ops/queue" in page.headers["set-cookie"]
    assert client.post("/ops/queue/actions/revoke", data={"id": job_id}).status_code == 403
    done = client.post("/ops/queue/actions/revoke",
                       data={"id": job_id, "csrf": token, "next": "/jobs"})
    assert done.status_code == 303 and done.headers["location"] == "/ops/queue/jobs"
    assert get_app().AsyncResult(job_id).state == "REVOKED"


def test_a_wsgi_project_mounts_it_with_a2wsgi() -> None:
    from django.core.wsgi import get_wsgi_application
    from werkzeug.test import Client

    from pgqueue.contrib.django import get_app
    from pgqueue.contrib.django.dashboard import mount_wsgi

    job_id = place_order()
    combined = mount_wsgi(get_wsgi_application(),
                          settings=DashboardSettings(read_only=False, token=TOKEN))
    client = Client(combined)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/pgqueue/jobs").status_code == 401
    page = client.get("/pgqueue/jobs", headers=auth)
    assert page.status_code == 200
    assert f'href="/pgqueue/jobs/{job_id}"' in page.get_data(as_text=True)
    cookie = client.get_cookie("pgqueue_csrf", path="/pgqueue")
    assert cookie is not None
    done = client.post("/pgqueue/actions/revoke", headers=auth,
                       data={"id": job_id, "csrf": cookie.value, "next": "/jobs"})
    assert done.status_code == 303 and done.headers["Location"] == "/pgqueue/jobs"
    assert get_app().AsyncResult(job_id).state == "REVOKED"
    assert client.get("/").status_code == 200  # Django's own pages still answer
    assert client.get("/pgqueue/../admin/").status_code == 401  # the dashboard's auth
    for path in ("/admin/../pgqueue/", "/pgqueueadmin/"):
        assert DASHBOARD_CSP not in client.get(path).headers.get(
            "Content-Security-Policy", ""), path


def test_dot_segments_do_not_cross_between_the_dashboard_and_django() -> None:
    """/pgqueue/../admin/ stays in the dashboard (a 404 there, behind its own auth);
    /admin/../pgqueue/ and /pgqueueadmin/ stay in Django."""
    from django.core.asgi import get_asgi_application

    from pgqueue.contrib.django.dashboard import mount

    combined = mount(get_asgi_application(), settings=DashboardSettings(token=TOKEN))
    for path in ("/pgqueue/../admin/", "/pgqueue/..%2Fadmin/", "/pgqueue/%2e%2e/admin/"):
        status, headers = raw_get(combined, path)
        assert status == 401, (path, status)  # the dashboard's auth, not Django's admin
    for path in ("/admin/../pgqueue/", "/pgqueueadmin/", "/pgqueue..", "/static/../pgqueue/"):
        status, headers = raw_get(combined, path)
        assert status != 401 and DASHBOARD_CSP not in headers.get(
            "content-security-policy", ""), (path, status)
    opened = mount(get_asgi_application(), settings=DashboardSettings())
    status, headers = raw_get(opened, "/pgqueue/../admin/")
    assert status == 404 and DASHBOARD_CSP in headers["content-security-policy"]


@pytest.mark.parametrize("prefix", ["pgqueue", "/pgqueue/", "/", "", "/a/../b", "/a//b",
                                    "/pg queue", "/pg%2Fqueue", "/./x", None])
def test_a_prefix_that_is_not_a_plain_path_is_refused_in_one_line(prefix: Any) -> None:
    from pgqueue.contrib.django.dashboard import mount, mount_wsgi

    for mounted in (mount, mount_wsgi):
        with pytest.raises(ConfigurationError, match="is not a plain path such as '/pgqueue'"):
            mounted(lambda *args: None, prefix=prefix)


def test_without_the_extra_it_says_which_install_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pgqueue.contrib.django.dashboard import mount, mount_wsgi

    monkeypatch.setitem(sys.modules, "a2wsgi", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"needs a2wsgi: pip install 'pgqueue-tasks"):
        mount_wsgi(lambda *args: None)
    monkeypatch.setitem(sys.modules, "pgqueue.dashboard", None)
    with pytest.raises(ConfigurationError, match=r"needs the dashboard extra: pip install"):
        mount(lambda *args: None)
