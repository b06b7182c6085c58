-- Core configuration: applications, per-environment configs, API keys, model
-- deployments and policies. Ids are prefixed random text ("app_..."), readable in
-- logs and grpcurl output; every mutable row carries a version for optimistic
-- concurrency.

CREATE TABLE applications (
    id          text PRIMARY KEY DEFAULT 'app_' || replace(gen_random_uuid()::text, '-', ''),
    org_id      text NOT NULL CHECK (org_id <> ''),
    name        text NOT NULL CHECK (name <> '' AND length(name) <= 200),
    description text NOT NULL DEFAULT '',
    labels      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    archived_at timestamptz
);
-- A name is unique per org among live applications; an archived name can be reused.
-- Also serves "list applications of an org".
CREATE UNIQUE INDEX applications_org_name_live ON applications (org_id, name)
    WHERE archived_at IS NULL;

CREATE TABLE application_configs (
    app_id        text NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    environment   text NOT NULL CHECK (environment ~ '^[a-z][a-z0-9_-]{0,31}$'),
    enabled       boolean NOT NULL DEFAULT true,
    default_model text,
    settings      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    version       integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, environment)
);

CREATE TABLE api_keys (
    id           text PRIMARY KEY DEFAULT 'key_' || replace(gen_random_uuid()::text, '-', ''),
    app_id       text NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    environment  text NOT NULL CHECK (environment ~ '^[a-z][a-z0-9_-]{0,31}$'),
    name         text NOT NULL DEFAULT '',
    prefix       text NOT NULL,
    key_hash     text NOT NULL CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
-- The sidecar resolves identity by hash.
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);
-- Listing keys of an application (and the FK's cascade).
CREATE INDEX api_keys_app ON api_keys (app_id, environment);

CREATE TABLE models (
    id                       text PRIMARY KEY DEFAULT 'mdl_' || replace(gen_random_uuid()::text, '-', ''),
    name                     text NOT NULL UNIQUE CHECK (name <> ''),
    provider                 text NOT NULL CHECK (provider <> ''),
    upstream_model           text NOT NULL CHECK (upstream_model <> ''),
    upstream_cluster         text NOT NULL CHECK (upstream_cluster <> ''),
    context_window           integer CHECK (context_window > 0),
    input_price_per_mtok     numeric(14, 6) NOT NULL DEFAULT 0 CHECK (input_price_per_mtok >= 0),
    output_price_per_mtok    numeric(14, 6) NOT NULL DEFAULT 0 CHECK (output_price_per_mtok >= 0),
    cached_input_price_per_mtok numeric(14, 6) NOT NULL DEFAULT 0
        CHECK (cached_input_price_per_mtok >= 0),
    enabled                  boolean NOT NULL DEFAULT true,
    version                  integer NOT NULL DEFAULT 1,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE policies (
    id            text PRIMARY KEY DEFAULT 'pol_' || replace(gen_random_uuid()::text, '-', ''),
    name          text NOT NULL CHECK (name <> ''),
    type          text NOT NULL CHECK (type <> ''),
    org_id        text,
    app_id        text REFERENCES applications (id) ON DELETE CASCADE,
    environment   text CHECK (environment ~ '^[a-z][a-z0-9_-]{0,31}$'),
    model_pattern text,
    mode          text NOT NULL DEFAULT 'enforce' CHECK (mode IN ('enforce', 'shadow')),
    priority      integer NOT NULL DEFAULT 0,
    enabled       boolean NOT NULL DEFAULT true,
    config        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    version       integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- An environment scope only makes sense under an application.
    CHECK (environment IS NULL OR app_id IS NOT NULL)
);
-- FK cascade from applications, and "policies of this application".
CREATE INDEX policies_app ON policies (app_id) WHERE app_id IS NOT NULL;
