"""Who may see the operator page: the holder of the operator secret, or whom the host's hook admits.

The page is off unless ``create_app`` gets an ``operator_secret`` or an
``operator`` hook; it is never open to the public. With a secret, a sign-in
form takes it once (a POST, compared in constant time, never logged nor kept)
and sets a signed cookie: ``HttpOnly``, ``SameSite=Strict``, ``Secure`` and
``__Host-`` off loopback, valid for ``OPERATOR_SESSION`` seconds. The cookie
holds an expiry and a random nonce under an HMAC keyed by a key derived from the
secret: changing the secret signs everyone out. With a hook, the host decides
(its own admin session, an SSO header its proxy sets): ``operator(request)``
returns True to admit the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from flowengine import ConfigError, is_loopback
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from flowengine_web._hooks import resolve

__all__ = ["OPERATOR_SESSION", "OperatorAccess", "OperatorHook"]

log = logging.getLogger("flowengine.web")

#: ``operator(request)``: True when the host admits this request to the operator page.
OperatorHook = Callable[[Request], Awaitable[bool] | bool]

#: How long an operator's sign-in lasts (seconds).
OPERATOR_SESSION = 8 * 3600
_PURPOSE = b"flowengine-web/operator-cookie/v1"
_MIN_SECRET_BYTES = 16
_VALUE = re.compile(r"(\d{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})")
#: The sign-in form's body is tiny: anything longer is refused unread.
MAX_FORM_BYTES = 4096


class OperatorAccess:
    """Decides whether a request may see the operator page, and signs operators in and out."""

    def __init__(
        self,
        secret: str | bytes | None,
        hook: OperatorHook | None,
        *,
        cookie_name: str = "flowengine_operator",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key: bytes | None = None
        if secret is not None:
            data = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
            if len(data) < _MIN_SECRET_BYTES:
                raise ConfigError(
                    f"operator_secret must be at least {_MIN_SECRET_BYTES} bytes "
                    "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
                    code="config_invalid",
                )
            # What is compared is a digest of the secret: equal lengths, so compare_digest leaks nothing.
            self._digest = hashlib.sha256(data).digest()
            self._key = hmac.new(data, _PURPOSE, hashlib.sha256).digest()
        self.hook = hook
        self.cookie_name = cookie_name
        self.clock = clock

    def __repr__(self) -> str:
        return f"OperatorAccess(secret={'set' if self._key else 'none'}, hook={self.hook is not None})"

    @property
    def signs_in(self) -> bool:
        """True when a secret is set: the page offers a sign-in form."""
        return self._key is not None

    # --- the cookie -----------------------------------------------------------------

    @staticmethod
    def _secure(conn: HTTPConnection) -> bool:
        return not is_loopback(conn.url.hostname)

    def _name(self, conn: HTTPConnection) -> str:
        if not self._secure(conn):
            return self.cookie_name
        root: str = conn.scope.get("root_path", "").rstrip("/")
        suffix = f"-{hashlib.sha256(root.encode()).hexdigest()[:8]}" if root else ""
        return f"__Host-{self.cookie_name}{suffix}"

    def _path(self, conn: HTTPConnection) -> str:
        root: str = conn.scope.get("root_path", "").rstrip("/")
        return "/" if self._secure(conn) else f"{root}/operator"

    def _mac(self, text: str) -> str:
        assert self._key is not None
        mac = hmac.new(self._key, text.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def _signed_in(self, conn: HTTPConnection) -> bool:
        if self._key is None:
            return False
        match = _VALUE.fullmatch(conn.cookies.get(self._name(conn), ""))
        if match is None:
            return False
        expires, nonce, mac = match.groups()
        good = hmac.compare_digest(mac.encode(), self._mac(f"{expires}.{nonce}").encode())
        return good and int(expires) > self.clock()

    # --- decisions ------------------------------------------------------------------

    async def admits(self, request: Request) -> bool:
        """True when the request may see the page: a valid sign-in cookie, or the host's hook says so."""
        if self._signed_in(request):
            return True
        if self.hook is not None:
            return bool(await resolve(self.hook(request)))
        return False

    async def sign_in(self, request: Request, response: Response) -> bool:
        """Check the form's ``secret``; on a match, set the cookie on ``response``. Logs nothing typed."""
        if self._key is None or not _same_origin(request):
            return False
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return False
        given = parse_qs(body.decode("utf-8", "replace")).get("secret", [""])[0]
        if not hmac.compare_digest(hashlib.sha256(given.encode("utf-8")).digest(), self._digest):
            log.warning("web: an operator sign-in was refused (wrong secret)")
            return False
        expires = int(self.clock()) + OPERATOR_SESSION
        nonce = secrets.token_urlsafe(16)
        response.set_cookie(
            self._name(request),
            f"{expires}.{nonce}.{self._mac(f'{expires}.{nonce}')}",
            max_age=OPERATOR_SESSION,
            path=self._path(request),
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )
        return True

    def sign_out(self, request: Request, response: Response) -> None:
        """Drop the cookie (the form posts here; SameSite=Strict keeps other sites from doing it)."""
        response.delete_cookie(
            self._name(request),
            path=self._path(request),
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )


def _same_origin(request: Request) -> bool:
    """A form post from this site, as far as the browser says: anything cross-site is refused (CSRF).

    ``Sec-Fetch-Site`` first: the pages send no referrer, so a browser's ``Origin`` on
    their own form is ``null``. Without it (an older browser, a script), an ``Origin``
    other than this request's own is refused.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    return origin == f"{request.url.scheme}://{request.url.netloc}"
