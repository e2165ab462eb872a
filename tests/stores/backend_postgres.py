"""The PostgreSQL store: a fresh schema per URL in the ``test`` database, dropped afterwards.

Every helper talks to the server with psycopg directly, never through the
store under test.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flowengine as fe
from flowengine import _plugins as plugins

HOST, PORT, DBNAME, USER = "127.0.0.1", 5432, "test", "postgres"
SERVER = f"postgresql://{USER}@{HOST}:{PORT}/{DBNAME}"


def schema_of(url: str) -> str:
    """The schema a test URL names (``new_url`` always names one)."""
    return parse_qs(urlsplit(url).query)["schema"][0]


def connect() -> Any:
    """A sync autocommit connection to the test database."""
    import psycopg

    # 10 s: a bound for a loaded machine (2 s timed out under a second full run), not a window.
    return psycopg.connect(
        host=HOST, port=PORT, dbname=DBNAME, user=USER, autocommit=True, connect_timeout=10
    )


@functools.cache
def _reason_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'flowengine[postgres]')"
    try:
        connect().close()
    except psycopg.Error as exc:
        return f"cannot connect to {HOST}:{PORT}/{DBNAME} as {USER}: {str(exc).splitlines()[0]}"
    return None


class PostgresBackend:
    name = "postgres"
    durable = True
    upstream = (HOST, PORT)

    def unavailable(self) -> str | None:
        return _reason_unavailable()

    def new_url(self, tmp_path: Path) -> str:
        return f"{SERVER}?schema=fe_test_{uuid.uuid4().hex}"

    def open(self, url: str, clock: Callable[[], float]) -> fe.Store:
        return plugins.open_store(url)  # leases are timed by the database clock

    def via(self, url: str, host: str, port: int) -> str:
        return url.replace(f"{HOST}:{PORT}", f"{host}:{port}", 1) + "&command_timeout=1&connect_timeout=2"

    def age_leases(self, url: str, seconds: float) -> None:
        """Move every lease's expiry ``seconds`` earlier, as if that much database time had passed."""
        from psycopg import sql

        query = sql.SQL("UPDATE {} SET expires_at = expires_at - %s").format(
            sql.Identifier(schema_of(url), "leases")
        )
        with connect() as conn:
            conn.execute(query, (seconds,))

    def cleanup(self, url: str) -> None:
        from psycopg import sql

        with connect() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_of(url))))

    def _damage(self, url: str, table: str, column: str, key: str) -> None:
        from psycopg import sql

        query = sql.SQL("UPDATE {table} SET record = %s WHERE {column} = %s").format(
            table=sql.Identifier(schema_of(url), table), column=sql.Identifier(column)
        )
        with connect() as conn:
            assert conn.execute(query, (b'{"id": "half a rec\xff', key)).rowcount == 1

    def corrupt_flow(self, url: str, flow_id: str) -> None:
        self._damage(url, "flows", "id", flow_id)

    def corrupt_token(self, url: str, key: str) -> None:
        self._damage(url, "tokens", "key", key)

    def raw_dump(self, url: str) -> bytes:
        """Every value of every row of every table in the URL's schema, as bytes."""
        from psycopg import sql

        schema = schema_of(url)
        chunks: list[bytes] = []
        with connect() as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
                (schema,),
            ).fetchall()
            assert tables, f"schema {schema} has no tables"
            for (table,) in tables:
                for row in conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, table))):
                    for value in row:
                        chunks.append(value if isinstance(value, bytes) else str(value).encode())
        return b"\n".join(chunks)


BACKEND = PostgresBackend()
