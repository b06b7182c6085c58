"""Apply the plain-SQL migrations shipped in `sql/`, once each, in name order.

Why a small runner rather than a tool: the maintained Python tools either want
Python revision files (alembic) or are synchronous and serialise with a lock
*table* polled in a loop (yoyo); dbmate, flyway and sqitch are separate binaries
that a `pip install` cannot ship. This runner is ~100 lines on the async driver
the service already uses, and it takes a Postgres advisory lock, which is the
exact primitive "several replicas migrate at once" needs.

Rules:
- files are `NNNN_name.sql`, applied in lexical order, each in its own
  transaction together with its row in `schema_migrations`;
- an applied file must not change: its sha256 is recorded and checked, and a
  mismatch stops the run before anything is applied;
- a session advisory lock, keyed by the target schema, serialises concurrent
  runs; the loser waits, then finds nothing pending.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

from psycopg import AsyncConnection

__all__ = ["Migration", "MigrationError", "load_migrations", "migrate"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# First half of the two-int advisory lock key: a fixed tag for "migrations".
_LOCK_CLASS = 0x5053  # "PS"

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The migration files and the database disagree, or a file is malformed."""


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def load_migrations() -> list[Migration]:
    """The migrations shipped with the package, in application order."""
    root = resources.files("policy_sidecar.store.postgres") / "sql"
    found: list[Migration] = []
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        if not _NAME.match(entry.name):
            raise MigrationError(f"{entry.name}: migration names must look like 0001_name.sql")
        found.append(Migration(entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.name)
    numbers = [m.name[:4] for m in found]
    if len(set(numbers)) != len(numbers):
        raise MigrationError(f"duplicate migration numbers in {numbers}")
    return found


async def migrate(dsn: str, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations to the schema `dsn` resolves to; return their names.

    Safe to run from several processes at once, and a no-op when nothing is pending.
    """
    todo = load_migrations() if migrations is None else migrations
    async with await AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_advisory_lock(%s, hashtext(current_schema()))", (_LOCK_CLASS,)
        )
        try:
            return await _apply_pending(conn, todo)
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (_LOCK_CLASS,)
            )


async def _apply_pending(
    conn: AsyncConnection[tuple[object, ...]], todo: list[Migration]
) -> list[str]:
    schema = await (await conn.execute("SELECT current_schema()")).fetchone()
    if schema is None or schema[0] is None:
        raise MigrationError("no current schema: check search_path and that the schema exists")
    await conn.execute(_BOOKKEEPING)
    cur = await conn.execute("SELECT name, checksum FROM schema_migrations")
    applied = {str(name): str(checksum) for name, checksum in await cur.fetchall()}

    known = {m.name for m in todo}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(f"database has migrations this build does not know: {unknown}")
    for m in todo:
        if m.name in applied and applied[m.name] != m.checksum:
            raise MigrationError(f"{m.name} changed after it was applied (checksum mismatch)")

    done: list[str] = []
    for m in todo:
        if m.name in applied:
            continue
        log.info("applying migration %s to schema %s", m.name, schema[0])
        async with conn.transaction():
            await conn.execute(m.sql.encode("utf-8"))
            await conn.execute(
                "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                (m.name, m.checksum),
            )
        done.append(m.name)
    return done
