"""The versioned price book: a version per price change, rows stamped with the version
they were priced with, and a price change that never rewrites history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from policy_sidecar.catalog.pricing import CatalogPriceBook
from policy_sidecar.cli.main import main
from policy_sidecar.store.model_catalog import ModelCatalog
from policy_sidecar.store.postgres import ModelRepository, Pool, UsageRepository
from policy_sidecar.store.postgres.price_book import PriceBookRepository
from policy_sidecar.store.price_book_file import PriceBookError, parse_price_book
from policy_sidecar.usage.cost import Pricing
from policy_sidecar.usage.record import UsageRecord

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _record(rid: str) -> UsageRecord:
    return UsageRecord(
        request_id=rid,
        started_at=T0,
        decision="allow",
        status_code=200,
        provider="openai",
        operation="chat",
        requested_model="gpt-4o-mini",
        prompt_tokens=1000,
        completion_tokens=200,
        total_tokens=1200,
    )


async def _mini(models: ModelRepository) -> None:
    await models.create(
        name="gpt-4o-mini",
        provider="openai",
        upstream_model="gpt-4o-mini",
        upstream_cluster="openai",
        input_price_per_mtok=Decimal("0.15"),
        output_price_per_mtok=Decimal("0.60"),
    )


async def test_every_price_change_is_a_version_and_nothing_else_is(pool: Pool) -> None:
    models = ModelRepository(pool)
    book = PriceBookRepository(pool, models)
    await _mini(models)
    m = await models.get_by_name("gpt-4o-mini")
    [v1] = await book.versions("gpt-4o-mini")
    assert m.price_version == v1.version
    m = await models.update(m.id, version=m.version, enabled=False)
    assert m.price_version == v1.version
    assert len(await book.versions()) == 1
    m = await models.update(m.id, version=m.version, output_price_per_mtok=Decimal("0.5"))
    old, new = await book.versions("gpt-4o-mini")
    assert (old.version, new.version) == (v1.version, m.price_version)
    assert old.output_price_per_mtok == Decimal("0.6")
    assert new.output_price_per_mtok == Decimal("0.5")
    assert new.effective_at >= old.effective_at


async def test_a_row_priced_before_a_price_change_keeps_its_cost_and_version(
    pool: Pool, tmp_path: Path
) -> None:
    models = ModelRepository(pool)
    book = PriceBookRepository(pool, models)
    await _mini(models)
    catalog = ModelCatalog(lambda: _all(models))
    await catalog.refresh()
    pricing = Pricing(CatalogPriceBook(catalog))
    usage = UsageRepository(pool)
    before = pricing.apply(_record("before"))
    assert await usage.insert_batch([before]) == 1
    # Mid-run: a new price book is imported; the catalogue refreshes; the next row is
    # priced at the new prices.
    [entry] = parse_price_book(
        "prices:\n  - {model: gpt-4o-mini, input_price_per_mtok: 0.30,"
        " output_price_per_mtok: 1.20, cached_input_price_per_mtok: null}\n",
        source="book.yaml",
    )
    assert await book.import_book([entry]) == ["gpt-4o-mini"]
    assert await book.import_book([entry]) == []  # unchanged prices: no new version
    await catalog.refresh()
    after = pricing.apply(_record("after"))
    assert await usage.insert_batch([after]) == 1
    v1, v2 = await book.versions("gpt-4o-mini")
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT request_id, cost_usd, price_version FROM usage_metrics ORDER BY request_id"
        )
        rows = {r[0]: (float(r[1]), r[2]) for r in await cur.fetchall()}
    # By hand: 1000 in, 200 out per million tokens.
    assert rows["before"] == (pytest.approx((1000 * 0.15 + 200 * 0.60) / 1e6), v1.version)
    assert rows["after"] == (pytest.approx((1000 * 0.30 + 200 * 1.20) / 1e6), v2.version)


async def test_prices_import_and_list_from_the_command_line(
    pool: Pool, dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _mini(ModelRepository(pool))
    path = tmp_path / "book.json"
    path.write_text(
        '{"prices": [{"model": "gpt-4o-mini", "input_price_per_mtok": 0.2,'
        ' "output_price_per_mtok": 0.8, "cached_input_price_per_mtok": 0.1}]}'
    )
    # The command runs its own event loop: in a thread, as from a shell.
    importing = ["prices", "import", str(path), "--database-url", dsn]
    assert await asyncio.to_thread(main, importing) == 0
    assert "gpt-4o-mini" in capsys.readouterr().out
    listing = ["prices", "list", "--model", "gpt-4o-mini", "--database-url", dsn]
    assert await asyncio.to_thread(main, listing) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[3] for line in lines] == ["0.15 null 0.6", "0.2 0.1 0.8"]
    # The audit log names the command as the actor of the change (docs/admin.md).
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT actor, action FROM audit_events WHERE object_type = 'model' ORDER BY id"
        )
        assert await cur.fetchall() == [
            ("system", "create"),
            ("policy-sidecar prices import", "update"),
        ]
    missing = tmp_path / "missing.yaml"
    missing.write_text(
        "prices:\n  - {model: nope, input_price_per_mtok: 1, output_price_per_mtok: 1,"
        " cached_input_price_per_mtok: null}\n"
    )
    failing = ["prices", "import", str(missing), "--database-url", dsn]
    assert await asyncio.to_thread(main, failing) == 1
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("prices: [{model: a, input_price_per_mtok: 1, output_price_per_mtok: 1}]",
         "cached_input_price_per_mtok"),
        ("prices: [{model: a, input_price_per_mtok: -1, output_price_per_mtok: 1,"
         " cached_input_price_per_mtok: null}]", "input_price_per_mtok"),
        ("prices: [{model: a, input_price_per_mtok: 1, output_price_per_mtok: 1,"
         " cached_input_price_per_mtok: null, tier: 2}]", "tier"),
        ("prices: [{model: a, input_price_per_mtok: 1, output_price_per_mtok: 1,"
         " cached_input_price_per_mtok: null}, {model: a, input_price_per_mtok: 1,"
         " output_price_per_mtok: 1, cached_input_price_per_mtok: null}]", "duplicate"),
        ("prices: [", "not YAML"),
    ],
)  # fmt: skip
def test_a_bad_price_book_names_the_field(text: str, where: str) -> None:
    with pytest.raises(PriceBookError, match=where):
        parse_price_book(text, source="book.yaml")


async def _all(models: ModelRepository) -> list:  # type: ignore[type-arg]
    return list((await models.list(page_size=500)).items)


async def test_unit_image_cache_write_and_tier_prices_are_versioned_and_reach_the_catalogue(
    pool: Pool,
) -> None:
    models = ModelRepository(pool)
    book = PriceBookRepository(pool, models)
    await models.create(
        name="dall-e-3",
        provider="openai",
        upstream_model="dall-e-3",
        upstream_cluster="openai",
        image_prices={"1024x1024/hd": Decimal("0.08")},
    )
    entries = parse_price_book(
        "prices:\n"
        "  - {model: dall-e-3, input_price_per_mtok: null, output_price_per_mtok: null,\n"
        "     cached_input_price_per_mtok: null, unit_price_usd: 0.04,\n"
        '     image_prices: {"1024x1024/hd": 0.08, "1792x1024/hd": 0.12}}\n',
        source="book.yaml",
    )
    assert await book.import_book(entries) == ["dall-e-3"]
    assert await book.import_book(entries) == []  # unchanged: no new version
    v1, v2 = await book.versions("dall-e-3")
    assert v1.image_prices == {"1024x1024/hd": "0.08"}
    assert (v2.unit_price_usd, v2.image_prices) == (
        Decimal("0.04"),
        {"1024x1024/hd": "0.08", "1792x1024/hd": "0.12"},
    )
    m = await models.get_by_name("dall-e-3")
    m = await models.update(
        m.id,
        version=m.version,
        cache_write_1h_price_per_mtok=Decimal("6"),
        long_context_threshold_tokens=200_000,
        long_context_input_price_per_mtok=Decimal("2.5"),
    )
    *_, v3 = await book.versions("dall-e-3")
    assert m.price_version == v3.version
    assert (v3.cache_write_1h_price_per_mtok, v3.long_context_threshold_tokens) == (
        Decimal("6.000000"),
        200_000,
    )
    page, token = await book.page(model_name="dall-e-3", page_size=2)
    assert [v.version for v in page] == [v1.version, v2.version]
    rest, last = await book.page(model_name="dall-e-3", page_size=2, after=token or 0)
    assert ([v.version for v in rest], last) == ([v3.version], None)
    catalog = ModelCatalog(lambda: _all(models))
    await catalog.refresh()
    deployment = catalog["dall-e-3"]
    assert deployment.unit_price_usd == 0.04
    assert dict(deployment.image_prices) == {"1024x1024/hd": 0.08, "1792x1024/hd": 0.12}
    assert deployment.cache_write_1h_price_per_mtok == 6.0
    assert deployment.long_context_threshold_tokens == 200_000


async def test_prices_list_shows_the_other_prices(
    pool: Pool, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await ModelRepository(pool).create(
        name="tts-1",
        provider="openai",
        upstream_model="tts-1",
        upstream_cluster="openai",
        unit_price_usd=Decimal("0.000015"),
        image_prices={},
    )
    listing = ["prices", "list", "--model", "tts-1", "--database-url", dsn]
    assert await asyncio.to_thread(main, listing) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split("\t")[3:] == ["null null null", "unit_price_usd=0.000015"]
