"""The PostgreSQL store: flows, tokens and leases shared by many workers (psycopg 3).

Selected by ``postgresql://user[:password]@host[:port]/db`` (or ``postgres://``),
with options in the query string:

- ``schema=NAME``: the schema holding the tables (default ``flowengine``), made
  and migrated on first use; workers sharing a schema share flows and tokens;
- ``key_file=PATH``: seal records with this Fernet key (else ``FLOWENGINE_KEY``);
- ``min_size=``/``max_size=``: the connection pool's bounds (default 1 and 10);
- ``command_timeout=SECONDS`` (default 5): the longest one store call may take,
  waiting for a pooled connection included; past it the call fails with
  ``store_unavailable`` at once (a server that accepts and never answers
  cannot hold a caller longer);
- libpq's ``connect_timeout`` (default 10 s, also the longest wait for a pooled
  connection), ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``,
  ``sslcrl`` and ``application_name``, passed through.

The pool checks each connection as it hands it out, so after an outage calls
work again without a restart. Leases are timed by the database clock.

Importing this package does not import psycopg; the store does, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowengine import hookimpl, lazy_exports

if TYPE_CHECKING:
    from flowengine_postgres._migrations import SCHEMA_VERSION
    from flowengine_postgres._store import PostgresStore
    from flowengine_postgres._url import PostgresURL, parse_url

__all__ = ["SCHEMA_VERSION", "PostgresStore", "PostgresURL", "flowengine_store", "parse_url"]


# The store (and its driver) load on first use of the name, not with the plugin; so do the URL's
# parser and the schema's version (finding the plugins, to load a spec, needs none of them).
__getattr__ = lazy_exports(
    __name__,
    {
        "PostgresStore": "._store",
        "SCHEMA_VERSION": "._migrations",
        "PostgresURL": "._url",
        "parse_url": "._url",
    },
)


@hookimpl
def flowengine_store(url: str) -> PostgresStore | None:
    """A PostgresStore for ``postgresql://`` and ``postgres://`` URLs (it connects on first use), else None.

    A malformed URL raises ``ConfigError`` (``store_url_invalid``) here, before anything connects.
    """
    from flowengine_postgres._url import SCHEMES

    if url.split(":", 1)[0].lower() not in SCHEMES:
        return None
    from flowengine_postgres._store import PostgresStore

    return PostgresStore.from_url(url)
