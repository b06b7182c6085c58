-- The versioned price book (docs/providers.md, "Price versions"). Every set of prices a
-- model has had is a row of price_versions, with the time it took effect; a model
-- points at its current version, and every usage row is stamped with the version it
-- was priced with, so a price change never rewrites history and an invoice can be
-- reconciled row by row.
CREATE TABLE price_versions (
    version                     bigserial PRIMARY KEY,
    -- No foreign key: the history outlives a deleted model.
    model_id                    text NOT NULL,
    model_name                  text NOT NULL,
    effective_at                timestamptz NOT NULL DEFAULT now(),
    input_price_per_mtok        numeric(14, 6),
    output_price_per_mtok       numeric(14, 6),
    cached_input_price_per_mtok numeric(14, 6)
);
CREATE INDEX price_versions_model ON price_versions (model_id, version);

ALTER TABLE models ADD COLUMN price_version bigint;
ALTER TABLE usage_metrics ADD COLUMN price_version bigint;

-- A new version whenever a model is created or its prices change, whatever the path
-- (admin UpdateModel, `policy-sidecar prices import`, plain SQL).
CREATE FUNCTION models_price_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
        OR NEW.input_price_per_mtok IS DISTINCT FROM OLD.input_price_per_mtok
        OR NEW.output_price_per_mtok IS DISTINCT FROM OLD.output_price_per_mtok
        OR NEW.cached_input_price_per_mtok IS DISTINCT FROM OLD.cached_input_price_per_mtok
    THEN
        INSERT INTO price_versions (model_id, model_name, input_price_per_mtok,
                                    output_price_per_mtok, cached_input_price_per_mtok)
        VALUES (NEW.id, NEW.name, NEW.input_price_per_mtok, NEW.output_price_per_mtok,
                NEW.cached_input_price_per_mtok)
        RETURNING version INTO NEW.price_version;
    ELSE
        NEW.price_version := OLD.price_version;
    END IF;
    RETURN NEW;
END
$$;

-- Existing models: their current prices become their first version.
WITH v AS (
    INSERT INTO price_versions (model_id, model_name, input_price_per_mtok,
                                output_price_per_mtok, cached_input_price_per_mtok)
    SELECT id, name, input_price_per_mtok, output_price_per_mtok, cached_input_price_per_mtok
    FROM models ORDER BY created_at, id
    RETURNING version, model_id
)
UPDATE models m SET price_version = v.version FROM v WHERE m.id = v.model_id;

CREATE TRIGGER models_price_version BEFORE INSERT OR UPDATE ON models
    FOR EACH ROW EXECUTE FUNCTION models_price_version();
