"""What every route shares: Podio's error envelope and reading requests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowengine_sandbox.settings import SandboxSettings
from flowengine_sandbox.state import SandboxState

__all__ = [
    "NO_STORE",
    "PodioError",
    "error_response",
    "handle_podio_error",
    "invalid_request",
    "last_values",
    "media_type",
    "read_form",
    "read_json_object",
    "settings_of",
    "state_of",
]

# Responses carrying codes or tokens must not be cached (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class PodioError(Exception):
    """An error answered in Podio's envelope; the description never holds a secret."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.headers = dict(headers or {})


def invalid_request(description: str) -> PodioError:
    """Return the 400 `invalid_request` error with this description."""
    return PodioError(400, "invalid_request", description)


def error_response(request: Request, error: PodioError) -> JSONResponse:
    """Return the error in Podio's envelope, describing the request it answers."""
    body = {
        "error": error.error,
        "error_description": error.description,
        "error_detail": None,
        "error_parameters": {},
        "error_propagate": False,
        "request": {
            "url": str(request.url.replace(query="")),
            "query_string": request.url.query,
            "method": request.method,
        },
    }
    return JSONResponse(body, status_code=error.status, headers={**NO_STORE, **error.headers})


async def handle_podio_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: a raised `PodioError` becomes its envelope."""
    assert isinstance(exc, PodioError)
    return error_response(request, exc)


def settings_of(request: Request) -> SandboxSettings:
    """Return the settings of the sandbox app serving the request."""
    settings = request.app.state.sandbox_settings
    assert isinstance(settings, SandboxSettings)
    return settings


def state_of(request: Request) -> SandboxState:
    """Return the state of the sandbox app serving the request."""
    state = request.app.state.sandbox_state
    assert isinstance(state, SandboxState)
    return state


def last_values(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return one value per name: Podio discards repeated parameters but the last."""
    return dict(pairs)


def media_type(request: Request) -> str:
    """Return the request's media type, without parameters such as `charset`."""
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def read_form(request: Request) -> dict[str, str]:
    """Return the fields of a form-encoded body (last value wins)."""
    if media_type(request) != "application/x-www-form-urlencoded":
        raise invalid_request("Content-Type must be application/x-www-form-urlencoded")
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_request("The body is not UTF-8") from None
    return last_values(parse_qsl(text, keep_blank_values=True))


async def read_json_object(request: Request, *, allow_empty: bool = False) -> dict[str, object]:
    """Return the JSON object of an `application/json` body ({} for an allowed empty one)."""
    body = await request.body()
    if allow_empty and not body.strip():
        return {}
    if media_type(request) != "application/json":
        raise invalid_request("Content-Type must be application/json")
    try:
        document = json.loads(body)
    except ValueError:
        raise invalid_request("The body is not valid JSON") from None
    if not isinstance(document, dict):
        raise invalid_request("The body must be a JSON object")
    return document
