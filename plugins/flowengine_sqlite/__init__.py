"""The SQLite store: flows, tokens and leases in one file, the embedded default.

Selected by ``sqlite:///absolute/path.db`` (everything after ``sqlite://`` is
the path: ``sqlite://relative.db`` is relative to the working directory, ``~``
is expanded). Query options: ``key_file=PATH`` (else ``FLOWENGINE_KEY``)
seals records with that key; ``timeout=SECONDS`` (default 5) is how long a
call waits for another writer before failing with ``store_unavailable``.

The file is created 0600 in folders created 0700, runs in WAL mode, and is
safe for several processes on one host: ``compare_and_set`` is one
conditional ``UPDATE``, leases are taken inside ``BEGIN IMMEDIATE``.
``default_url()`` is where the CLI keeps its store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowengine import hookimpl, lazy_exports

if TYPE_CHECKING:
    from flowengine_sqlite._store import SQLiteStore
    from flowengine_sqlite._url import default_url

__all__ = ["SQLiteStore", "default_url", "flowengine_store"]


# The store (and its driver) load on first use of the name, not with the plugin; so does the URL's parser.
__getattr__ = lazy_exports(__name__, {"SQLiteStore": "._store", "default_url": "._url"})


@hookimpl
def flowengine_store(url: str) -> SQLiteStore | None:
    """A SQLiteStore for a ``sqlite://`` URL (``ConfigError`` if it is malformed), else None."""
    from flowengine_sqlite._url import SCHEME

    if url.split(":", 1)[0] != SCHEME:
        return None
    from flowengine_sqlite._store import SQLiteStore

    return SQLiteStore.from_url(url)
