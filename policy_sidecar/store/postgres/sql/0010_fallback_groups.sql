-- Fallback groups (docs/connect-providers.md, "Fallback across accounts"): accounts of
-- one provider tried in order, rendered by the sidecar into the CDS file Envoy watches
-- as one aggregate cluster named after the group. A model routes to a group by naming
-- it in upstream_cluster. The rules a group's accounts must satisfy (known, enabled,
-- one provider, at least two) are checked by the admin API when the group is written
-- (catalog.account_rules.fallback_group_problems); here only what a row alone can say.
CREATE TABLE fallback_groups (
    id         text PRIMARY KEY DEFAULT 'fbg_' || replace(gen_random_uuid()::text, '-', ''),
    -- Also the Envoy cluster name: catalog.accounts.ACCOUNT_NAME.
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    -- Account names, first choice first.
    accounts   text[] NOT NULL CHECK (cardinality(accounts) >= 2),
    version    integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER fallback_groups_audit AFTER INSERT OR UPDATE OR DELETE ON fallback_groups
    FOR EACH ROW EXECUTE FUNCTION audit_row('fallback_group');

-- An account still in a group cannot be deleted, as one a model names cannot (the
-- array has no foreign key): the same error, so the API answers the same way.
CREATE FUNCTION provider_account_in_group() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grp text;
BEGIN
    SELECT name INTO grp FROM fallback_groups WHERE OLD.name = ANY (accounts) LIMIT 1;
    IF grp IS NOT NULL THEN
        RAISE EXCEPTION 'provider account % is in fallback group %', OLD.name, grp
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER provider_accounts_in_group BEFORE DELETE ON provider_accounts
    FOR EACH ROW EXECUTE FUNCTION provider_account_in_group();

-- The account that answered a request (Envoy's upstream host's endpoint metadata
-- `policy_sidecar.account`): for a model on a fallback group, the account the last
-- attempt went to. NULL: no account cluster served it (a static cluster, a denial, an
-- error before any upstream). Old rows keep NULL.
ALTER TABLE usage_metrics ADD COLUMN upstream_account text;
