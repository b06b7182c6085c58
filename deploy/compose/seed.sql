-- Demo data for `docker compose up` ONLY: one application, one API key with a fixed,
-- publicly known secret, two models and a model allowlist, so the README's curl works
-- against the production-mode sidecar. Never load this into a real database.
--
-- The key's secret is  ps_dev_compose-demo-key-0123456789abcdef
-- and only its sha256 is stored (policy_sidecar/identity/keys.py); the admin service
-- cannot create a key with a chosen secret, which is why the seed writes rows directly.
-- Safe to run twice (fixed ids, ON CONFLICT DO NOTHING). Real applications and keys are
-- made with the admin service (docs/deployment.md).
BEGIN;

INSERT INTO applications (id, org_id, name, description)
VALUES ('app_compose_demo', 'compose-demo', 'compose demo', 'seeded by deploy/compose/seed.sql')
ON CONFLICT DO NOTHING;

INSERT INTO api_keys (id, app_id, environment, name, prefix, key_hash)
VALUES ('key_compose_demo', 'app_compose_demo', 'dev', 'compose demo key', 'ps_dev_compose',
        'e402d1bfd5c160c3d8a4ac119945d24cafaf5bd7f3bad258f70e5e6a766c001d')
ON CONFLICT DO NOTHING;

INSERT INTO models (id, name, provider, upstream_model, upstream_cluster,
                    input_price_per_mtok, output_price_per_mtok)
VALUES ('mdl_compose_mini', 'gpt-4o-mini', 'openai', 'gpt-4o-mini', 'upstream', 0.15, 0.60),
       ('mdl_compose_4o', 'gpt-4o', 'openai', 'gpt-4o', 'secondary', 2.50, 10.00)
ON CONFLICT DO NOTHING;

-- The real OpenAI account of deploy/compose/provider-accounts.yaml (its key file is in
-- deploy/compose/credentials/, a placeholder until replaced) and a model on it.
INSERT INTO provider_accounts (id, name, provider, base_host, credential_ref)
VALUES ('acc_compose_openai', 'openai-prod', 'openai', 'api.openai.com', 'openai-prod')
ON CONFLICT DO NOTHING;

INSERT INTO models (id, name, provider, upstream_model, upstream_cluster, account,
                    input_price_per_mtok, output_price_per_mtok)
VALUES ('mdl_compose_openai', 'gpt-4o-mini-openai', 'openai', 'gpt-4o-mini', '',
        'openai-prod', 0.15, 0.60)
ON CONFLICT DO NOTHING;

INSERT INTO policies (id, name, type, app_id, mode, priority, config)
VALUES ('pol_compose_models', 'cheap models only', 'model_allowlist', 'app_compose_demo',
        'enforce', 100, '{"models": ["gpt-4o-mini", "gpt-4o-mini-openai"]}')
ON CONFLICT DO NOTHING;

COMMIT;
