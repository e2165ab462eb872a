"""The records the engine keeps: flows, tokens, and what happened to them.

Records are small frozen slotted attrs classes; a change is a new record made
with ``attrs.evolve``, so a record handed out can never change under its
reader. Secrets are ``repr=False``. ``to_dict``/``from_dict`` give stores a
plain, JSON-ready form; reading a damaged one raises ``StoreError`` naming it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

import attrs
import cattrs

from flowengine._errors import FlowError, ProviderError, StoreError
from flowengine._security import fingerprint

__all__ = [
    "AccountRef",
    "DeviceAuthorization",
    "ErrorInfo",
    "Flow",
    "HistoryEntry",
    "Outcome",
    "Token",
    "evolve",
    "flow_from_dict",
    "flow_to_dict",
    "token_from_dict",
    "token_to_dict",
]

_R = TypeVar("_R")


#: Each record class's copier, made on first use (``_copier``).
_COPIERS: dict[type, Callable[[Any, dict[str, Any]], Any]] = {}


def evolve(record: _R, **changes: Any) -> _R:
    """``attrs.evolve(record, **changes)`` at a fraction of its cost: a flow makes ten, of 30 fields.

    A field no class has is a ``TypeError``, as ``attrs.evolve`` says.
    """
    cls = type(record)
    copier = _COPIERS.get(cls) or _COPIERS.setdefault(cls, _copier(cls))
    made: _R = copier(record, changes)
    return made


def _copier(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    """A function copying a record of ``cls`` with changes.

    For a plain frozen slotted attrs class (every field set by ``__init__`` as given: no
    validator, converter, alias or post-init hook, no slot of attrs' own), the copy is a
    new instance with every slot set straight from the record and then the changes, in
    code written out once per class: ``__init__`` through 30 keyword arguments costs more
    than twice that. Any other class is copied through its ``__init__``.
    """
    fields = attrs.fields(cls)
    names = tuple(f.name for f in fields)
    plain = (
        all(f.init and f.validator is None and f.converter is None and f.alias == f.name for f in fields)
        and not hasattr(cls, "__attrs_post_init__")
        and set(vars(cls).get("__slots__", ())) - {"__weakref__"} == set(names)
    )
    if not plain:
        values = operator.attrgetter(*names)

        def through_init(record: Any, changes: dict[str, Any]) -> Any:
            current = values(record)
            given = dict(zip(names, current if len(names) > 1 else (current,), strict=True))
            return cls(**{**given, **changes})

        return through_init
    lines = [
        "def copy(record, changes):",
        "    if not changes.keys() <= names:",
        "        raise TypeError(f'{cls.__name__} has no field(s) {sorted(changes.keys() - names)}')",
        "    made = new(cls)",
        *(f"    put(made, {name!r}, record.{name})" for name in names),
        "    for name, value in changes.items():",
        "        put(made, name, value)",
        "    return made",
    ]
    scope: dict[str, Any] = {"cls": cls, "names": frozenset(names), "new": object.__new__}
    scope["put"] = object.__setattr__  # frozen: only a new record's slots are ever set
    # The source is made of the class's own field names (identifiers), nothing from outside.
    exec(compile("\n".join(lines), f"<flowengine copier of {cls.__name__}>", "exec"), scope)  # noqa: S102
    copy: Callable[[Any, dict[str, Any]], Any] = scope["copy"]
    return copy


class Outcome(StrEnum):
    """How a flow ended; each final state of a machine declares one."""

    GRANTED = "granted"
    DENIED = "denied"
    EXPIRED = "expired"
    FAILED = "failed"


@attrs.frozen(slots=True)
class AccountRef:
    """Whom a token acts for, as the provider names it (Podio: ``ref.type``/``ref.id``)."""

    type: str
    id: str | int

    def __str__(self) -> str:
        return f"{self.type}:{self.id}"


@attrs.frozen(slots=True)
class ErrorInfo:
    """Why a flow failed or was denied: a stable code and what the provider said."""

    code: str
    message: str
    description: str | None = None
    provider_error: str | None = None
    reason: str | None = None
    status: int | None = None

    @classmethod
    def from_error(cls, error: FlowError) -> ErrorInfo:
        """Keep what a FlowError says, in a form a store can hold."""
        if isinstance(error, ProviderError):
            return cls(
                code=error.code,
                message=error.message,
                description=error.description,
                provider_error=error.provider_error,
                reason=_str_or_none(error.body.get("error_reason")),
                status=error.status,
            )
        return cls(code=error.code, message=error.message)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


@attrs.frozen(slots=True)
class HistoryEntry:
    """One transition: when, on which trigger, from where to where, and any error code."""

    at: float
    event: str
    source: str
    dest: str
    error: str | None = None


@attrs.frozen(slots=True)
class DeviceAuthorization:
    """What a device authorization request answered (RFC 8628 §3.2): what the person is shown.

    ``device_code`` is the device's credential for its polls: a secret like an authorization
    code (never shown, encrypted at rest with the flow, forgotten once the flow ends). The
    ``user_code`` and the verification URIs are for the person: shown, never secret.
    """

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None = None
    #: Seconds between polls the provider asked for (RFC 8628 §3.5: 5 when it says nothing).
    interval: int = 5
    device_code: str | None = attrs.field(default=None, repr=False)


@attrs.frozen(slots=True)
class Flow:
    """One authorization flow, from the redirect to the token.

    ``state`` is the machine state (``redirected``, ``exchanged``, ...); the
    OAuth ``state`` parameter is never kept, only its SHA-256 (``state_hash``).
    ``authorization_url`` is set only on the record ``start()`` returns and is
    never stored, since it carries the ``state`` parameter in clear.
    """

    id: str
    spec: str
    state: str
    created_at: float
    expires_at: float
    client_id: str
    redirect_uri: str
    state_hash: str = attrs.field(repr=False)
    version: int = 1
    scope: str | None = None
    session_hash: str | None = attrs.field(default=None, repr=False)
    code_verifier: str | None = attrs.field(default=None, repr=False)
    code: str | None = attrs.field(default=None, repr=False)
    callback_digest: str | None = attrs.field(default=None, repr=False)
    #: How the flow ended (set when it enters a final state, from the spec's machine).
    outcome: Outcome | None = None
    #: The spec's connection values this flow was started with (``start(connection=...)``).
    connection: dict[str, str] = attrs.field(factory=dict)
    #: The endpoints those values resolve to: the only ones its code may be sent to (SECURITY.md 4).
    endpoints: dict[str, str] = attrs.field(factory=dict)
    #: Callback parameters the spec keeps (``callback.keep``), once the callback came.
    kept: dict[str, str] = attrs.field(factory=dict)
    #: SHA-256 of the ``{nonce}`` the authorization request sent, when it sent one.
    nonce_hash: str | None = attrs.field(default=None, repr=False)
    #: Who the caller says the person is (``start(subject=...)``); names the token when the
    #: provider's answer names no account (SECURITY.md 32).
    subject: str | None = None
    account: AccountRef | None = None
    token_key: str | None = None
    token_fingerprint: str | None = None
    granted_scope: str | None = None
    error: ErrorInfo | None = None
    history: tuple[HistoryEntry, ...] = ()
    #: A device flow's user code and verification URIs (RFC 8628); None for a redirect flow.
    device: DeviceAuthorization | None = None
    #: The validated ID token's claims (OpenID Connect), without ``nonce`` and ``at_hash``.
    claims: dict[str, Any] = attrs.field(factory=dict, repr=False)
    authorization_url: str | None = attrs.field(default=None, repr=False, eq=False)

    def redacted(self) -> Flow:
        """This flow without its secrets (code, verifier, device code, URL): safe to hand to observers."""
        device_code = self.device is not None and self.device.device_code is not None
        clean = self.code is None and self.code_verifier is None and self.authorization_url is None
        if clean and not device_code:
            return self  # already clean (most transitions): records are frozen, so sharing is safe
        device = evolve(self.device, device_code=None) if self.device is not None else None
        return evolve(self, code=None, code_verifier=None, authorization_url=None, device=device)

    @property
    def pending(self) -> bool:
        """True while the flow has not reached a final state."""
        return self.outcome is None

    @property
    def missing_scopes(self) -> frozenset[str]:
        """Requested scopes the provider did not grant (empty when unknown or all granted)."""
        if not self.scope or self.granted_scope is None:
            return frozenset()
        return frozenset(self.scope.split()) - frozenset(self.granted_scope.split())


#: ``scheme token``: two runs of visible ASCII and one space; nothing that can end a header line.
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+ [\x21-\x7e]+")


@attrs.frozen(slots=True)
class Token:
    """A token the engine obtained, with what is needed to use and refresh it."""

    provider: str
    account: AccountRef
    access_token: str = attrs.field(repr=False)
    token_type: str
    obtained_at: float
    expires_at: float | None = None
    refresh_token: str | None = attrs.field(default=None, repr=False)
    scope: str | None = None
    client_id: str | None = None
    header_scheme: str = "Bearer"
    dead: bool = False
    #: When the grant was found dead (the refresh that met ``invalid_grant``); None while alive.
    dead_at: float | None = None
    #: The token endpoint that issued it: its refresh token is never sent anywhere else.
    token_endpoint: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict, repr=False)
    #: The connection values of the flow that obtained it: refresh and revoke go to that tenant.
    connection: dict[str, str] = attrs.field(factory=dict)
    #: The callback parameters the spec keeps (QuickBooks' ``realmId``), from that flow.
    kept: dict[str, str] = attrs.field(factory=dict)
    #: The file of the spec that obtained it, when it was loaded from a file (``flowengine tokens
    #: refresh`` reads it again from there); None for a spec given as text or a mapping.
    spec_source: str | None = None
    #: OpenID Connect: the validated ID token's claims (and userinfo's), never ``nonce``/``at_hash``.
    claims: dict[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def key(self) -> str:
        """The store key: one token per provider, tenant and account.

        ``podio:user:1001``; with connection or kept values, each comes after an
        ``@`` (``zendesk@acme:user:42``), so tokens of two tenants never share a key.
        """
        account = self.account
        if not self.connection and not self.kept:  # most tokens: no tenant to name
            return f"{self.provider}:{account.type}:{account.id}"
        where = "".join(f"@{value}" for value in (*self.connection.values(), *self.kept.values()))
        return f"{self.provider}{where}:{account.type}:{account.id}"

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible name for the access token, safe to show."""
        return fingerprint(self.access_token)

    def authorization_header(self) -> str:
        """The ``Authorization`` header value (Podio: ``OAuth2 <token>``); never a line break.

        A token made by hand (or read from an old store) holding anything but visible
        ASCII raises ``ProviderError`` (``invalid_token_response``, SECURITY.md 29).
        """
        value = f"{self.header_scheme} {self.access_token}"
        if not _HEADER_VALUE.fullmatch(value):
            raise ProviderError("this token is not safe in a header", code="invalid_token_response")
        return value

    def expires_within(self, seconds: float, now: float) -> bool:
        """True when the token expires within ``seconds`` of ``now`` (never, if unknown)."""
        return self.expires_at is not None and self.expires_at - now <= seconds


_store_converter = cattrs.Converter()
_store_converter.register_structure_hook(str | int, lambda v, _t: v)


def _from(data: Any, cls: type[_R], what: str, name: str) -> _R:
    try:
        return _store_converter.structure(data, cls)
    except Exception as exc:
        detail = cattrs.transform_error(exc) if isinstance(exc, cattrs.BaseValidationError) else [str(exc)]
        raise StoreError(
            f"stored {what} {name!r} is unreadable: {'; '.join(detail)[:200]}",
            code="store_corrupt",
            retryable=False,
        ) from None


def flow_to_dict(flow: Flow) -> dict[str, Any]:
    """A plain dict of the flow, without ``authorization_url``."""
    data: dict[str, Any] = _store_converter.unstructure(flow)
    del data["authorization_url"]
    return data


def flow_from_dict(data: Any, name: str = "?") -> Flow:
    """Read back a flow written by ``flow_to_dict``; ``StoreError`` if damaged."""
    return _from(data, Flow, "flow", str(data.get("id", name)) if isinstance(data, dict) else name)


def token_to_dict(token: Token) -> dict[str, Any]:
    """A plain dict of the token (secrets included: the store encrypts it)."""
    data: dict[str, Any] = _store_converter.unstructure(token)
    return data


def token_from_dict(data: Any, name: str = "?") -> Token:
    """Read back a token written by ``token_to_dict``; ``StoreError`` if damaged."""
    return _from(data, Token, "token", name)
