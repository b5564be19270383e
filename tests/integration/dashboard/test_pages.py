"""Every page renders from a seeded schema; filters, search and keyset pages work; hostile
input gets one clear line (or a 404), never a traceback, and markup in arguments is text."""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg
from starlette.testclient import TestClient

from pgqueue import App

from .conftest import make_client
from .seed import HOSTILE, TRACEBACK, Seeded


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([^"]+)"', html)


def test_each_page_renders_what_the_tables_hold(client: TestClient, seeded: Seeded) -> None:
    overview = client.get("/")
    assert overview.status_code == 200
    assert "<svg" in overview.text and "jobs finished per minute" in overview.text
    assert ">mail<" in overview.text.replace("</a>", "<")  # a queue's depth row
    queues = client.get("/queues").text
    assert 'data-queue="default"' in queues and 'data-queue="mail"' in queues
    workers = client.get("/workers").text
    assert "celery@host1" in workers and "prefork" in workers and "1 / 4" in workers
    assert "shop.resize_image" in workers  # the job it holds
    schedules = client.get("/schedules").text
    assert "nightly-report" in schedules and "0 3 * * *" in schedules
    jobs = client.get("/jobs").text
    assert seeded.queued in jobs and seeded.failed in jobs


def test_a_failed_job_shows_its_error_traceback_and_timeline(client: TestClient,
                                                             seeded: Seeded) -> None:
    page = client.get(f"/jobs/{seeded.failed}")
    assert page.status_code == 200
    assert "CardDeclined: declined" in page.text
    assert "shop/tasks.py" in page.text and "line 12" in page.text
    assert TRACEBACK.splitlines()[0] in page.text
    assert "ended FAILURE" in page.text and 'data-action="retry"' in page.text
    assert "42" in page.text and "EUR" in page.text  # its arguments


def test_a_workflow_links_parent_children_and_steps(client: TestClient,
                                                    seeded: Seeded) -> None:
    parent = client.get(f"/jobs/{seeded.parent}").text
    assert f'/jobs/{seeded.child}"' in parent and "shop.ship_order" in parent
    child = client.get(f"/jobs/{seeded.child}").text
    assert f'/jobs/{seeded.parent}"' in child and "shop.fetch_order" in child


def test_markup_in_arguments_is_shown_as_text(client: TestClient, seeded: Seeded) -> None:
    for page in (client.get("/jobs").text, client.get(f"/jobs/{seeded.hostile}").text,
                 client.get("/jobs", params={"q": "pwned"}).text):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;" in page
    assert HOSTILE not in client.get(f"/jobs/{seeded.hostile}").text


def test_filters_by_state_task_queue_and_argument_text(client: TestClient,
                                                       seeded: Seeded) -> None:
    failed = client.get("/jobs", params={"state": "FAILURE", "limit": 200}).text
    states = re.findall(r'class="state state-(\w+)"', failed)
    assert states and set(states) == {"failure"}
    assert seeded.failed in failed
    charged = client.get("/jobs", params={"task": "shop.charge"}).text
    assert _rows(charged) and "shop.send_email" not in charged.split("<tbody>")[1]
    mail = client.get("/jobs", params={"queue": "mail", "state": "queued"}).text
    assert _rows(mail) == [seeded.queued]
    found = client.get("/jobs", params={"q": "ann@example"}).text
    assert _rows(found) == [seeded.queued]
    assert _rows(client.get("/jobs", params={"q": "no such text"}).text) == []


def test_filters_by_time(client: TestClient, seeded: Seeded, db: psycopg.Connection[Any]
                         ) -> None:
    moment = db.execute("SELECT finished_at FROM results WHERE id = %s",
                        [seeded.failed]).fetchone()[0]
    window = {"since": (moment).isoformat(), "until": moment.isoformat(),
              "state": "FAILURE"}
    assert seeded.failed in _rows(client.get("/jobs", params=window).text)
    later = {"since": "2999-01-01T00:00"}
    assert _rows(client.get("/jobs", params=later).text) == []


def test_keyset_pages_walk_every_job_once(client: TestClient, db: psycopg.Connection[Any]
                                          ) -> None:
    total = db.execute("SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM results)"
                       ).fetchone()[0]
    seen: list[str] = []
    url: str | None = "/jobs?limit=37"
    while url:
        page = client.get(url)
        assert page.status_code == 200
        seen += _rows(page.text)
        following = re.search(r'href="(/jobs\?[^"]+)" rel="next"', page.text)
        url = following.group(1).replace("&amp;", "&") if following else None
    assert len(seen) == total == len(set(seen))


def test_search_by_id_opens_the_job(client: TestClient, seeded: Seeded) -> None:
    found = client.get("/jobs", params={"id": f" {seeded.failed} "})
    assert found.status_code == 303
    assert found.headers["location"] == f"/jobs/{seeded.failed}"


def test_garbage_filters_get_one_line_each(client: TestClient) -> None:
    page = client.get("/jobs", params={"state": "EXPLODED", "since": "yesterday-ish",
                                       "limit": "99999999999999999999", "task": "x" * 5000,
                                       "before": "'; DROP TABLE jobs; --"})
    assert page.status_code == 400
    for words in ("state: one of", "since: not a date", "limit: 1 to", "task: at most",
                  "page: not a page"):
        assert words in page.text
    assert "Traceback" not in page.text
    assert client.get("/jobs", params={"limit": "-1"}).status_code == 400
    assert client.get("/jobs", params={"until": "99999-01-01"}).status_code == 400


def test_a_page_far_past_the_end_is_empty(client: TestClient) -> None:
    far = f"1970-01-01T00:00:01+00:00_{uuid.UUID(int=0)}"
    page = client.get("/jobs", params={"before": far})
    assert page.status_code == 200 and _rows(page.text) == []
    assert "No job matches" in page.text


def test_bad_job_ids_are_404s(client: TestClient) -> None:
    for bad in (str(uuid.uuid4()), "not-a-job", "%00", "x" * 600, "<script>"):
        page = client.get(f"/jobs/{bad}")
        assert page.status_code == 404, bad
        assert "No such job" in page.text and "<script>" not in page.text


def test_the_live_part_comes_alone(client: TestClient) -> None:
    fragment = client.get("/workers", params={"partial": "1"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and "celery@host1" in fragment.text


def test_a_dead_database_is_one_line_503(schema: str) -> None:
    dead = App("dead", dsn="postgresql://nobody:secret-pw@127.0.0.1:1/none", schema=schema,
               set_as_current=False)
    with make_client(dead) as client:
        page = client.get("/")
    assert page.status_code == 503
    assert "database" in page.text and len(page.text.strip().splitlines()) == 1
    assert "secret-pw" not in page.text
    dead.close()


def test_an_offset_typed_into_the_address_bar_keeps_its_plus(client: TestClient,
                                                             seeded: Seeded) -> None:
    # "+00:00" unencoded in a URL arrives as " 00:00"; it still means UTC
    page = client.get("/jobs?state=FAILURE&since=2000-01-01T00:00:00+00:00")
    assert page.status_code == 200 and seeded.failed in _rows(page.text)
