"""What goes into the pure core and what comes out of it: inputs, intents and the Step.

``FlowCore.step`` (``_core``) takes a flow and one of the inputs below and
returns a ``Step``: the flow the machine leads to and the intents the driver
carries out, in order. They are plain frozen records, so a step can be
compared, logged (without its secrets) and replayed.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from flowengine._callbacks import CallbackParams
from flowengine._errors import FlowError, TransportError
from flowengine._http import HttpRequest, HttpResponse
from flowengine._jwks import JwsHeader, SigningKey
from flowengine._records import DeviceAuthorization, Flow, Token

__all__ = [
    "AccountAnswer",
    "Answer",
    "Begin",
    "BeginDevice",
    "Callback",
    "Exchange",
    "Expire",
    "FlowSecrets",
    "Input",
    "Intent",
    "Interrupt",
    "KeysAnswer",
    "ResolveKeys",
    "SaveFlow",
    "SaveToken",
    "SendFailed",
    "SendRequest",
    "Step",
]


# --- intents: what the driver carries out, in order ------------------------------------


@attrs.frozen(slots=True)
class SaveFlow:
    """Create the flow (``expected_version`` None) or compare-and-set it over that version."""

    flow: Flow
    expected_version: int | None


@attrs.frozen(slots=True)
class SaveToken:
    """Store this token before the flow that points at it is saved (a token is never lost first)."""

    token: Token


@attrs.frozen(slots=True)
class SendRequest:
    """Send this request once (a code exchange is never repeated) and feed the answer back."""

    request: HttpRequest
    #: What the request sent that must never be echoed back into a message (SECURITY.md 28).
    sent_secrets: tuple[str, ...] = attrs.field(default=(), repr=False)


@attrs.frozen(slots=True)
class ResolveKeys:
    """Find the issuer's keys for this ID token header (``JwksCache``: fetched, or refetched once).

    The driver answers with ``KeysAnswer``, handing back ``id_token`` (held here, never saved).
    """

    jwks_uri: str
    header: JwsHeader
    id_token: str = attrs.field(repr=False)


Intent = SaveFlow | SaveToken | SendRequest | ResolveKeys


@attrs.frozen(slots=True)
class Step:
    """What one input did: the flow it leads to, and the intents to carry out, in order.

    ``event``/``source`` name the transition fired (None when nothing moved);
    ``error`` is raised by the driver once the intents are done (a flow that
    expired on its callback is saved as failed, then the callback is refused).
    """

    flow: Flow
    intents: tuple[Intent, ...] = ()
    event: str | None = None
    source: str | None = None
    error: FlowError | None = None
    #: A token the provider issued that waits (for its ID token's keys, or its userinfo account).
    held: Token | None = attrs.field(default=None, repr=False)
    #: A device flow's poll that changed nothing: ``pending`` (ask again) or ``slow_down`` (+5 s).
    poll: str | None = None

    @property
    def moved(self) -> bool:
        """True when a transition fired."""
        return self.event is not None


# --- inputs ------------------------------------------------------------------------------


@attrs.frozen(slots=True)
class FlowSecrets:
    """The random values a new flow needs, drawn by the driver (``_entropy``; the core draws nothing)."""

    flow_id: str
    state: str = attrs.field(repr=False)
    verifier: str | None = attrs.field(default=None, repr=False)
    #: The ``{nonce}`` the authorization request may send; the flow keeps only its digest.
    nonce: str | None = attrs.field(default=None, repr=False)


@attrs.frozen(slots=True)
class Begin:
    """Start a flow: the authorization request's values and the flow's random secrets."""

    secrets: FlowSecrets
    redirect_uri: str
    scope: str | None = None
    session: str | None = attrs.field(default=None, repr=False)
    subject: str | None = None
    inputs: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    #: The spec's connection values, checked (``FlowCore.connection``).
    connection: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Callback:
    """The redirect came back with these parameters (from this browser session, if bound)."""

    params: CallbackParams
    session: str | None = attrs.field(default=None, repr=False)


@attrs.frozen(slots=True)
class BeginDevice:
    """Start a device flow (RFC 8628) from the device authorization answer the driver received."""

    secrets: FlowSecrets
    authorization: DeviceAuthorization = attrs.field(repr=False)
    #: The device code's lifetime the provider gave (``expires_in``), in seconds.
    expires_in: int
    scope: str | None = None
    subject: str | None = None
    connection: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Exchange:
    """Begin the code exchange (the driver holds the flow's exchange lease).

    ``assertion_id``: a fresh ``jti`` for a signed client assertion (the core draws nothing).
    """

    assertion_id: str | None = attrs.field(default=None, repr=False)


@attrs.frozen(slots=True)
class Answer:
    """The token endpoint answered the exchange."""

    response: HttpResponse
    sent_secrets: tuple[str, ...] = attrs.field(default=(), repr=False)


@attrs.frozen(slots=True)
class AccountAnswer:
    """The userinfo endpoint's answer (or why there is none) for a token that waits for its account."""

    token: Token = attrs.field(repr=False)
    response: HttpResponse | None = None
    #: The issuer's keys, for a signed (``application/jwt``) OpenID userinfo answer.
    keys: tuple[SigningKey, ...] = attrs.field(default=(), repr=False)


@attrs.frozen(slots=True)
class KeysAnswer:
    """The keys ``ResolveKeys`` asked for, or why there are none (a ``JwksError``, an unknown key)."""

    token: Token = attrs.field(repr=False)
    id_token: str = attrs.field(repr=False)
    keys: tuple[SigningKey, ...] = attrs.field(default=(), repr=False)
    error: FlowError | None = None


@attrs.frozen(slots=True)
class SendFailed:
    """The exchange request failed in transit; ``error.sent`` says whether it may have arrived."""

    error: TransportError


@attrs.frozen(slots=True)
class Interrupt:
    """An exchange was found begun, and the worker that began it is gone."""


@attrs.frozen(slots=True)
class Expire:
    """The flow outlived its ttl."""


Input = (
    Begin
    | BeginDevice
    | Callback
    | Exchange
    | Answer
    | AccountAnswer
    | KeysAnswer
    | SendFailed
    | Interrupt
    | Expire
)
