"""Authentication (an ASGI middleware), CSRF tokens and the headers every page gets."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pgqueue.dashboard.settings import DashboardSettings

CSRF_COOKIE = "pgqueue_csrf"
CSRF_FIELD = "csrf"
HEADERS = {
    # Scripts and styles only from the dashboard itself; charts are inline SVG markup.
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'self'; form-action "
                               "'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _same(given: str, wanted: str) -> bool:
    return hmac.compare_digest(given.encode(), wanted.encode())


def allowed(settings: DashboardSettings, authorization: str) -> bool:
    """Whether an ``Authorization`` header passes: the token as Bearer, or basic auth with
    the user and password (or any user name and the token as password)."""
    if not settings.authenticated:
        return True
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and settings.token is not None:
        return _same(value.strip(), settings.token)
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True) \
            .decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    if settings.token is not None and _same(password, settings.token):
        return True
    return settings.user is not None and settings.password is not None \
        and _same(user, settings.user) & _same(password, settings.password)


class AuthMiddleware:
    def __init__(self, app: ASGIApp, settings: DashboardSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.settings.authenticated:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if allowed(self.settings, header):
            await self.app(scope, receive, send)
            return
        refused = PlainTextResponse("authentication required\n", status_code=401, headers={
            "www-authenticate": 'Basic realm="pgqueue dashboard", charset="UTF-8"'})
        await refused(scope, receive, send)


def csrf_token(request: Request) -> str:
    """The token of this browser (its cookie), or a new one that the response sets."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) != 43:
        token = request.state.new_csrf = secrets.token_urlsafe(32)
    return token


def set_csrf_cookie(request: Request, response: Any) -> None:
    new = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict",
                            path=request.scope.get("root_path") or "/")


def csrf_ok(request: Request, form_token: str) -> bool:
    """Double submit: the form's token equals the cookie's (which another site can
    neither read nor send, SameSite=Strict), and the request does not come from
    another origin."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not form_token or not _same(cookie, form_token):
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc == request.headers.get("host", "")
    return True
