"""Opening the database: the private file, the pragmas, the schema; and forgetting what was superseded."""

from __future__ import annotations

import logging
import sqlite3
import time

from flowengine_sqlite._files import create_private_file, tighten
from flowengine_sqlite._schema import migrate
from flowengine_sqlite._url import SQLiteTarget

__all__ = ["checkpoint", "connect"]

log = logging.getLogger("flowengine.store")


def _switch_to_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """Set WAL mode, waiting out a concurrent opener.

    Changing the journal mode can answer "database is locked" at once, without
    SQLite's busy handler, while another process is creating the same new file:
    retry with a short backoff for up to the store's busy timeout.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)  # the store's own worker thread: the event loop is not blocked
            delay = min(delay * 2, 0.1)


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
        mode = _switch_to_wal(conn, target.timeout)
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


def checkpoint(conn: sqlite3.Connection, timeout: float) -> bool:
    """Move the WAL into the database and truncate it, if nobody else is in the middle of a call.

    A WAL keeps every page a commit wrote until a checkpoint, so a copy of the
    ``-wal`` file would hold a spent code, a PKCE verifier or a superseded refresh
    token long after the table rows changed (SECURITY.md 30). ``secure_delete``
    zeroes what the database file frees; this empties the WAL. It never waits for
    another connection (busy timeout 0 while it runs): True when the WAL was emptied,
    False when another connection was busy (the caller tries again later) or it
    failed. Its failure is logged, never raised: the write before it has committed.
    """
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000):d}")
    except sqlite3.Error as exc:
        log.debug("checkpoint skipped: %s", exc)
        return False
    if busy:
        log.debug("checkpoint skipped: another connection is busy")
    return not busy
