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
