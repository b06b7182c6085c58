"""SQL text for the usage batch insert and its rollups (private).

One statement inserts the staged batch into `usage_metrics` with ON CONFLICT DO
NOTHING and feeds only the rows actually inserted (RETURNING) into the rollup
upserts, so a retried batch changes neither the raw table nor the rollups.
"""

from __future__ import annotations

from typing import Final

#: usage_metrics columns written by COPY, in order. Equal to UsageRecord's fields.
COLUMNS: Final = (
    "request_id", "started_at", "decision", "status_code", "org_id", "app_id",
    "environment", "api_key_id", "provider", "operation", "requested_model",
    "served_model", "streamed", "prompt_tokens", "completion_tokens", "total_tokens",
    "cached_tokens", "reasoning_tokens", "estimated_tokens", "usage_reported",
    "latency_ms", "ttft_ms", "request_bytes", "response_bytes", "cost_usd", "denied_by",
    "shadow_violations", "post_violations", "client_request_id", "usage_flags", "unit",
    "quantity", "price_version", "upstream_account",
)  # fmt: skip

#: Postgres types of COLUMNS, for binary COPY (about 3x faster than text here).
COPY_TYPES: Final = (
    "text", "timestamptz", "text", "int4", "text", "text", "text", "text", "text", "text",
    "text", "text", "bool", "int8", "int8", "int8", "int8", "int8", "int8", "bool",
    "float8", "float8", "int8", "int8", "numeric", "text", "text[]", "text[]", "text", "text[]",
    "text", "numeric", "int8", "text",
)  # fmt: skip

#: Error = not a policy denial, and not a success: the sidecar gave up, the stream
#: was cut short, or the upstream answered with a 4xx/5xx.
ERROR_CONDITION: Final = (
    "decision IN ('error', 'incomplete') OR (decision = 'allow' AND status_code >= 400)"
)

#: Rollup measure -> aggregate over usage rows. Shared by the writer and the tests.
MEASURES: Final = {
    "requests": "count(*)",
    "denied_requests": "count(*) FILTER (WHERE decision = 'deny')",
    "error_requests": f"count(*) FILTER (WHERE {ERROR_CONDITION})",
    "prompt_tokens": "sum(prompt_tokens)::bigint",
    "completion_tokens": "sum(completion_tokens)::bigint",
    "total_tokens": "sum(total_tokens)::bigint",
    "cached_tokens": "sum(cached_tokens)::bigint",
    "reasoning_tokens": "sum(reasoning_tokens)::bigint",
    "cost_usd": "coalesce(sum(cost_usd), 0)",
    "latency_ms_sum": "coalesce(sum(latency_ms), 0)",
    "latency_count": "count(latency_ms)",
    "request_bytes": "sum(request_bytes)::bigint",
    "response_bytes": "sum(response_bytes)::bigint",
}

#: Rollup dimensions -> expression over usage rows.
DIMENSIONS: Final = {
    "org_id": "coalesce(org_id, '')",
    "app_id": "coalesce(app_id, '')",
    "environment": "coalesce(environment, '')",
    "model": "coalesce(served_model, requested_model, '')",
}

_KEY = "bucket, org_id, app_id, environment, model"


def rollup_select(source: str, unit: str) -> str:
    """SELECT producing rollup rows (bucket = `unit` in UTC) from `source` rows."""
    dims = ", ".join(f"{expr} AS {name}" for name, expr in DIMENSIONS.items())
    measures = ", ".join(f"{expr} AS {name}" for name, expr in MEASURES.items())
    return (
        f"SELECT date_trunc('{unit}', started_at, 'UTC') AS bucket, {dims}, {measures}"
        f" FROM {source} GROUP BY 1, 2, 3, 4, 5"
    )


def denials_select(source: str) -> str:
    dims = ", ".join(f"{DIMENSIONS[n]} AS {n}" for n in ("org_id", "app_id", "environment"))
    return (
        f"SELECT date_trunc('hour', started_at, 'UTC') AS bucket, {dims},"
        f" denied_by AS policy_id, count(*) AS denials FROM {source}"
        " WHERE decision = 'deny' AND denied_by IS NOT NULL GROUP BY 1, 2, 3, 4, 5"
    )


def _upsert(table: str, select: str) -> str:
    updates = ", ".join(f"{m} = {table}.{m} + excluded.{m}" for m in MEASURES)
    # Sorted so concurrent writers lock rollup rows in the same order (no deadlocks).
    return (
        f"INSERT INTO {table} {select} ORDER BY {_KEY} ON CONFLICT ({_KEY}) DO UPDATE SET {updates}"
    )


#: Once per connection (a session's temporary table): each batch's rows are gone at its
#: commit or rollback, so creating the table again per batch (a round trip and catalog
#: writes) is not needed.
STAGE: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS usage_stage (LIKE usage_metrics INCLUDING DEFAULTS)"
    " ON COMMIT DELETE ROWS"
)

COPY: Final = f"COPY usage_stage ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"

_cols = ", ".join(COLUMNS)

#: Returns one row: the number of rows newly inserted.
INSERT_AND_ROLL_UP: Final = f"""
WITH batch AS (
    -- Duplicates inside one batch: keep the earliest. "C" collation: a cheaper sort.
    SELECT DISTINCT ON (request_id COLLATE "C") {_cols} FROM usage_stage
    ORDER BY request_id COLLATE "C", started_at
), ins AS (
    INSERT INTO usage_metrics ({_cols}) SELECT {_cols} FROM batch
    ON CONFLICT DO NOTHING
    RETURNING started_at, org_id, app_id, environment, requested_model, served_model,
        decision, status_code, prompt_tokens, completion_tokens, total_tokens, cached_tokens,
        reasoning_tokens, cost_usd, latency_ms, request_bytes, response_bytes, denied_by
), hourly AS (
    {_upsert("usage_rollup_hourly", rollup_select("ins", "hour"))}
), daily AS (
    {_upsert("usage_rollup_daily", rollup_select("ins", "day"))}
), denials AS (
    INSERT INTO usage_denials_hourly {denials_select("ins")}
    ORDER BY bucket, org_id, app_id, environment, policy_id
    ON CONFLICT (bucket, org_id, app_id, environment, policy_id)
    DO UPDATE SET denials = usage_denials_hourly.denials + excluded.denials
)
SELECT count(*) FROM ins
"""
