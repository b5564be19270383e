"""A worker app that configures logging itself through ``setup_logging``, as Celery allows."""

import logging
import sys

from pgqueue import App, signals

app = App("own_logging")


@signals.setup_logging.connect
def configure(loglevel=None, **kwargs):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("OWN-FORMAT %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(loglevel)


@app.task(name="own_logging.ping")
def ping():
    return "pong"
