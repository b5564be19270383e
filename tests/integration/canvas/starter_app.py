"""A worker app for the rescued-starter test: a periodic workflow's starter job
(``celery.chain``) that, once the workflow is sent and committed, holds its worker in
``task_postrun`` until the test SIGKILLs it (only the first time: the marker file says
it happened)."""

import os
import time

from pgqueue import App, signals

app = App("canvas_starter")


@app.task(name="add")
def add(x, y):
    return x + y


@signals.task_postrun.connect(weak=False)
def hold_the_starter(sender=None, task_id=None, task=None, **_):
    marker = os.environ.get("STARTER_MARKER")
    if marker and getattr(task, "name", None) == "celery.chain" \
            and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(task_id))
        time.sleep(300)  # the test kills the worker here
