"""An app whose beat_schedule names a task that does not exist: schedulers refuse to start."""

from pgqueue import App

app = App("misconfigured")
app.conf.beat_schedule = {"report": {"task": "misconfigured.reprot", "schedule": 60}}


@app.task(name="misconfigured.report")
def report():
    return "done"
