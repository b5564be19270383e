"""Authentication, the bind refusal, secrets kept out of output, and the least role each
mode needs (a login role granted only <schema>_reader serves the read-only dashboard)."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from pgqueue import App
from pgqueue.dashboard import DashboardSettings
from pgqueue.dashboard.settings import BindRefused, check_bind
from pgqueue.exceptions import ConfigurationError
from tests.conftest import wait_until

from .conftest import csrf, make_client
from .seed import Seeded, seed

TOKEN = "t0ken-for-tests"


def _basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {pair}"}


def test_a_token_or_a_user_and_password_is_required_once_configured(
        app: App, seeded: Seeded) -> None:
    with make_client(app, token=TOKEN) as client:
        assert client.get("/").status_code == 401
        assert "basic" in client.get("/jobs").headers["www-authenticate"].lower()
        assert client.get("/", headers={"authorization": f"Bearer {TOKEN}"}).status_code \
            == 200
        assert client.get("/", headers=_basic("anyone", TOKEN)).status_code == 200
        for wrong in ({"authorization": "Bearer nope"}, _basic("anyone", "nope"),
                      {"authorization": "Basic !!!not-base64"}, {"authorization": "Digest x"}):
            assert client.get("/", headers=wrong).status_code == 401
        assert client.get("/static/dashboard.js").status_code == 401
    with make_client(app, user="ops", password="s3cret-pass") as client:
        assert client.get("/", headers=_basic("ops", "s3cret-pass")).status_code == 200
        assert client.get("/", headers=_basic("ops", "wrong-pass")).status_code == 401
        assert client.get("/", headers=_basic("eve", "s3cret-pass")).status_code == 401


def test_binding_beyond_loopback_needs_authentication() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, DashboardSettings())
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
        with pytest.raises(BindRefused, match="without authentication"):
            check_bind(host, DashboardSettings())
        check_bind(host, DashboardSettings(token=TOKEN))


def test_the_command_refuses_in_one_line_with_exit_2(pg_dsn: str, schema: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQUEUE_DASHBOARD")}
    done = subprocess.run([sys.executable, "-m", "pgqueue", "dashboard", "--host", "0.0.0.0",
                           "--dsn", pg_dsn, "--schema", schema],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "refusing to listen on 0.0.0.0" in done.stderr


def test_settings_never_show_a_password() -> None:
    with pytest.raises(ConfigurationError) as short:
        DashboardSettings(user="ops", password="tiny")
    assert "tiny" not in str(short.value)
    with pytest.raises(ConfigurationError, match="both"):
        DashboardSettings.from_env({"PGQUEUE_DASHBOARD_PASSWORD": "hunter2-long"})
    shown = repr(DashboardSettings(user="ops", password="hunter2-long", token=TOKEN))
    assert "hunter2" not in shown and TOKEN not in shown


def test_a_reader_role_serves_the_read_only_dashboard(
        pg_dsn: str, schema: str, direct_dsn: str, groups: dict[str, str],
        login: Callable[..., str], apps: Callable[[str], App]) -> None:
    seeded = seed(apps(pg_dsn), direct_dsn)
    reader = apps(login(groups["reader"]))
    with make_client(reader, read_only=True) as client:
        for page in ("/", "/queues", "/workers", "/jobs", "/schedules",
                     f"/jobs/{seeded.parent}"):
            assert client.get(page).status_code == 200, page
    # the same role with actions on: the command says which role it lacks
    done = subprocess.run([sys.executable, "-m", "pgqueue", "dashboard", "--dsn",
                           login(groups["reader"]), "--schema", schema],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{schema}_control" in done.stderr and "--read-only" in done.stderr
    # an action attempted by a reader-only role anyway is one line, no change
    with make_client(reader) as client:
        refused = client.post("/actions/revoke", data={"csrf": csrf(client),
                                                       "id": seeded.queued, "next": "/jobs"})
        assert f"{schema}_control" in client.get(refused.headers["location"]).text


def test_the_command_serves_pages_with_reader_and_control(
        pg_dsn: str, schema: str, direct_dsn: str, groups: dict[str, str],
        login: Callable[..., str], apps: Callable[[str], App]) -> None:
    seed(apps(pg_dsn), direct_dsn)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "pgqueue", "dashboard", "--port", str(port), "--dsn",
         login(groups["reader"], groups["control"], groups["producer"]), "--schema", schema],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def answers() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/jobs", timeout=5)
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                return None

        page = wait_until(answers, timeout=30, interval=0.2, message="the dashboard")
        assert page.status_code == 200 and "shop.charge" in page.text
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "actions enabled" in err
