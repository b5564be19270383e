"""Tasks for the metrics tests: ``pgqueue worker -A metrics_app --metrics-port N``."""

from __future__ import annotations

from pgqueue import App, Task

app = App("metrics_app")


@app.task(name="metrics.ok")
def ok(n: int) -> int:
    return n


@app.task(name="metrics.boom")
def boom() -> None:
    raise ValueError("boom")


@app.task(bind=True, name="metrics.retry_once", max_retries=3)
def retry_once(self: Task) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "done"
