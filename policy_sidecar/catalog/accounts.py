"""Provider accounts: where a model deployment's traffic goes, and with which credential.

An account is the unit Envoy knows as an upstream cluster (one per account, named after
it). The credential itself never lives here: `credential_ref` names a secret that Envoy
reads from its credentials directory (file-based SDS), so neither Postgres nor the
sidecar holds a provider key in clear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

ProviderName: TypeAlias = Literal["openai", "azure", "anthropic", "gemini", "cohere"]

# An account's name is also its Envoy cluster name and a file name: keep it plain.
ACCOUNT_NAME: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class CredentialHeader:
    """How a provider expects its key: the header and a prefix before the secret."""

    header: str
    prefix: str = ""


# The header Envoy's credential injector writes, per provider (overwriting the caller's).
CREDENTIAL_HEADERS: Final[dict[ProviderName, CredentialHeader]] = {
    "openai": CredentialHeader("authorization", "Bearer "),
    "azure": CredentialHeader("api-key"),
    "anthropic": CredentialHeader("x-api-key"),
    "gemini": CredentialHeader("x-goog-api-key"),
    "cohere": CredentialHeader("authorization", "Bearer "),
}


@dataclass(frozen=True, slots=True)
class ProviderAccount:
    """One account at one provider. Validated where it enters (admin API, YAML)."""

    # Unique; also the Envoy cluster name (ACCOUNT_NAME).
    name: str
    provider: ProviderName
    # The provider's host name: SNI, certificate check and the `host` header.
    base_host: str
    # The secret's name in the credentials directory (never the key itself).
    credential_ref: str
    port: int = 443
    # A CA bundle to trust instead of the system one (a private gateway, tests).
    ca_file: str | None = None
    # Connect here instead of resolving base_host (tests: 127.0.0.1); SNI stays base_host.
    address: str | None = None
    # The account's own quotas at the provider: shed load before the provider says 429.
    tokens_per_minute: int | None = None
    requests_per_minute: int | None = None
    enabled: bool = True

    @property
    def cluster(self) -> str:
        return self.name

    @property
    def credential_header(self) -> CredentialHeader:
        return CREDENTIAL_HEADERS[self.provider]


@dataclass(frozen=True, slots=True)
class FallbackGroup:
    """Accounts serving the same deployments, tried in order: an Envoy cluster (named
    after the group) that a model's route can name. Each attempt carries the key of
    the account it goes to."""

    # Also the Envoy cluster name (ACCOUNT_NAME), distinct from every account's.
    name: str
    # Account names, highest priority first; at least two, one provider.
    accounts: tuple[str, ...]
