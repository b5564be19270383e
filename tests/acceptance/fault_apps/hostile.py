"""The hostile tasks of ``tests/hostile_tasks.py`` for real `pgqueue worker` processes."""

from pgqueue import App
from tests import hostile_tasks

app = App("hostile")
hostile_tasks.register(app)
