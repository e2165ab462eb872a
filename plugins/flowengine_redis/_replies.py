"""What the Redis store's calls send and get back: lease times, replies as text, id chunks."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

from flowengine import RecordCodec, StoreError, Token

__all__ = [
    "CHUNK",
    "LATEST_EXPIRY",
    "chunks",
    "expiry_ms",
    "lease_ms",
    "readable_tokens",
    "server_time",
    "text",
]

log = logging.getLogger("flowengine.store")

# Ids per READ_FLOWS call: each call runs atomically on the server, so keep each one short.
CHUNK = 256
# Beyond this many seconds since the epoch (year ~33000) Redis refuses an expiry time.
LATEST_EXPIRY = 1e12


def lease_ms(ttl: float) -> int:
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"a lease needs a positive, finite ttl in seconds, not {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


def server_time(reply: Any) -> float:
    """Redis's ``TIME`` reply (seconds, microseconds) as Unix seconds."""
    seconds, micros = reply
    return int(seconds) + int(micros) / 1_000_000


def text(raw: object) -> str:
    """A key or id as Redis returned it (bytes: this client never decodes replies)."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def expiry_ms(expires_at: float, now: float, retention: float) -> int:
    """When Redis drops a flow by itself (ms since the epoch), or 0 for never.

    ``expires_at`` is on the engine's clock, which need not be this one (tests and
    replays use fixed clocks), so the record is always kept ``retention`` seconds
    past the later of it and ``now``: natural expiry only collects what nobody purged.
    """
    if not math.isfinite(expires_at):
        return 0
    at = max(expires_at, now) + retention
    return 0 if at > LATEST_EXPIRY else math.ceil(at * 1000)


def readable_tokens(
    codec: RecordCodec, keys: Sequence[str], rows: Sequence[Sequence[bytes | None]], where: str, skip: str
) -> Iterator[tuple[Token, bytes]]:
    """Each stored token of ``rows`` (provider, blob) and its blob.

    A damaged one is skipped and logged (``skip``: ``skipping``, ``cannot count``), but a
    missing key stops everything: every record would be unreadable.
    """
    for key, (_provider, blob) in zip(keys, rows, strict=True):
        if blob is None:
            continue
        try:
            yield codec.load_token(blob, key), blob
        except StoreError as exc:
            if exc.code == "store_key_missing":
                raise
            log.warning("%s token %r in the Redis store at %s: %s", skip, key, where, exc)
