"""The store's tables, as an ordered list of migrations applied once per schema.

Migration ``n`` (1-based) is ``MIGRATIONS[n - 1]``; ``{schema}.schema_version``
has one row per migration applied. Migrations are only ever appended: a worker
running an older flowengine refuses a schema newer than it knows rather than
write records a newer worker cannot read.

Every worker runs ``migrate`` on its first connection. It holds a
transaction-scoped advisory lock keyed by the schema name, so workers starting
together apply each migration exactly once and the others wait, then see the
new version and do nothing. A failed migration rolls back with its version row.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from flowengine import StoreError

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

log = logging.getLogger("flowengine.store")

MIGRATIONS: tuple[str, ...] = (
    # 1: flows, tokens, leases. The fields a query filters or orders on are
    # columns; the record itself is ``RecordCodec`` bytes (sealed when keyed).
    """
    CREATE TABLE {schema}.flows (
        id text PRIMARY KEY,
        spec text NOT NULL,
        state text NOT NULL,
        state_hash text NOT NULL UNIQUE,
        version bigint NOT NULL,
        created_at double precision NOT NULL,
        expires_at double precision NOT NULL,
        record bytea NOT NULL
    );
    CREATE INDEX flows_spec_state_created_at ON {schema}.flows (spec, state, created_at);
    CREATE INDEX flows_created_at ON {schema}.flows (created_at);
    CREATE INDEX flows_expires_at ON {schema}.flows (expires_at);
    CREATE TABLE {schema}.tokens (
        key text PRIMARY KEY,
        provider text NOT NULL,
        expires_at double precision,
        record bytea NOT NULL
    );
    CREATE INDEX tokens_provider ON {schema}.tokens (provider);
    CREATE INDEX tokens_expires_at ON {schema}.tokens (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE {schema}.leases (
        key text PRIMARY KEY,
        owner text NOT NULL,
        expires_at double precision NOT NULL
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def _lock_id(schema: str) -> int:
    """A stable signed 64-bit advisory lock key for this schema (distinct schemas rarely collide)."""
    raw = hashlib.sha256(f"flowengine_postgres:migrate:{schema}".encode()).digest()[:8]
    return int.from_bytes(raw, "big", signed=True)


async def migrate(conn: AsyncConnection[Any], schema: str) -> list[int]:
    """Bring ``schema`` up to ``SCHEMA_VERSION``; the versions this call applied (usually none).

    ``conn`` must be in autocommit mode: the work is one explicit transaction.
    The schema and version table are created only when missing, so a worker
    whose role may not ``CREATE`` can still use a schema an administrator made.
    """
    from psycopg import sql

    name = sql.Identifier(schema)
    versions = sql.SQL("{schema}.schema_version").format(schema=name)
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(schema),))
        cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if await cur.fetchone() is None:
            await conn.execute(sql.SQL("CREATE SCHEMA {schema}").format(schema=name))
        cur = await conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'schema_version'", (schema,)
        )
        if await cur.fetchone() is None:
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE {versions} (version integer PRIMARY KEY,"
                    " applied_at double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()))"
                ).format(versions=versions)
            )
        cur = await conn.execute(
            sql.SQL("SELECT coalesce(max(version), 0) FROM {versions}").format(versions=versions)
        )
        row = await cur.fetchone()
        current = int(row[0]) if row is not None else 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"postgres schema {schema!r} is at version {current}, newer than this flowengine knows"
                f" ({SCHEMA_VERSION}): upgrade flowengine on this worker",
                code="store_unavailable",
                retryable=False,
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            await conn.execute(sql.SQL(MIGRATIONS[version - 1]).format(schema=name))
            await conn.execute(
                sql.SQL("INSERT INTO {versions} (version) VALUES (%s)").format(versions=versions), (version,)
            )
            applied.append(version)
    for version in applied:
        log.info("postgres schema %r: applied migration %d", schema, version)
    return applied
