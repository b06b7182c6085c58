-- Prices beyond input/output tokens (docs/providers.md, "Units and what each route
-- costs"): a price per unit for routes billed in images, characters, seconds or search
-- units; image prices by size and quality; Anthropic's cache-write premiums; a
-- long-context tier above a prompt size. NULL is unpriced (or, for the premiums and
-- the tier's prices, "the base price"); 0 is free. Kept in the price book like the
-- token prices: a change to any of them is a new version.
ALTER TABLE models
    ADD COLUMN unit_price_usd numeric(20, 10) CHECK (unit_price_usd >= 0),
    ADD COLUMN image_prices jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(image_prices) = 'object'),
    ADD COLUMN cache_write_5m_price_per_mtok numeric(14, 6)
        CHECK (cache_write_5m_price_per_mtok >= 0),
    ADD COLUMN cache_write_1h_price_per_mtok numeric(14, 6)
        CHECK (cache_write_1h_price_per_mtok >= 0),
    ADD COLUMN long_context_threshold_tokens bigint CHECK (long_context_threshold_tokens > 0),
    ADD COLUMN long_context_input_price_per_mtok numeric(14, 6)
        CHECK (long_context_input_price_per_mtok >= 0),
    ADD COLUMN long_context_cached_input_price_per_mtok numeric(14, 6)
        CHECK (long_context_cached_input_price_per_mtok >= 0),
    ADD COLUMN long_context_output_price_per_mtok numeric(14, 6)
        CHECK (long_context_output_price_per_mtok >= 0);

ALTER TABLE price_versions
    ADD COLUMN unit_price_usd numeric(20, 10),
    ADD COLUMN image_prices jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN cache_write_5m_price_per_mtok numeric(14, 6),
    ADD COLUMN cache_write_1h_price_per_mtok numeric(14, 6),
    ADD COLUMN long_context_threshold_tokens bigint,
    ADD COLUMN long_context_input_price_per_mtok numeric(14, 6),
    ADD COLUMN long_context_cached_input_price_per_mtok numeric(14, 6),
    ADD COLUMN long_context_output_price_per_mtok numeric(14, 6);

CREATE OR REPLACE FUNCTION models_price_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
        OR NEW.input_price_per_mtok IS DISTINCT FROM OLD.input_price_per_mtok
        OR NEW.output_price_per_mtok IS DISTINCT FROM OLD.output_price_per_mtok
        OR NEW.cached_input_price_per_mtok IS DISTINCT FROM OLD.cached_input_price_per_mtok
        OR NEW.unit_price_usd IS DISTINCT FROM OLD.unit_price_usd
        OR NEW.image_prices IS DISTINCT FROM OLD.image_prices
        OR NEW.cache_write_5m_price_per_mtok IS DISTINCT FROM OLD.cache_write_5m_price_per_mtok
        OR NEW.cache_write_1h_price_per_mtok IS DISTINCT FROM OLD.cache_write_1h_price_per_mtok
        OR NEW.long_context_threshold_tokens IS DISTINCT FROM OLD.long_context_threshold_tokens
        OR NEW.long_context_input_price_per_mtok
            IS DISTINCT FROM OLD.long_context_input_price_per_mtok
        OR NEW.long_context_cached_input_price_per_mtok
            IS DISTINCT FROM OLD.long_context_cached_input_price_per_mtok
        OR NEW.long_context_output_price_per_mtok
            IS DISTINCT FROM OLD.long_context_output_price_per_mtok
    THEN
        INSERT INTO price_versions (
            model_id, model_name, input_price_per_mtok, output_price_per_mtok,
            cached_input_price_per_mtok, unit_price_usd, image_prices,
            cache_write_5m_price_per_mtok, cache_write_1h_price_per_mtok,
            long_context_threshold_tokens, long_context_input_price_per_mtok,
            long_context_cached_input_price_per_mtok, long_context_output_price_per_mtok)
        VALUES (
            NEW.id, NEW.name, NEW.input_price_per_mtok, NEW.output_price_per_mtok,
            NEW.cached_input_price_per_mtok, NEW.unit_price_usd, NEW.image_prices,
            NEW.cache_write_5m_price_per_mtok, NEW.cache_write_1h_price_per_mtok,
            NEW.long_context_threshold_tokens, NEW.long_context_input_price_per_mtok,
            NEW.long_context_cached_input_price_per_mtok, NEW.long_context_output_price_per_mtok)
        RETURNING version INTO NEW.price_version;
    ELSE
        NEW.price_version := OLD.price_version;
    END IF;
    RETURN NEW;
END
$$;
