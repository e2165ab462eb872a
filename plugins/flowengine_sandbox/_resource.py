"""A protected resource, `GET /user/status`, to prove that an access token works."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from flowengine_sandbox._web import PodioError, settings_of, state_of

__all__ = ["user_status"]


def _unauthorized(description: str, challenge: str) -> PodioError:
    return PodioError(401, "unauthorized", description, headers={"WWW-Authenticate": challenge})


async def user_status(request: Request) -> JSONResponse:
    """GET /user/status: who the access token (`Authorization: OAuth2 …`) stands for."""
    settings = settings_of(request)
    scheme, _, access_token = request.headers.get("authorization", "").partition(" ")
    # Podio wants its own scheme, OAuth2; `Bearer` is the classic client mistake.
    if scheme.lower() != "oauth2" or not access_token.strip():
        raise _unauthorized(
            "Send the access token as 'Authorization: OAuth2 <access_token>'",
            'Bearer realm="podio"',
        )
    token = state_of(request).access_token(access_token.strip())
    if token is None:
        raise _unauthorized("invalid_token", 'Bearer realm="podio", error="invalid_token"')
    if settings.clock() >= token.expires_at:
        raise _unauthorized("expired_token", 'Bearer realm="podio", error="expired_token"')
    grant = token.grant
    body: dict[str, object] = {
        "ref": {"type": grant.ref_type, "id": grant.ref_id},
        "scope": grant.scope,
    }
    if grant.ref_type == "user":
        body["user"] = {"user_id": grant.ref_id, "mail": settings.user.email}
    return JSONResponse(body)
