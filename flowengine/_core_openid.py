"""OpenID Connect in the core: a token answer's ID token validated before the token is kept (pure).

A spec with ``openid:`` gets, after every token answer of a flow (a code exchange, a device
poll), three more steps, each an input of ``FlowCore.step`` and none doing I/O:

1. the answer's ``id_token`` is taken out of the token (it is never stored) and its header
   read against the allow-list; the step holds the token and asks for the issuer's keys
   (``ResolveKeys``), as it holds one while a userinfo request runs;
2. ``KeysAnswer``: the driver's ``JwksCache`` found the keys (fetched, or refetched once for
   an unknown ``kid``); the ID token is verified as OpenID Connect Core §3.1.3.7 says
   (``flowengine._oidc``), and the token is filed under ``sub`` within ``iss``;
3. with ``openid.userinfo``, ``AccountAnswer``: the userinfo answer's ``sub`` must be the ID
   token's; its claims join the token's.

A refused ID token fails the flow with its own code (``id_token_*``) and no token is saved:
a token whose ID token cannot be trusted names no one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowengine import _templates
from flowengine._core_tokens import TokenRequests
from flowengine._discovery import ProviderMetadata
from flowengine._errors import ErrorCode, FlowError, IdTokenError, UserinfoError
from flowengine._http import HttpRequest
from flowengine._oidc import IdTokenRules, verify_id_token
from flowengine._oidc_errors import refuse_id_token
from flowengine._oidc_jws import DEFAULT_ALGORITHMS, ParsedJws, parse_jws
from flowengine._oidc_userinfo import read_userinfo, userinfo_request
from flowengine._presets import Trigger
from flowengine._records import Flow, Token, evolve
from flowengine._spec import OpenIdRules
from flowengine._steps import AccountAnswer, KeysAnswer, ResolveKeys, SendRequest, Step

__all__ = ["SECRET_CLAIMS", "OpenIdSteps", "public_claims"]

#: Claims never kept on a flow or a token: the flow's nonce, and hashes of the access token and code.
SECRET_CLAIMS = frozenset({"nonce", "at_hash", "c_hash"})
#: What a claim that fills the issuer template (``issuer_claims``) may hold: one path segment.
_CLAIM_VALUE = re.compile(r"[A-Za-z0-9._~-]{1,128}")
#: Userinfo failures that leave the token standing (its ID token already named the person).
_USERINFO_AWAY = frozenset({ErrorCode.USERINFO_UNAVAILABLE, ErrorCode.USERINFO_UNAUTHORIZED})


def thaw(value: Any) -> Any:
    """Read-only JSON (mappings, tuples) as plain JSON a store can write."""
    if isinstance(value, Mapping):
        return {str(key): thaw(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(item) for item in value]
    return value


def public_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The claims a flow and a token keep: all but ``SECRET_CLAIMS``, as plain JSON."""
    return {name: thaw(value) for name, value in claims.items() if name not in SECRET_CLAIMS}


