"""Podio's rate limits, emulated: calls per window per user/app and API key; HTTP 420 past them.

Podio allows 1,000 calls an hour per user (or app) and API key, says how many are
left in ``X-Rate-Limit-Limit`` / ``X-Rate-Limit-Remaining`` on every answer, and
answers 420 (not 429) once they are spent, with no reset header (PODIO.md). A
client that batches thousands of refreshes must be proven to stay inside that,
so the sandbox keeps the count and can say, per bucket, the most calls it ever
saw in one window (``RateLimitLedger.snapshot``, ``GET /_sandbox/counters``).

The buckets are fixed windows of ``settings.rate_limit_window`` seconds on the
sandbox clock: one per API key and account (``settings.rate_limit``) and, when
``settings.client_rate_limit`` is set, one per API key across all its accounts
(Podio publishes no such limit; tests use it to make one bind). Every call that
reaches a limited path counts, refused or not, faults included: the middleware
sits outside fault injection.

Which account a token request acts for is read from the request: the app grant
names its app, the password grant its user, a code belongs to the sandbox's one
person, and a refresh token to the account of the token response that issued it
(learned from the answers as they pass, keyed by a digest of the refresh token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus

from attrs import define, frozen

if TYPE_CHECKING:  # Starlette is imported only when the sandbox serves (settings.py imports this)
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LIMITED_PATHS", "Admission", "RateLimitLedger", "RateLimiting", "counters"]

#: Paths whose calls count: the token endpoints and the API (``/user/status``).
LIMITED_PATHS = ("/oauth/token", "/user/")
_TOKEN_PATHS = ("/oauth/token",)
# A token request is small; a larger body is not parsed (the app refuses it anyway).
_MAX_BODY = 64 * 1024


@frozen
class Admission:
    """The ledger's answer to one call: allowed or not, and what the headers say."""

    allowed: bool
    limit: int | None  # the binding bucket's limit; None when no limit applies
    remaining: int | None
    retry_in: float  # seconds until the binding window ends (0 when allowed)


