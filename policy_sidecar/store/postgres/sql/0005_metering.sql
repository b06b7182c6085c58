-- Metering by unit (docs/providers.md, "Units"): every usage row says what its route
-- bills by (tokens, images, characters, seconds, search_units, requests) and how much
-- of it the request used. NULL unit: no metered route matched (denied before routing,
-- a free route, an unknown path passed through). Old rows keep NULL and 0.
ALTER TABLE usage_metrics
    ADD COLUMN unit text,
    ADD COLUMN quantity numeric(20, 6) NOT NULL DEFAULT 0 CHECK (quantity >= 0);

-- Nullable prices: NULL is unpriced (unknown: the request is refused, or allowed and
-- reported, by POLICY_SIDECAR_UNPRICED), 0 is free. A model created from now on
-- without a price is unpriced; existing rows keep the prices they have.
ALTER TABLE models
    ALTER COLUMN input_price_per_mtok DROP NOT NULL,
    ALTER COLUMN input_price_per_mtok DROP DEFAULT,
    ALTER COLUMN output_price_per_mtok DROP NOT NULL,
    ALTER COLUMN output_price_per_mtok DROP DEFAULT,
    ALTER COLUMN cached_input_price_per_mtok DROP NOT NULL,
    ALTER COLUMN cached_input_price_per_mtok DROP DEFAULT;
