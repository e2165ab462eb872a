"""Opening the database: the private file, the pragmas, the schema."""

from __future__ import annotations

import logging
import sqlite3

from flowengine_sqlite._files import create_private_file, tighten
from flowengine_sqlite._schema import migrate
from flowengine_sqlite._url import SQLiteTarget

__all__ = ["connect"]

log = logging.getLogger("flowengine.store")


def connect(target: SQLiteTarget) -> sqlite3.Connection:
    """A connection to ``target``'s database, created 0600 if new, in WAL mode, at the current schema.

    The connection is in autocommit mode (``isolation_level=None``): every
    statement commits on its own unless the store opens a ``BEGIN IMMEDIATE``.
    It is meant for one thread at a time (the store's worker thread).
    """
    create_private_file(target.path)
    conn = sqlite3.connect(target.path, timeout=target.timeout, isolation_level=None)
    try:
        # WAL: readers never wait for the writer, and a commit is one append.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # some network filesystems cannot share memory
            log.warning("the SQLite store %s runs in %s journal mode, not WAL", target.path, mode)
        # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        # Deleted records (old refresh tokens, say) are overwritten, not left in free pages.
        conn.execute("PRAGMA secure_delete = ON")
        migrate(conn, f"the SQLite store {target.path}")
    except BaseException:
        conn.close()
        raise
    tighten(target.path)
    return conn
