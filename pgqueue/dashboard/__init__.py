"""A web dashboard for pgqueue (the ``dashboard`` extra): ``pgqueue dashboard``, or
:func:`create_app` mounted inside a Starlette or FastAPI app. See docs/dashboard.md."""

from pgqueue.dashboard.app import create_app
from pgqueue.dashboard.settings import DashboardSettings

__all__ = ["DashboardSettings", "create_app"]
