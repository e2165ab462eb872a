"""The browser session: an opaque random id in an HMAC-signed cookie.

The id is what the engine binds a flow to (``start(session=...)``); the engine
stores only its digest. The signature lets the server refuse a value it never
issued without asking the store. Every flow start issues a fresh id
(``fresh``), so a cookie planted before the start (session fixation: an
attacker's own valid cookie, set in the victim's browser) never binds the
victim's flow (SECURITY.md 31). Off loopback the cookie is ``__Host-``
prefixed with ``Path=/``, so a sibling subdomain or a plain-http page cannot
set or shadow it; mounted below the root, its name carries a digest of the
mount path instead of its ``Path``, so two apps on one host keep apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence

from flowengine import ConfigError, is_loopback
from starlette.requests import HTTPConnection
from starlette.responses import Response

__all__ = ["MIN_SECRET_BYTES", "SecretKey", "SessionCookies"]

#: Accepted forms of ``secret_key``: one key, or several (the first signs, all verify).
SecretKey = str | bytes | Sequence[str | bytes]

MIN_SECRET_BYTES = 16
_SID = re.compile(r"[A-Za-z0-9_-]{43}")
_PURPOSE = b"flowengine-web/session-cookie/v1"
_COOKIE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _keys(secret_key: SecretKey) -> list[bytes]:
    raw = [secret_key] if isinstance(secret_key, str | bytes) else list(secret_key)
    if not raw:
        raise ConfigError("secret_key: give at least one key", code="config_invalid")
    keys = []
    for key in raw:
        data = key.encode("utf-8") if isinstance(key, str) else key
        if len(data) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"secret_key must be at least {MIN_SECRET_BYTES} bytes "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
                code="config_invalid",
            )
        # A key per purpose: the host app may use the same secret for other things.
        keys.append(hmac.new(data, _PURPOSE, hashlib.sha256).digest())
    return keys


class SessionCookies:
    """Reads and issues the session cookie of the web frontend."""

    def __init__(self, secret_key: SecretKey, *, cookie_name: str = "flowengine_session") -> None:
        if not _COOKIE_NAME.fullmatch(cookie_name):
            raise ConfigError(f"cookie_name {cookie_name[:80]!r} is not a plain token", code="config_invalid")
        self._keys = _keys(secret_key)
        self.cookie_name = cookie_name

    def _sign(self, sid: str, key: bytes) -> str:
        mac = hmac.new(key, sid.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    @staticmethod
    def secure(conn: HTTPConnection) -> bool:
        """True when the cookie must be ``Secure``: every host but loopback."""
        return not is_loopback(conn.url.hostname)

    @staticmethod
    def _mount(conn: HTTPConnection) -> str:
        root: str = conn.scope.get("root_path", "")
        return root.rstrip("/") or "/"

    def path(self, conn: HTTPConnection) -> str:
        """The cookie's path: ``/`` where ``__Host-`` applies (it demands it), else the mount point."""
        return "/" if self.secure(conn) else self._mount(conn)

    def name(self, conn: HTTPConnection) -> str:
        """The cookie name: ``__Host-`` prefixed off loopback; with a mount point's digest below the root."""
        if not self.secure(conn):
            return self.cookie_name
        mount = self._mount(conn)
        if mount == "/":
            return "__Host-" + self.cookie_name
        return f"__Host-{self.cookie_name}-{hashlib.sha256(mount.encode()).hexdigest()[:8]}"

    def read(self, conn: HTTPConnection) -> str | None:
        """The session id the request carries, or None (absent, malformed or not ours)."""
        value = conn.cookies.get(self.name(conn))
        if not value or value.count(".") != 1:
            return None
        sid, signature = value.split(".")
        if not _SID.fullmatch(sid):
            return None
        good = False
        for key in self._keys:
            # No early exit: the time taken does not say which key matched.
            good |= hmac.compare_digest(signature.encode("ascii", "replace"), self._sign(sid, key).encode())
        return sid if good else None

    @staticmethod
    def fresh() -> str:
        """A new session id (256 random bits): what every flow start binds its flow to, then issues."""
        return secrets.token_urlsafe(32)

    def issue(self, conn: HTTPConnection, response: Response, sid: str) -> None:
        """Set the signed cookie: ``HttpOnly``, ``SameSite=Lax``, ``Secure`` off loopback.

        Lax, not Strict: the provider sends the person back with a cross-site
        top-level GET, and Strict would leave the cookie behind on that one.
        It lasts the browser session: a flow is minutes long.
        """
        response.set_cookie(
            self.name(conn),
            f"{sid}.{self._sign(sid, self._keys[0])}",
            path=self.path(conn),
            secure=self.secure(conn),
            httponly=True,
            samesite="lax",
        )
