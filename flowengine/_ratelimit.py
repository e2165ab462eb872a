"""A provider's rate limits as data: how many calls per period, and what an answer says of them.

Every frontend that sends many requests keeps to the same limits (Podio's 1,000
calls an hour per account and API key, your own cap per key) and reads the same
signals from the answers (``X-Rate-Limit-Limit``, ``X-Rate-Limit-Remaining``, a
420 or 429 with or without ``Retry-After``). So the numbers and the reading of
the answers live here, in the core; each frontend decides how it keeps count (in
one process for the batch, in a shared store for a Celery fleet). Pure: no
clock is read, ``now`` is an argument.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from flowengine._errors import ConfigError
from flowengine._retry import parse_retry_after

__all__ = ["RateFeedback", "RateLimit", "read_rate_feedback"]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([smhd]?)\s*")


@attrs.frozen
class RateLimit:
    """At most ``calls`` calls in any ``period`` seconds."""

    calls: int = attrs.field(validator=attrs.validators.ge(1))
    period: float = attrs.field(validator=attrs.validators.gt(0))

    @classmethod
    def parse(cls, text: str) -> RateLimit | None:
        """``"1000/1h"``, ``"1000/h"``, ``"50/2s"``, ``"5/300"`` (seconds); ``"none"`` is None."""
        if text.strip().lower() in ("none", "off", "0"):
            return None
        match = _RATE.fullmatch(text)
        if not match or int(match[1]) < 1 or (match[2] is not None and float(match[2]) <= 0):
            raise ConfigError(f"{text!r} is not a rate like 1000/1h, 250/h or 50/2s (or none)")
        return cls(int(match[1]), float(match[2] or 1) * _UNITS[match[3]])

    def __str__(self) -> str:
        return f"{self.calls}/{self.period:g}s"


@attrs.frozen
class RateFeedback:
    """What one answer says about an account's budget (None: it says nothing of that).

    ``limit``: the provider's limit for this account (``X-Rate-Limit-Limit``);
    ``remaining``: calls it says are left (``X-Rate-Limit-Remaining``);
    ``pause``: seconds to send nothing more for this account (a 420/429: its
    ``Retry-After``, else ``default_pause``).
    """

    limit: int | None = None
    remaining: int | None = None
    pause: float | None = None


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name, "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else None


def read_rate_feedback(
    status: int,
    headers: Mapping[str, str],
    *,
    rate_limit_status: Iterable[int],
    default_pause: float,
    now: float,
) -> RateFeedback:
    """Read an answer's rate-limit signals; ``headers`` have lower-case names (``HttpResponse``).

    A limiter applies them as the batch documents (docs/batch.md, "The rate-limit
    model"): a lower ``limit`` replaces its own, a ``remaining`` below what its
    own count expects is believed until a period has passed, and a ``pause``
    closes the account's budget. ``now`` is the wall-clock time an HTTP-date
    ``Retry-After`` is measured from.
    """
    limit = _header_int(headers, "x-rate-limit-limit")
    pause = None
    if status in frozenset(rate_limit_status):
        pause = parse_retry_after(headers, now)
        if pause is None:
            pause = default_pause
    return RateFeedback(
        limit=limit if limit is not None and limit >= 1 else None,
        remaining=_header_int(headers, "x-rate-limit-remaining"),
        pause=pause,
    )
