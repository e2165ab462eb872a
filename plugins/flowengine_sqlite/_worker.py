"""One thread that owns one SQLite connection and runs a store's calls on it, in order.

Every call of a store runs on its own single worker thread: the event loop
never blocks on disk or on SQLite's locks, calls are answered in the order
they were made without a Python lock held across them, the connection never
changes threads, and the default executor (which asyncio also uses for DNS
lookups) is never filled with threads waiting on the database.

The hand-off is a queue and ``call_soon_threadsafe``, not ``run_in_executor``,
whose concurrent future, its chaining to an asyncio one and the executor's idle
semaphore take Python locks on both threads for every call. An empty call took
25-100 µs through a one-thread executor and 17-50 µs this way (medians of rounds
of 500 at different moments on the 2-core machine of docs/performance.md, where
thread wake-ups dominate both). A call whose caller was cancelled before it ran
is skipped.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from flowengine import FlowError, StoreError

from flowengine_sqlite._connection import checkpoint, connect
from flowengine_sqlite._url import SQLiteTarget

__all__ = ["Work", "Worker"]

_T = TypeVar("_T")
Work = Callable[[sqlite3.Connection], _T]
# A job: the work (None: close the connection), and the loop and future its result goes to (None
# for ``run_later``).
_Job = tuple["Work[Any] | None", "asyncio.AbstractEventLoop | None", "asyncio.Future[Any] | None"]

# SQLite's own names for a damaged file: not something a retry can fix.
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")

# Connections never to close: those a forked child inherited (SQLite connections must not cross a
# fork), and those whose file was deleted or replaced (closing one would checkpoint into the old
# file and delete the ``-wal`` file by name, which may be the new database's).
_ABANDONED: list[sqlite3.Connection] = []

# Every worker of this process, so that the calls given to each finish before the interpreter
# exits, and so that a forked child gets locks no thread of the parent holds.
_WORKERS: weakref.WeakSet[Worker] = weakref.WeakSet()


@atexit.register
def _finish_at_exit() -> None:
    for worker in list(_WORKERS):
        worker.finish()


def _after_fork_in_child() -> None:
    for worker in list(_WORKERS):
        worker._lock = threading.Lock()  # the thread that held the parent's did not come along


os.register_at_fork(after_in_child=_after_fork_in_child)


def _serve(worker_ref: weakref.ref[Worker], jobs: queue.SimpleQueue[_Job | None]) -> None:
    """A worker's thread: each job in turn, until the stop signal.

    It holds its worker only while a job runs: a store dropped without ``aclose()``
    is collected, and its finalizer sends the stop signal (as an executor's thread
    ends when its executor is collected).
    """
    while (job := jobs.get()) is not None:
        worker = worker_ref()
        if worker is not None:
            worker._run_job(job)
        del job, worker  # nothing of the last call stays referenced while the thread waits


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled while its call ran
        return
    if isinstance(error, StopIteration):  # a future refuses it (as a coroutine turns it into this)
        error = RuntimeError(f"a store call raised StopIteration: {error!r}")
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


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
        self._jobs: queue.SimpleQueue[_Job | None] | None = None  # this process's, once its thread runs
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file self._conn opened
        self._closing = False  # close() was called: no new calls (read and set on the loop)
        self._stopped = False  # no job may be queued any more (under _lock)
        self._shut = False  # the connection was closed: no more jobs (read and set by the thread)
        self._lock = threading.Lock()
        self._queued = 0  # calls submitted and not yet finished (under _lock)
        self._superseded = False  # a call wrote over a secret since the last checkpoint (thread only)
        _WORKERS.add(self)

    def _queue(self) -> queue.SimpleQueue[_Job | None]:
        """This process's job queue (call under ``_lock``), its thread started on first use.

        After a fork the parent's thread does not exist in the child: a store used
        before a fork (``gunicorn --preload``, ``multiprocessing`` on Linux) would
        otherwise hang there, its calls queued for nobody. The child gets a queue and
        a thread of its own; the inherited connection is set aside, never used or
        closed here: SQLite connections must not cross a fork.
        """
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._jobs = None
            self._queued = 0  # what was queued in the parent never runs here
            if self._conn is not None:
                _ABANDONED.append(self._conn)
                self._conn = None
        if self._jobs is None:
            jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
            thread = threading.Thread(
                target=_serve, args=(weakref.ref(self), jobs), name="flowengine-sqlite", daemon=True
            )
            try:
                thread.start()
            except RuntimeError as exc:  # no thread to be had (at the limit, or at shutdown): nothing queued
                raise StoreError(
                    f"the SQLite store {self._target.path} cannot start its thread: {exc}",
                    code="store_unavailable",
                ) from exc
            self._jobs, self._thread = jobs, thread
            weakref.finalize(self, jobs.put, None)  # collected unclosed: the thread ends
        return self._jobs

    def _submit(self, job: _Job) -> bool:
        """Queue ``job`` behind every call already made; False when the worker is closed.

        ``StoreError`` (``store_unavailable``) when its thread cannot start: nothing is queued.
        """
        with self._lock:
            if self._stopped:
                return False
            jobs = self._queue()
            self._queued += 1
            jobs.put(job)
            return True

    def _run_job(self, job: _Job) -> None:
        """One job on the thread: its result or error handed to its caller's loop."""
        work, loop, future = job
        if work is not None and future is not None and future.cancelled():  # its caller gave up
            self._done()
            return
        error: BaseException | None = None
        result: object = None
        try:
            if work is None:
                self._close_connection()
            else:
                result = self._call(work)
        except BaseException as exc:  # every error goes to its caller, as an executor's would
            error = exc
        if loop is not None and future is not None:
            # RuntimeError: that loop is closed, so nobody waits for this answer any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)

    def finish(self) -> None:
        """Let the calls already queued run, then stop the thread (at exit).

        A worker whose ``close()`` was queued (and perhaps given up on) has its close
        and stop signal queued already: its thread is waited for too.
        """
        with self._lock:
            if self._jobs is None or self._pid != os.getpid():
                return
            if not self._stopped:
                self._stopped = True
                self._jobs.put(None)
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def closed_error(self) -> StoreError:
        """The error for a call made after ``close()``."""
        return StoreError(
            f"the SQLite store {self._target.path} is closed", code="store_unavailable", retryable=False
        )

    async def run(self, work: Work[_T]) -> _T:
        """``work(connection)``'s result, computed on the worker thread."""
        if self._closing:
            raise self.closed_error()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        if not self._submit((work, loop, future)):  # closed by close() from another thread's loop
            raise self.closed_error()
        return await future

    def run_later(self, work: Work[object]) -> None:
        """Queue ``work`` behind every call already made, without waiting (errors are dropped)."""
        with contextlib.suppress(StoreError):  # no thread could start: there is nothing to do it on
            self._submit((work, None, None))

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

    def _done(self) -> None:
        """A call has finished (or was skipped): empty the WAL if it was the last one queued."""
        with self._lock:
            self._queued -= 1
            idle = self._queued <= 0
        if idle and self._superseded and self._conn is not None and not self._shut:
            self._superseded = not checkpoint(self._conn, self._target.timeout)

    def _call(self, work: Work[_T]) -> _T:
        try:
            return self._call_now(work)
        finally:
            self._done()

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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:  # no call can be queued behind these two
            if self._stopped:  # finish() ran (the interpreter is exiting): the thread is gone
                return
            self._stopped = True
            try:
                jobs = self._queue()
            except StoreError:  # no thread could start, so no connection was opened in this process
                return
            jobs.put((None, loop, future))  # closes the connection, even if this caller is cancelled
            jobs.put(None)  # then the thread ends
        await future

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
