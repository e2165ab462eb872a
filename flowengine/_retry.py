"""How long to wait before trying again: backoff with jitter, and the provider's ``Retry-After``."""

from __future__ import annotations

import random
from collections.abc import Mapping

import attrs

__all__ = ["RetryPolicy", "parse_retry_after"]


@attrs.frozen
class RetryPolicy:
    """Backoff for requests that are safe to repeat (refresh, grant, revoke; never a code exchange)."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: full jitter, or ``Retry-After``."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from ``Retry-After`` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).

    ``headers`` has lower-case names (as ``HttpResponse.headers`` does); None when
    the header is absent or unreadable.
    """
    raw = headers.get("retry-after", "").strip()
    if raw.isascii() and raw.isdigit() and len(raw) <= 9:
        return float(raw)
    if not raw or len(raw) > 64:
        return None
    from email.utils import parsedate_to_datetime  # email.* costs ms at import; dates are rare

    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
