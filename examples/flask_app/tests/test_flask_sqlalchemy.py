"""`apply_async(..., connection=db.session)`: a Flask-SQLAlchemy transaction carries the job."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.orm import Mapped, mapped_column

from tests.conftest import running_worker

flask_sqlalchemy = pytest.importorskip("flask_sqlalchemy")


@pytest.fixture
def notes(flask_schema: tuple[str, str]) -> Iterator[tuple[Any, Any, Any, Any]]:
    from flask import Flask
    from sqlalchemy import URL

    from pgqueue.contrib.flask import PgQueue

    dsn, schema = flask_schema
    params = conninfo_to_dict(dsn)
    host = str(params.get("host") or "") or None
    # A Unix-socket directory (the embedded server) cannot be a URL's host: it goes in
    # the query, which the driver reads as the libpq keyword.
    socket_dir = {"host": host} if host and host.startswith("/") else {}
    app = Flask("notes")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=URL.create(
            "postgresql+psycopg", username=params.get("user"), password=params.get("password"),
            host=None if socket_dir else host, port=int(params.get("port") or 5432),
            database=params.get("dbname"), query=socket_dir,
        ).render_as_string(hide_password=False),
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"options": f"-c search_path={schema}"}},
        PGQUEUE_SCHEMA=schema)
    db = flask_sqlalchemy.SQLAlchemy(app)

    class Note(db.Model):  # type: ignore[name-defined,misc]
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str]
        seen: Mapped[bool] = mapped_column(default=False)

    queue = PgQueue(app, set_as_current=False)

    @queue.task(name="notes.mark_seen")
    def mark_seen(note_id: int) -> str:
        note = db.session.get(Note, note_id)  # the worker's app context gives db.session
        note.seen = True
        db.session.commit()
        return note.text

    with app.app_context():
        db.create_all()
        db.session.execute(db.text("TRUNCATE note, jobs, results"))
        db.session.commit()
        yield db, Note, queue, mark_seen
        db.session.remove()  # end the test's transaction, or DROP waits for its locks
        db.drop_all()
    queue.close()


def job_count(db: Any) -> int:
    return int(db.session.execute(db.text("SELECT count(*) FROM jobs")).scalar_one())


def test_a_rolled_back_session_leaves_no_job(notes: tuple[Any, Any, Any, Any]) -> None:
    db, Note, queue, mark_seen = notes
    note = Note(text="draft")
    db.session.add(note)
    db.session.flush()
    mark_seen.apply_async((note.id,), connection=db.session)
    assert job_count(db) == 1  # inside the transaction
    db.session.rollback()
    assert job_count(db) == 0 and db.session.query(Note).count() == 0


def test_a_committed_session_runs_the_job_which_sees_the_row(
        notes: tuple[Any, Any, Any, Any]) -> None:
    db, Note, queue, mark_seen = notes
    note = Note(text="hello")
    db.session.add(note)
    db.session.flush()
    result = mark_seen.apply_async((note.id,), connection=db.session)
    db.session.commit()
    with running_worker(queue):
        assert result.get(timeout=10) == "hello"
    db.session.expire_all()
    assert db.session.get(Note, note.id).seen
