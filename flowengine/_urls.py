"""The one judge of http(s) URLs: an endpoint or a redirect URI is read as a browser reads it.

Python's ``urlsplit`` and a browser's WHATWG URL parser disagree on some URLs, and
each disagreement lets a URL pass a check under one reading and go elsewhere under
the other: a backslash is a path separator to a browser and an ordinary character
to ``urlsplit`` (``http://evil.example\\@127.0.0.1/`` is ``evil.example`` to one,
``127.0.0.1`` to the other); browsers drop tabs and newlines anywhere in a URL;
they percent-decode hosts (``%31%32%37.0.0.1``), read ``0x7f.1``, ``127.1`` and
``2130706433`` as ``127.0.0.1``, map Unicode hosts through IDNA, and accept
``https:/host`` and ``https:///host``. Rather than emulate every rule, the judge
accepts only URLs that every reading agrees on and refuses the rest, naming why
(SECURITY.md 27). ``parse_web_url`` is the public face of it.
"""

from __future__ import annotations

import ipaddress
import re

import attrs

from flowengine._errors import ConfigError

__all__ = ["MAX_URL_LENGTH", "UrlRefused", "WebUrl", "is_loopback", "judge", "parse_web_url"]

#: Longer is not an endpoint or a redirect URI (and not worth reading).
MAX_URL_LENGTH = 2048
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_ENDS_IN_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")
_DECIMAL_OCTET = re.compile(r"0|[1-9][0-9]{0,2}")
_PORT = re.compile(r"[0-9]{1,5}")


class UrlRefused(ConfigError):
    """A URL the judge refuses; ``reason`` says why, without repeating the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the URL {reason}", code="url_invalid")
        self.reason = reason


@attrs.frozen(slots=True)
class WebUrl:
    """An absolute http(s) URL every parser reads alike: its parts, lower-cased where case is moot."""

    scheme: str
    #: The host name or IP address, lower-case; an IPv6 address without its brackets.
    host: str
    port: int | None
    path: str
    query: str | None

    @property
    def loopback(self) -> bool:
        """True when the host is ``localhost`` or a loopback address."""
        return is_loopback(self.host)

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``, as a browser names the URL's origin (no default port)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = {"http": 80, "https": 443}[self.scheme]
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port not in (None, default) else "")


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP addresses (a bare host, not a URL)."""
    if not host or not isinstance(host, str):
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_web_url(url: str) -> WebUrl:
    """The parts of an absolute http(s) URL, or ``ConfigError`` (``url_invalid``) saying why not.

    Refused: anything but ``http``/``https`` with ``//`` and a host; user information;
    a fragment; non-ASCII characters (write the host in its ``xn--`` form); control
    characters, spaces, tabs, CR/LF and backslashes anywhere; percent-escapes in the
    host; an IPv4 address in any notation but four decimal numbers; empty labels
    (``a..b``, a trailing dot); a port that is empty, 0 or above 65535.
    """
    return judge(url)


def judge(url: object) -> WebUrl:
    """``parse_web_url`` for any value: ``UrlRefused`` for whatever is not such a URL."""
    if not isinstance(url, str):
        raise UrlRefused(f"is not text but {type(url).__name__}")
    _check_characters(url)
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    rest = url[match.end() :] if match else ""
    if scheme not in ("http", "https") or not rest.startswith("//") or rest.startswith("///"):
        raise UrlRefused("is not an absolute http(s) URL (https://host/path)")
    rest = rest[2:]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, remainder = rest[:end], rest[end:]
    if "@" in authority:
        raise UrlRefused("carries user information (user@host), which hides the real host")
    host, port = _host_and_port(authority)
    path, _, query = remainder.partition("?")
    return WebUrl(scheme, host, port, path, query if "?" in remainder else None)


def _check_characters(url: str) -> None:
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii():
        raise UrlRefused("holds non-ASCII characters (write the host as xn--, percent-encode the rest)")
    if any(c <= " " or c == "\x7f" for c in url):
        raise UrlRefused("holds whitespace or a control character, which browsers drop or read differently")
    if "\\" in url:
        raise UrlRefused("holds a backslash, which browsers read as '/'")
    if "#" in url:
        raise UrlRefused("must not have a fragment (#...)")


def _host_and_port(authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        inner, bracket, after = authority[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise UrlRefused("has an unclosed or malformed [IPv6] host")
        return _ipv6(inner), _port(after[1:]) if after else None
    host, colon, port = authority.partition(":")
    return _host(host), _port(port) if colon else None


def _port(text: str) -> int:
    if not _PORT.fullmatch(text) or not 0 < int(text) <= 65535:
        raise UrlRefused("has a port that is not a number from 1 to 65535")
    return int(text)


def _ipv6(text: str) -> str:
    if "%" in text:
        raise UrlRefused("has a zone or a percent-escape in its IPv6 host")
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise UrlRefused("has an invalid IPv6 address as its host") from None


def _host(text: str) -> str:
    host = text.lower()
    if not host:
        raise UrlRefused("is not an absolute http(s) URL: it has no host")
    if "%" in host:
        raise UrlRefused("has a percent-escaped host, which browsers decode")
    labels = host.split(".")
    if "" in labels:
        raise UrlRefused("has an empty label in its host (a..b, or a leading or trailing dot)")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise UrlRefused("has a host name with characters other than letters, digits, '-', '_' and '.'")
    if _ENDS_IN_NUMBER.fullmatch(labels[-1]):
        # A browser reads every such host as an IPv4 address, in hex, octal or short forms.
        if len(labels) != 4 or not all(_DECIMAL_OCTET.fullmatch(x) and int(x) <= 255 for x in labels):
            raise UrlRefused("writes an IPv4 address in a notation browsers read differently (use a.b.c.d)")
        return host
    for label in labels:
        if label.startswith("xn--"):
            _check_punycode(label)
    return host


def _check_punycode(label: str) -> None:
    """An ``xn--`` label must decode to non-ASCII text: anything else a browser refuses or remaps."""
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        raise UrlRefused("has an xn-- label that is not valid punycode") from None
    if decoded.isascii():
        raise UrlRefused("has an xn-- label that spells plain ASCII")
