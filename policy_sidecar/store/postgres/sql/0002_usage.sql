-- Usage: one row per request, range-partitioned by day on started_at (UTC), plus
-- rollups maintained in the same transaction as each batch insert.

CREATE TABLE usage_metrics (
    started_at        timestamptz NOT NULL,
    request_id        text NOT NULL,
    org_id            text,
    app_id            text,
    environment       text,
    api_key_id        text,
    provider          text,
    operation         text,
    requested_model   text,
    served_model      text,
    decision          text NOT NULL,
    status_code       integer NOT NULL,
    streamed          boolean NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    total_tokens      bigint NOT NULL,
    cached_tokens     bigint NOT NULL,
    reasoning_tokens  bigint NOT NULL,
    estimated_tokens  bigint NOT NULL,
    usage_reported    boolean NOT NULL,
    latency_ms        double precision,
    ttft_ms           double precision,
    request_bytes     bigint NOT NULL,
    response_bytes    bigint NOT NULL,
    cost_usd          numeric(20, 10),
    denied_by         text,
    shadow_violations text[] NOT NULL DEFAULT '{}',
    post_violations   text[] NOT NULL DEFAULT '{}',
    -- The partition key must be part of any unique constraint. A retried batch
    -- resends the same frozen records, so (started_at, request_id) is identical on
    -- retry and ON CONFLICT DO NOTHING makes the insert idempotent. It also leads
    -- with the time column, which serves every time-range scan of raw rows.
    PRIMARY KEY (started_at, request_id)
) PARTITION BY RANGE (started_at);

-- Daily partitions named usage_metrics_pYYYYMMDD, bounds at UTC midnight.
-- Serialised by an advisory lock so replicas racing to create the same partition
-- do not fail on the catalog's unique index.
CREATE FUNCTION usage_ensure_partitions(p_from timestamptz, p_to timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date := (p_from AT TIME ZONE 'UTC')::date;
    last_day date := (p_to AT TIME ZONE 'UTC')::date;
    part text;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.usage_metrics'));
    WHILE d <= last_day LOOP
        part := 'usage_metrics_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(format('%I.%I', current_schema(), part)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I.%I PARTITION OF %I.usage_metrics FOR VALUES FROM (%L) TO (%L)',
                current_schema(), part, current_schema(),
                (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN created;
END $$;

-- Retention: drop whole partitions whose day ends at or before p_before.
CREATE FUNCTION usage_drop_partitions(p_before timestamptz)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    part record;
    day date;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.usage_metrics'));
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = p.relnamespace
        WHERE p.relname = 'usage_metrics' AND n.nspname = current_schema()
          AND c.relname ~ '^usage_metrics_p[0-9]{8}$'
        ORDER BY c.relname
    LOOP
        day := to_date(substr(part.relname, 16), 'YYYYMMDD');
        IF ((day + 1)::timestamp AT TIME ZONE 'UTC') <= p_before THEN
            EXECUTE format('DROP TABLE %I.%I', current_schema(), part.relname);
            RETURN NEXT part.relname;
        END IF;
    END LOOP;
END $$;

-- Rollups. Dimensions are NOT NULL ('' for unknown) so they can form the primary
-- key used by ON CONFLICT; model is the served model, else the requested one.
CREATE TABLE usage_rollup_hourly (
    bucket            timestamptz NOT NULL,
    org_id            text NOT NULL,
    app_id            text NOT NULL,
    environment       text NOT NULL,
    model             text NOT NULL,
    requests          bigint NOT NULL,
    denied_requests   bigint NOT NULL,
    error_requests    bigint NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    total_tokens      bigint NOT NULL,
    cached_tokens     bigint NOT NULL,
    reasoning_tokens  bigint NOT NULL,
    cost_usd          numeric(24, 10) NOT NULL,
    latency_ms_sum    double precision NOT NULL,
    latency_count     bigint NOT NULL,
    request_bytes     bigint NOT NULL,
    response_bytes    bigint NOT NULL,
    -- Every dashboard query is bounded by a time range first.
    PRIMARY KEY (bucket, org_id, app_id, environment, model)
);

CREATE TABLE usage_rollup_daily (LIKE usage_rollup_hourly INCLUDING ALL);

CREATE TABLE usage_denials_hourly (
    bucket      timestamptz NOT NULL,
    org_id      text NOT NULL,
    app_id      text NOT NULL,
    environment text NOT NULL,
    policy_id   text NOT NULL,
    denials     bigint NOT NULL,
    PRIMARY KEY (bucket, org_id, app_id, environment, policy_id)
);
