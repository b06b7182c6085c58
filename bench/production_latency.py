"""Added latency and throughput: production mode (Postgres + Redis) vs standalone.

    python bench/production_latency.py [--duration 8]

Both stacks: Envoy + 2 sidecar workers + a static upstream, the same five policies
(allowlist, size, CEL, rate limit, token limit). Standalone: YAML, in-process
counters, JSON-lines usage. Production: keys/models/policies from Postgres through the
caches, counters in Redis, usage into Postgres (COPY + rollups). Needs wrk, and the
local Postgres and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).parent))
from extproc_overhead import BODY, CONFIG, KEY, start, static_upstream_config, wrk

from policy_sidecar.cli.launcher import free_port, new_stack
from policy_sidecar.store.postgres import (
    ApiKeyRepository,
    ApplicationRepository,
    ModelRepository,
    PolicyRepository,
    migrate,
    open_pool,
)

BASE_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
POLICIES = [
    ("models", "model_allowlist", {"models": ["gpt-4o*"]}),
    ("size", "request_size", {"max_bytes": 1048576}),
    ("cel", "custom_cel", {"pre_check_expression": "estimated_tokens < 100000"}),
    ("rpm", "rate_limit", {"requests": 100000000, "window": "1m"}),
    ("tpd", "token_limit", {"limit": 100000000000, "window": "1d"}),
]


async def seed(dsn: str) -> str:
    await migrate(dsn)
    pool = await open_pool(dsn)
    try:
        app = await ApplicationRepository(pool).create(
            org_id=f"bench-{uuid.uuid4().hex[:6]}", name="bench"
        )
        key = await ApiKeyRepository(pool).create(app_id=app.id, environment="prod")
        await ModelRepository(pool).create(
            name="gpt-4o-mini",
            provider="openai",
            upstream_model="gpt-4o-mini",
            upstream_cluster="upstream",
        )
        for name, kind, config in POLICIES:
            await PolicyRepository(pool).create(name=name, type=kind, config=config)
        return key.secret
    finally:
        await pool.close()


def measure(label: str, config: Path | None, env: dict[str, str], key: str, duration: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"ps-bench-{label}-"))
    stack = new_stack(workdir, workers=2)
    try:
        start(stack, "static-upstream", static_upstream_config(stack.upstream_port, free_port()), 1)
        stack.start_sidecar(config, {"POLICY_SIDECAR_LOG_LEVEL": "WARNING", **env})
        stack.start_envoy(1)
        url = f"{stack.url}/v1/chat/completions"
        wrk(url, connections=4, duration=2, workdir=workdir, key=key)  # warm caches
        loaded = wrk(url, connections=16, duration=duration, workdir=workdir, key=key)
        unloaded = wrk(url, connections=1, duration=duration, workdir=workdir, key=key)
        print(
            f"{label:11s} {loaded['rps']:6.0f} req/s (c=16, p50 {loaded['p50_ms']:.2f} ms)  "
            f"unloaded p50 {unloaded['p50_ms']:.3f} ms p99 {unloaded['p99_ms']:.3f} ms  "
            f"non-2xx {loaded['non2xx'] + unloaded['non2xx']:.0f}"
        )
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=8)
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    dsn = make_conninfo(BASE_DSN, options=f"-c search_path={schema}")
    try:
        secret = asyncio.run(seed(dsn))
        standalone = Path(tempfile.mkdtemp()) / "standalone.yaml"
        text = CONFIG.replace(
            "policies:",
            "policies:\n  - {id: p3, name: cel, type: custom_cel, config: {pre_check_expression: 'estimated_tokens < 100000'}}\n  - {id: p4, name: rpm, type: rate_limit, config: {requests: 100000000, window: 1m}}\n  - {id: p5, name: tpd, type: token_limit, config: {limit: 100000000000, window: 1d}}",
        )
        standalone.write_text(text)
        print(
            f"body {len(str(BODY))} chars; 2 sidecar workers; 5 policies incl. 2 counters and 1 CEL"
        )
        measure("standalone", standalone, {}, KEY, args.duration)
        measure(
            "production",
            None,
            {"POLICY_SIDECAR_DATABASE_URL": dsn, "POLICY_SIDECAR_REDIS_URL": REDIS},
            secret,
            args.duration,
        )
    finally:
        with psycopg.connect(BASE_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
