"""The console's handlers against a real admin service on Postgres (over gRPC)."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from policy_sidecar.admin import AdminServer
from policy_sidecar.admin.v1 import (
    api_keys_pb2,
    applications_pb2,
    models_pb2,
    policies_pb2,
    usage_pb2,
)
from policy_sidecar.console import ConsoleServer, coverage_views, start_console
from policy_sidecar.store.postgres import Pool, UsageRepository
from policy_sidecar.usage.record import UsageRecord
from tests.admin.conftest import Client
from tests.admin.helpers import AUTH

from .conftest import ADMIN_TOKEN, Browser

pytestmark = pytest.mark.postgres


def error_for(page: str, name: str) -> str:
    found = re.search(rf'data-error-for="{re.escape(name)}">([^<]*)<', page)
    assert found, f"no error shown for {name!r}"
    return html.unescape(found.group(1))


async def create_app(ui: Browser, name: str = "shop") -> str:
    status, page = await ui.post("/apps", {"name": name, "org_id": "acme", "description": "d"})
    assert status == 200, page
    found = re.search(r"Id <code>([^<]+)</code>", page)
    assert found
    return found.group(1)


# --- login, session, CSRF ---------------------------------------------------------


async def test_pages_need_a_login(anonymous: Browser) -> None:
    status, page = await anonymous.get("/apps")
    assert status == 200 and 'action="/login"' in page  # redirected to the login form


async def test_a_token_the_admin_service_refuses_does_not_log_in(anonymous: Browser) -> None:
    status, page = await anonymous.login("not-a-valid-token-at-all")
    assert status == 401
    assert "refused this token" in page
    status, page = await anonymous.get("/apps")
    assert 'action="/login"' in page


async def test_session_cookie_is_http_only_and_same_site_strict(console: ConsoleServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        base = f"http://127.0.0.1:{console.port}"
        async with s.get(base + "/login") as r:
            nonce = re.search(r'name="_csrf" value="([^"]+)"', await r.text())
            login_cookie = r.cookies["ps_login_csrf"]
        assert nonce
        async with s.post(
            base + "/login",
            data={"token": ADMIN_TOKEN, "_csrf": nonce.group(1)},
            headers={"Origin": base, "Cookie": f"ps_login_csrf={login_cookie.value}"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
            header = next(v for v in r.headers.getall("Set-Cookie") if "ps_console=" in v)
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Secure" not in header  # plain HTTP here; TLS or UI_COOKIE_SECURE adds it


async def test_login_form_needs_its_double_submit_token(anonymous: Browser) -> None:
    status, _ = await anonymous.post(
        "/login", {"token": ADMIN_TOKEN, "_csrf": "forged"}, csrf=False
    )
    assert status == 403


async def test_posts_need_the_csrf_token(admin_ui: Browser, client: Client) -> None:
    status, _ = await admin_ui.post("/apps", {"name": "x", "org_id": "acme"}, csrf=False)
    assert status == 403
    status, _ = await admin_ui.post("/apps", {"name": "x", "org_id": "acme", "_csrf": "0" * 64})
    assert status == 403
    listed = await client.apps.ListApplications(
        applications_pb2.ListApplicationsRequest(), metadata=AUTH
    )
    assert list(listed.applications) == []


async def test_posts_from_another_origin_are_refused(admin_ui: Browser) -> None:
    status, body = await admin_ui.post(
        "/apps", {"name": "x", "org_id": "acme"}, origin="http://evil.example"
    )
    assert status == 403 and "cross-origin" in body


async def test_read_only_sees_no_write_controls_and_writes_are_refused(
    admin_ui: Browser, readonly_ui: Browser
) -> None:
    app_id = await create_app(admin_ui)
    paths = ("/apps", f"/apps/{app_id}", "/models", "/policies", "/policies/new", "/usage",
             "/usage/coverage")  # fmt: skip
    for path in paths:
        status, page = await readonly_ui.get(path)
        assert status == 200, path
        assert 'data-role="readonly"' in page
        assert 'method="post" action="/logout"' in page
        posts = re.findall(r'<form[^>]*method="post"[^>]*>', page)
        assert posts == ['<form method="post" action="/logout">'], (path, posts)
        assert "dry-run-button" not in page
    # The admin service refuses the write even if a read-only user posts it.
    status, page = await readonly_ui.post("/apps", {"name": "sneaky", "org_id": "acme"})
    assert status == 403
    assert "read-only" in page


# --- applications and keys ----------------------------------------------------------


async def test_create_search_edit_and_archive_an_application(
    admin_ui: Browser, client: Client
) -> None:
    app_id = await create_app(admin_ui, "checkout")
    await create_app(admin_ui, "billing")
    _, page = await admin_ui.get("/apps?q=check")
    assert "checkout" in page and "billing" not in page
    got = await client.apps.GetApplication(
        applications_pb2.GetApplicationRequest(id=app_id), metadata=AUTH
    )
    status, _ = await admin_ui.post(
        f"/apps/{app_id}",
        {"name": "checkout-v2", "description": "new", "version": str(got.application.version)},
    )
    assert status == 200
    got = await client.apps.GetApplication(
        applications_pb2.GetApplicationRequest(id=app_id), metadata=AUTH
    )
    assert (got.application.name, got.application.description) == ("checkout-v2", "new")
    status, page = await admin_ui.post(
        f"/apps/{app_id}/archive", {"version": str(got.application.version)}
    )
    assert status == 200 and "archived" in page
    _, page = await admin_ui.get("/apps")
    assert "checkout-v2" not in page
    _, page = await admin_ui.get("/apps?archived=1")
    assert "checkout-v2" in page


async def test_field_violations_are_shown_next_to_their_field(admin_ui: Browser) -> None:
    status, page = await admin_ui.post("/apps", {"name": " ", "org_id": "acme"})
    assert status == 400
    assert error_for(page, "name") == "required"


async def test_environment_configs_enable_and_disable(admin_ui: Browser) -> None:
    app_id = await create_app(admin_ui)
    status, page = await admin_ui.post(
        f"/apps/{app_id}/configs", {"environment": "production", "enabled": "on"}
    )
    assert status == 200
    assert re.search(r'data-environment="production">.*?enabled', page)
    _, page = await admin_ui.post(f"/apps/{app_id}/configs", {"environment": "production"})
    assert re.search(r'data-environment="production">.*?disabled', page)
    status, page = await admin_ui.post(f"/apps/{app_id}/configs", {"environment": "Prod!"})
    assert status == 400
    assert "must match" in error_for(page, "environment")


async def test_a_key_secret_is_shown_once_then_only_its_prefix(
    admin_ui: Browser, client: Client
) -> None:
    app_id = await create_app(admin_ui)
    status, page = await admin_ui.post(
        f"/apps/{app_id}/keys", {"environment": "production", "name": "backend"}
    )
    assert status == 200
    secret = re.search(r'id="new-key-secret" value="([^"]+)"', page)
    assert secret
    keys = await client.keys.ListApiKeys(
        api_keys_pb2.ListApiKeysRequest(app_id=app_id), metadata=AUTH
    )
    (key,) = keys.api_keys
    assert secret.group(1).startswith(key.prefix)
    _, page = await admin_ui.get(f"/apps/{app_id}")
    assert secret.group(1) not in page
    assert f'data-key-prefix="{key.prefix}"' in page
    status, page = await admin_ui.post(
        f"/apps/{app_id}/keys/{key.id}/revoke", {"version": str(key.version)}
    )
    assert status == 200 and "revoked" in page


# --- models -------------------------------------------------------------------------


async def test_models_create_validate_edit_and_disable(admin_ui: Browser, client: Client) -> None:
    form = {
        "name": "gpt-4o-mini",
        "provider": "openai",
        "upstream_model": "gpt-4o-mini",
        "upstream_cluster": "upstream",
        "input_price_per_mtok": "abc",
        "output_price_per_mtok": "0.60",
        "enabled": "on",
    }
    status, page = await admin_ui.post("/models", form)
    assert status == 400
    assert "not a decimal number" in error_for(page, "input_price_per_mtok")
    status, page = await admin_ui.post("/models", {**form, "input_price_per_mtok": "0.15"})
    assert status == 200 and 'data-model="gpt-4o-mini"' in page
    (model,) = (
        await client.models.ListModels(models_pb2.ListModelsRequest(), metadata=AUTH)
    ).models
    assert (model.input_price_per_mtok, model.output_price_per_mtok) == ("0.15", "0.6")
    status, _ = await admin_ui.post(
        f"/models/{model.id}", {"_action": "toggle", "version": str(model.version)}
    )
    assert status == 200
    got = await client.models.GetModel(models_pb2.GetModelRequest(id=model.id), metadata=AUTH)
    assert got.model.enabled is False
    status, page = await admin_ui.post(
        f"/models/{model.id}",
        {
            **form,
            "input_price_per_mtok": "0.2",
            "account": "nope",
            "version": str(got.model.version),
        },
    )
    assert status == 400
    assert "unknown provider account" in error_for(page, "account")


# --- policies -----------------------------------------------------------------------

POLICY_FORMS: dict[str, dict[str, str]] = {
    "model_allowlist": {"model_allowlist.models": "gpt-4o-mini\nclaude-*"},
    "request_size": {"request_size.max_bytes": "100000"},
    "rate_limit": {"rate_limit.requests": "60", "rate_limit.window": "1m"},
    "token_limit": {
        "token_limit.count": "cost_usd",
        "token_limit.limit_usd": "25.5",
        "token_limit.window": "month",
    },
    "custom_cel": {"custom_cel.pre_check_expression": "estimated_tokens < 4000"},
}


@pytest.mark.parametrize("policy_type", list(POLICY_FORMS))
async def test_create_a_policy_of_each_type(
    admin_ui: Browser, client: Client, policy_type: str
) -> None:
    status, page = await admin_ui.post(
        "/policies",
        {
            "name": f"p-{policy_type}",
            "type": policy_type,
            "mode": "shadow",
            "priority": "7",
            "enabled": "on",
            **POLICY_FORMS[policy_type],
        },
    )
    assert status == 200, page
    (policy,) = (
        await client.policies.ListPolicies(policies_pb2.ListPoliciesRequest(), metadata=AUTH)
    ).policies
    assert (policy.type, policy.mode, policy.priority) == (
        policy_type,
        policies_pb2.POLICY_MODE_SHADOW,
        7,
    )
    # The builder shows the stored values back.
    for name, value in POLICY_FORMS[policy_type].items():
        shown = value.replace("\n", "&#10;") if "\n" in value else value
        assert html.escape(value) in page or shown in page, name


async def test_policy_config_violations_name_the_form_field(admin_ui: Browser) -> None:
    status, page = await admin_ui.post(
        "/policies",
        {"name": "bad", "type": "rate_limit", "mode": "enforce", "rate_limit.window": "7x"},
    )
    assert status == 400
    assert "window" in error_for(page, "rate_limit.window")
    assert error_for(page, "rate_limit.requests")


async def test_cel_validation_endpoint_returns_positions(admin_ui: Browser) -> None:
    csrf = await admin_ui.csrf()
    headers = {"X-CSRF-Token": csrf, "Origin": admin_ui.base}

    async def check(source: str, phase: str) -> dict[str, Any]:
        async with admin_ui.session.post(
            admin_ui.base + "/cel/validate",
            json={"source": source, "phase": phase},
            headers=headers,
        ) as r:
            assert r.status == 200
            body: dict[str, Any] = await r.json()
            return body

    ok = await check('model.startsWith("gpt-4o") && estimated_tokens < 4000', "pre")
    assert ok == {"valid": True, "errors": []}
    bad = await check("estimated_tokens <\n  4000 &&", "pre")
    assert bad["valid"] is False
    assert bad["errors"][0]["line"] == 2
    unknown = await check("cost_usd > 1.0", "pre")  # a post variable in the pre phase
    assert unknown["valid"] is False and "cost_usd" in unknown["errors"][0]["message"]
    assert (await check("cost_usd > 1.0", "post"))["valid"] is True


async def test_dry_run_shows_verdict_reason_and_counters(admin_ui: Browser) -> None:
    base = {"name": "rl", "type": "rate_limit", "mode": "enforce", "priority": "100",
            "enabled": "on", "rate_limit.requests": "10", "rate_limit.window": "1m",
            "sample.model": "gpt-4o-mini", "sample.app_id": "app_1",
            "sample.environment": "production", "sample.org_id": "acme"}  # fmt: skip
    status, page = await admin_ui.post("/policies/dry-run", {**base, "sample.counter_used": "3"})
    assert status == 200 and 'data-verdict="allow"' in page
    status, page = await admin_ui.post("/policies/dry-run", {**base, "sample.counter_used": "10"})
    assert 'data-verdict="deny"' in page
    assert "rate_limit_exceeded" in page
    assert 'data-counter="limit"' in page
    status, page = await admin_ui.post(
        "/policies/dry-run", {**base, "mode": "shadow", "sample.counter_used": "10"}
    )
    assert 'data-verdict="allow"' in page and "shadow: would deny" in page


# --- usage --------------------------------------------------------------------------


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


async def test_dashboard_numbers_equal_the_admin_api(
    admin_ui: Browser, client: Client, pool: Pool
) -> None:
    now = datetime.now(UTC)
    base: dict[str, Any] = {"org_id": "acme", "environment": "prod", "status_code": 200}
    records = [
        UsageRecord(request_id="u1", started_at=now - timedelta(hours=2), decision="allow",
                    app_id="app_a", served_model="m1", prompt_tokens=60, completion_tokens=40,
                    total_tokens=100, cost_usd=0.5, shadow_violations=("pol_shadow",), **base),
        UsageRecord(request_id="u2", started_at=now - timedelta(hours=1), decision="allow",
                    app_id="app_b", served_model="m2", total_tokens=300, cost_usd=0.25, **base),
        UsageRecord(request_id="u3", started_at=now - timedelta(minutes=5), decision="deny",
                    app_id="app_a", served_model="m1", denied_by="pol_deny",
                    **{**base, "status_code": 403}),
    ]  # fmt: skip
    await UsageRepository(pool).insert_batch(records)
    status, page = await admin_ui.get("/usage?range=24h&bucket=hour&metric=tokens")
    assert status == 200
    shown = dict(re.findall(r'data-metric="([a-z_]+)" data-value="([^"]*)"', page))
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    summary = await client.usage.GetUsageSummary(
        usage_pb2.GetUsageSummaryRequest(
            start_time=ts(end - timedelta(hours=24)), end_time=ts(end)
        ),
        metadata=AUTH,
    )
    totals = summary.totals
    assert totals.requests == 3
    for name in ("requests", "denied_requests", "prompt_tokens", "completion_tokens",
                 "total_tokens"):  # fmt: skip
        assert shown[name] == str(getattr(totals, name)), name
    assert shown["cost_usd"] == totals.cost_usd
    series = json.loads(
        html.unescape(re.search(r'id="usage-series">([^<]*)<', page).group(1))  # type: ignore[union-attr]
    )
    assert sum(series["requests"]) == totals.requests
    top = re.findall(r'<tr data-key="([^"]+)"><td><a href="/apps/', page)
    assert top == ["app_b", "app_a"]  # by tokens
    assert re.search(r'data-policy-id="pol_deny">.*?data-denials="1"', page)
    assert re.search(r'data-policy-id="pol_shadow">.*?data-shadow="1"', page)
    assert 'data-denied-by="pol_deny"' in page
    assert page.index('data-request-id="u3"') < page.index('data-request-id="u1"')


def coverage_rows(page: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """The coverage table's rows by (provider, operation, unit): column -> data-value."""
    rows = re.findall(
        r'<tr data-provider="([^"]*)" data-operation="([^"]*)" data-unit="([^"]*)"[^>]*>'
        r"(.*?)</tr>",
        page,
        re.DOTALL,
    )
    return {
        (p, o, u): dict(re.findall(r'data-col="(\w+)" data-value="([^"]*)"', cells))
        for p, o, u, cells in rows
    }


