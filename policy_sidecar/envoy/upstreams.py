"""Envoy upstream clusters for provider accounts: TLS to the provider, its key injected.

One cluster per enabled account (named after it). Each one:

- resolves the provider's host (STRICT_DNS, port 443) or connects to the account's
  ``address`` instead (tests: 127.0.0.1) while SNI, the certificate check and the
  ``host`` header keep the provider's name (the endpoint's ``hostname``, which the
  routes' ``auto_host_rewrite`` puts in ``host``);
- speaks TLS and *verifies* the provider's certificate: without ``trusted_ca`` Envoy
  checks nothing, so the system CA bundle is the default (``ca_file`` overrides it)
  and the SAN must match the SNI (``auto_sni_san_validation``);
- injects the provider key with Envoy's ``credential_injector`` as an upstream filter,
  ``overwrite: true`` (its default forwards the caller's header), read from the
  credentials directory through file-based SDS with ``watched_directory``: replacing
  the file by a rename (what a Kubernetes Secret update does) rotates the key live;
- ejects a host after consecutive 5xx (outlier detection);
- drops every ``x-policy-sidecar-*`` header of the provider's response (and trailers)
  before Envoy or the client sees it (`strip_internal_headers`): those headers are
  Envoy's and the sidecar's, never a provider's; and the provider's ``x-ratelimit-*``
  headers, whose names carry the gateway's own limits on its answers.

The secret file ``<credentials_dir>/<credential_ref>.yaml`` is written by
``secret_file_text`` (see docs/connect-providers.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from policy_sidecar.catalog.account_rules import fallback_group_problems
from policy_sidecar.catalog.accounts import ACCOUNT_NAME, FallbackGroup, ProviderAccount

SYSTEM_CA: Final = "/etc/ssl/certs/ca-certificates.crt"
CLUSTER_TYPE: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
SECRET_TYPE: Final = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
_TLS_TYPE: Final = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
)
_HTTP_OPTIONS: Final = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_INJECTOR_TYPE: Final = (
    "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector"
)
_GENERIC_TYPE: Final = (
    "type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic"
)
_CODEC_TYPE: Final = (
    "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"
)
_AGGREGATE_TYPE: Final = "type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig"
_MUTATION_TYPE: Final = (
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
)
_MATCHER_TYPE: Final = (
    "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher"
)
_HEADER_INPUT_TYPE: Final = "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput"
_SKIP_TYPE: Final = (
    "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter"
)
# The endpoint metadata namespace, and the header that carries an attempt's account
# between a fallback group's upstream filters (removed before the request leaves).
_META: Final = "policy_sidecar"
ATTEMPT_ACCOUNT_HEADER: Final = "x-policy-sidecar-account"
# The internal headers' prefix: what the sidecar and Envoy's local replies set (the
# error header, the route, identity). One a provider sends is removed on the way back.
INTERNAL_HEADER_PREFIX: Final = "x-policy-sidecar-"
# The limit headers Envoy adds from the policy filter's metadata (envoy.yaml's
# response_headers_to_add): a provider's of the same names are removed on the way back.
RATE_LIMIT_HEADER_PREFIX: Final = "x-ratelimit-"
# Envoy's own headers: none goes to the provider (the router adds none of its own,
# `suppress_envoy_headers`; a client's are removed by the same upstream filter).
ENVOY_HEADER_PREFIX: Final = "x-envoy-"
# Long enough for a distant provider's TLS handshake on a slow link.
CONNECT_TIMEOUT: Final = "5s"


def secret_path(credentials_dir: str, credential_ref: str) -> str:
    return f"{credentials_dir.rstrip('/')}/{credential_ref}.yaml"


def secret_file_text(credential_ref: str, key: str) -> str:
    """The SDS file Envoy reads for one account's key (JSON is valid YAML)."""
    if not ACCOUNT_NAME.match(credential_ref):
        raise ValueError(f"credential {credential_ref!r}: lowercase letters, digits and - only")
    if not key or key != key.strip() or "\n" in key:
        raise ValueError(f"credential {credential_ref!r}: the key is empty or has whitespace")
    secret = {
        "resources": [
            {
                "@type": SECRET_TYPE,
                "name": credential_ref,
                "generic_secret": {"secret": {"inline_string": key}},
            }
        ]
    }
    return json.dumps(secret, indent=2) + "\n"


