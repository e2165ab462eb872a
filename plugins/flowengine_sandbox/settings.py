"""Settings of the sandbox: who is registered with the fake Podio, and how it behaves.

The settings are mutable on purpose: a test flips `consent` or `rotate_refresh_tokens`
between two requests, and the running app reads the new value on the next request.
Every assignment is validated (attrs runs the validators on `setattr`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from attrs import Attribute, Factory, define, field, frozen, validators

from flowengine_sandbox.faults import FaultPlan
from flowengine_sandbox.ratelimit import RateLimitLedger

__all__ = [
    "CONSENT_MODES",
    "DEVICE_DECISIONS",
    "Consent",
    "DeviceDecision",
    "RegisteredClient",
    "SandboxApp",
    "SandboxSettings",
    "SandboxUser",
]

Consent = Literal["ask", "approve", "deny"]
CONSENT_MODES: tuple[Consent, ...] = ("ask", "approve", "deny")
#: What the next device poll hears (RFC 8628 §3.5): the person's decision at the verification
#: page (``ask``), or approved, denied, or the device code expired, whatever the page said.
DeviceDecision = Literal["ask", "approve", "deny", "expire"]
DEVICE_DECISIONS: tuple[DeviceDecision, ...] = ("ask", "approve", "deny", "expire")


@frozen
class RegisteredClient:
    """An API key, as registered on Podio's API key page."""

    client_id: str
    client_secret: str = field(repr=False)
    # Redirect URIs must be on this host or a subdomain of it; port and path are free.
    registered_domain: str


@frozen
class SandboxUser:
    """The person signed in to the sandbox, also the account of the password grant."""

    id: int
    email: str
    password: str = field(repr=False)


@frozen
class SandboxApp:
    """A Podio app that can authenticate itself with the app grant."""

    app_id: int
    app_token: str = field(repr=False)


def _default_clients() -> dict[str, RegisteredClient]:
    client = RegisteredClient("sandbox-client", "sandbox-secret", "127.0.0.1")
    return {client.client_id: client}


def _default_apps() -> dict[int, SandboxApp]:
    app = SandboxApp(2002, "sandbox-app-token")
    return {app.app_id: app}


def _seconds(_instance: Any, attribute: Attribute[int], value: object) -> None:
    # bool is an int to Python, but `"code_ttl": true` is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a whole number of seconds >= 0, got {value!r}")


def _optional_limit(_instance: Any, attribute: Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name} must be a whole number of calls >= 1, or null, got {value!r}")


def _window(_instance: Any, attribute: Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86_400:
        raise ValueError(f"{attribute.name} must be a number of seconds > 0 (at most a day), got {value!r}")


@define
class SandboxSettings:
    """How the sandbox behaves; changes apply from the next request on."""

    clients: dict[str, RegisteredClient] = Factory(_default_clients)
    consent: Consent = field(default="ask", validator=validators.in_(CONSENT_MODES))
    rotate_refresh_tokens: bool = field(default=True, validator=validators.instance_of(bool))
    code_ttl: int = field(default=600, validator=_seconds)
    access_ttl: int = field(default=28_800, validator=_seconds)
    refresh_ttl: int = field(default=28 * 86_400, validator=_seconds)
    # The person narrows the scope on the consent screen: when set, every grant gets
    # this scope instead of the requested one.
    granted_scope: str | None = field(
        default=None, validator=validators.optional(validators.instance_of(str))
    )
    user: SandboxUser = Factory(lambda: SandboxUser(1001, "user@example.com", "sandbox-password"))
    apps: dict[int, SandboxApp] = Factory(_default_apps)
    # Every expiry is computed with this clock, so a test can age codes and tokens.
    clock: Callable[[], float] = time.time
    # Faults to inject (faults.py): status codes, rate limits, timeouts, broken bodies.
    faults: FaultPlan = field(factory=FaultPlan, validator=validators.instance_of(FaultPlan))
    # Podio's rate limits (ratelimit.py): calls per window per user/app and API key
    # (None: no limit), optionally per API key across its accounts, and the ledger.
    rate_limit: int | None = field(default=1000, validator=_optional_limit)
    client_rate_limit: int | None = field(default=None, validator=_optional_limit)
    rate_limit_window: float = field(default=3600.0, validator=_window)
    rate_limits: RateLimitLedger = field(
        factory=RateLimitLedger, validator=validators.instance_of(RateLimitLedger)
    )
    # The device grant (RFC 8628) of any spec that declares one: the decision the next poll
    # hears, how many of the next polls are answered slow_down, the interval the
    # device authorization answer asks for, and how long a device code lives.
    device: DeviceDecision = field(default="ask", validator=validators.in_(DEVICE_DECISIONS))
    device_slow_down: int = field(default=0, validator=_seconds)
    device_interval: int = field(default=5, validator=_seconds)
    device_ttl: int = field(default=600, validator=_seconds)
