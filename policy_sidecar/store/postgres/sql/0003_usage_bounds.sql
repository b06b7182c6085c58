-- Usage records bounded before they are stored (docs/usage-recording.md, "Bounds"):
-- the client's x-request-id, truncated, when it was unfit to be the row's key (too
-- long, odd characters) and request_id was replaced; and the flags saying what was
-- replaced, truncated or clamped (e.g. usage the upstream reported beyond any bound).
ALTER TABLE usage_metrics
    ADD COLUMN client_request_id text,
    ADD COLUMN usage_flags text[] NOT NULL DEFAULT '{}';
