"""Production mode: identities, models and policies from Postgres through caches,
kept fresh by invalidations published on Redis."""