async def api_coverage(
    client: Client, start: datetime, end: datetime
) -> dict[tuple[str, str, str], dict[str, str]]:
    reply = await client.usage.GetUsageCoverage(
        usage_pb2.GetUsageCoverageRequest(start_time=ts(start), end_time=ts(end), page_size=500),
        metadata=AUTH,
    )
    assert not reply.next_page_token
    return {
        (e.provider, e.operation, e.unit): {
            "requests": str(e.requests),
            "allowed": str(e.allowed),
            "denied": str(e.denied),
            "quantity": e.quantity,
            "cost_usd": e.cost_usd,
            "unpriced_allowed": str(e.unpriced_allowed),
        }
        for e in reply.entries
    }


def metered(rid: str, started_at: datetime, **fields: Any) -> UsageRecord:
    base: dict[str, Any] = {
        "request_id": rid, "started_at": started_at, "decision": "allow", "status_code": 200,
        "usage_reported": True, "app_id": "app_a", "environment": "prod",
    }  # fmt: skip
    return UsageRecord(**{**base, **fields})


async def test_coverage_rows_equal_the_admin_api(
    admin_ui: Browser, readonly_ui: Browser, client: Client, pool: Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    now = datetime.now(UTC)
    at = now - timedelta(minutes=30)
    await UsageRepository(pool).insert_batch([
        metered("c1", at, provider="openai", operation="chat", unit="tokens", quantity=1234,
                total_tokens=1234, cost_usd=0.5),
        metered("c2", at, provider="openai", operation="chat", unit="tokens", quantity=66,
                total_tokens=66, cost_usd=0.25),
        metered("c3", at, provider="openai", operation="chat", unit="tokens", decision="deny",
                status_code=403, usage_reported=False, denied_by="pol"),
        metered("i1", at, provider="openai", operation="images", unit="images", quantity=2,
                cost_usd=0.16),
        # Forwarded without a price (unpriced: allow_and_report).
        metered("s1", at, provider="openai", operation="speech", unit="characters",
                quantity=44, cost_usd=None),
        # No metered route: a free or unknown path, and a refusal before routing.
        metered("f1", at, usage_reported=False),
        metered("f2", at, decision="deny", status_code=403, usage_reported=False,
                denied_by="endpoint_not_metered"),
    ])  # fmt: skip
    # The console reads every page of the report, whatever the page size.
    monkeypatch.setattr(coverage_views, "PAGE_SIZE", 2)
    status, page = await admin_ui.get("/usage/coverage?range=24h")
    assert status == 200
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    api = await api_coverage(client, end - timedelta(hours=24), end)
    shown = coverage_rows(page)
    assert shown == api
    assert len(api) == 4
    assert api[("", "", "")] == {
        "requests": "2", "allowed": "1", "denied": "1", "quantity": "0", "cost_usd": "0",
        "unpriced_allowed": "0",
    }  # fmt: skip
    assert api[("openai", "chat", "tokens")]["quantity"] == "1300"
    assert api[("openai", "speech", "characters")]["unpriced_allowed"] == "1"
    # Quantity with its unit; unpriced rows highlighted; the unmetered line labelled.
    assert ">1,300 tokens<" in page and ">44 characters<" in page
    speech = re.search(r'<tr data-provider="openai" data-operation="speech"[^>]*>', page)
    assert speech and 'class="unpriced"' in speech.group(0)
    chat = re.search(r'<tr data-provider="openai" data-operation="chat"[^>]*>', page)
    assert chat and "class=" not in chat.group(0)
    assert re.search(r'data-col="unpriced_allowed" data-value="1"><span class="badge warn"', page)
    assert re.search(r'data-unmetered class="unmetered">\s*<td colspan="3"><em>No metered', page)
    total = dict(re.findall(r'data-col="(\w+)" data-value="([^"]*)"',
                            page[page.index('id="coverage-total"'):]))  # fmt: skip
    assert total["requests"] == "7" and total["cost_usd"] == "0.91"
    assert "nothing bypassed metering" in page
    assert 'id="coverage-clamped"' not in page
    # The dashboard links to it with its range; read-only users see the same rows.
    _, dashboard = await admin_ui.get("/usage?range=24h&bucket=hour")
    assert 'href="/usage/coverage?range=24h&amp;bucket=hour"' in dashboard
    status, ro_page = await readonly_ui.get("/usage/coverage?range=24h")
    assert status == 200 and coverage_rows(ro_page) == api


async def test_coverage_of_a_long_range_is_its_last_31_days(
    admin_ui: Browser, client: Client, pool: Pool
) -> None:
    now = datetime.now(UTC)
    await UsageRepository(pool).insert_batch([
        metered("old", now - timedelta(days=40), provider="openai", operation="chat",
                unit="tokens", quantity=10, cost_usd=1),
        metered("new", now - timedelta(hours=1), provider="openai", operation="chat",
                unit="tokens", quantity=20, cost_usd=2),
    ])  # fmt: skip
    status, page = await admin_ui.get("/usage/coverage?range=90d&app_id=app_a")
    assert status == 200
    end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    api = await api_coverage(client, end - timedelta(days=31), end)
    assert coverage_rows(page) == api
    assert api[("openai", "chat", "tokens")]["requests"] == "1"  # 40 days ago: outside
    note = re.search(r'id="coverage-clamped">([^<]*)<', page)
    assert note and "at most 31 days" in note.group(1)
    start, asked = (end - timedelta(days=d) for d in (31, 90))
    assert f"from {start:%Y-%m-%d %H:%M} UTC, not {asked:%Y-%m-%d %H:%M}" in note.group(1)
    assert 'id="coverage-unfiltered"' in page  # the report has no filters
    status, page = await admin_ui.get("/usage/coverage?range=30d")
    assert status == 200 and 'id="coverage-clamped"' not in page


# --- audit log ----------------------------------------------------------------------


async def test_audit_log_shows_who_changed_what(admin_ui: Browser, readonly_ui: Browser) -> None:
    app_id = await create_app(admin_ui, "audited")
    status, _ = await admin_ui.post(
        f"/apps/{app_id}", {"name": "audited-v2", "description": "d", "version": "1"}
    )
    assert status == 200
    for ui in (admin_ui, readonly_ui):  # read-only tokens may read the log
        status, page = await ui.get(f"/audit?object_type=application&object_id={app_id}")
        assert status == 200
        rows = re.findall(r'data-action="(\w+)" data-object-type="application"', page)
        assert rows == ["update", "create"]  # newest first
        assert re.search(r"<td data-actor>ops</td>", page)  # the admin token's name
        update = page[page.index('data-action="update"') :]
        name_change = re.search(
            r'data-field="name">.*?class="before"><code>([^<]*)</code>.*?'
            r'class="after"><code>([^<]*)</code>',
            update,
            re.S,
        )
        assert name_change
        assert [html.unescape(g) for g in name_change.groups()] == ['"audited"', '"audited-v2"']


async def test_audit_filter_violations_show_next_to_the_field(admin_ui: Browser) -> None:
    status, page = await admin_ui.get("/audit?object_id=app_x")  # object_id needs a type
    assert status == 400
    assert error_for(page, "object_id")


# --- serving ------------------------------------------------------------------------


async def test_healthz_reports_the_admin_service(anonymous: Browser) -> None:
    status, body = await anonymous.get("/healthz")
    assert (status, body) == (200, "ok\n")


async def test_healthz_is_503_without_the_admin_service() -> None:
    import aiohttp

    from policy_sidecar.cli.launcher import free_port

    console = await start_console(admin_target=f"127.0.0.1:{free_port()}")
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{console.port}/healthz") as r,
        ):
            assert r.status == 503
            assert "admin service" in await r.text()
    finally:
        await console.stop()


async def test_replicas_agree_on_the_csrf_token(
    admin_ui: Browser, console: ConsoleServer, admin: AdminServer
) -> None:
    """Two admin pods behind one Service: a form from one posts to the other."""
    other = await start_console(admin_target=f"127.0.0.1:{admin.port}")
    try:
        csrf = await admin_ui.csrf()
        elsewhere = Browser(admin_ui.session, f"http://127.0.0.1:{other.port}")
        status, _ = await elsewhere.post("/apps", {"name": "x", "org_id": "acme", "_csrf": csrf})
        assert status == 200
    finally:
        await other.stop()


async def test_pages_carry_a_strict_content_security_policy(admin_ui: Browser) -> None:
    async with admin_ui.session.get(admin_ui.base + "/apps") as r:
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["Cache-Control"] == "no-store"