@define
class _Bucket:
    scope: str  # "account" or "client"
    client_id: str
    account: str | None
    window_start: float = -math.inf
    calls: int = 0  # admitted in the current window
    rejected: int = 0  # refused in the current window
    peak: int = 0  # the most calls (admitted + refused) seen in any one window
    total: int = 0
    total_rejected: int = 0

    def roll(self, window_start: float) -> None:
        if window_start != self.window_start:
            self.window_start, self.calls, self.rejected = window_start, 0, 0

    def as_json(self, limit: int | None) -> dict[str, object]:
        return {
            "scope": self.scope,
            "client_id": self.client_id,
            "account": self.account,
            "limit": limit,
            "window_start": self.window_start,
            "calls": self.calls,
            "rejected": self.rejected,
            "peak": self.peak,
            "total": self.total,
            "total_rejected": self.total_rejected,
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class RateLimitLedger:
    """Counts calls per bucket and window and decides on each; safe across threads.

    The server thread counts while a test thread reads, so every access holds one
    lock. A deep copy (how the test fixtures reset settings) is a fresh ledger.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str | None], _Bucket] = {}
        self._accounts: dict[str, str] = {}  # sha256(refresh token) -> "type:id"

    def admit(
        self,
        client_id: str,
        account: str | None,
        *,
        now: float,
        window: float,
        limit: int | None,
        client_limit: int | None,
    ) -> Admission:
        """Count one call of ``client_id`` for ``account`` (None: unknown) and say if it may pass."""
        start = math.floor(now / window) * window
        applicable: list[tuple[_Bucket, int]] = []
        with self._lock:
            if limit is not None and account is not None:
                applicable.append((self._bucket("account", client_id, account), limit))
            if client_limit is not None:
                applicable.append((self._bucket("client", client_id, None), client_limit))
            if not applicable:
                return Admission(True, None, None, 0.0)
            for bucket, _ in applicable:
                bucket.roll(start)
            allowed = all(bucket.calls < cap for bucket, cap in applicable)
            for bucket, _ in applicable:
                bucket.total += 1
                if allowed:
                    bucket.calls += 1
                else:
                    bucket.rejected += 1
                    bucket.total_rejected += 1
                bucket.peak = max(bucket.peak, bucket.calls + bucket.rejected)
            binding, cap = min(applicable, key=lambda pair: pair[1] - pair[0].calls)
            remaining = max(0, cap - binding.calls)
        return Admission(allowed, cap, remaining, 0.0 if allowed else start + window - now)

    def _bucket(self, scope: str, client_id: str, account: str | None) -> _Bucket:
        key = (scope, client_id, account)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(scope, client_id, account)
        return bucket

    def learn(self, refresh_token: str, account: str) -> None:
        """Remember whose refresh token this is (from a token response)."""
        with self._lock:
            self._accounts[_digest(refresh_token)] = account

    def account_of(self, refresh_token: str) -> str | None:
        """The account a refresh token was issued for, when a response showed it."""
        with self._lock:
            return self._accounts.get(_digest(refresh_token))

    def snapshot(self, limit: int | None = None, client_limit: int | None = None) -> list[dict[str, object]]:
        """Every bucket as JSON data: current window, peak per window, totals."""
        with self._lock:
            return [
                bucket.as_json(limit if bucket.scope == "account" else client_limit)
                for bucket in self._buckets.values()
            ]

    def peak(self, scope: str = "account") -> int:
        """The most calls any one bucket of ``scope`` saw in one window (0 when none)."""
        with self._lock:
            return max((b.peak for b in self._buckets.values() if b.scope == scope), default=0)

    def rejected(self) -> int:
        """How many calls were refused with 420, over all buckets of the API keys."""
        with self._lock:
            scopes = {b.scope for b in self._buckets.values()}
            # A refused call counts in each bucket it hit: count it once, per the widest scope.
            scope = "client" if "client" in scopes else "account"
            return sum(b.total_rejected for b in self._buckets.values() if b.scope == scope)

    def reset(self) -> None:
        """Forget every count and every learned refresh token."""
        with self._lock:
            self._buckets.clear()
            self._accounts.clear()

    def __deepcopy__(self, _memo: dict[int, object]) -> RateLimitLedger:
        return RateLimitLedger()

    def __repr__(self) -> str:
        with self._lock:
            return f"RateLimitLedger({len(self._buckets)} buckets)"


def _fields(content_type: str, body: bytes) -> dict[str, str]:
    """The request's fields, read leniently: the endpoint itself says what is malformed."""
    try:
        text = body.decode("utf-8")
        if content_type == "application/json":
            document = json.loads(text)
            if not isinstance(document, dict):
                return {}
            return {
                k: str(v) for k, v in document.items() if isinstance(v, str | int) and not isinstance(v, bool)
            }
        return dict(parse_qsl(text, keep_blank_values=True))
    except (ValueError, RecursionError):
        return {}


def _basic_client_id(authorization: str) -> str | None:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return unquote_plus(decoded.partition(":")[0])


def _token_caller(
    headers: Mapping[str, str], body: bytes, settings: Any, ledger: RateLimitLedger
) -> tuple[str | None, str | None]:
    """The API key and account a token request is for (None where it cannot be told)."""
    content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    fields = _fields(content_type, body)
    client_id = _basic_client_id(headers.get("authorization", "")) or fields.get("client_id")
    grant_type = fields.get("grant_type")
    account: str | None = None
    if grant_type == "refresh_token" and fields.get("refresh_token"):
        account = ledger.account_of(fields["refresh_token"])
    elif grant_type == "authorization_code":
        account = f"user:{settings.user.id}"  # the sandbox has one person: every code is theirs
    elif grant_type == "password":
        if fields.get("username", "").casefold() == settings.user.email.casefold():
            account = f"user:{settings.user.id}"
    elif grant_type == "app":
        app_id = fields.get("app_id", "")
        if app_id.isascii() and app_id.isdigit() and int(app_id) in settings.apps:
            account = f"app:{int(app_id)}"
    return client_id, account


def _api_caller(headers: Mapping[str, str], state: Any) -> tuple[str | None, str | None]:
    """The API key and account of an API call, from its access token."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    info = state.access_token(value.strip()) if scheme.lower() == "oauth2" and value.strip() else None
    if info is None:
        return None, None
    return info.grant.client_id, f"{info.grant.ref_type}:{info.grant.ref_id}"


async def _read_body(receive: Receive) -> tuple[list[Message], bytes]:
    """Every request message (to replay to the app) and the body, when small enough to read."""
    messages: list[Message] = []
    body = bytearray()
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        if len(body) <= _MAX_BODY:
            body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return messages, bytes(body) if len(body) <= _MAX_BODY else b""


class RateLimiting:
    """ASGI middleware: counts calls on ``LIMITED_PATHS``, adds the headers, refuses with 420."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(LIMITED_PATHS):
            await self.app(scope, receive, send)
            return
        app_state = scope["app"].state
        settings, ledger = app_state.sandbox_settings, app_state.sandbox_settings.rate_limits
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token_path = path.startswith(_TOKEN_PATHS)
        messages: list[Message] = []
        if token_path:
            messages, body = await _read_body(receive)
            client_id, account = _token_caller(headers, body, settings, ledger)
        else:
            client_id, account = _api_caller(headers, app_state.sandbox_state)
        if client_id not in settings.clients:
            client_id = None  # an unknown API key is refused by the endpoint, not counted
        admission = (
            ledger.admit(
                client_id,
                account,
                now=settings.clock(),
                window=settings.rate_limit_window,
                limit=settings.rate_limit,
                client_limit=settings.client_rate_limit,
            )
            if client_id is not None
            else Admission(True, None, None, 0.0)
        )
        replay = _replayer(messages, receive) if token_path else receive
        if not admission.allowed:
            await _too_many(admission, scope, replay, send)
            return
        await self.app(scope, replay, _annotating(send, admission, ledger if token_path else None))


def _replayer(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _rate_headers(admission: Admission) -> list[tuple[bytes, bytes]]:
    if admission.limit is None or admission.remaining is None:
        return []
    return [
        (b"x-rate-limit-limit", str(admission.limit).encode()),
        (b"x-rate-limit-remaining", str(admission.remaining).encode()),
    ]


def _annotating(send: Send, admission: Admission, ledger: RateLimitLedger | None) -> Send:
    """``send`` that adds the rate-limit headers and learns refresh tokens from token answers."""
    learning = {"status": 0, "body": bytearray()}

    async def annotated(message: Message) -> None:
        if message["type"] == "http.response.start":
            learning["status"] = message["status"]
            present = {name.lower() for name, _ in message.get("headers", [])}
            if b"x-rate-limit-remaining" not in present:  # an injected 420 brings its own
                message = {**message, "headers": [*message.get("headers", []), *_rate_headers(admission)]}
        elif message["type"] == "http.response.body" and ledger is not None and learning["status"] == 200:
            body = learning["body"]
            assert isinstance(body, bytearray)
            if len(body) <= _MAX_BODY:
                body += message.get("body", b"")
            if not message.get("more_body", False):
                _learn(ledger, bytes(body))
        await send(message)

    return annotated


def _learn(ledger: RateLimitLedger, body: bytes) -> None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # a fault may answer anything, 400 KB of `[` included
        return
    if not isinstance(document, dict):
        return
    refresh_token, ref = document.get("refresh_token"), document.get("ref")
    if isinstance(refresh_token, str) and isinstance(ref, dict) and "type" in ref and "id" in ref:
        ledger.learn(refresh_token, f"{ref['type']}:{ref['id']}")


async def _too_many(admission: Admission, scope: Scope, receive: Receive, send: Send) -> None:
    """Podio's 420: its envelope, the headers, and how long to wait in words (no reset header)."""
    from starlette.requests import Request

    from flowengine_sandbox._web import PodioError, error_response

    wait = max(1, math.ceil(admission.retry_in))
    error = PodioError(
        420, "rate_limit", f"You have hit the rate limit. Please wait {wait} seconds before trying again"
    )
    response = error_response(Request(scope), error)
    response.raw_headers.extend(_rate_headers(admission))
    await response(scope, receive, send)


async def counters(request: Request) -> JSONResponse:
    """GET /_sandbox/counters: the limits and every bucket's counts (calls, refusals, peak)."""
    from starlette.responses import JSONResponse

    settings = request.app.state.sandbox_settings
    ledger: RateLimitLedger = settings.rate_limits
    return JSONResponse(
        {
            "window": settings.rate_limit_window,
            "limit": settings.rate_limit,
            "client_limit": settings.client_rate_limit,
            "peak": {"account": ledger.peak("account"), "client": ledger.peak("client")},
            "rejected": ledger.rejected(),
            "buckets": ledger.snapshot(settings.rate_limit, settings.client_rate_limit),
        }
    )
