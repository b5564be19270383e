"""A seeded schema and a TestClient on the dashboard over it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard tests need the dashboard extra")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx (the dev extra)")

from starlette.testclient import TestClient  # noqa: E402

from pgqueue import App  # noqa: E402
from pgqueue.dashboard import DashboardSettings, create_app  # noqa: E402

from .seed import Seeded, seed  # noqa: E402


@pytest.fixture
def seeded(app: App, direct_dsn: str) -> Seeded:
    return seed(app, direct_dsn)


def make_client(app: App, **settings: Any) -> TestClient:
    return TestClient(create_app(app, DashboardSettings(**settings)),
                      base_url="http://127.0.0.1", follow_redirects=False)


@pytest.fixture
def client(app: App, seeded: Seeded) -> Iterator[TestClient]:
    with make_client(app) as test_client:
        yield test_client


def csrf(client: TestClient, page: str = "/") -> str:
    """The CSRF token a page hands out (its cookie)."""
    assert client.get(page).status_code == 200
    token = client.cookies.get("pgqueue_csrf")
    assert token
    return str(token)
