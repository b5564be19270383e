"""The long-running task with a progress bar from the Celery + Flask tutorials, on pgqueue.

    POST /longtask       starts the task: 202 Accepted, Location: /status/<task id>
    GET  /status/<id>    {"state", "current", "total", "status", and "result" or "error"}
    GET  /               a page whose progress bar follows the task to 100%
    GET  /pgqueue/       pgqueue's dashboard, mounted read-only (with the dashboard extra)

Run it: see README.md (a web process and `pgqueue worker -A progress_app:queue`).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from flask import Flask, jsonify, render_template, request, url_for

from pgqueue.contrib.flask import PgQueue

queue = PgQueue()

VERBS = ["Starting up", "Booting", "Repairing", "Loading", "Checking"]
NOUNS = ["the flux capacitor", "the quantum circuits", "the bit shifter", "the flux pipes"]


@queue.task(bind=True)
def long_task(self: Any, total: int = 10, step_seconds: float = 0.5,
              fail_at: int | None = None) -> dict[str, Any]:
    """Pretends to work for ``total`` steps, publishing its progress after each."""
    for done in range(total):
        if fail_at is not None and done == fail_at:
            raise RuntimeError(f"the task failed at step {done} of {total}")
        status = f"{random.choice(VERBS)} {random.choice(NOUNS)}..."
        self.update_state(state="PROGRESS",
                          meta={"current": done, "total": total, "status": status})
        time.sleep(step_seconds)  # stands for real work
    return {"current": total, "total": total, "status": "Task completed!", "result": 42}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["PGQUEUE_DSN"] = os.environ.get("DATABASE_URL",
                                               "postgresql://postgres@127.0.0.1:5432/postgres")
    app.config.update(LONGTASK_TOTAL=10, LONGTASK_STEP_SECONDS=0.5)
    app.config.update(config or {})
    queue.init_app(app)

    @app.get("/")
    def index() -> str:
        return render_template("index.html")

    @app.post("/longtask")
    def start_long_task() -> Any:
        options = request.get_json(silent=True) or {}
        job = long_task.delay(
            total=int(options.get("total", app.config["LONGTASK_TOTAL"])),
            step_seconds=float(options.get("step_seconds", app.config["LONGTASK_STEP_SECONDS"])),
            fail_at=options.get("fail_at"))
        return jsonify({"id": job.id}), 202, {"Location": url_for("task_status", task_id=job.id)}

    @app.get("/status/<task_id>")
    def task_status(task_id: str) -> Any:
        job = long_task.AsyncResult(task_id)
        state, info = job.state, job.info
        if job.ready():  # it finished between the two reads: take the final reading
            state, info = job.state, job.info
        if state == "PENDING":
            body = {"state": state, "current": 0, "total": 1, "status": "Pending..."}
        elif state == "FAILURE":
            body = {"state": state, "current": 1, "total": 1, "status": "Failed",
                    "error": str(info)}
        else:  # PROGRESS, STARTED, RETRY or SUCCESS
            info = info if isinstance(info, dict) else {}
            body = {"state": state, "current": info.get("current", 0),
                    "total": info.get("total", 1), "status": info.get("status", "")}
            if "result" in info:
                body["result"] = info["result"]
        return jsonify(body)

    mount_dashboard(app)
    return app


def mount_dashboard(app: Flask) -> None:
    """pgqueue's dashboard under /pgqueue (docs/dashboard.md): an ASGI app, run inside
    this WSGI one by a2wsgi; DispatcherMiddleware moves /pgqueue into SCRIPT_NAME, which
    its links, forms and cookies follow. Read-only unless DASHBOARD_SETTINGS says
    otherwise: this example has no login to put in front of its actions. Without the
    dashboard extra, not mounted."""
    try:
        from a2wsgi import ASGIMiddleware
        from werkzeug.middleware.dispatcher import DispatcherMiddleware

        from pgqueue.dashboard import DashboardSettings
        from pgqueue.dashboard import create_app as dashboard_app
    except ImportError:
        return
    settings = app.config.get("DASHBOARD_SETTINGS") or DashboardSettings(read_only=True)
    dashboard = ASGIMiddleware(dashboard_app(queue, settings))
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/pgqueue": dashboard})  # type: ignore[method-assign]


app = create_app()
