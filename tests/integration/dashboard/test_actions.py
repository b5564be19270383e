"""Each action changes the rows it names; CSRF, read-only mode and bad input refuse."""

from __future__ import annotations

from typing import Any

import psycopg
from starlette.testclient import TestClient

from pgqueue import App

from .conftest import csrf, make_client
from .seed import Seeded


def _post(client: TestClient, action: str, **fields: str) -> Any:
    return client.post(f"/actions/{action}", data={"csrf": csrf(client), **fields})


def _flash(client: TestClient, response: Any) -> str:
    assert response.status_code == 303, response.text
    return client.get(response.headers["location"]).text


def test_retry_sends_a_failed_job_again_and_keeps_its_history(
        client: TestClient, seeded: Seeded, db: psycopg.Connection[Any]) -> None:
    done = _post(client, "retry", id=seeded.failed, next=f"/jobs/{seeded.failed}")
    assert "sent again" in _flash(client, done)
    assert db.execute("SELECT state FROM jobs WHERE id = %s", [seeded.failed]).fetchone() \
        == ("queued",)
    assert db.execute("SELECT count(*) FROM results WHERE id = %s",
                      [seeded.failed]).fetchone() == (0,)
    page = client.get(f"/jobs/{seeded.failed}").text
    assert "Earlier attempts" in page and "CardDeclined" in page


def test_retry_of_a_live_job_is_refused_in_one_line(client: TestClient, seeded: Seeded,
                                                    db: psycopg.Connection[Any]) -> None:
    page = _flash(client, _post(client, "retry", id=seeded.queued, next="/jobs"))
    assert "is not finished" in page and 'class="flash error"' in page
    assert db.execute("SELECT state FROM jobs WHERE id = %s", [seeded.queued]).fetchone() \
        == ("queued",)


def test_revoke_ends_a_queued_job(client: TestClient, seeded: Seeded,
                                  db: psycopg.Connection[Any]) -> None:
    assert "revoked" in _flash(client, _post(client, "revoke", id=seeded.queued, next="/jobs"))
    assert db.execute("SELECT state FROM results WHERE id = %s", [seeded.queued]).fetchone() \
        == ("REVOKED",)


def test_delete_removes_a_result_but_not_a_live_job(client: TestClient, seeded: Seeded,
                                                    db: psycopg.Connection[Any]) -> None:
    assert "deleted" in _flash(client, _post(client, "delete", id=seeded.succeeded,
                                             next="/jobs"))
    assert db.execute("SELECT count(*) FROM results WHERE id = %s",
                      [seeded.succeeded]).fetchone() == (0,)
    page = _flash(client, _post(client, "delete", id=seeded.queued, next="/jobs"))
    assert "only a finished job" in page
    assert db.execute("SELECT count(*) FROM jobs WHERE id = %s", [seeded.queued]).fetchone() \
        == (1,)


def test_schedules_run_now_disable_and_enable(client: TestClient, seeded: Seeded,
                                              db: psycopg.Connection[Any]) -> None:
    before = db.execute("SELECT count(*) FROM jobs WHERE task = 'shop.report'").fetchone()[0]
    assert "sent job" in _flash(client, _post(client, "schedule-run", name=seeded.schedule,
                                              next="/schedules"))
    assert db.execute("SELECT count(*) FROM jobs WHERE task = 'shop.report'"
                      ).fetchone()[0] == before + 1
    _flash(client, _post(client, "schedule-disable", name=seeded.schedule, next="/schedules"))
    assert db.execute("SELECT enabled FROM schedules").fetchone() == (False,)
    _flash(client, _post(client, "schedule-enable", name=seeded.schedule, next="/schedules"))
    assert db.execute("SELECT enabled, next_run_at > now() FROM schedules").fetchone() \
        == (True, True)
    assert "no schedule named" in _flash(client, _post(client, "schedule-run",
                                                       name="nope", next="/schedules"))


