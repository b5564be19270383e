"""pgqueue's dashboard inside a Django project, under a path prefix (the ``dashboard`` extra).

In ``asgi.py``::

    application = mount(get_asgi_application(), prefix="/pgqueue")

in ``wsgi.py`` (the dashboard is ASGI; a2wsgi runs it inside the WSGI server)::

    application = mount_wsgi(get_wsgi_application(), prefix="/pgqueue")

Requests for the prefix and below go to the dashboard of the project's pgqueue App,
every other request to Django unchanged. The dashboard is read-only unless the settings
given say otherwise; its own authentication (``PGQUEUE_DASHBOARD_TOKEN``, ...) and CSRF
checks apply. See docs/dashboard.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pgqueue.exceptions import ConfigurationError

if TYPE_CHECKING:
    from pgqueue.dashboard import DashboardSettings

_PREFIX = re.compile(r"(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+")


def check_prefix(prefix: str) -> str:
    """A prefix is one or more plain path segments: ``/pgqueue``, ``/ops/queue``."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) \
            or any(part in (".", "..") for part in prefix.split("/")):
        raise ConfigurationError(
            f"dashboard prefix {prefix!r} is not a plain path such as '/pgqueue' (a leading "
            "slash, no trailing slash, no '.' or '..' segment, letters, digits, '.', '_', "
            "'~' and '-')")
    return prefix


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def dashboard(settings: DashboardSettings | None = None) -> Any:
    """The dashboard (ASGI) of the project's pgqueue App: read-only by default,
    authentication from ``PGQUEUE_DASHBOARD_*`` environment variables."""
    try:
        from pgqueue.dashboard import DashboardSettings, create_app
    except ImportError as error:
        raise ConfigurationError(f"the dashboard needs the dashboard extra: pip install "
                                 f"'pgqueue-tasks[dashboard]' ({error.name} is missing)"
                                 ) from None
    from pgqueue.contrib.django import get_app

    return create_app(get_app(), settings or DashboardSettings.from_env(read_only=True))


def mount(application: Any, prefix: str = "/pgqueue", *,
          settings: DashboardSettings | None = None) -> Any:
    """An ASGI app: ``prefix`` and below to the dashboard, the rest to ``application``."""
    prefix = check_prefix(prefix)
    web = dashboard(settings)

    async def dispatch(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            root = scope.get("root_path", "")
            path = scope["path"]
            # ASGI servers put root_path in front of path; older ones did not.
            if not path.startswith(root):
                path = root + path
            if _under(path[len(root):], prefix):
                await web(dict(scope, root_path=root + prefix, path=path), receive, send)
                return
        await application(scope, receive, send)

    return dispatch


def mount_wsgi(application: Any, prefix: str = "/pgqueue", *,
               settings: DashboardSettings | None = None) -> Any:
    """A WSGI app: ``prefix`` and below to the dashboard (through a2wsgi), the rest to
    ``application``. The prefix moves from PATH_INFO to SCRIPT_NAME, which the dashboard's
    links, forms and cookies follow."""
    prefix = check_prefix(prefix)
    asgi_dashboard = dashboard(settings)
    try:
        from a2wsgi import ASGIMiddleware
    except ImportError:
        raise ConfigurationError("the dashboard inside a WSGI app needs a2wsgi: pip install "
                                 "'pgqueue-tasks[dashboard]'") from None
    web = ASGIMiddleware(asgi_dashboard)

    def dispatch(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if _under(path, prefix):
            environ = dict(environ, SCRIPT_NAME=environ.get("SCRIPT_NAME", "") + prefix,
                           PATH_INFO=path[len(prefix):])
            return web(environ, start_response)  # type: ignore[arg-type]
        wsgi_response: Iterable[bytes] = application(environ, start_response)
        return wsgi_response

    return dispatch
