"""An app whose beat_schedule holds a name no operator command accepts: schedulers refuse
to start rather than write a schedule nobody could run now, enable or disable."""

from pgqueue import App

app = App("badly_named")
app.conf.beat_schedule = {
    "fine": {"task": "badly_named.report", "schedule": 60},
    "report\nnightly": {"task": "badly_named.report", "schedule": 60},
}


@app.task(name="badly_named.report")
def report():
    return "done"
