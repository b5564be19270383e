"""The dashboard as an ASGI application (Starlette): pages, the live part of each page,
and the actions (POST only, CSRF-checked, refused in read-only mode)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import psycopg
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pgqueue import __version__
from pgqueue.app import App
from pgqueue.dashboard import actions, charts, data, security
from pgqueue.dashboard.settings import DashboardSettings
from pgqueue.exceptions import PgQueueError

HERE = Path(__file__).parent
FLASH_COOKIE = "pgqueue_flash"
_ACTIONS = {
    "retry": lambda app, f: actions.retry(app, f.get("id", "")),
    "revoke": lambda app, f: actions.revoke(app, f.get("id", ""),
                                            terminate=f.get("terminate") == "1"),
    "delete": lambda app, f: actions.delete(app, f.get("id", "")),
    "schedule-run": lambda app, f: actions.schedule_run_now(app, f.get("name", "")),
    "schedule-enable": lambda app, f: actions.schedule_enable(app, f.get("name", ""), True),
    "schedule-disable": lambda app, f: actions.schedule_enable(app, f.get("name", ""), False),
    "queue-pause": lambda app, f: actions.queue_pause(app, f.get("name", ""), True),
    "queue-resume": lambda app, f: actions.queue_pause(app, f.get("name", ""), False),
    "queue-limit": lambda app, f: actions.queue_limit(app, f.get("name", ""),
                                                      f.get("concurrency", ""),
                                                      f.get("rate", "")),
}


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def _short(value: Any, length: int = 80) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= length else text[:length - 1] + "…"


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.1f}s" if seconds < 60 else f"{seconds / 60:.1f}min"


def create_app(pgqueue_app: App, settings: DashboardSettings | None = None) -> Any:
    """The dashboard of ``pgqueue_app``'s schema as an ASGI app; mount it under any
    prefix (``Mount("/pgqueue", create_app(app))`` in Starlette or FastAPI)."""
    settings = settings or DashboardSettings()
    reader = data.Reader(pgqueue_app)
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters.update(json=_json, short=_short, ago=_ago)
    env.globals.update(version=__version__, read_only=settings.read_only,
                       refresh_ms=int(settings.refresh * 1000),
                       live_states=data.LIVE_STATES, final_states=data.FINAL_STATES)

    def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        base = request.scope.get("root_path", "").rstrip("/")
        flash = request.cookies.get(FLASH_COOKIE)
        partial = request.query_params.get("partial") == "1"
        html = env.get_template(name).render(
            base=base, partial=partial, csrf=security.csrf_token(request),
            flash=json.loads(unquote(flash)) if flash and not partial else None,
            path=request.url.path, query=request.url.query, **context)
        response = HTMLResponse(html, status_code=status, headers=security.HEADERS)
        security.set_csrf_cookie(request, response)
        if flash and not partial:
            response.delete_cookie(FLASH_COOKIE, path=base or "/")
        return response

    def overview(request: Request) -> Response:
        series = data.throughput(reader)
        return render(request, "overview.html", page="overview",
                      throughput_svg=charts.throughput(series),
                      failure_svg=charts.failure_rate(series),
                      finished=sum(s[1] + s[2] + s[3] for s in series),
                      failed=sum(s[2] for s in series),
                      latency=data.latency(reader), queues=data.queues(pgqueue_app),
                      workers=data.workers(reader))

    def queues(request: Request) -> Response:
        return render(request, "queues.html", page="queues", queues=data.queues(pgqueue_app))

    def workers(request: Request) -> Response:
        return render(request, "workers.html", page="workers", workers=data.workers(reader))

    def schedules(request: Request) -> Response:
        return render(request, "schedules.html", page="schedules",
                      schedules=data.schedules(reader))

    def jobs(request: Request) -> Response:
        params = dict(request.query_params)
        found = params.get("id", "").strip()
        if found:
            return RedirectResponse(_base(request) + "/jobs/" + quote(found, safe=""), 303)
        wanted = data.parse_filter(params)
        try:
            page, following = data.job_page(reader, wanted)
        except psycopg.errors.QueryCanceled:
            page, following = [], None
            wanted.errors.append("the search took longer than "
                                 f"{data.READ_TIMEOUT_MS / 1000:g}s and was stopped: narrow "
                                 "it (a task, a queue or a time range)")
        return render(request, "jobs.html", status=400 if wanted.errors else 200,
                      page="jobs", jobs=page, wanted=wanted,
                      next_query=urlencode(wanted.query(before=following))
                      if following else None,
                      first_query=urlencode(wanted.query()))

    def job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        found = data.job(reader, job_id)
        if found is None:
            return render(request, "missing.html", status=404, page="jobs", job_id=job_id)
        return render(request, "job.html", page="jobs", job=found)

    async def act(request: Request) -> Response:
        if settings.read_only:
            raise HTTPException(403, "the dashboard is read-only")
        name = request.path_params["name"]
        handler = _ACTIONS.get(name)
        if handler is None:
            raise HTTPException(404, f"no action {name!r}")
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if not security.csrf_ok(request, form.get(security.CSRF_FIELD, "")):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and "
                                     "try again")
        try:
            message, kind = await run_in_threadpool(handler, pgqueue_app, form), "ok"
        except (actions.ActionRefused, PgQueueError) as error:
            message, kind = str(error).splitlines()[0], "error"
        target = form.get("next", "")
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = "/"  # only back to a page of this dashboard
        response = RedirectResponse(_base(request) + target, status_code=303)
        response.set_cookie(FLASH_COOKIE, quote(json.dumps([kind, message[:500]])),
                            httponly=True, samesite="strict", path=_base(request) or "/")
        return response

    async def failed(request: Request, error: Exception) -> Response:
        status = error.status_code if isinstance(error, HTTPException) else 503
        detail = error.detail if isinstance(error, HTTPException) else \
            f"the database cannot be read: {str(error).splitlines()[0] if str(error) else ''}"
        return Response(f"{detail}\n", status_code=status, media_type="text/plain",
                        headers=security.HEADERS)

    routes = [
        Route("/", overview), Route("/queues", queues), Route("/workers", workers),
        Route("/schedules", schedules), Route("/jobs", jobs),
        Route("/jobs/{job_id:path}", job),
        Route("/actions/{name}", act, methods=["POST"]),
        Route("/favicon.ico", lambda request: RedirectResponse(
            _base(request) + "/static/favicon.svg", 301)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    web = Starlette(routes=routes, exception_handlers={
        HTTPException: failed, PgQueueError: failed, psycopg.Error: failed})
    return security.AuthMiddleware(web, settings)


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")
