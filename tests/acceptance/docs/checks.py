"""What the docs test verifies beyond "the block ran", for blocks whose point is a result:
the quick start prints 5, a framework page's endpoints answer through the framework's own
test client with a real worker behind them. Keyed by block id; each runs right after its
block, in the same session."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from tests.acceptance.docs.blocks import Block
    from tests.acceptance.docs.runner import Session

DEADLINE = 60.0


def poll(read: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}; last: {value!r}")
        time.sleep(0.05)


def quick_start_prints_5(session: Session, block: Block) -> None:
    last = session.outputs[block.id].strip().splitlines()[-1]
    assert last == "5", f"the quick start printed {last!r}, the README says 5"


def fresh(module: str) -> Any:
    importlib.invalidate_caches()
    return importlib.import_module(module)


def jobs_of(session: Session, task: str) -> list[tuple[Any, ...]]:
    """(state, args) of every job of ``task``, live or finished, by plain SQL."""
    with psycopg.connect(session.dsn, autocommit=True) as conn:
        return conn.execute(
            sql.SQL("SELECT state, args FROM {}.all_jobs WHERE task = %s").format(
                sql.Identifier(session.schema)), [task]).fetchall()


def flask_progress(session: Session, block: Block) -> None:
    """POST /longtask through Flask's test client; the page's worker runs the job; the
    status URL from Location reports it to the end."""
    client = fresh("yourapp").app.test_client()
    started = client.post("/longtask")
    assert started.status_code == 202, started.get_data(as_text=True)
    url = started.headers["Location"]
    assert started.get_json()["id"] in url
    final = poll(lambda: client.get(url).get_json(), lambda j: j["state"] == "SUCCESS",
                 "the status endpoint to report SUCCESS")
    assert final["info"] == {"current": 10, "total": 10, "result": 42}


def flask_signup(session: Session, block: Block) -> None:
    """The signup commits the user and its job together; a failing request leaves neither."""
    client = fresh("yourapp").app.test_client()
    created = client.post("/signup", data={"email": "ada@example.com"})
    assert created.status_code == 201, created.get_data(as_text=True)
    user_id = created.get_json()["id"]
    assert [args for _, args in jobs_of(session, "yourapp.send_welcome")] == [[user_id]]
    refused = client.post("/signup", data={})          # no email: 400 before the commit
    assert refused.status_code == 400
    assert len(jobs_of(session, "yourapp.send_welcome")) == 1


def fastapi_progress(session: Session, block: Block) -> None:
    """POST /reports through FastAPI's TestClient; the page's worker runs the job; the
    status URL from Location reports it to the end."""
    from fastapi.testclient import TestClient

    with TestClient(fresh("api").app) as client:
        started = client.post("/reports", params={"pages": 3})
        assert started.status_code == 202, started.text
        url = started.headers["Location"]
        assert started.json()["id"] in url
        final = poll(lambda: client.get(url).json(), lambda j: j["state"] == "SUCCESS",
                     "the status endpoint to report SUCCESS")
        assert final["info"] == {"pages": 3}


def fastapi_signup(session: Session, block: Block) -> None:
    """The signups table is made here (the page leaves it to the reader's migrations); the
    endpoint commits the row and its job together."""
    import sqlalchemy

    api = fresh("api")
    engine = sqlalchemy.create_engine(api.sessions.kw["bind"].url)
    api.Base.metadata.create_all(engine)
    engine.dispose()
    from fastapi.testclient import TestClient

    with TestClient(api.app) as client:
        created = client.post("/signups", params={"email": "ada@example.com"})
        assert created.status_code == 201, created.text
        body = created.json()
    assert [args for _, args in jobs_of(session, "api.send_welcome")] == [[body["id"]]]
    assert api.send_welcome.AsyncResult(body["job"]).id == body["job"]


def sqlalchemy_session(session: Session, block: Block) -> None:
    """The order and its job committed together; a block that raises leaves neither."""
    ns = session.namespace
    task = ns["fulfil_order"]
    with ns["Session"](ns["engine"]) as db:
        orders = db.query(ns["Order"]).all()
    assert [args for _, args in jobs_of(session, task.name)] == [[o.id for o in orders]]
    try:
        with ns["Session"](ns["engine"]) as db, db.begin():
            order = ns["Order"](item="rolled back")
            db.add(order)
            db.flush()
            task.apply_async((order.id,), connection=db)
            raise RuntimeError("the caller's transaction fails")
    except RuntimeError:
        pass
    assert len(jobs_of(session, task.name)) == 1, "a rolled-back order left its job"


def sqlalchemy_async(session: Session, block: Block) -> None:
    """run_sync put the job in the AsyncSession's transaction, committed with the order."""
    ns = session.namespace
    states = dict((args[0], state) for state, args in jobs_of(session, ns["fulfil_order"].name))
    with ns["Session"](ns["engine"]) as db:
        desk = db.query(ns["Order"]).filter_by(item="desk").one()
    assert desk.id in states and ns["job"].id


def django_atomic(session: Session, block: Block) -> None:
    """The order and its job committed together; charge_card raising leaves neither."""
    ns = session.namespace
    task, order_model = ns["fulfil_order"], ns["Order"]
    assert [args for _, args in jobs_of(session, task.name)] == [[ns["order"].pk]]
    try:
        with ns["transaction"].atomic():
            order = order_model.objects.create(item="declined")
            task.delay(order.pk)
            raise RuntimeError("card declined")
    except RuntimeError:
        pass
    assert not order_model.objects.filter(item="declined").exists()
    assert len(jobs_of(session, task.name)) == 1, "a rolled-back order left its job"


def django_tasks_backend(session: Session, block: Block) -> None:
    """Both enqueues are jobs: the second waits until run_after (five minutes away)."""
    ns = session.namespace
    with psycopg.connect(session.dsn, autocommit=True) as conn:
        state = conn.execute(
            sql.SQL("SELECT job_state FROM {}.all_jobs WHERE id = %s").format(
                sql.Identifier(session.schema)), [str(ns["result"].id)]).fetchone()
    assert state == ("scheduled",), state
    assert ns["send_receipt"].get_result(ns["result"].id).status.name == "READY"


def signals_context_task(session: Session, block: Block) -> None:
    """ContextTask wraps a run: a task sees the Flask app as current_app (eager here)."""
    from flask import current_app

    ns = session.namespace

    def which_app() -> str:
        return str(current_app.name)

    task = ns["celery"].task(name="docs.which_app")(which_app)
    assert task.apply().get() == ns["flask_app"].name


# block id -> (text the block must contain, so a moved block cannot go unchecked; check)
AFTER: dict[str, tuple[str, Callable[[Session, Block], None]]] = {
    "README.md:4": ("pgqueue worker -A tasks &", quick_start_prints_5),
    "docs/flask.md:4": ('@app.post("/longtask")', flask_progress),
    "docs/flask.md:5": ('@app.post("/signup")', flask_signup),
    "docs/fastapi.md:3": ("uvicorn api:app", fastapi_progress),
    "docs/fastapi.md:4": ('@app.post("/signups"', fastapi_signup),
    "docs/django.md:5": ("with transaction.atomic():", django_atomic),
    "docs/django.md:8": ("send_receipt.enqueue(", django_tasks_backend),
    "docs/signals.md:1": ("class ContextTask(celery.Task)", signals_context_task),
    "docs/sqlalchemy.md:1": ("with Session(engine) as session", sqlalchemy_session),
    "docs/sqlalchemy.md:3": ("session.run_sync(", sqlalchemy_async),
}
