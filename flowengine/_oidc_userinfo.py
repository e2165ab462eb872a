"""The userinfo endpoint (OpenID Connect Core 1.0 §5.3), sans-I/O.

``userinfo_request`` builds the Bearer GET; ``read_userinfo`` reads a JSON answer, or a
signed JWT answer (``application/jwt``) verified against the issuer's keys with its
``iss`` and ``aud`` checked (§5.3.2). Either way its ``sub`` must be the ID token's: a
userinfo answer about someone else is refused (§5.3.4, token substitution).

A signed answer needs the issuer's keys: ``userinfo_jws`` reads its header first, so the
caller can ``JwksCache.resolve`` the keys (with ``refuse=refuse_userinfo``) in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from flowengine._http import HttpRequest, HttpResponse
from flowengine._jwks import SigningKey
from flowengine._oidc_errors import UserinfoError, refuse_userinfo
from flowengine._oidc_http import freeze_json, read_json_object
from flowengine._oidc_jws import DEFAULT_ALGORITHMS, ParsedJws, parse_jws, verify_jws

__all__ = ["Userinfo", "read_userinfo", "userinfo_jws", "userinfo_request"]

_MAX_BYTES = 256 * 1024


def userinfo_request(url: str, access_token: str, user_agent: str = "flowengine") -> HttpRequest:
    """The GET to ``url`` carrying ``access_token`` as a Bearer credential (RFC 6750 §2.1)."""
    return HttpRequest(
        "GET",
        url,
        {
            "authorization": f"Bearer {access_token}",
            "accept": "application/json, application/jwt",
            "user-agent": user_agent,
        },
    )


@attrs.frozen(slots=True)
class Userinfo:
    """The claims the userinfo endpoint returned, read-only; ``signed`` when it came as a JWT."""

    claims: Mapping[str, Any] = attrs.field(repr=False)
    signed: bool = False

    @property
    def subject(self) -> str:
        """``sub``: equal to the ID token's, or the answer was refused."""
        return str(self.claims["sub"])


def userinfo_jws(response: HttpResponse, algorithms: Sequence[str] = DEFAULT_ALGORITHMS) -> ParsedJws | None:
    """The header of a signed (``application/jwt``) answer, None for any other answer.

    Refuses ``userinfo_malformed`` and ``userinfo_alg_not_allowed`` before any key is looked up.
    """
    if response.status != 200 or response.content_type != "application/jwt":
        return None
    return parse_jws(_text(response), algorithms, refuse_userinfo)


def read_userinfo(
    response: HttpResponse,
    *,
    subject: str,
    issuer: str,
    client_id: str,
    keys: Sequence[SigningKey] = (),
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
) -> Userinfo:
    """The claims of ``response``, whose ``sub`` must equal ``subject`` (the ID token's).

    A signed answer is verified with ``keys`` and must name ``issuer`` and ``client_id``.
    Raises ``UserinfoError``: ``userinfo_unauthorized`` (401/403), ``userinfo_unavailable``
    (429/5xx, retryable), ``userinfo_invalid``, ``userinfo_sub_mismatch``, and the
    ``userinfo_*`` codes of a signed answer's checks.
    """
    _check_status(response)
    parsed = userinfo_jws(response, algorithms)
    if parsed is not None:
        claims = _signed_claims(parsed, keys, issuer, client_id)
    else:
        document = read_json_object(response, what="the userinfo answer", fail=_invalid, max_bytes=_MAX_BYTES)
        frozen = freeze_json(document)
        if frozen is None:
            raise _invalid("the userinfo answer nests too deep")
        claims = frozen
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise _invalid("the userinfo answer has no string sub")
    if sub != subject:
        raise UserinfoError(
            "userinfo is about another subject than the ID token", code="userinfo_sub_mismatch"
        )
    return Userinfo(claims, signed=parsed is not None)


def _invalid(message: str) -> UserinfoError:
    return UserinfoError(message, code="userinfo_invalid")


def _text(response: HttpResponse) -> str:
    if len(response.body) > _MAX_BYTES:
        raise _invalid(f"the userinfo answer is larger than {_MAX_BYTES} bytes")
    try:
        return response.body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise UserinfoError("the signed userinfo answer is not a JWT", code="userinfo_malformed") from None


def _check_status(response: HttpResponse) -> None:
    if response.status == 200:
        return
    if response.status in (401, 403):
        raise UserinfoError(
            f"the userinfo endpoint refused the access token ({response.status})",
            code="userinfo_unauthorized",
            status=response.status,
        )
    transient = response.status == 429 or response.status >= 500
    raise UserinfoError(
        f"the userinfo endpoint answered {response.status}",
        code="userinfo_unavailable" if transient else "userinfo_invalid",
        retryable=transient,
        status=response.status,
    )


def _signed_claims(
    parsed: ParsedJws, keys: Sequence[SigningKey], issuer: str, client_id: str
) -> Mapping[str, Any]:
    claims = verify_jws(parsed, keys, refuse_userinfo)
    if claims.get("iss") != issuer:
        raise UserinfoError(
            "the signed userinfo answer's iss is not the issuer", code="userinfo_wrong_issuer"
        )
    aud = claims.get("aud")
    audiences = (aud,) if isinstance(aud, str) else aud
    if not isinstance(audiences, tuple) or client_id not in audiences:
        raise UserinfoError(
            "the signed userinfo answer's aud does not contain this client's id",
            code="userinfo_wrong_audience",
        )
    return claims
