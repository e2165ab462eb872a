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

import attrs
from flowengine import ConfigError, is_loopback
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Scope

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


@attrs.frozen
class CookieShape:
    """What the session cookie is called and how it is set, for one origin and mount point."""

    name: str
    path: str
    secure: bool
    #: The attributes after ``name=value`` in the ``Set-Cookie`` header.
    attributes: str


#: Origins (Host header, mount point) whose cookie shape is remembered; past this many, forget all.
_SHAPES_KEPT = 256


class SessionCookies:
    """Reads and issues the session cookie of the web frontend."""

    def __init__(self, secret_key: SecretKey, *, cookie_name: str = "flowengine_session") -> None:
        if not _COOKIE_NAME.fullmatch(cookie_name):
            raise ConfigError(f"cookie_name {cookie_name[:80]!r} is not a plain token", code="config_invalid")
        self._keys = _keys(secret_key)
        self.cookie_name = cookie_name
        self._shapes: dict[tuple[object, ...], CookieShape] = {}

    @staticmethod
    def _sign(sid: str, key: bytes) -> str:
        mac = hmac.digest(key, sid.encode("ascii"), "sha256")
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def shape(self, conn: HTTPConnection) -> CookieShape:
        """The cookie's name, path and flags for the origin and mount point of this request.

        Worked out from the request's URL once per (Host header, mount point), as
        Starlette reads them, then remembered (at most ``_SHAPES_KEPT`` at a time:
        the Host header is the client's to choose).
        """
        scope = conn.scope
        host = next((value for key, value in scope["headers"] if key == b"host"), None)
        server = scope.get("server")
        key = (scope.get("scheme", "http"), host, None if server is None else tuple(server), _mount(scope))
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= _SHAPES_KEPT:
                self._shapes.clear()
            shape = self._shapes[key] = self._shape_of(not is_loopback(conn.url.hostname), key[3])
        return shape

    def _shape_of(self, secure: bool, mount: str) -> CookieShape:
        """Off loopback: ``__Host-`` prefixed, ``Path=/``, ``Secure``; below the root, the mount point's
        digest in the name instead of its ``Path``. On loopback: the plain name, the mount point's path."""
        if not secure:
            name, path = self.cookie_name, mount
        elif mount == "/":
            name, path = "__Host-" + self.cookie_name, "/"
        else:
            name, path = f"__Host-{self.cookie_name}-{hashlib.sha256(mount.encode()).hexdigest()[:8]}", "/"
        attributes = f"; HttpOnly; Path={path}; SameSite=lax" + ("; Secure" if secure else "")
        return CookieShape(name, path, secure, attributes)

    def read(self, conn: HTTPConnection) -> str | None:
        """The session id the request carries, or None (absent, malformed or not ours)."""
        value = conn.cookies.get(self.shape(conn).name)
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
        It lasts the browser session: a flow is minutes long. The header is the
        one Starlette's ``set_cookie`` writes; the name and value are plain
        tokens (``_COOKIE_NAME``, base64url), so nothing in it needs quoting.
        """
        shape = self.shape(conn)
        value = f"{sid}.{self._sign(sid, self._keys[0])}"
        response.raw_headers.append(
            (b"set-cookie", f"{shape.name}={value}{shape.attributes}".encode("ascii"))
        )


def _mount(scope: Scope) -> str:
    root: str = scope.get("root_path", "")
    return root.rstrip("/") or "/"
