"""FastAPI with pgqueue: async endpoints that enqueue, a status endpoint, and an enqueue
that shares an async SQLAlchemy transaction with the row it is about.

    POST /signups            {"email": ...}: the row and its welcome job commit together
    POST /reports            starts a long task: 202 Accepted, Location: /reports/<id>
    GET  /reports/<id>       {"state", "current", "total", and "result" or "error"}
    GET  /pgqueue/           pgqueue's dashboard, mounted read-only (with the dashboard extra)

Run it: see README.md (uvicorn for the API, `pgqueue worker -A api_app:queue` for jobs).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel
from sqlalchemy import URL, create_engine, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.concurrency import run_in_threadpool

from pgqueue import App

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
queue = App("api_app", dsn=DATABASE_URL)
# Where the app's own tables live; the tests point it at a schema of their own.
settings: dict[str, Any] = {"url": DATABASE_URL, "search_path": None}


class Base(DeclarativeBase):
    pass


class Signup(Base):
    __tablename__ = "signups"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    welcomed: Mapped[bool] = mapped_column(default=False)


def engine_options() -> dict[str, Any]:
    path = settings["search_path"]
    return {"connect_args": {"options": f"-c search_path={path}"}} if path else {}


def sqlalchemy_url() -> URL:
    """The PostgreSQL URL or libpq string of ``settings`` as SQLAlchemy's psycopg 3 URL."""
    params = conninfo_to_dict(settings["url"])
    return URL.create("postgresql+psycopg", username=params.get("user"),
                      password=params.get("password"), host=params.get("host"),
                      port=int(params["port"]) if params.get("port") else None,
                      database=params.get("dbname"))


@queue.task
def send_welcome(signup_id: int) -> str:
    """Runs on the worker once the signup has committed."""
    engine = create_engine(sqlalchemy_url(), **engine_options())
    try:
        with engine.begin() as conn:
            done = conn.execute(
                update(Signup).where(Signup.id == signup_id).values(welcomed=True))
            if done.rowcount != 1:
                raise LookupError(f"no signup {signup_id}")  # never happens: it committed first
    finally:
        engine.dispose()
    return f"welcomed signup {signup_id}"


@queue.task(bind=True)
def generate_report(self: Any, pages: int = 5, seconds_per_page: float = 0.2) -> dict[str, Any]:
    for page in range(pages):
        self.update_state(state="PROGRESS", meta={"current": page, "total": pages})
        time.sleep(seconds_per_page)  # stands for real work
    return {"current": pages, "total": pages, "pages": pages}


class SignupIn(BaseModel):
    email: str
    fail_after_enqueue: bool = False


class ReportIn(BaseModel):
    pages: int = 5
    seconds_per_page: float = 0.2


def mount_dashboard(app: FastAPI) -> None:
    """pgqueue's dashboard under /pgqueue (docs/dashboard.md). Read-only: this example has
    no login to put in front of its actions. Without the dashboard extra, not mounted."""
    try:
        from pgqueue.dashboard import DashboardSettings
        from pgqueue.dashboard import create_app as dashboard_app
    except ImportError:
        return
    app.mount("/pgqueue", dashboard_app(queue, DashboardSettings(read_only=True)))


def create_app() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(sqlalchemy_url(), **engine_options())
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        yield
        await engine.dispose()

    app = FastAPI(title="pgqueue + FastAPI", lifespan=lifespan)
    mount_dashboard(app)

    @app.post("/signups", status_code=201)
    async def create_signup(body: SignupIn) -> dict[str, Any]:
        session: AsyncSession
        async with app.state.sessions() as session, session.begin():
            signup = Signup(email=body.email)
            session.add(signup)
            await session.flush()
            # The job is inserted on the session's connection, inside its transaction.
            job = await session.run_sync(
                lambda sync_session: send_welcome.apply_async((signup.id,),
                                                              connection=sync_session))
            if body.fail_after_enqueue:
                raise HTTPException(409, "signup refused after enqueueing: nothing is kept")
        return {"id": signup.id, "job": job.id}

    @app.post("/reports", status_code=202)
    async def start_report(body: ReportIn, response: Response) -> dict[str, str]:
        # delay() blocks on one INSERT: run it off the event loop.
        job = await run_in_threadpool(generate_report.delay, body.pages, body.seconds_per_page)
        response.headers["Location"] = f"/reports/{job.id}"
        return {"id": job.id}

    @app.get("/reports/{task_id}")
    async def report_status(task_id: str) -> dict[str, Any]:
        return await run_in_threadpool(status_of, task_id)

    return app


def status_of(task_id: str) -> dict[str, Any]:
    job = generate_report.AsyncResult(task_id)
    state, info = job.state, job.info
    if job.ready():  # it finished between the two reads: take the final reading
        state, info = job.state, job.info
    if state == "FAILURE":
        return {"state": state, "current": 1, "total": 1, "error": str(info)}
    body: dict[str, Any] = {"state": state, "current": 0, "total": 1}
    if isinstance(info, dict):
        body.update(current=info.get("current", 0), total=info.get("total", 1))
    if state == "SUCCESS":
        body["result"] = info
    return body


app = create_app()