def test_schedule_actions_refuse_garbage_names_in_one_line(client: TestClient, seeded: Seeded,
                                                          db: psycopg.Connection[Any]) -> None:
    before = db.execute("SELECT enabled, next_run_at, total_run_count FROM schedules "
                        "UNION ALL SELECT NULL, NULL, count(*) FROM jobs").fetchall()
    for action in ("schedule-run", "schedule-enable", "schedule-disable"):
        for bad in ("", "\x00", "a\nb", "y" * 300):
            page = _flash(client, _post(client, action, name=bad, next="/schedules"))
            assert 'class="flash error"' in page and "Traceback" not in page, (action, bad)
            assert "schedule name must be a string" in page, (action, bad)
        page = _flash(client, _post(client, action, name="ghost", next="/schedules"))
        assert "no schedule named &#39;ghost&#39;" in page, action
    assert db.execute("SELECT enabled, next_run_at, total_run_count FROM schedules "
                      "UNION ALL SELECT NULL, NULL, count(*) FROM jobs").fetchall() == before


def test_queues_pause_resume_and_limit(client: TestClient, seeded: Seeded,
                                       db: psycopg.Connection[Any]) -> None:
    _flash(client, _post(client, "queue-pause", name="mail", next="/queues"))
    assert db.execute("SELECT paused FROM flow_limits WHERE name = 'mail'").fetchone() \
        == (True,)
    assert "state-paused" in client.get("/queues").text
    _flash(client, _post(client, "queue-resume", name="mail", next="/queues"))
    assert db.execute("SELECT paused FROM flow_limits WHERE name = 'mail'").fetchone() \
        == (False,)
    _flash(client, _post(client, "queue-limit", name="mail", concurrency="3", rate="10/m",
                         next="/queues"))
    assert db.execute("SELECT concurrency, rate_count, rate_seconds FROM flow_limits "
                      "WHERE name = 'mail'").fetchone() == (3, 10.0, 60.0)
    for bad in ({"concurrency": "lots"}, {"concurrency": "0"}, {"rate": "fast"}, {}):
        page = _flash(client, _post(client, "queue-limit", name="mail", next="/queues", **bad))
        assert 'class="flash error"' in page, bad
    assert "unknown queue" in _flash(client, _post(client, "queue-pause", name="ghost",
                                                   next="/queues"))


def test_an_action_without_the_csrf_token_is_403(client: TestClient, seeded: Seeded,
                                                 db: psycopg.Connection[Any]) -> None:
    csrf(client)
    assert client.post("/actions/revoke", data={"id": seeded.queued}).status_code == 403
    assert client.post("/actions/revoke", data={"id": seeded.queued,
                                                "csrf": "x" * 43}).status_code == 403
    client.cookies.clear()
    assert client.post("/actions/revoke", data={"id": seeded.queued,
                                                "csrf": "x" * 43}).status_code == 403
    token = csrf(client)
    cross = client.post("/actions/revoke", data={"id": seeded.queued, "csrf": token},
                        headers={"origin": "https://evil.example"})
    assert cross.status_code == 403
    assert db.execute("SELECT state FROM jobs WHERE id = %s", [seeded.queued]).fetchone() \
        == ("queued",)
    assert client.get("/actions/revoke").status_code == 405


def test_after_an_action_it_goes_back_only_to_its_own_pages(client: TestClient,
                                                            seeded: Seeded) -> None:
    for target in ("//evil.example/x", "https://evil.example", "\\\\evil", "javascript:x"):
        done = _post(client, "revoke", id=seeded.queued, next=target)
        assert done.headers["location"] == "/", target


def test_unknown_actions_and_garbage_ids(client: TestClient) -> None:
    assert client.post("/actions/drop-database", data={"csrf": csrf(client)}).status_code \
        == 404
    for bad in ("", "\x00", "y" * 300):
        page = _flash(client, _post(client, "retry", id=bad, next="/jobs"))
        assert 'class="flash error"' in page and "Traceback" not in page


def test_read_only_shows_no_action_and_refuses_them(app: App, seeded: Seeded,
                                                    db: psycopg.Connection[Any]) -> None:
    with make_client(app, read_only=True) as client:
        for page in ("/", "/queues", "/jobs", f"/jobs/{seeded.failed}", "/schedules"):
            text = client.get(page).text
            assert "data-action" not in text and "<form method=\"post\"" not in text, page
        refused = client.post("/actions/retry", data={"csrf": csrf(client),
                                                      "id": seeded.failed})
        assert refused.status_code == 403 and "read-only" in refused.text
    assert db.execute("SELECT count(*) FROM results WHERE id = %s",
                      [seeded.failed]).fetchone() == (1,)
