"""Every statement the store runs, composed once per schema with ``psycopg.sql``.

The schema name is a validated identifier and is still quoted by
``sql.Identifier``: no statement is ever built by string formatting. Each
store call runs one statement (``purge``: two), each its own transaction (the
pool's connections are in autocommit mode); atomicity comes from the statement:
``UPDATE … WHERE version = %s`` for compare-and-set, ``INSERT … ON CONFLICT``
for create and leases. This module imports psycopg, so the store imports it
only when it first connects.
"""

from __future__ import annotations

import attrs
from psycopg import sql

__all__ = ["Queries"]

# Lease times come from the database clock, so workers with skewed clocks agree.
_DB_NOW = "extract(epoch FROM clock_timestamp())::double precision"

_TEMPLATES: dict[str, str] = {
    "create_flow": (
        "INSERT INTO {flows} (id, spec, state, state_hash, version, created_at, expires_at, record,"
        " step_hour, step_source, step_event, step_error)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
    ),
    "get_flow": "SELECT record FROM {flows} WHERE id = %s",
    "get_flow_by_state": "SELECT id, record FROM {flows} WHERE state_hash = %s",
    "compare_and_set": (
        "UPDATE {flows} SET spec = %s, state = %s, state_hash = %s, version = %s,"
        " created_at = %s, expires_at = %s, record = %s, step_hour = %s, step_source = %s,"
        " step_event = %s, step_error = %s WHERE id = %s AND version = %s"
    ),
    "delete_flow": "DELETE FROM {flows} WHERE id = %s",
    "purge_flows": "DELETE FROM {flows} WHERE expires_at < %s",
    "put_token": (
        "INSERT INTO {tokens} (key, provider, expires_at, record, dead, refreshable, dead_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (key) DO UPDATE SET provider = EXCLUDED.provider,"
        " expires_at = EXCLUDED.expires_at, record = EXCLUDED.record, dead = EXCLUDED.dead,"
        " refreshable = EXCLUDED.refreshable, dead_at = EXCLUDED.dead_at"
    ),
    # The counts of the operator's view (migration 2): sums over the slots the triggers spread them on.
    "purge_steps": "DELETE FROM {flow_steps} WHERE hour < %s",
    "flow_states": "SELECT spec, state, sum(n)::bigint FROM {flow_states} GROUP BY spec, state",
    "flow_steps": (
        "SELECT spec, hour, source, event, dest, error, sum(n)::bigint FROM {flow_steps}"
        " WHERE hour >= %s GROUP BY spec, hour, source, event, dest, error"
    ),
    "token_totals": "SELECT provider, dead, sum(n)::bigint FROM {token_counts} GROUP BY provider, dead",
    # The live tokens expiring by the end of the window: one range of tokens_by_health per provider.
    "token_range": (
        "SELECT refreshable, expires_at <= %(now)s, count(*) FROM {tokens}"
        " WHERE provider = %(provider)s AND dead = false AND expires_at <= %(until)s GROUP BY 1, 2"
    ),
    "dead_first": (
        "SELECT key, record FROM {tokens} WHERE provider = %s AND dead ORDER BY dead_at DESC LIMIT %s"
    ),
    "soonest": (
        "SELECT key, record FROM {tokens} WHERE provider = %s AND dead = false AND expires_at <= %s"
        " ORDER BY expires_at LIMIT %s"
    ),
    "unclassified": "SELECT key, record FROM {tokens} WHERE dead IS NULL",
    "classify": (
        "UPDATE {tokens} SET dead = %s, refreshable = %s, dead_at = %s WHERE key = %s AND record = %s"
    ),
    "get_token": "SELECT record FROM {tokens} WHERE key = %s",
    "delete_token": "DELETE FROM {tokens} WHERE key = %s",
    # Insert the lease, or take over a row whose lease has run out; a live
    # holder's row is left alone and nothing is returned. Racing inserts of one
    # key serialise on the primary key, and the loser re-checks the WHERE
    # against the winner's row: one winner.
    "acquire": (
        "INSERT INTO {leases} AS held (key, owner, expires_at)"
        " VALUES (%(key)s, %(owner)s, {db_now} + %(ttl)s)"
        " ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at"
        " WHERE held.expires_at <= {db_now}"
        " RETURNING expires_at"
    ),
    # Extend a lease only while its owner holds it and it has not run out (by the database clock).
    "renew": (
        "UPDATE {leases} SET expires_at = {db_now} + %(ttl)s"
        " WHERE key = %(key)s AND owner = %(owner)s AND expires_at > {db_now}"
        " RETURNING expires_at"
    ),
    "release": "DELETE FROM {leases} WHERE key = %s AND owner = %s",
    "purge_leases": "DELETE FROM {leases} WHERE expires_at <= {db_now}",
}


@attrs.frozen(slots=True)
class Queries:
    """The statements for one schema; the two listings add their filters at call time."""

    create_flow: sql.Composed
    get_flow: sql.Composed
    get_flow_by_state: sql.Composed
    compare_and_set: sql.Composed
    delete_flow: sql.Composed
    purge_flows: sql.Composed
    put_token: sql.Composed
    get_token: sql.Composed
    delete_token: sql.Composed
    acquire: sql.Composed
    renew: sql.Composed
    release: sql.Composed
    purge_leases: sql.Composed
    purge_steps: sql.Composed
    flow_states: sql.Composed
    flow_steps: sql.Composed
    token_totals: sql.Composed
    token_range: sql.Composed
    dead_first: sql.Composed
    soonest: sql.Composed
    unclassified: sql.Composed
    classify: sql.Composed
    flows: sql.Identifier
    tokens: sql.Identifier

    @classmethod
    def for_schema(cls, schema: str) -> Queries:
        """Compose every statement against ``schema``'s tables."""
        names = ("flows", "tokens", "leases", "flow_states", "flow_steps", "token_counts")
        tables = {name: sql.Identifier(schema, name) for name in names}
        db_now = sql.SQL(_DB_NOW)
        composed = {name: sql.SQL(text).format(**tables, db_now=db_now) for name, text in _TEMPLATES.items()}
        return cls(**composed, flows=tables["flows"], tokens=tables["tokens"])

    def list_flows(self, *, spec: bool, state: bool) -> sql.Composed:
        """``SELECT id, record`` of flows, oldest first, filtered on the columns asked for."""
        conditions = [text for text, wanted in (("spec = %s", spec), ("state = %s", state)) if wanted]
        return self._select(self.flows, "id", conditions, "created_at, id")

    def list_tokens(self, *, provider: bool, expiring_before: bool) -> sql.Composed:
        """``SELECT key, record`` of tokens by key; a token of unknown expiry (NULL) never expires before."""
        filters = (("provider = %s", provider), ("expires_at < %s", expiring_before))
        return self._select(self.tokens, "key", [text for text, wanted in filters if wanted], "key")

    @staticmethod
    def _select(table: sql.Identifier, key: str, conditions: list[str], order: str) -> sql.Composed:
        where = (
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join(map(sql.SQL, conditions))
            if conditions
            else sql.SQL("")
        )
        return sql.SQL("SELECT {key}, record FROM {table}{where} ORDER BY {order}").format(
            key=sql.Identifier(key), table=table, where=where, order=sql.SQL(order)
        )
