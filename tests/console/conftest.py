"""Fixtures: the admin server on a fresh Postgres schema (tests/admin's fixtures) and
the console in front of it, on free ports, in this event loop; an HTTP client that
behaves like a browser (cookies, Origin header)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from policy_sidecar.admin import AdminServer
from policy_sidecar.console import ConsoleServer, start_console
from tests.admin.conftest import TOKENS, admin, client  # noqa: F401  (fixtures)
from tests.admin.helpers import ADMIN_TOKEN, READ_TOKEN
from tests.store.conftest import dsn, pool, publisher, schema_dsn  # noqa: F401  (fixtures)

__all__ = ["ADMIN_TOKEN", "READ_TOKEN", "TOKENS", "Browser"]


@pytest.fixture
async def console(admin: AdminServer) -> AsyncIterator[ConsoleServer]:  # noqa: F811
    server = await start_console(admin_target=f"127.0.0.1:{admin.port}")
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class Browser:
    """An HTTP client with a cookie jar that sends the console's Origin on POSTs."""

    session: aiohttp.ClientSession
    base: str

    async def get(self, path: str, **kw: object) -> tuple[int, str]:
        async with self.session.get(self.base + path, **kw) as r:  # type: ignore[arg-type]
            return r.status, await r.text()

    async def post(
        self, path: str, data: dict[str, str], *, origin: str | None = None, csrf: bool = True
    ) -> tuple[int, str]:
        form = dict(data)
        if csrf and "_csrf" not in form:
            form["_csrf"] = await self.csrf()
        headers = {"Origin": self.base if origin is None else origin}
        async with self.session.post(self.base + path, data=form, headers=headers) as r:
            return r.status, await r.text()

    async def csrf(self) -> str:
        _, page = await self.get("/apps")
        found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
        assert found, page[:500]
        return found.group(1)

    async def login(self, token: str) -> tuple[int, str]:
        _, page = await self.get("/login")
        nonce = re.search(r'name="_csrf" value="([^"]+)"', page)
        assert nonce
        return await self.post("/login", {"token": token, "_csrf": nonce.group(1)}, csrf=False)


async def _browser(console: ConsoleServer) -> AsyncIterator[Browser]:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        yield Browser(session, f"http://127.0.0.1:{console.port}")


@pytest.fixture
async def anonymous(console: ConsoleServer) -> AsyncIterator[Browser]:
    async for b in _browser(console):
        yield b


@pytest.fixture
async def admin_ui(console: ConsoleServer) -> AsyncIterator[Browser]:
    async for b in _browser(console):
        status, _ = await b.login(ADMIN_TOKEN)
        assert status == 200
        yield b


@pytest.fixture
async def readonly_ui(console: ConsoleServer) -> AsyncIterator[Browser]:
    async for b in _browser(console):
        status, _ = await b.login(READ_TOKEN)
        assert status == 200
        yield b
