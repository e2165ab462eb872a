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
    # 2: the counts of the operator's view (flowengine._stats), kept by triggers in the
    # transaction of the statement that writes a flow or a token. Each count is spread over
    # 16 rows ("slot": the writing connection's backend pid mod 16) so that concurrent writers
    # rarely wait on one row, and rows are always locked in (spec, state, slot) order, flows
    # deleted in bulk (purge) included, so two writers never wait on each other in a circle.
    # A flow row carries the transition its write made (step_*), counted when the version moves.
    # Tokens stored before this migration have dead = NULL until a token count classifies them
    # (their records may be sealed: that needs the codec).
    """
    ALTER TABLE {schema}.flows ADD COLUMN step_hour double precision, ADD COLUMN step_source text,
        ADD COLUMN step_event text, ADD COLUMN step_error text;
    CREATE TABLE {schema}.flow_states (
        spec text NOT NULL, state text NOT NULL, slot smallint NOT NULL, n bigint NOT NULL,
        PRIMARY KEY (spec, state, slot)
    );
    INSERT INTO {schema}.flow_states (spec, state, slot, n)
        SELECT spec, state, 0, count(*) FROM {schema}.flows GROUP BY spec, state;
    CREATE TABLE {schema}.flow_steps (
        hour double precision NOT NULL, spec text NOT NULL, source text NOT NULL, event text NOT NULL,
        dest text NOT NULL, error text NOT NULL, slot smallint NOT NULL, n bigint NOT NULL,
        PRIMARY KEY (hour, spec, source, event, dest, error, slot)
    );
    CREATE FUNCTION {schema}.flows_counted() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
        my_slot smallint := pg_backend_pid() % 16;
        counted boolean;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO {schema}.flow_states AS c (spec, state, slot, n)
                VALUES (NEW.spec, NEW.state, my_slot, 1)
                ON CONFLICT (spec, state, slot) DO UPDATE SET n = c.n + 1;
            counted := true;
        ELSE
            IF OLD.spec <> NEW.spec OR OLD.state <> NEW.state THEN
                INSERT INTO {schema}.flow_states AS c (spec, state, slot, n)
                    SELECT v.spec, v.state, my_slot, v.d
                    FROM (VALUES (OLD.spec, OLD.state, -1), (NEW.spec, NEW.state, 1)) AS v (spec, state, d)
                    ORDER BY v.spec, v.state
                    ON CONFLICT (spec, state, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
            END IF;
            counted := NEW.version > OLD.version;
        END IF;
        IF counted AND NEW.step_hour IS NOT NULL THEN
            INSERT INTO {schema}.flow_steps AS c (hour, spec, source, event, dest, error, slot, n)
                VALUES (NEW.step_hour, NEW.spec, NEW.step_source, NEW.step_event, NEW.state,
                        coalesce(NEW.step_error, ''), my_slot, 1)
                ON CONFLICT (hour, spec, source, event, dest, error, slot) DO UPDATE SET n = c.n + 1;
        END IF;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER flows_counted AFTER INSERT OR UPDATE ON {schema}.flows
        FOR EACH ROW EXECUTE FUNCTION {schema}.flows_counted();
    CREATE FUNCTION {schema}.flows_uncounted() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        INSERT INTO {schema}.flow_states AS c (spec, state, slot, n)
            SELECT spec, state, pg_backend_pid() % 16, -count(*) FROM gone GROUP BY spec, state
            ORDER BY spec, state
            ON CONFLICT (spec, state, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER flows_uncounted AFTER DELETE ON {schema}.flows REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.flows_uncounted();

    ALTER TABLE {schema}.tokens ADD COLUMN dead boolean, ADD COLUMN refreshable boolean,
        ADD COLUMN dead_at double precision;
    CREATE INDEX tokens_by_health ON {schema}.tokens (provider, dead, expires_at, refreshable);
    CREATE INDEX tokens_dead ON {schema}.tokens (provider, dead_at) WHERE dead;
    CREATE INDEX tokens_unclassified ON {schema}.tokens (key) WHERE dead IS NULL;
    CREATE TABLE {schema}.token_counts (
        provider text NOT NULL, dead boolean NOT NULL, slot smallint NOT NULL, n bigint NOT NULL,
        PRIMARY KEY (provider, dead, slot)
    );
    CREATE FUNCTION {schema}.tokens_counted() RETURNS trigger LANGUAGE plpgsql AS $fn$
    DECLARE
        old_provider text;
        old_dead boolean;
    BEGIN
        IF TG_OP = 'UPDATE' THEN
            old_provider := OLD.provider;
            old_dead := OLD.dead;
        END IF;
        INSERT INTO {schema}.token_counts AS c (provider, dead, slot, n)
            SELECT v.provider, v.dead, pg_backend_pid() % 16, v.d
            FROM (VALUES (old_provider, old_dead, -1), (NEW.provider, NEW.dead, 1)) AS v (provider, dead, d)
            WHERE v.provider IS NOT NULL AND v.dead IS NOT NULL
            ORDER BY v.provider, v.dead
            ON CONFLICT (provider, dead, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER tokens_counted_insert AFTER INSERT ON {schema}.tokens
        FOR EACH ROW WHEN (NEW.dead IS NOT NULL) EXECUTE FUNCTION {schema}.tokens_counted();
    CREATE TRIGGER tokens_counted_update AFTER UPDATE ON {schema}.tokens
        FOR EACH ROW WHEN (OLD.dead IS DISTINCT FROM NEW.dead OR OLD.provider <> NEW.provider)
        EXECUTE FUNCTION {schema}.tokens_counted();
    CREATE FUNCTION {schema}.tokens_uncounted() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        INSERT INTO {schema}.token_counts AS c (provider, dead, slot, n)
            SELECT provider, dead, pg_backend_pid() % 16, -count(*) FROM gone WHERE dead IS NOT NULL
            GROUP BY provider, dead ORDER BY provider, dead
            ON CONFLICT (provider, dead, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER tokens_uncounted AFTER DELETE ON {schema}.tokens REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION {schema}.tokens_uncounted();
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
