"""One thread that owns one SQLite connection and runs a store's calls on it, in order.

Every call of a store runs on its own single worker thread: the event loop
never blocks on disk or on SQLite's locks, calls are answered in the order
they were made without a Python lock, the connection never changes threads,
and the default executor (which asyncio also uses for DNS lookups) is never
filled with threads waiting on the database. Measured on one file against
``asyncio.to_thread`` with a locked connection, and against a connection per
thread, this was as fast or faster in every case (one at a time and 50 at
once, reads and writes).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from flowengine import FlowError, StoreError

from flowengine_sqlite._connection import checkpoint, connect
from flowengine_sqlite._url import SQLiteTarget

__all__ = ["Work", "Worker"]

_T = TypeVar("_T")
Work = Callable[[sqlite3.Connection], _T]

# SQLite's own names for a damaged file: not something a retry can fix.
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")

# Connections never to close: those a forked child inherited (SQLite connections must not cross a
# fork), and those whose file was deleted or replaced (closing one would checkpoint into the old
# file and delete the ``-wal`` file by name, which may be the new database's).
_ABANDONED: list[sqlite3.Connection] = []


def _new_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowengine-sqlite")


class Worker:
    """Runs ``work(connection)`` on a private thread, opening the connection on first use.

    Driver and file errors come back as ``StoreError`` naming the database:
    ``store_corrupt`` when SQLite says the file is damaged, else
    ``store_unavailable``. ``close()`` lets the calls already made finish first.

    Before every call the file at the path must still be the one the connection
    opened (same device and inode): a file deleted, moved or replaced under a
    running engine would otherwise take writes no other process ever sees. Then
    the call fails with ``store_replaced`` and the stale connection is dropped; the
    next call opens whatever the path holds now (SECURITY.md 33).
    """

    def __init__(self, target: SQLiteTarget) -> None:
        self._target = target
        self._pid = os.getpid()
        self._executor = _new_executor()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file self._conn opened
        self._closing = False  # close() was called: no new calls (read and set on the loop)
        self._shut = False  # the connection was closed: no more jobs (read and set by the thread)
        self._lock = threading.Lock()
        self._queued = 0  # calls submitted and not yet finished (under _lock)
        self._superseded = False  # a call wrote over a secret since the last checkpoint (thread only)

    def _here(self) -> ThreadPoolExecutor:
        """This process's executor; after a fork, a new one (the old thread stayed in the parent).

        Without this, a store used before a fork (``gunicorn --preload``,
        ``multiprocessing`` on Linux) would hang in the child, its calls queued
        for a thread that does not exist there. The inherited connection is set
        aside, never used or closed here: SQLite connections must not cross a fork.
        """
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._executor = _new_executor()
            self._queued = 0  # what was queued in the parent never runs here
            if self._conn is not None:
                _ABANDONED.append(self._conn)
                self._conn = None
        return self._executor

    def closed_error(self) -> StoreError:
        """The error for a call made after ``close()``."""
        return StoreError(
            f"the SQLite store {self._target.path} is closed", code="store_unavailable", retryable=False
        )

    async def run(self, work: Work[_T]) -> _T:
        """``work(connection)``'s result, computed on the worker thread."""
        if self._closing:
            raise self.closed_error()
        self._count(1)
        try:
            future = asyncio.get_running_loop().run_in_executor(self._here(), self._call, work)
        except RuntimeError:  # shut down by close() from another thread's loop
            self._count(-1)
            raise self.closed_error() from None
        return await future

    def run_later(self, work: Work[object]) -> None:
        """Queue ``work`` behind every call already made, without waiting (errors are dropped)."""
        self._count(1)
        try:
            self._here().submit(self._call, work)
        except RuntimeError:  # shut down by close(): nothing more to do
            self._count(-1)

    def superseded(self) -> None:
        """For a call's work: it wrote over a secret (SECURITY.md 30), so empty the WAL once idle.

        The checkpoint runs on this thread when no other call is queued, before the
        call that left the queue empty returns: one caller at a time finds the WAL
        empty as soon as its call is answered, and a burst of writes (a batch
        refresh) pays for one checkpoint at its end instead of one per write. One
        that another connection kept from completing is tried again at the end of
        each later call until it completes.
        """
        self._superseded = True

    def _count(self, change: int) -> bool:
        """Add ``change`` to the calls queued; True when none is left."""
        with self._lock:
            self._queued += change
            return self._queued <= 0

    def _call(self, work: Work[_T]) -> _T:
        try:
            return self._call_now(work)
        finally:
            idle = self._count(-1)
            if idle and self._superseded and self._conn is not None and not self._shut:
                self._superseded = not checkpoint(self._conn, self._target.timeout)

    def _call_now(self, work: Work[_T]) -> _T:
        if self._shut:  # queued behind close() (from another thread, or by run_later)
            raise self.closed_error()
        try:
            if self._conn is not None:
                self._check_identity()
            if self._conn is None:
                self._conn = connect(self._target)
                self._identity = self._file_identity()
            return work(self._conn)
        except FlowError:
            raise
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise self._failure(exc) from exc

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self._target.path)
        except FileNotFoundError:
            return None
        return found.st_dev, found.st_ino

    def _check_identity(self) -> None:
        """Refuse to go on with a connection whose file is no longer the one at the path."""
        if self._file_identity() == self._identity:
            return
        if self._conn is not None:
            _ABANDONED.append(self._conn)
        self._conn, self._identity = None, None
        raise StoreError(
            f"the SQLite store {self._target.path} was deleted or replaced while open; nothing was written "
            "(the next call opens the file now at that path)",
            code="store_replaced",
            retryable=False,
        )

    def _failure(self, exc: Exception) -> StoreError:
        where = self._target.path
        if getattr(exc, "sqlite_errorname", "").startswith(_DAMAGED):
            return StoreError(
                f"the SQLite store {where} is damaged: {exc}", code="store_corrupt", retryable=False
            )
        return StoreError(f"the SQLite store {where} is unavailable: {exc}", code="store_unavailable")

    async def close(self) -> None:
        """Close the connection once the calls already made are done, and stop the thread."""
        if self._closing:
            return
        self._closing = True
        try:  # the thread takes jobs in order: everything queued before runs first
            await asyncio.get_running_loop().run_in_executor(self._here(), self._close_connection)
        finally:
            self._here().shutdown(wait=False)  # the thread is idle now; it exits on its own

    def _close_connection(self) -> None:
        self._shut = True
        conn, self._conn = self._conn, None
        if conn is not None and self._file_identity() != self._identity:
            _ABANDONED.append(conn)  # not ours to checkpoint any more: see _ABANDONED
        elif conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise self._failure(exc) from exc
