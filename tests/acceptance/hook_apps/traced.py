"""A worker app wired the way an error tracker, a tracer and a Flask app hook into Celery:
signal receivers and a ContextTask, written as a Celery user would, writing what they
see to $TRACE_FILE."""

import os
import time

import flask

from pgqueue import App, signals
from tests.recorder import Recorder

record = Recorder(os.environ["TRACE_FILE"])
app = App("traced")
flask_app = flask.Flask("traced_flask")


class ContextTask(app.Task):
    def __call__(self, *args, **kwargs):
        with flask_app.app_context():
            return self.run(*args, **kwargs)


app.Task = ContextTask


# -- the error tracker -------------------------------------------------------------------
@signals.task_failure.connect
def capture_exception(sender=None, task_id=None, exception=None, traceback=None,
                      einfo=None, **kwargs):
    record("task_failure", id=task_id, task=sender.name, exception=repr(exception),
           frames=traceback is not None, text=einfo.traceback)


# -- the tracer --------------------------------------------------------------------------
@signals.task_prerun.connect
def start_span(sender=None, task_id=None, task=None, args=None, kwargs=None, **rest):
    record("task_prerun", id=task_id, task=task.name, args=args)


@signals.task_postrun.connect
def end_span(sender=None, task_id=None, retval=None, state=None, **rest):
    record("task_postrun", id=task_id, state=state, retval=repr(retval))


@signals.task_success.connect
def broken_exporter(sender=None, **kwargs):
    raise RuntimeError("span exporter is down")


# -- per-process set-up, logging ---------------------------------------------------------
@signals.worker_process_init.connect
def reconnect(**kwargs):
    record("worker_process_init")


@signals.worker_ready.connect
def ready(sender=None, **kwargs):
    record("worker_ready", pool=sender.pool_name)


@signals.after_setup_logger.connect
def add_handler(logger=None, loglevel=None, **kwargs):
    record("after_setup_logger", logger=logger.name, loglevel=loglevel)


@app.task(name="traced.add")
def add(x, y):
    return x + y


@app.task(name="traced.fails")
def fails(why):
    raise KeyError(why)


@app.task(name="traced.flask_name")
def flask_name():
    return flask.current_app.name


@app.task(name="traced.hard_limited", time_limit=1)
def hard_limited(s):
    time.sleep(s)
