"""How a fleet is configured: from each worker's environment, never from a message.

A task's message names what to do (a spec, a token key, a flow id, the name of a
set of grant inputs) and nothing that would let a reader of the broker act:
client secrets, store passwords and grant inputs come from the worker's own
environment and files, exactly as for ``flowengine login`` and ``batch``
(``FLOWENGINE_<SPEC>_CLIENT_ID`` / ``_CLIENT_SECRET`` or config.toml). The
broker may be shared, logged or inspected; what is in it is harmless.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

import attrs
import click
from flowengine import ConfigError, RateLimit, RetryPolicy
from flowengine.cli import STORE_ENV, parse_duration

from ._limiter import PODIO_LIMIT

__all__ = ["SHARED_SCHEMES", "FleetSettings", "check_shared", "shown_url"]

#: Stores (and limiters) every worker of a fleet can reach.
SHARED_SCHEMES = frozenset({"redis", "rediss", "postgresql", "postgres"})
_PREFIX = "FLOWENGINE_CELERY_"


def shown_url(url: str) -> str:
    """``scheme://host:port/path`` of a URL: what logs and errors may name (no password, no options)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_shared(url: str, what: str) -> str:
    """``url`` if every worker can share it (Redis, PostgreSQL); ``store_not_shared`` else."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in SHARED_SCHEMES:
        raise ConfigError(
            f"a Celery fleet needs a {what} every worker shares (redis:// or postgresql://), "
            f"not {scheme}://: set {STORE_ENV}",
            code="store_not_shared",
        )
    return url


def _duration(env: Mapping[str, str], name: str, default: str) -> float:
    text = env.get(_PREFIX + name, default)
    try:
        return parse_duration(text)
    except click.BadParameter:
        raise ConfigError(f"{_PREFIX}{name}={text!r} is not a duration like 90s, 30m, 1h or 2d") from None


def _rate(env: Mapping[str, str], name: str, default: str) -> RateLimit | None:
    text = env.get(_PREFIX + name, default)
    try:
        return RateLimit.parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{_PREFIX}{name}: {exc.message}") from None


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(_PREFIX + name, str(default)).strip()
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ConfigError(f"{_PREFIX}{name}={text!r} is not a whole number >= 1")
    return int(text)


@attrs.frozen
class FleetSettings:
    """Everything a worker (or an enqueuer) needs to know; URLs are kept out of ``repr``.

    ``specs``: the specs this fleet serves (keep_fresh refreshes their tokens;
    a message naming another is refused). ``account_limit``/``client_limit``:
    the rate limits, as the batch's ``--rate-limit``/``--client-rate-limit``.
    ``window``/``every``: keep_fresh enqueues tokens expiring within ``window``,
    every ``every`` seconds. ``sandbox``: run against the emulator at this URL.
    ``max_wait``: the longest a task waits for the limiter before going back to
    the queue. ``resend_after``: how long a refresh whose worker died with its
    request on the wire is not sent again. ``visibility_timeout`` and ``broker_prefix`` (a key prefix):
    Redis broker only (see docs/deploy.md).
    """

    broker: str = attrs.field(repr=shown_url)
    store: str = attrs.field(repr=shown_url)
    limiter: str = attrs.field(repr=shown_url)
    specs: tuple[str, ...] = ("podio",)
    account_limit: RateLimit | None = PODIO_LIMIT
    client_limit: RateLimit | None = None
    window: float = 7200.0
    every: float = 900.0
    queue: str = "flowengine"
    sandbox: str | None = None
    lease_ttl: float = 60.0
    resend_after: float = 900.0
    retry: RetryPolicy = RetryPolicy()
    max_wait: float = 10.0
    concurrency: int = 8
    task_retries: int = 10
    visibility_timeout: float = 3600.0
    broker_prefix: str | None = None
    grants_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FleetSettings:
        """Read ``FLOWENGINE_STORE`` and the ``FLOWENGINE_CELERY_*`` variables (docs/deploy.md lists them)."""
        env = os.environ if env is None else env
        store = env.get(STORE_ENV, "").strip()
        if not store:
            raise ConfigError(f"a fleet's workers need {STORE_ENV}: a redis:// or postgresql:// store URL")
        check_shared(store, "store")
        limiter = check_shared(env.get(_PREFIX + "LIMITER", "").strip() or store, "rate limiter")
        specs = tuple(s.strip() for s in env.get(_PREFIX + "SPECS", "podio").split(",") if s.strip())
        if not specs:
            raise ConfigError(f"{_PREFIX}SPECS names no spec")
        return cls(
            broker=env.get(_PREFIX + "BROKER", "").strip() or "amqp://guest:guest@127.0.0.1:5672//",
            store=store,
            limiter=limiter,
            specs=specs,
            account_limit=_rate(env, "RATE_LIMIT", "1000/1h"),
            client_limit=_rate(env, "CLIENT_RATE_LIMIT", "none"),
            window=_duration(env, "WINDOW", "2h"),
            every=_duration(env, "EVERY", "15m"),
            queue=env.get(_PREFIX + "QUEUE", "").strip() or "flowengine",
            sandbox=env.get(_PREFIX + "SANDBOX", "").strip() or None,
            lease_ttl=_duration(env, "LEASE_TTL", "60s"),
            resend_after=_duration(env, "RESEND_AFTER", "15m"),
            retry=RetryPolicy(attempts=_count(env, "RETRIES", 4)),
            max_wait=_duration(env, "MAX_WAIT", "10s"),
            concurrency=_count(env, "CONCURRENCY", 8),
            visibility_timeout=_duration(env, "VISIBILITY_TIMEOUT", "1h"),
            broker_prefix=env.get(_PREFIX + "BROKER_PREFIX", "").strip() or None,
            grants_file=env.get(_PREFIX + "GRANTS", "").strip() or None,
        )

    def serves(self, spec: str) -> bool:
        """True when this fleet is configured for ``spec``."""
        return spec in self.specs