def _unverified_claims(parsed: ParsedJws) -> Mapping[str, Any]:
    """The payload before its signature is checked: only to name the issuer it must then match."""
    try:
        claims = json.loads(parsed.compact.payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


class OpenIdSteps(TokenRequests):
    """The ID token and userinfo steps of ``FlowCore`` for a spec with ``openid:``."""

    #: What discovery said about the issuer (None when the spec writes every endpoint).
    metadata: ProviderMetadata | None

    if TYPE_CHECKING:

        def _fire(
            self,
            flow: Flow,
            event: Trigger,
            now: float,
            *,
            token: Token | None = None,
            error: FlowError | None = None,
        ) -> Step: ...

    @property
    def openid(self) -> OpenIdRules:
        """The spec's ``openid`` rules (only called for a spec that has them)."""
        assert self.spec.openid is not None
        return self.spec.openid

    def id_token_algorithms(self) -> tuple[str, ...]:
        """The allow-list: the spec's (else RS256, ES256, PS256), narrowed to what the issuer signs with."""
        chosen = self.openid.algorithms or DEFAULT_ALGORITHMS
        offered = self.metadata.id_token_signing_alg_values_supported if self.metadata else ()
        narrowed = tuple(alg for alg in chosen if alg in offered)
        return narrowed or chosen

    def jwks_url(self, connection: Mapping[str, str]) -> str:
        """Where the issuer's keys are, for a flow with these connection values."""
        return self.endpoint_url(self.openid.jwks, connection)

    def expected_issuer(self, connection: Mapping[str, str], parsed: ParsedJws) -> str:
        """The ``iss`` this token must carry: the spec's issuer, filled from the connection values.

        A variable under ``openid.issuer_claims`` is filled from the token's own claim (Microsoft's
        ``tid``) when the flow's value is one of its ``multi_tenant`` values or it has none; a
        configured tenant stays (SECURITY.md 35). The signature is checked afterwards, and the
        ``iss`` must then match exactly.
        """
        assert self.spec.issuer is not None
        values: dict[str, str | None] = dict(connection)
        claims = _unverified_claims(parsed) if self.openid.issuer_claims else {}
        for variable, claim in self.openid.issuer_claims.items():
            configured = connection.get(variable)
            if configured is not None and configured not in self.openid.multi_tenant.get(variable, ()):
                continue
            value = claims.get(claim)
            values[variable] = value if isinstance(value, str) and _CLAIM_VALUE.fullmatch(value) else None
        issuer = _templates.render(self.spec.issuer, values)
        if issuer is None:
            raise IdTokenError(
                "the ID token lacks the claim that names its issuer", code="id_token_wrong_issuer"
            )
        return issuer

    def await_keys(self, flow: Flow, token: Token, now: float) -> Step:
        """Hold a new token while the issuer's keys for its ID token are found (or fail the flow)."""
        raw = token.extra.get("id_token")
        token = evolve(token, extra={k: v for k, v in token.extra.items() if k != "id_token"})
        if not isinstance(raw, str):
            missing = IdTokenError("the token answer carries no id_token", code="id_token_missing")
            return self._fire(flow, Trigger.ANSWER, now, error=missing)
        try:
            parsed = parse_jws(raw, self.id_token_algorithms(), refuse_id_token)
        except IdTokenError as exc:
            return self._fire(flow, Trigger.ANSWER, now, error=exc)
        ask = ResolveKeys(self.jwks_url({**token.connection, **token.kept}), parsed.header, raw)
        return Step(flow, (ask,), held=token)

    def with_keys(self, flow: Flow, event: KeysAnswer, now: float) -> Step:
        """Verify the held token's ID token with the keys found; file the token under ``sub`` in ``iss``."""
        if event.error is not None:
            return self._fire(flow, Trigger.ANSWER, now, error=event.error)
        token = event.token
        trusted: frozenset[str] = frozenset(self.openid.trusted_audiences)
        try:
            algorithms = self.id_token_algorithms()
            parsed = parse_jws(event.id_token, algorithms, refuse_id_token)
            rules = IdTokenRules(
                issuer=self.expected_issuer({**token.connection, **token.kept}, parsed),
                client_id=self.client.client_id,
                nonce_hash=flow.nonce_hash,
                algorithms=algorithms,
                leeway=self.openid.leeway,
                max_age=self.openid.max_age,
                trusted_audiences=trusted,
            )
            id_token = verify_id_token(parsed, event.keys, rules, now=now, access_token=token.access_token)
        except IdTokenError as exc:
            return self._fire(flow, Trigger.ANSWER, now, error=exc)
        token = evolve(token, account=id_token.account, claims=public_claims(id_token.claims))
        ask = self.userinfo_ask(token)
        if ask is not None:
            return Step(flow, (ask,), held=token)
        return self._fire(flow, Trigger.ANSWER, now, token=token)

    def userinfo_ask(self, token: Token) -> SendRequest | None:
        """The userinfo GET for a token whose ID token was validated, when the spec asks for userinfo."""
        name = self.openid.userinfo
        if name is None:
            return None
        url = self.endpoint_url(name, {**token.connection, **token.kept})
        request: HttpRequest = userinfo_request(url, token.access_token, self.user_agent)
        return SendRequest(request, (token.access_token,))

    def with_userinfo(self, flow: Flow, event: AccountAnswer, now: float) -> Step:
        """Add userinfo's claims to the held token; refuse the flow when userinfo names someone else.

        Userinfo that is away (no answer, 401/403, 429/5xx) leaves the token standing with its
        ID token's claims: the person is already known. An answer about another ``sub``, or a
        signed answer that does not verify, fails the flow (Core §5.3.4): no token is kept.
        """
        token = event.token
        if event.response is None:
            return self._fire(flow, Trigger.ANSWER, now, token=token)
        try:
            info = read_userinfo(
                event.response,
                subject=str(token.claims.get("sub")),
                issuer=str(token.claims.get("iss")),
                client_id=self.client.client_id,
                keys=event.keys,
                algorithms=self.id_token_algorithms(),
            )
        except UserinfoError as exc:
            if exc.code in _USERINFO_AWAY:
                return self._fire(flow, Trigger.ANSWER, now, token=token)
            return self._fire(flow, Trigger.ANSWER, now, error=exc)
        claims = {**public_claims(info.claims), **token.claims}
        return self._fire(flow, Trigger.ANSWER, now, token=evolve(token, claims=claims))
