"""The async connection pool every repository shares."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

__all__ = ["Pool", "open_pool"]

Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]


async def open_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 10.0,
    name: str = "policy-sidecar",
) -> Pool:
    """Open a pool and wait until `min_size` connections are ready.

    Connections are in autocommit mode; repositories wrap writes in
    `conn.transaction()`.

    Raises psycopg_pool.PoolTimeout if Postgres cannot be reached within `connect_timeout`.
    The caller closes it (`await pool.close()`), normally at shutdown.
    """
    pool: Pool = AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=connect_timeout,
        name=name,
        open=False,
        # Reads run without a transaction block; writes open one explicitly with
        # `conn.transaction()`. Without autocommit every returned connection would
        # be idle-in-transaction and rolled back (with a warning) by the pool.
        kwargs={"autocommit": True},
        # Validate a connection before handing it out, so a Postgres restart costs
        # one reconnect, not one failed request per pooled connection.
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=connect_timeout)
    return pool
