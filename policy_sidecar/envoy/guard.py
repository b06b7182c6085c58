"""The filter after the policy filter: no request goes upstream without its decision.

The policy filter decides in its body phase (or, for a request without a body, in its
headers phase), and only that final answer carries the request's facts in the
``policy_sidecar`` metadata (their request id, ``REQUEST_ID_KEY``; the headers phase of
a request with a body carries only the worker and the ticket). Envoy's ext_proc skips
the body phase in some shapes of request: an HTTP/2 request whose headers do not end
the stream and whose trailers come with no DATA frame reaches the upstream with only
the headers phase run, so no model check, no token estimate, no limit. This RBAC filter
refuses every request that arrives without the facts (a 400 ``request_not_checked``,
`local_reply.ENVOY_ERRORS`), whatever the shape that skipped the decision: a native
filter, one metadata lookup per request. See docs/envoy.md, "Every request decided".
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["DENIED_DETAILS_PREFIX", "REQUEST_ID_KEY", "decided_guard"]

# The key of the request facts' request id in the ``policy_sidecar`` namespace
# (`extproc.facts.RequestFacts`): only the policy filter's final answer carries it.
REQUEST_ID_KEY: Final = "rid"

_RBAC_TYPE: Final = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
# Envoy's response code details when RBAC refuses (`rbac_access_denied_matched_policy[none]`).
DENIED_DETAILS_PREFIX: Final = "rbac_access_denied"


def decided_guard() -> dict[str, Any]:
    """The HTTP filter (its JSON form) placed right after the policy filter."""
    decided = {
        "metadata": {
            "filter": "policy_sidecar",
            "path": [{"key": REQUEST_ID_KEY}],
            "value": {"present_match": True},
        }
    }
    return {
        "name": "decided",
        "typed_config": {
            "@type": _RBAC_TYPE,
            "rules": {
                "action": "ALLOW",
                "policies": {
                    "decided-by-the-policy-filter": {
                        "permissions": [{"any": True}],
                        "principals": [decided],
                    }
                },
            },
        },
    }
