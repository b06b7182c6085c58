"""Writes the provider accounts' and fallback groups' Envoy clusters to the CDS file
Envoy watches.

Run by the sidecar's first worker only (the one on the first port): it already holds
the account catalog and the invalidation listener, while the supervisor is a plain
process manager with no event loop or store. One writer per pod means no two
processes race on the file; the rename is atomic anyway. When a worker dies the
supervisor stops them all, so the pod never runs without its writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.envoy.cds import write_cds_file
from policy_sidecar.envoy.upstreams import render_account_clusters, render_fallback_clusters

log = logging.getLogger(__name__)


class AccountClusterWriter:
    def __init__(self, cds_path: str, credentials_dir: str) -> None:
        self._path = cds_path
        self._credentials_dir = credentials_dir
        self._lock = asyncio.Lock()

    async def write(
        self, accounts: Iterable[ProviderAccount], groups: Iterable[FallbackGroup] = ()
    ) -> None:
        """Render and write; a failure is logged and the previous file stays in force.
        A group the accounts no longer satisfy (the admin API keeps them consistent,
        but rows can be changed behind it) is left out and logged; the accounts' and
        the other groups' clusters are still written."""
        ordered = sorted(accounts, key=lambda a: a.name)
        async with self._lock:
            try:
                clusters = render_account_clusters(ordered, credentials_dir=self._credentials_dir)
                for group in sorted(groups, key=lambda g: g.name):
                    try:
                        clusters += render_fallback_clusters(
                            [group], ordered, credentials_dir=self._credentials_dir
                        )
                    except ValueError as exc:
                        log.error(
                            "fallback group %r left out of %s: %s", group.name, self._path, exc
                        )
                changed = await asyncio.to_thread(write_cds_file, self._path, clusters)
            except (OSError, ValueError) as exc:
                log.error("cannot write the account clusters to %s: %s", self._path, exc)
                return
        if changed:
            log.info("wrote %d provider account cluster(s) to %s", len(clusters), self._path)
