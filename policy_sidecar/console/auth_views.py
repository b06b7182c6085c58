"""Login and logout."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from policy_sidecar.console.admin_client import ApiError
from policy_sidecar.console.forms import form_data, text
from policy_sidecar.console.render import render
from policy_sidecar.console.session import LOGIN_CSRF_COOKIE, SESSION_COOKIE, InvalidToken
from policy_sidecar.console.state import SESSIONS_KEY, current_user

__all__ = ["Handler", "add_routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NONCE = re.compile(r"[A-Za-z0-9_-]{32}")


def _login_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    # Reuse the browser's nonce: a second GET (another tab, a redirected favicon
    # request) must not invalidate the form already shown.
    nonce = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not NONCE.fullmatch(nonce):
        nonce = secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, login_csrf=nonce, error=error)
    request.app[SESSIONS_KEY].set_cookie(request, response, LOGIN_CSRF_COOKIE, nonce)
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    form = await form_data(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, form.get("_csrf", "")):
        return _login_page(request, error="The form expired: try again.", status=403)
    token = text(form, "token")
    if not token:
        return _login_page(request, error="Enter an admin or read-only token.", status=400)
    sessions = request.app[SESSIONS_KEY]
    try:
        await sessions.role_of(token)
    except InvalidToken:
        return _login_page(request, error="The admin service refused this token.", status=401)
    except ApiError as exc:
        return _login_page(request, error=f"The admin service failed: {exc}", status=502)
    response = web.HTTPSeeOther("/apps")
    sessions.set_cookie(request, response, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    request.app[SESSIONS_KEY].forget(user.token)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/apps")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/login", login_form)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
    router.add_get("/", home)
