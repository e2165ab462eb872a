"""The PostgreSQL store's counts for the operator's view: tables its triggers keep (migration 2).

``flow_states`` and ``flow_steps`` are kept by triggers on ``flows`` in the
transaction of the statement that writes the flow, each count spread over 16
rows so that concurrent writers rarely wait on one; a read sums a few dozen rows
whatever the number of flows. Tokens: ``token_counts`` (live and dead per
provider, kept by triggers) and one range of the ``tokens_by_health`` index, the
live tokens expiring by the end of the refresh window, so the cost grows with
those, not with all tokens. Statements run on the caller's pooled connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowengine import (
    FlowCounts,
    HealthCount,
    StateCount,
    StepCount,
    Token,
    TokenCounts,
    TokenHealth,
    attention_order,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow

    from flowengine_postgres._queries import Queries

__all__ = ["flow_counts", "health_columns", "token_counts", "with_attention"]


def health_columns(token: Token) -> tuple[bool, bool, float | None]:
    """``dead``, ``refreshable`` and ``dead_at``: the clear columns a token is counted by."""
    return token.dead, token.refresh_token is not None, token.dead_at if token.dead else None


async def _rows(conn: AsyncConnection[TupleRow], query: Any, params: Any = ()) -> list[TupleRow]:
    return await (await conn.execute(query, params)).fetchall()


async def flow_counts(
    conn: AsyncConnection[TupleRow], q: Queries, since_hour: float, spec: str | None
) -> FlowCounts:
    """Flows per spec and state now, and the transitions of every hour from ``since_hour`` on."""
    states = await _rows(conn, q.flow_states)
    steps = await _rows(conn, q.flow_steps, (since_hour,))
    return FlowCounts.summed(
        (StateCount(s, state, int(n)) for s, state, n in states if spec in (None, s)),
        (
            StepCount(s, float(hour), source, event, dest, error or None, int(n))
            for s, hour, source, event, dest, error, n in steps
            if spec in (None, s)
        ),
    )


async def token_counts(
    conn: AsyncConnection[TupleRow], q: Queries, query: tuple[float, float, str | None, int]
) -> tuple[list[HealthCount], list[TupleRow]]:
    """The counts per provider and health, and the rows of the tokens that may need attention.

    ``query`` is ``(now, within, provider, limit)``; the rows (``key, record``) are at
    most ``2 * limit`` per provider, decoded by the caller outside the connection.
    """
    now, within, provider, limit = query
    until = now + within
    totals: dict[str, dict[bool, int]] = {}
    for name, dead, n in await _rows(conn, q.token_totals):
        if provider in (None, name):
            totals.setdefault(name, {})[bool(dead)] = int(n)
    counts: list[HealthCount] = []
    rows: list[TupleRow] = []
    for name in sorted(totals):
        found = {TokenHealth.DEAD: totals[name].get(True, 0)}
        live = totals[name].get(False, 0)
        ranged = await _rows(conn, q.token_range, {"now": now, "provider": name, "until": until})
        for refreshable, expired, n in ranged:
            health = (
                TokenHealth.EXPIRING
                if not expired
                else (TokenHealth.REFRESHABLE if refreshable else TokenHealth.EXPIRED)
            )
            found[health] = found.get(health, 0) + int(n)
            live -= int(n)
        found[TokenHealth.FRESH] = live
        counts.extend(HealthCount(name, h, n) for h, n in sorted(found.items()) if n)
        if limit:
            rows.extend(await _rows(conn, q.dead_first, (name, limit)))
            rows.extend(await _rows(conn, q.soonest, (name, until, limit)))
    return counts, rows


def with_attention(counts: list[HealthCount], tokens: list[Token], limit: int) -> TokenCounts:
    """The answer: counts, and each provider's first ``limit`` tokens in ``attention_order``."""
    by_provider: dict[str, list[Token]] = {}
    for token in tokens:
        by_provider.setdefault(token.provider, []).append(token)
    shown = [t for name in sorted(by_provider) for t in attention_order(by_provider[name])[:limit]]
    return TokenCounts(counts=tuple(counts), tokens=tuple(shown))
