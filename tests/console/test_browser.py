"""The console in real headless Chromium (Debian's `chromium`, driven by Playwright
through `executable_path`; `playwright install` is never used).

One walk through every screen against the product as it runs in production: the admin
service on Postgres (publishing changes on Redis), the console in front of it, and
Envoy + the sidecar in production mode + the fake provider. Screenshots of each
screen go to $POLICY_SIDECAR_SCREENSHOTS (docs/img for docs/ui.md) or a temp dir.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from redis.asyncio import Redis

from policy_sidecar.admin import start_admin_server
from policy_sidecar.cli.launcher import Stack, start_stack
from policy_sidecar.console import ConsoleServer, start_console
from policy_sidecar.store.postgres import Pool
from policy_sidecar.store.redis_publisher import RedisPolicyChangePublisher
from tests.log_secrets import register as register_secret

from .conftest import ADMIN_TOKEN, READ_TOKEN, TOKENS

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(600)]

CHROMIUM = os.environ.get("POLICY_SIDECAR_CHROMIUM", "/usr/bin/chromium")
REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEADLINE = 60.0
MESSAGES = [{"role": "user", "content": "Name three prime numbers, briefly."}]
UNPRICED = "gpt-4o-unpriced"


@dataclass
class Live:
    console: ConsoleServer
    stack: Stack

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.console.port}"


@pytest.fixture
async def live(dsn: str, pool: Pool, tmp_path: Path) -> AsyncIterator[Live]:
    redis = Redis.from_url(REDIS_URL)
    publisher = RedisPolicyChangePublisher(redis)
    admin = await start_admin_server(pool=pool, tokens=TOKENS, publisher=publisher)
    console = await start_console(admin_target=f"127.0.0.1:{admin.port}")
    stack = await asyncio.to_thread(
        start_stack,
        tmp_path,
        None,
        workers=1,
        sidecar_env={
            "POLICY_SIDECAR_DATABASE_URL": dsn,
            "POLICY_SIDECAR_REDIS_URL": REDIS_URL,
            # A model without a price is forwarded and reported (the coverage tab shows it).
            "POLICY_SIDECAR_UNPRICED": "allow_and_report",
        },
    )
    try:
        yield Live(console, stack)
    finally:
        await asyncio.to_thread(stack.stop)
        await console.stop()
        await admin.server.stop(None)
        await publisher.close()
        await redis.aclose()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240  (once, before the browser starts)
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (.ci/run installs it)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Page, str], Awaitable[None]]:
    directory = Path(os.environ.get("POLICY_SIDECAR_SCREENSHOTS") or tmp_path / "shots")
    directory.mkdir(parents=True, exist_ok=True)

    async def shot(page: Page, name: str) -> None:
        await page.screenshot(path=str(directory / f"{name}.png"), full_page=True)

    return shot


def chat(stack: Stack, key: str, model: str) -> int:
    body = {"model": model, "messages": MESSAGES, "max_tokens": 9}
    return post(stack, key, "/v1/chat/completions", body)


def post(stack: Stack, key: str, path: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(
        stack.url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def until_status(stack: Stack, key: str, model: str, status: int) -> None:
    """Poll (changes reach the sidecar by a Redis invalidation) until `status`."""
    deadline = time.monotonic() + DEADLINE
    got = 0
    while time.monotonic() < deadline:
        got = await asyncio.to_thread(chat, stack, key, model)
        if got == status:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"{model}: expected {status}, last got {got}")


async def login(page: Page, base: str, token: str) -> None:
    await page.goto(base + "/login")
    await page.fill('input[name="token"]', token)
    await page.click('button[type="submit"]')
    await expect(page.locator("h1")).to_have_text("Applications")


async def create_policy(page: Page, base: str, policy_type: str, fields: dict[str, str]) -> None:
    await page.goto(f"{base}/policies/new?type={policy_type}")
    for name, value in fields.items():
        locator = page.locator(f'#policy-form [name="{name}"]')
        if await locator.evaluate("e => e.tagName") == "SELECT":
            await locator.select_option(value)
        else:
            await locator.fill(value)
    await page.click('#policy-form button[type="submit"]')
    await expect(page.locator(".muted").first).to_contain_text("version 1")


async def test_every_screen_in_chromium(
    live: Live, browser: Browser, shots: Callable[[Page, str], Awaitable[None]]
) -> None:
    base = live.base
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Log in.
    await page.goto(base + "/apps")
    await expect(page.locator("h1")).to_have_text("Log in")
    await shots(page, "login")
    await login(page, base, ADMIN_TOKEN)

    # Applications: create one, an environment, a key (the secret shown once).
    await page.fill('#create-app [name="name"]', "shop")
    await page.fill('#create-app [name="org_id"]', "acme")
    await page.fill('#create-app [name="description"]', "The web shop's assistant")
    await page.click('#create-app button[type="submit"]')
    await expect(page.locator("h1")).to_contain_text("shop")
    app_id = (await page.locator("p.muted code").first.inner_text()).strip()
    await page.fill('#configs [name="environment"]', "production")
    await page.fill('#configs [name="default_model"]', "gpt-4o-mini")
    await page.click('#configs button[type="submit"]')
    await expect(page.locator('tr[data-environment="production"]')).to_contain_text("enabled")
    await page.fill('#create-key [name="environment"]', "production")
    await page.fill('#create-key [name="name"]', "backend")
    await page.click('#create-key button[type="submit"]')
    secret = await page.locator("#new-key-secret").input_value()
    register_secret(secret)
    assert len(secret) > 20
    prefix = await page.locator("tr[data-key-prefix]").first.get_attribute("data-key-prefix")
    assert prefix and secret.startswith(prefix)
    await page.click("button[data-copy]")
    await expect(page.locator("button[data-copy]")).to_have_text("Copied")
    await shots(page, "application")
    await page.goto(f"{base}/apps/{app_id}")
    assert secret not in await page.content()  # shown once only
    await page.goto(base + "/apps")
    await expect(page.locator(f'tr[data-app-id="{app_id}"]')).to_contain_text("shop")
    await shots(page, "applications")

    # Model deployments: a validation error next to its field, then two models.
    await page.goto(base + "/models")
    model_form = "#model-form form"
    for name, price in (("gpt-4o-mini", "0.15"), ("gpt-4o", "2.50")):
        await page.fill(f'{model_form} [name="name"]', name)
        await page.select_option(f'{model_form} [name="provider"]', "openai")
        await page.fill(f'{model_form} [name="upstream_model"]', name)
        await page.fill(f'{model_form} [name="upstream_cluster"]', "upstream")
        await page.fill(
            f'{model_form} [name="input_price_per_mtok"]', "abc" if name == "gpt-4o-mini" else price
        )
        await page.fill(f'{model_form} [name="output_price_per_mtok"]', "0.60")
        await page.click(f'{model_form} button[type="submit"]')
        if name == "gpt-4o-mini":
            error = page.locator('[data-error-for="input_price_per_mtok"]')
            await expect(error).to_contain_text("not a decimal number")
            await shots(page, "model-validation")
            await page.fill(f'{model_form} [name="input_price_per_mtok"]', price)
            await page.click(f'{model_form} button[type="submit"]')
        await expect(page.locator(f'tr[data-model="{name}"]')).to_be_visible()
    await shots(page, "models")
    # A model with no price (empty = unpriced, not free).
    await page.fill(f'{model_form} [name="name"]', UNPRICED)
    await page.select_option(f'{model_form} [name="provider"]', "openai")
    await page.fill(f'{model_form} [name="upstream_model"]', "gpt-4o")
    await page.fill(f'{model_form} [name="upstream_cluster"]', "upstream")
    await page.fill(f'{model_form} [name="input_price_per_mtok"]', "")
    await page.fill(f'{model_form} [name="output_price_per_mtok"]', "")
    await page.click(f'{model_form} button[type="submit"]')
    await expect(page.locator(f'tr[data-model="{UNPRICED}"]')).to_be_visible()

    # Policies: one of each type.
    await create_policy(page, base, "model_allowlist", {
        "name": "only mini", "app_id": app_id, "model_allowlist.models": "gpt-4o-mini",
    })  # fmt: skip
    await create_policy(page, base, "request_size", {
        "name": "1 MB bodies", "request_size.max_bytes": "1000000",
    })  # fmt: skip
    await create_policy(page, base, "rate_limit", {
        "name": "600 a minute", "rate_limit.requests": "600", "rate_limit.window": "1m",
        "rate_limit.key": "app_env",
    })  # fmt: skip
    await create_policy(page, base, "token_limit", {
        "name": "$100 a month", "token_limit.count": "cost_usd",
        "token_limit.limit_usd": "100", "token_limit.window": "month",
    })  # fmt: skip

    # The CEL editor: autocomplete, an error at its position, the fix, a dry run.
    await page.goto(f"{base}/policies/new?type=custom_cel")
    await page.fill('#policy-form [name="name"]', "tiny prompts (shadow)")
    await page.select_option('#policy-form [name="mode"]', "shadow")
    editor = page.locator('.cel-editor[data-cel-for="custom_cel.pre_check_expression"] .cm-content')
    await editor.click()
    await page.keyboard.type("estim")
    completion = page.locator(".cm-tooltip-autocomplete li", has_text="estimated_tokens")
    await expect(completion).to_be_visible()
    # CodeMirror ignores Enter for 75 ms after the list opens (interactionDelay), so a
    # fast robot's Enter would insert a newline instead of accepting.
    await page.wait_for_timeout(300)
    await page.keyboard.press("Enter")
    await expect(editor).to_have_text("estimated_tokens")
    await page.keyboard.type(" < 4000 && nope_var > 1")
    status = page.locator("#cel-status-pre")
    await expect(status).to_contain_text("nope_var", timeout=15000)
    await expect(status).to_have_attribute("data-state", "invalid")
    text = await status.inner_text()
    source = "estimated_tokens < 4000 && nope_var > 1"
    match = re.search(r"line (\d+), column (\d+)", text)
    assert match, text
    assert int(match.group(1)) == 1
    assert int(match.group(2)) == source.index("nope_var") + 1, text
    assert await page.locator(".cm-lintRange-error").first.inner_text() == "nope_var"
    await shots(page, "policy-cel-error")
    await page.keyboard.press("Control+a")
    await page.keyboard.type("estimated_tokens < 1")
    await expect(status).to_have_text("valid", timeout=15000)
    await page.fill('#policy-form [name="sample.app_id"]', app_id)
    await page.click("#dry-run-button")
    verdict = page.locator("#dry-run-result .verdict")
    await expect(verdict).to_have_attribute("data-verdict", "allow")
    await expect(verdict).to_contain_text("shadow: would deny")
    await shots(page, "policy-builder")
    await page.click('#policy-form button[type="submit"]')
    await expect(page.locator(".muted").first).to_contain_text("version 1")

    # A rate limit dry run shows the counters.
    await page.goto(f"{base}/policies/new?type=rate_limit")
    await page.fill('#policy-form [name="rate_limit.requests"]', "10")
    await page.fill('#policy-form [name="sample.counter_used"]', "10")
    await page.click("#dry-run-button")
    await expect(verdict).to_have_attribute("data-verdict", "deny")
    await expect(page.locator('#dry-run-result [data-counter="limit"]')).to_have_text("10")
    await page.goto(base + "/policies")
    await expect(page.locator("tr[data-policy-id]")).to_have_count(5)
    await shots(page, "policies")

    # Traffic through Envoy: allowed, and denied by the allowlist.
    await until_status(live.stack, secret, "gpt-4o-mini", 200)
    await until_status(live.stack, secret, "gpt-4o", 403)
    for model, expected in (("gpt-4o-mini", 200), ("gpt-4o-mini", 200), ("gpt-4o", 403)):
        assert await asyncio.to_thread(chat, live.stack, secret, model) == expected

    # The dashboard shows it (rollups are written in batches: poll).
    deadline = time.monotonic() + DEADLINE
    while True:
        await page.goto(base + "/usage?range=24h&bucket=hour")
        requests = await page.locator('[data-metric="requests"]').get_attribute("data-value")
        denied = await page.locator('[data-metric="denied_requests"]').get_attribute("data-value")
        if int(requests or 0) >= 5 and int(denied or 0) >= 2:
            break
        assert time.monotonic() < deadline, f"dashboard shows {requests} requests"
        await asyncio.sleep(1)
    recent = page.locator('#recent tr[data-decision="deny"]').first
    await expect(recent.locator("[data-denied-by]")).to_have_text("only mini")
    await expect(page.locator("#denials")).to_contain_text("only mini")
    shadow = page.locator("#denials tr", has_text="tiny prompts (shadow)")
    await expect(shadow.locator("[data-shadow]")).not_to_have_text("0")
    await expect(page.locator('[data-chart="requests"] canvas')).to_have_count(1)
    await shots(page, "usage")

    # The range picker and auto-refresh.
    await page.select_option('#usage-filters [name="range"]', "7d")
    await page.check('#usage-filters [name="refresh"]')
    await page.click('#usage-filters button[type="submit"]')
    await expect(page.locator("#usage-data")).to_have_attribute("hx-trigger", "every 30s")
    assert "range=7d" in page.url
    week = await page.locator('[data-metric="requests"]').get_attribute("data-value")
    assert int(week or 0) >= int(requests or 0)

    # A policy changed in the console applies to the next request.
    await page.goto(base + "/policies")
    await page.click("text=only mini")
    await page.fill(
        '#policy-form [name="model_allowlist.models"]', f"gpt-4o-mini\ngpt-4o\n{UNPRICED}"
    )
    await page.click('#policy-form button[type="submit"]')
    await expect(page.locator(".muted").first).to_contain_text("version 2")
    await until_status(live.stack, secret, "gpt-4o", 200)

    # An unpriced model (allow_and_report): forwarded, and reported as such.
    assert await asyncio.to_thread(chat, live.stack, secret, UNPRICED) == 200

    # Metering coverage: the traffic by route and unit, and a batch (not metered:
    # refused before routing) on the line for traffic no metered route matched.
    batch = {"input_file_id": "file-1", "endpoint": "/v1/chat/completions"}
    assert await asyncio.to_thread(post, live.stack, secret, "/v1/batches", batch) == 403
    await page.goto(base + "/usage?range=24h&bucket=hour")
    await page.click("#coverage-tab")
    await expect(page.locator("h1")).to_have_text("Metering coverage")
    assert "range=24h" in page.url
    tokens = page.locator('#coverage tr[data-provider="openai"][data-unit="tokens"]')
    unpriced = tokens.locator('[data-col="unpriced_allowed"]')
    unmetered = page.locator("#coverage tr[data-unmetered]")
    deadline = time.monotonic() + DEADLINE
    while (
        await unmetered.count() == 0
        or await tokens.count() == 0
        or int(await unpriced.get_attribute("data-value") or 0) == 0
    ):
        assert time.monotonic() < deadline, await page.locator("#coverage").inner_text()
        await asyncio.sleep(1)
        await page.reload()
    allowed = await tokens.locator('[data-col="allowed"]').get_attribute("data-value")
    denied = await tokens.locator('[data-col="denied"]').get_attribute("data-value")
    assert int(allowed or 0) >= 4 and int(denied or 0) >= 2, (allowed, denied)
    await expect(unpriced.locator(".badge.warn")).to_be_visible()
    await expect(tokens).to_have_class("unpriced")
    await expect(tokens.locator('[data-col="quantity"]')).to_contain_text(" tokens")
    total = page.locator('#coverage-total [data-col="requests"]')
    assert int(await total.get_attribute("data-value") or 0) >= int(requests or 0)
    await expect(page.locator("#coverage-proves")).to_contain_text("nothing bypassed metering")
    await shots(page, "coverage")
    await page.click('nav.tabs a:has-text("Dashboard")')
    await expect(page.locator("h1")).to_have_text("Usage")

    # The audit log: who changed what, before and after.
    await page.goto(base + "/audit?object_type=policy")
    update = page.locator('#audit tr[data-action="update"]').first
    await expect(update.locator("[data-actor]")).to_have_text("ops")
    await update.locator("summary").click()
    await expect(update.locator('tr[data-field="config"] td.after')).to_contain_text("gpt-4o")
    await page.goto(base + "/audit")
    await page.locator('#audit tr[data-action="update"] summary').first.click()
    await shots(page, "audit")

    # Read-only: every screen readable, no write control anywhere.
    ro = await browser.new_context(viewport={"width": 1400, "height": 900})
    rpage = await ro.new_page()
    await login(rpage, base, READ_TOKEN)
    paths = ("/apps", f"/apps/{app_id}", "/models", "/policies", "/usage", "/usage/coverage",
             "/audit")  # fmt: skip
    for path in paths:
        await rpage.goto(base + path)
        await expect(rpage.locator('[data-role="readonly"]')).to_be_visible()
        assert await rpage.locator('form[method="post"]').count() == 1  # log out only
        assert await rpage.locator("#dry-run-button").count() == 0
    await rpage.goto(base + "/policies")
    await rpage.locator("tr[data-policy-id] a").first.click()
    assert await rpage.locator('form[method="post"]').count() == 1
    await shots(rpage, "read-only")
    await ro.close()
    await context.close()
    assert errors == []
