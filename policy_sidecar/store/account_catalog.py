"""Provider accounts and fallback groups from Postgres, refreshed on start and on change."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import cast

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount, ProviderName
from policy_sidecar.store.records import FallbackGroupRow, ProviderAccountRow

log = logging.getLogger(__name__)


def account_from(row: ProviderAccountRow) -> ProviderAccount:
    return ProviderAccount(
        name=row.name,
        # The table's CHECK constraint admits only these names.
        provider=cast(ProviderName, row.provider),
        base_host=row.base_host,
        credential_ref=row.credential_ref,
        port=row.port,
        ca_file=row.ca_file,
        address=row.address,
        tokens_per_minute=row.tokens_per_minute,
        requests_per_minute=row.requests_per_minute,
        enabled=row.enabled,
    )


class AccountCatalog(Mapping[str, ProviderAccount]):
    """Read on the hot path (a dict lookup); ``refresh`` swaps the whole dict and says
    whether it loaded (a failed load keeps the last good accounts)."""

    def __init__(self, load: Callable[[], Awaitable[Sequence[ProviderAccountRow]]]) -> None:
        self._load = load
        self._accounts: dict[str, ProviderAccount] = {}

    async def refresh(self) -> bool:
        try:
            rows = await self._load()
        except Exception as exc:
            log.warning("could not refresh the provider accounts: %s", exc)
            return False
        self._accounts = {r.name: account_from(r) for r in rows}
        return True

    def __getitem__(self, name: str) -> ProviderAccount:
        return self._accounts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._accounts)

    def __len__(self) -> int:
        return len(self._accounts)


class FallbackGroupCatalog:
    """The fallback groups, for the CDS writer (not read on the hot path); ``refresh``
    says whether it loaded (a failed load keeps the last good groups)."""

    def __init__(self, load: Callable[[], Awaitable[Sequence[FallbackGroupRow]]]) -> None:
        self._load = load
        self.groups: tuple[FallbackGroup, ...] = ()

    async def refresh(self) -> bool:
        try:
            rows = await self._load()
        except Exception as exc:
            log.warning("could not refresh the fallback groups: %s", exc)
            return False
        self.groups = tuple(FallbackGroup(r.name, tuple(r.accounts)) for r in rows)
        return True
