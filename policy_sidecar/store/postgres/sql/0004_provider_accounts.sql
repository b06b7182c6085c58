-- Provider accounts (docs/admin.md, "Provider accounts"): one upstream cluster each.
-- The credential is only named (credential_ref): the key lives in Envoy's credentials
-- directory (a file or a Kubernetes Secret), never in this database.
CREATE TABLE provider_accounts (
    id                  text PRIMARY KEY DEFAULT 'acc_' || replace(gen_random_uuid()::text, '-', ''),
    -- Also the Envoy cluster name: catalog.accounts.ACCOUNT_NAME.
    name                text NOT NULL UNIQUE
        CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    provider            text NOT NULL
        CHECK (provider IN ('openai', 'azure', 'anthropic', 'gemini', 'cohere')),
    base_host           text NOT NULL
        CHECK (base_host ~ '^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$'),
    port                integer NOT NULL DEFAULT 443 CHECK (port BETWEEN 1 AND 65535),
    credential_ref      text NOT NULL CHECK (credential_ref ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    ca_file             text CHECK (ca_file LIKE '/%'),
    address             text CHECK (address <> ''),
    tokens_per_minute   bigint CHECK (tokens_per_minute > 0),
    requests_per_minute bigint CHECK (requests_per_minute > 0),
    enabled             boolean NOT NULL DEFAULT true,
    version             integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- A model deployment may name its account (by name, which is immutable): its traffic
-- then goes to the account's cluster, and upstream_cluster may be left empty.
ALTER TABLE models
    ADD COLUMN account text REFERENCES provider_accounts (name) ON DELETE RESTRICT,
    DROP CONSTRAINT models_upstream_cluster_check,
    ADD CONSTRAINT models_route_check CHECK (account IS NOT NULL OR upstream_cluster <> '');

CREATE INDEX models_account_idx ON models (account) WHERE account IS NOT NULL;
