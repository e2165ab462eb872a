"""What ``create_app`` is configured with: its engines' names, ``base_url``, and the connection values
a start URL's query may give (SECURITY.md 36).

A value that can name any host (``flowengine.pinned_connection``: the generic ``oidc``
spec's ``issuer``, GitLab's ``host``) would let whoever opens ``/auth/NAME?issuer=...``
pick where the deployment's client secret and the person's code go. Such values, and every
value the deployment's configuration fixes, never come from a request: a query naming one
otherwise than configured is refused (``connection_pinned``, HTTP 400), never merged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from flowengine import (
    AsyncEngine,
    ConfigError,
    ErrorCode,
    FlowError,
    FlowSpec,
    parse_web_url,
    pinned_connection,
)

__all__ = ["QueryConnection", "check_engines", "check_pinned", "checked_base_url", "named_engines"]

_SPEC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class QueryConnection:
    """The connection values of a flow of ``spec`` started by a URL with a given query.

    ``pinned``: what configuration fixes (a query may repeat it, not change it);
    ``defaults``: what a query may change (a sandbox's examples). A query value for a
    variable that can name any host is refused unless it is the configured one. Made
    once per spec: which variables can name any host is worked out here, not per request.
    """

    def __init__(
        self, spec: FlowSpec, *, pinned: Mapping[str, str], defaults: Mapping[str, str] | None = None
    ) -> None:
        self.spec = spec
        self.free = pinned_connection(spec)
        self.pinned = dict(pinned)
        defaults = defaults or {}
        self.fixed = {**{n: v for n, v in defaults.items() if n in self.free}, **self.pinned}
        self.given = {**defaults, **self.pinned}

    def __call__(self, query: Mapping[str, str]) -> dict[str, str]:
        """The values for this query: ``connection_pinned`` when it names one it may not set."""
        if not self.spec.connection:
            return dict(self.given)
        asked = {key: value for key, value in query.items() if key in self.spec.connection}
        for name, value in asked.items():
            if (name in self.free or name in self.pinned) and self.fixed.get(name) != value:
                why = (
                    "it chooses the provider's host, so only the deployment's configuration gives it"
                    if name in self.free
                    else "this deployment's configuration sets it"
                )
                raise ConfigError(
                    f"a start URL may not set the connection value {name!r} of spec {self.spec.name!r}: "
                    + why,
                    code=ErrorCode.CONNECTION_PINNED,
                )
        return {**self.given, **asked}


def check_pinned(spec: FlowSpec, url_name: str, pinned: Mapping[str, str]) -> None:
    """``connection_pinned`` when a variable that can name any host has no configured value."""
    missing = sorted(
        name
        for name in pinned_connection(spec)
        if name not in pinned and spec.connection[name].default is None
    )
    if missing:
        given = " ".join(f"--connection {name}=VALUE" for name in missing)
        raise ConfigError(
            f"{url_name}: the connection value(s) {', '.join(missing)} of spec {spec.name!r} choose the "
            f"provider's host and cannot come from a start URL: configure them ({given}, "
            "create_app(pinned=...) or a connection hook)",
            code=ErrorCode.CONNECTION_PINNED,
        )


def check_engines(
    specs: Mapping[str, FlowSpec], pinned: Mapping[str, Mapping[str, str]], *, hooked: bool
) -> None:
    """``create_app``'s ``pinned``: known names; without a hook, every host-choosing value configured."""
    unknown = sorted(set(pinned) - set(specs))
    if unknown:
        raise ConfigError(f"pinned given for unknown spec names: {', '.join(unknown)}", code="config_invalid")
    if not hooked:
        for name, spec in specs.items():
            check_pinned(spec, name, pinned.get(name, {}))


def named_engines(engines: AsyncEngine | Mapping[str, AsyncEngine]) -> dict[str, AsyncEngine]:
    """The engines by URL name: one under its spec's name, or a mapping whose names are URL segments."""
    named = {engines.spec.name: engines} if isinstance(engines, AsyncEngine) else dict(engines)
    if not named:
        raise ConfigError("create_app needs at least one engine", code="config_invalid")
    for name, engine in named.items():
        if not isinstance(name, str) or not _SPEC_NAME.fullmatch(name):
            raise ConfigError(
                f"spec name {str(name)[:80]!r} cannot be a URL segment (letters, digits, '.', '_', '-')",
                code="config_invalid",
            )
        if not isinstance(engine, AsyncEngine):
            raise ConfigError(
                f"{name!r}: expected an AsyncEngine (for a sync Engine, pass its .engine)",
                code="config_invalid",
            )
    return named


def checked_base_url(base_url: str | None) -> str | None:
    """``base_url`` without its trailing ``/``, when it is an absolute http(s) URL without a query."""
    if base_url is None:
        return None
    try:
        parsed = parse_web_url(base_url)
    except FlowError as exc:
        raise ConfigError(f"base_url: {exc.message}", code="config_invalid") from None
    if parsed.query is not None:
        raise ConfigError(
            "base_url must be an absolute http(s) URL without query or fragment", code="config_invalid"
        )
    return base_url.rstrip("/")
