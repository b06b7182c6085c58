-- Azure OpenAI deployments (docs/connect-providers.md, "Azure OpenAI"): the deployment's
-- name at Azure and the api-version its deployment path is called with. Both are
-- written into the upstream path, so they hold only what is safe in a path segment and
-- a query value (catalog.deployments.AZURE_DEPLOYMENT / API_VERSION).
ALTER TABLE models
    ADD COLUMN azure_deployment text
        CHECK (azure_deployment ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    ADD COLUMN api_version text
        CHECK (api_version ~ '^[A-Za-z0-9][A-Za-z0-9.-]{0,39}$'),
    ADD CONSTRAINT models_azure_fields_check
        CHECK (provider = 'azure' OR (azure_deployment IS NULL AND api_version IS NULL));