def render_account_clusters(
    accounts: Sequence[ProviderAccount],
    *,
    credentials_dir: str,
    system_ca: str = SYSTEM_CA,
) -> list[dict[str, Any]]:
    """The Envoy clusters (CDS resources, with ``@type``) of the enabled accounts, in
    the accounts' order. Raises ValueError on a duplicate account name."""
    seen: set[str] = set()
    clusters = []
    for account in accounts:
        if account.cluster in seen:
            raise ValueError(f"provider account {account.name!r} is listed twice")
        seen.add(account.cluster)
        if account.enabled:
            clusters.append(account_cluster(account, credentials_dir, system_ca))
    return clusters


def account_cluster(
    account: ProviderAccount, credentials_dir: str, system_ca: str = SYSTEM_CA
) -> dict[str, Any]:
    return {
        "@type": CLUSTER_TYPE,
        "name": account.cluster,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": CONNECT_TIMEOUT,
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": account.cluster,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": account.address or account.base_host,
                                        "port_value": account.port,
                                    }
                                },
                                # auto_host_rewrite puts this in `host`.
                                "hostname": account.base_host,
                            },
                            # Which account a host is: a fallback group's attempt
                            # picks its key by it.
                            "metadata": {"filter_metadata": {_META: {"account": account.name}}},
                        }
                    ]
                }
            ],
        },
        "transport_socket": _tls(account, system_ca),
        "typed_extension_protocol_options": {
            _HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [
                    _credential_injector(account, credentials_dir),
                    strip_internal_headers(),
                    codec_filter(),
                ],
            }
        },
        # A deployment answering 5xx again and again is taken out for a while.
        "outlier_detection": {
            "consecutive_5xx": 5,
            "interval": "10s",
            "base_ejection_time": "30s",
            "max_ejection_percent": 100,
        },
    }


def render_fallback_clusters(
    groups: Sequence[FallbackGroup],
    accounts: Sequence[ProviderAccount],
    *,
    credentials_dir: str,
) -> list[dict[str, Any]]:
    """One aggregate cluster per group: Envoy tries the accounts' clusters in order (the
    routes' ``previous_priorities`` retry moves to the next one on a 429, a 503, a
    reset or a refused connection). An aggregate cluster runs *its own* upstream
    filters, not the member's, so the group's filters give each attempt its account's
    key: the chosen host's ``account`` metadata goes into a header, each account's
    credential injector runs only when the header names it, and the header is removed.
    Raises ValueError on an unknown, disabled or repeated account, a group mixing
    providers, fewer than two accounts, or a name taken by an account."""
    by_name = {a.name: a for a in accounts}
    clusters = []
    for group in groups:
        members = _members(group, by_name)
        clusters.append(
            {
                "@type": CLUSTER_TYPE,
                "name": group.name,
                "connect_timeout": CONNECT_TIMEOUT,
                "lb_policy": "CLUSTER_PROVIDED",
                "cluster_type": {
                    "name": "envoy.clusters.aggregate",
                    "typed_config": {
                        "@type": _AGGREGATE_TYPE,
                        "clusters": [m.cluster for m in members],
                    },
                },
                "typed_extension_protocol_options": {
                    _HTTP_OPTIONS: {
                        "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                        "explicit_http_config": {"http_protocol_options": {}},
                        "http_filters": [
                            _attempt_account(set_it=True),
                            *(_only_for(m, credentials_dir) for m in members),
                            _attempt_account(set_it=False),
                            strip_internal_headers(),
                            codec_filter(),
                        ],
                    }
                },
            }
        )
    return clusters


def _members(group: FallbackGroup, by_name: dict[str, ProviderAccount]) -> list[ProviderAccount]:
    problems = fallback_group_problems(group.name, group.accounts, by_name)
    if problems:
        raise ValueError(f"fallback group {group.name!r}: {problems[0][1]}")
    return [by_name[name] for name in group.accounts]


def codec_filter() -> dict[str, Any]:
    """The last upstream filter of every chain: it sends the request on (a new dict
    each time, so a YAML dump has no anchors)."""
    return {"name": "envoy.filters.http.upstream_codec", "typed_config": {"@type": _CODEC_TYPE}}


