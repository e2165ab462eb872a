"""The SQLite store's counts for the operator's view: read from tables its triggers keep.

``flow_states`` and ``flow_steps`` are kept by triggers on ``flows`` (see
``_schema``), in the transaction of the statement that writes the flow; reading
them costs the same with ten flows or a million. Tokens are counted from
``token_counts`` (live and dead per provider, kept by triggers) and one range of
the ``tokens_by_health`` index: the live tokens expiring before the end of the
refresh window, so the cost grows with those, not with all tokens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from flowengine import (
    FlowCounts,
    HealthCount,
    RecordCodec,
    StateCount,
    StepCount,
    StoreError,
    Token,
    TokenCounts,
    TokenHealth,
    attention_order,
)

from flowengine_sqlite._schema import immediate

__all__ = ["classify_tokens", "flow_counts", "token_counts", "token_health_columns"]

_UNCLASSIFIED = "SELECT key, record FROM tokens WHERE dead IS NULL"
_LIVE_RANGE = (
    "SELECT refreshable, expires_at <= ?, count(*) FROM tokens"
    " WHERE provider = ? AND dead = 0 AND expires_at <= ? GROUP BY 1, 2"
)
_DEAD_FIRST = (
    "SELECT key, provider, record FROM tokens WHERE provider = ? AND dead = 1 ORDER BY dead_at DESC LIMIT ?"
)
_SOONEST = (
    "SELECT key, provider, record FROM tokens"
    " WHERE provider = ? AND dead = 0 AND expires_at <= ? ORDER BY expires_at LIMIT ?"
)


def token_health_columns(token: Token) -> tuple[int, int, float | None]:
    """``dead``, ``refreshable`` and ``dead_at``: the clear columns a token is counted by."""
    return int(token.dead), int(token.refresh_token is not None), token.dead_at if token.dead else None


def flow_counts(conn: sqlite3.Connection, since_hour: float, spec: str | None) -> FlowCounts:
    """Flows per spec and state now, and the transitions of every hour from ``since_hour`` on."""
    states = conn.execute("SELECT spec, state, n FROM flow_states").fetchall()
    steps = conn.execute(
        "SELECT spec, hour, source, event, dest, error, n FROM flow_steps WHERE hour >= ?", (since_hour,)
    ).fetchall()
    return FlowCounts.summed(
        (StateCount(s, state, n) for s, state, n in states if spec in (None, s)),
        (
            StepCount(s, hour, source, event, dest, error or None, n)
            for s, hour, source, event, dest, error, n in steps
            if spec in (None, s)
        ),
    )


def classify_tokens(conn: sqlite3.Connection, codec: RecordCodec) -> list[str]:
    """Fill the count columns of tokens stored before this version (their ``dead`` is NULL).

    They need the codec (their records may be sealed), so this runs in Python, in
    one transaction, each row written only if its record is still the one decoded.
    Only tokens written before the upgrade are ever unclassified, so after the first
    count this finds nothing, through a partial index. Returns the keys of records
    that cannot be read (left unclassified and uncounted: the caller warns).
    """
    rows = conn.execute(_UNCLASSIFIED).fetchall()
    unreadable: list[str] = []
    if not rows:
        return unreadable
    with immediate(conn):
        for key, record in rows:
            try:
                token = codec.load_token(record, key)
            except StoreError as exc:
                if exc.code == "store_key_missing":
                    raise
                unreadable.append(key)
                continue
            conn.execute(
                "UPDATE tokens SET dead = ?, refreshable = ?, dead_at = ? WHERE key = ? AND record = ?",
                (*token_health_columns(token), key, record),
            )
    return unreadable


def _providers(conn: sqlite3.Connection, provider: str | None) -> list[str]:
    rows = conn.execute("SELECT DISTINCT provider FROM token_counts ORDER BY provider").fetchall()
    return [name for (name,) in rows if provider is None or name == provider]


def _health_counts(conn: sqlite3.Connection, name: str, now: float, until: float) -> list[HealthCount]:
    totals = dict(conn.execute("SELECT dead, n FROM token_counts WHERE provider = ?", (name,)).fetchall())
    live = totals.get(0, 0)
    found = {TokenHealth.DEAD: totals.get(1, 0)}
    for refreshable, expired, n in conn.execute(_LIVE_RANGE, (now, name, until)).fetchall():
        health = (
            TokenHealth.EXPIRING
            if not expired
            else (TokenHealth.REFRESHABLE if refreshable else TokenHealth.EXPIRED)
        )
        found[health] = found.get(health, 0) + n
        live -= n
    found[TokenHealth.FRESH] = live
    return [HealthCount(name, health, n) for health, n in sorted(found.items()) if n]


def token_counts(
    conn: sqlite3.Connection,
    load: Callable[[list[Any]], list[Token]],
    query: tuple[float, float, str | None, int],
) -> TokenCounts:
    """Tokens per provider by health at ``now``, and up to ``limit`` per provider needing attention.

    ``query`` is ``(now, within, provider, limit)``; ``load`` decodes rows, skipping damaged ones.
    """
    now, within, provider, limit = query
    until = now + within
    counts: list[HealthCount] = []
    shown: list[Token] = []
    for name in _providers(conn, provider):
        counts.extend(_health_counts(conn, name, now, until))
        if limit:
            dead = load(conn.execute(_DEAD_FIRST, (name, limit)).fetchall())
            soon: Sequence[Token] = load(conn.execute(_SOONEST, (name, until, limit)).fetchall())
            shown.extend(attention_order([*dead, *soon])[:limit])
    return TokenCounts(counts=tuple(counts), tokens=tuple(shown))
