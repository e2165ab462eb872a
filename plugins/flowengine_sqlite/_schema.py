"""The tables, and the place later versions migrate them (``PRAGMA user_version``).

Flows and tokens keep the columns the store filters on in the clear and the
whole record as the codec's bytes in ``record`` (sealed when a key is set),
so a listing filters in SQL and decodes only what it returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from flowengine import StoreError

__all__ = ["SCHEMA_VERSION", "immediate", "migrate"]

# 2: the counts of the operator's view (flowengine._stats), kept by triggers in the transaction of
# the statement that writes a flow or a token. A flow row carries the transition its write made
# (step_*: the hour, source, event and error of its newest history entry); the triggers add it to
# flow_steps when the version moves on. Tokens stored before this version have dead = NULL until
# a token count classifies them (it needs the codec, which SQL has not).
_COUNTS: tuple[str, ...] = (
    "ALTER TABLE flows ADD COLUMN step_hour REAL",
    "ALTER TABLE flows ADD COLUMN step_source TEXT",
    "ALTER TABLE flows ADD COLUMN step_event TEXT",
    "ALTER TABLE flows ADD COLUMN step_error TEXT",
    """
    CREATE TABLE flow_states (
        spec  TEXT NOT NULL,
        state TEXT NOT NULL,
        n     INTEGER NOT NULL,
        PRIMARY KEY (spec, state)
    ) WITHOUT ROWID
    """,
    "INSERT INTO flow_states (spec, state, n) SELECT spec, state, count(*) FROM flows GROUP BY spec, state",
    """
    CREATE TABLE flow_steps (
        hour   REAL NOT NULL,
        spec   TEXT NOT NULL,
        source TEXT NOT NULL,
        event  TEXT NOT NULL,
        dest   TEXT NOT NULL,
        error  TEXT NOT NULL,
        n      INTEGER NOT NULL,
        PRIMARY KEY (hour, spec, source, event, dest, error)
    ) WITHOUT ROWID
    """,
    """
    CREATE TRIGGER flows_counted_insert AFTER INSERT ON flows BEGIN
        INSERT INTO flow_states (spec, state, n) VALUES (NEW.spec, NEW.state, 1)
            ON CONFLICT (spec, state) DO UPDATE SET n = n + 1;
        INSERT INTO flow_steps (hour, spec, source, event, dest, error, n)
            SELECT NEW.step_hour, NEW.spec, NEW.step_source, NEW.step_event, NEW.state,
                   coalesce(NEW.step_error, ''), 1
            WHERE NEW.step_hour IS NOT NULL
            ON CONFLICT (hour, spec, source, event, dest, error) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER flows_counted_update AFTER UPDATE ON flows BEGIN
        UPDATE flow_states SET n = n - 1 WHERE spec = OLD.spec AND state = OLD.state;
        INSERT INTO flow_states (spec, state, n) VALUES (NEW.spec, NEW.state, 1)
            ON CONFLICT (spec, state) DO UPDATE SET n = n + 1;
        INSERT INTO flow_steps (hour, spec, source, event, dest, error, n)
            SELECT NEW.step_hour, NEW.spec, NEW.step_source, NEW.step_event, NEW.state,
                   coalesce(NEW.step_error, ''), 1
            WHERE NEW.step_hour IS NOT NULL AND NEW.version > OLD.version
            ON CONFLICT (hour, spec, source, event, dest, error) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER flows_counted_delete AFTER DELETE ON flows BEGIN
        UPDATE flow_states SET n = n - 1 WHERE spec = OLD.spec AND state = OLD.state;
    END
    """,
    "ALTER TABLE tokens ADD COLUMN dead INTEGER",
    "ALTER TABLE tokens ADD COLUMN refreshable INTEGER",
    "ALTER TABLE tokens ADD COLUMN dead_at REAL",
    # Live tokens by expiry, per provider: the expiring and expired ones are one range of it.
    "CREATE INDEX tokens_by_health ON tokens (provider, dead, expires_at, refreshable)",
    "CREATE INDEX tokens_dead ON tokens (provider, dead_at) WHERE dead = 1",
    "CREATE INDEX tokens_unclassified ON tokens (key) WHERE dead IS NULL",
    """
    CREATE TABLE token_counts (
        provider TEXT NOT NULL,
        dead     INTEGER NOT NULL,
        n        INTEGER NOT NULL,
        PRIMARY KEY (provider, dead)
    ) WITHOUT ROWID
    """,
    """
    CREATE TRIGGER tokens_counted_insert AFTER INSERT ON tokens WHEN NEW.dead IS NOT NULL BEGIN
        INSERT INTO token_counts (provider, dead, n) VALUES (NEW.provider, NEW.dead, 1)
            ON CONFLICT (provider, dead) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER tokens_counted_update AFTER UPDATE OF provider, dead ON tokens BEGIN
        UPDATE token_counts SET n = n - 1 WHERE provider = OLD.provider AND dead = OLD.dead;
        INSERT INTO token_counts (provider, dead, n) SELECT NEW.provider, NEW.dead, 1
            WHERE NEW.dead IS NOT NULL
            ON CONFLICT (provider, dead) DO UPDATE SET n = n + 1;
    END
    """,
    """
    CREATE TRIGGER tokens_counted_delete AFTER DELETE ON tokens WHEN OLD.dead IS NOT NULL BEGIN
        UPDATE token_counts SET n = n - 1 WHERE provider = OLD.provider AND dead = OLD.dead;
    END
    """,
)

# 3: whether a flow's record holds a secret (a code, a PKCE verifier, a device code): 1 or 0, NULL
# for a row written before (taken as 1). A write over a row that held none supersedes no secret,
# so it needs no WAL checkpoint (SECURITY.md 30; _store.py).
_SECRETS: tuple[str, ...] = ("ALTER TABLE flows ADD COLUMN holds_secret INTEGER",)

# MIGRATIONS[n] takes a database from user_version n to n + 1. Once released: append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE flows (
            id         TEXT PRIMARY KEY NOT NULL,
            spec       TEXT NOT NULL,
            state      TEXT NOT NULL,
            state_hash TEXT NOT NULL UNIQUE,
            version    INTEGER NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            record     BLOB NOT NULL
        )
        """,
        "CREATE INDEX flows_by_spec_state ON flows (spec, state, created_at)",
        "CREATE INDEX flows_by_created_at ON flows (created_at)",
        "CREATE INDEX flows_by_expires_at ON flows (expires_at)",
        """
        CREATE TABLE tokens (
            key        TEXT PRIMARY KEY NOT NULL,
            provider   TEXT NOT NULL,
            expires_at REAL,
            record     BLOB NOT NULL
        )
        """,
        "CREATE INDEX tokens_by_provider ON tokens (provider)",
        "CREATE INDEX tokens_by_expires_at ON tokens (expires_at)",
        """
        CREATE TABLE leases (
            key        TEXT PRIMARY KEY NOT NULL,
            owner      TEXT NOT NULL,
            expires_at REAL NOT NULL
        )
        """,
    ),
    _COUNTS,
    _SECRETS,
)

SCHEMA_VERSION = len(MIGRATIONS)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the database's write lock at once (``BEGIN IMMEDIATE``).

    Taking the lock before reading means a read-then-write cannot lose a race
    with another process (a deferred transaction would fail with
    ``SQLITE_BUSY`` on upgrading, without waiting). ``conn`` must be in
    autocommit mode; the busy timeout applies while waiting for the lock.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back on its own (disk full, I/O error)
            conn.execute("ROLLBACK")
        raise


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, where: str) -> None:
    """Bring the schema to ``SCHEMA_VERSION``; refuse a database from a newer flowengine.

    Runs in one ``BEGIN IMMEDIATE`` transaction, so two processes opening a
    new file at once do not both create the tables, and a crash leaves the
    old version intact. ``conn`` must be in autocommit mode.
    """
    if _version(conn) == SCHEMA_VERSION:
        return
    with immediate(conn):
        found = _version(conn)
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"{where} has schema version {found}, newer than this flowengine reads ({SCHEMA_VERSION}); "
                "upgrade flowengine",
                code="store_unavailable",
                retryable=False,
            )
        for step in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
        # PRAGMA takes no parameters; the value is our own integer.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