def strip_internal_headers() -> dict[str, Any]:
    """An upstream filter removing every ``x-policy-sidecar-*`` header (and trailer) of
    the provider's response. Upstream filters see only what the provider sent, never
    Envoy's local replies (which are made downstream): a provider cannot pass its own
    answer off as a gateway error (``x-policy-sidecar-error``) to the client or the
    access log, while Envoy's errors keep the header (docs/envoy.md).

    On the way out it removes every ``x-envoy-*`` request header (a client's, which
    Envoy passes on unless it would obey it). Also removes the provider's
    ``x-ratelimit-*`` response headers: on the gateway's
    answers those names carry the caller's limits (added downstream from the policy
    filter's metadata, so never removed here). The provider's describe the account every
    caller shares: beside ours they came twice (Envoy appends), and alone they would
    pass the account's load off as the caller's limit (docs/envoy.md, "Rate-limit
    headers on allowed responses")."""

    def removal(prefix: str) -> dict[str, Any]:  # a new dict per use: no YAML anchors
        return {"remove_on_match": {"key_matcher": {"prefix": prefix}}}

    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": _MUTATION_TYPE,
            "mutations": {
                # A client's x-envoy-* headers Envoy does not clean itself (it removes only
                # those it would obey, e.g. x-envoy-retry-on; x-envoy-original-path went on).
                "request_mutations": [removal(ENVOY_HEADER_PREFIX)],
                "response_mutations": [
                    removal(INTERNAL_HEADER_PREFIX),
                    removal(RATE_LIMIT_HEADER_PREFIX),
                ],
                "response_trailers_mutations": [removal(INTERNAL_HEADER_PREFIX)],
            },
        },
    }


def _attempt_account(*, set_it: bool) -> dict[str, Any]:
    """Sets the header to the attempt's account (the chosen host's metadata), or removes it."""
    if set_it:
        mutation: dict[str, Any] = {
            "append": {
                "header": {
                    "key": ATTEMPT_ACCOUNT_HEADER,
                    "value": f"%UPSTREAM_METADATA({_META}:account)%",
                },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        }
    else:
        mutation = {"remove": ATTEMPT_ACCOUNT_HEADER}
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": _MUTATION_TYPE,
            "mutations": {"request_mutations": [mutation]},
        },
    }


def _only_for(account: ProviderAccount, credentials_dir: str) -> dict[str, Any]:
    """The account's credential injector, skipped unless the attempt goes to it."""
    not_this_account = {
        "not_matcher": {
            "single_predicate": {
                "input": {
                    "name": "attempt-account",
                    "typed_config": {
                        "@type": _HEADER_INPUT_TYPE,
                        "header_name": ATTEMPT_ACCOUNT_HEADER,
                    },
                },
                "value_match": {"exact": account.name},
            }
        }
    }
    skip = {"action": {"name": "skip", "typed_config": {"@type": _SKIP_TYPE}}}
    return {
        "name": f"credential-{account.name}",
        "typed_config": {
            "@type": _MATCHER_TYPE,
            "extension_config": _credential_injector(account, credentials_dir),
            "xds_matcher": {
                "matcher_list": {"matchers": [{"predicate": not_this_account, "on_match": skip}]}
            },
        },
    }


def _tls(account: ProviderAccount, system_ca: str) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _TLS_TYPE,
            # The account's host whatever `host` the request carries; auto_host_sni
            # takes the rewritten host, which is the same name.
            "sni": account.base_host,
            "auto_host_sni": True,
            "auto_sni_san_validation": True,
            "common_tls_context": {
                "tls_params": {"tls_maximum_protocol_version": "TLSv1_3"},
                # Without trusted_ca Envoy would not verify the certificate at all.
                "validation_context": {
                    "trusted_ca": {"filename": account.ca_file or system_ca},
                },
            },
        },
    }


def _credential_injector(account: ProviderAccount, credentials_dir: str) -> dict[str, Any]:
    header = account.credential_header
    generic: dict[str, Any] = {
        "@type": _GENERIC_TYPE,
        "credential": {
            "name": account.credential_ref,
            "sds_config": {
                "path_config_source": {
                    "path": secret_path(credentials_dir, account.credential_ref),
                    # A rename into this directory reloads the file: live rotation.
                    "watched_directory": {"path": credentials_dir.rstrip("/") or "/"},
                }
            },
        },
        "header": header.header,
    }
    if header.prefix:
        generic["header_value_prefix"] = header.prefix
    return {
        "name": "envoy.filters.http.credential_injector",
        "typed_config": {
            "@type": _INJECTOR_TYPE,
            # Default false would forward the caller's own header unchanged.
            "overwrite": True,
            "allow_request_without_credential": False,
            "credential": {
                "name": "envoy.http.injected_credentials.generic",
                "typed_config": generic,
            },
        },
    }
