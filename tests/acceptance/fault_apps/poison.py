"""The hostile tasks of ``tests/poison.py`` for real `pgqueue worker` processes."""

from pgqueue import App
from tests import poison

app = App("poison")
poison.register(app)
