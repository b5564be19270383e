"""Who may use the dashboard and where it may listen.

Authentication is a token (``PGQUEUE_DASHBOARD_TOKEN``: sent as ``Authorization: Bearer``
or as the password of basic auth, any user name) or a user and password
(``PGQUEUE_DASHBOARD_USER`` and ``PGQUEUE_DASHBOARD_PASSWORD``, basic auth). Without
either, the dashboard only listens on a loopback address.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from pgqueue.exceptions import ConfigurationError

#: Seconds between two refreshes of a page's live part.
DEFAULT_REFRESH = 3.0


class BindRefused(ConfigurationError):
    """A non-loopback address without authentication configured."""


@dataclass(frozen=True)
class DashboardSettings:
    read_only: bool = False
    token: str | None = None
    user: str | None = None
    password: str | None = None
    refresh: float = DEFAULT_REFRESH

    def __post_init__(self) -> None:
        if (self.user is None) != (self.password is None):
            raise ConfigurationError(
                "dashboard: give both PGQUEUE_DASHBOARD_USER and PGQUEUE_DASHBOARD_PASSWORD "
                "(or PGQUEUE_DASHBOARD_TOKEN), not only one")
        for name, value in (("token", self.token), ("password", self.password)):
            if value is not None and len(value) < 8:
                raise ConfigurationError(f"dashboard: the {name} is shorter than 8 "
                                         "characters; choose a longer one")
        if not 0.5 <= self.refresh <= 3600:
            raise ConfigurationError(f"dashboard: refresh must be 0.5 to 3600 seconds, "
                                     f"got {self.refresh!r}")

    @property
    def authenticated(self) -> bool:
        return self.token is not None or self.user is not None

    def __repr__(self) -> str:  # never show a secret
        return (f"DashboardSettings(read_only={self.read_only}, "
                f"auth={'token' if self.token else 'basic' if self.user else 'none'})")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 read_only: bool = False, refresh: float = DEFAULT_REFRESH
                 ) -> DashboardSettings:
        env = os.environ if environ is None else environ
        return cls(read_only=read_only, token=env.get("PGQUEUE_DASHBOARD_TOKEN") or None,
                   user=env.get("PGQUEUE_DASHBOARD_USER") or None,
                   password=env.get("PGQUEUE_DASHBOARD_PASSWORD") or None, refresh=refresh)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: DashboardSettings) -> None:
    """Refuse to listen beyond this machine with no authentication."""
    if not is_loopback(host) and not settings.authenticated:
        raise BindRefused(
            f"refusing to listen on {host} without authentication: set "
            "PGQUEUE_DASHBOARD_TOKEN (or PGQUEUE_DASHBOARD_USER and "
            "PGQUEUE_DASHBOARD_PASSWORD), or listen on 127.0.0.1")
