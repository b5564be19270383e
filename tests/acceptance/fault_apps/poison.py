"""The poison tasks of tests/poison_tasks.py in an app a `pgqueue worker` can load."""

import os
from pathlib import Path

from pgqueue import App
from tests.poison_tasks import define

app = App("poison")
app.conf.update(leader_ttl_seconds=2, maintenance_interval=0.3)
define(app, Path(os.environ["POISON_EXECUTIONS"]))
