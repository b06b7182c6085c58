-- The audit log (docs/admin.md, "Audit log"): one row per configuration row created,
-- changed or deleted through the admin API, written by triggers in the same
-- transaction as the change, so a committed change always has its event and a
-- rolled-back one never does.
--
-- Who and why come from two transaction-local settings the repositories set at the
-- start of every admin write (store/postgres/audit.py):
--   policy_sidecar.audit_actor   the admin token's name ("system" outside the API)
--   policy_sidecar.audit_method  the gRPC method, e.g. /...ApplicationService/CreateApplication
-- A write without them (the sidecar's last_used_at batches, plain SQL) is not audited.
CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_time  timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL CHECK (actor <> ''),
    method      text NOT NULL,
    object_type text NOT NULL,
    object_id   text NOT NULL,
    action      text NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    -- Row snapshots as JSON; secret-bearing columns are removed by the trigger.
    before      jsonb,
    after       jsonb
);
-- "History of this object" and "everything in this time range", newest first.
CREATE INDEX audit_events_object ON audit_events (object_type, object_id, id);
CREATE INDEX audit_events_time ON audit_events (event_time, id);

-- Trigger arguments: the object type, then the columns never to store (e.g. key_hash).
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    actor   text := current_setting('policy_sidecar.audit_actor', true);
    old_row jsonb;
    new_row jsonb;
    i       integer;
BEGIN
    IF actor IS NULL OR actor = '' THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_row := to_jsonb(NEW);
    END IF;
    FOR i IN 1 .. TG_NARGS - 1 LOOP
        old_row := old_row - TG_ARGV[i];
        new_row := new_row - TG_ARGV[i];
    END LOOP;
    INSERT INTO audit_events (actor, method, object_type, object_id, action, before, after)
    VALUES (
        actor,
        coalesce(current_setting('policy_sidecar.audit_method', true), ''),
        TG_ARGV[0],
        coalesce(
            coalesce(new_row, old_row) ->> 'id',
            (coalesce(new_row, old_row) ->> 'app_id') || '/'
                || (coalesce(new_row, old_row) ->> 'environment')
        ),
        CASE TG_OP WHEN 'INSERT' THEN 'create' WHEN 'UPDATE' THEN 'update' ELSE 'delete' END,
        old_row,
        new_row
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER applications_audit AFTER INSERT OR UPDATE OR DELETE ON applications
    FOR EACH ROW EXECUTE FUNCTION audit_row('application');
CREATE TRIGGER application_configs_audit AFTER INSERT OR UPDATE OR DELETE ON application_configs
    FOR EACH ROW EXECUTE FUNCTION audit_row('application_config');
-- key_hash is what the sidecar looks a key up by: as good as the secret for a lookup.
CREATE TRIGGER api_keys_audit AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION audit_row('api_key', 'key_hash');
CREATE TRIGGER models_audit AFTER INSERT OR UPDATE OR DELETE ON models
    FOR EACH ROW EXECUTE FUNCTION audit_row('model');
CREATE TRIGGER policies_audit AFTER INSERT OR UPDATE OR DELETE ON policies
    FOR EACH ROW EXECUTE FUNCTION audit_row('policy');
-- Accounts hold only credential_ref (a secret's name), never key material.
CREATE TRIGGER provider_accounts_audit AFTER INSERT OR UPDATE OR DELETE ON provider_accounts
    FOR EACH ROW EXECUTE FUNCTION audit_row('provider_account');
