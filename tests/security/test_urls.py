"""SECURITY.md 27: endpoints and redirect URIs are judged as a browser reads them (WHATWG URL Standard).

Every URL below passes Python's ``urlsplit`` with a host the old checks liked (most of them a
loopback host), while a browser, or another HTTP stack, reads something else: a backslash is a
``/``, tabs and newlines vanish, ``%31`` in a host is ``1``, ``0x7f.1`` is ``127.0.0.1``, Unicode
hosts go through IDNA, ``http:/x`` has the host ``x``. Each is refused in the three places an
engine takes a URL: a spec's endpoint (even with ``local_only``), a run-time ``endpoints=``
override, and a redirect URI. Nothing is ever started, so nothing is ever sent.
"""

from __future__ import annotations

from typing import Any

import attrs
import flowengine as fe
import pytest
from flowengine.testing import MockTransport

from tests.security.helpers import podio_data

#: URLs that some reader takes for loopback, or for a host they are not.
DISAGREEING = {
    "backslash-userinfo": "http://evil.example\\@127.0.0.1/authorize",
    "backslash-host": "http://127.0.0.1\\@evil.example/authorize",
    "backslash-path": "http://127.0.0.1\\evil.example/authorize",
    "userinfo": "http://evil.example@127.0.0.1/authorize",
    "userinfo-loopback-first": "http://127.0.0.1@evil.example/authorize",
    "userinfo-ipv6": "http://[::1]@evil.example/authorize",
    "tab-in-host": "http://127.0.0.1\t.evil.example/authorize",
    "tab-before-at": "http://evil.example\t@127.0.0.1/authorize",
    "newline-in-host": "http://127.0.0.1\n.evil.example/authorize",
    "crlf-in-path": "http://127.0.0.1/authorize\r\nX-Injected: 1",
    "cr-in-path": "http://127.0.0.1/authorize\r",
    "space-in-path": "http://127.0.0.1/a b",
    "leading-space": " http://127.0.0.1/authorize",
    "nul": "http://127.0.0.1/\x00",
    "del": "http://127.0.0.1/\x7f",
    "fragment-hides-host": "http://evil.example#@127.0.0.1/authorize",
    "percent-encoded-host": "http://%31%32%37.0.0.1/authorize",
    "percent-encoded-dot": "http://127%2e0.0.1/authorize",
    "hex-ipv4": "http://0x7f.1/authorize",
    "short-ipv4": "http://127.1/authorize",
    "integer-ipv4": "http://2130706433/authorize",
    "octal-ipv4": "http://0177.0.0.1/authorize",
    "leading-zero-ipv4": "http://127.0.0.01/authorize",
    "trailing-dot": "http://127.0.0.1./authorize",
    "empty-label": "http://localhost..evil/authorize",
    "idna-circled": "http://ⓛocalhost/authorize",
    "idna-fullwidth-dot": "http://127。0。0。1/authorize",
    "non-ascii-path": "http://127.0.0.1/cällback",
    "punycode-of-ascii": "http://xn--localhost-/authorize",
    "bad-punycode": "http://xn--99999999999/authorize",
    "one-slash": "http:/127.0.0.1/authorize",
    "three-slashes": "http:///127.0.0.1/authorize",
    "no-slash": "http:127.0.0.1/authorize",
    "ipv6-zone": "http://[::1%25eth0]/authorize",
    "unclosed-ipv6": "http://[::1/authorize",
    "port-zero": "http://127.0.0.1:0/authorize",
    "port-too-big": "http://127.0.0.1:99999/authorize",
    "port-empty": "http://127.0.0.1:/authorize",
    "port-not-digits": "http://127.0.0.1:8o/authorize",
    "scheme-relative": "//127.0.0.1/authorize",
    "javascript": "javascript:alert(1)//127.0.0.1/",
    "too-long": "http://127.0.0.1/" + "a" * 5000,
}
#: Odd but read alike by every parser: still accepted.
AGREEING = {
    "loopback-odd-query": "http://127.0.0.1:8765/cb/%7Euser/a+b?next=/a%2Fb&x=1+2&e=%C3%A9&empty=",
    "localhost-upper": "http://LOCALHOST:8080/cb",
    "ipv6-loopback": "http://[::1]:8080/cb",
    "ipv6-loopback-long": "http://[0:0:0:0:0:0:0:1]/cb",
}


def _local_spec_with(url: str) -> Any:
    data = podio_data()
    data["local_only"] = True
    data["endpoints"]["authorize"] = url
    return data


@pytest.mark.parametrize("url", DISAGREEING.values(), ids=DISAGREEING.keys())
def test_sec27_a_spec_endpoint_browsers_read_differently_is_spec_invalid(url: str) -> None:
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(_local_spec_with(url))
    assert [p.path for p in caught.value.problems] == ["$.endpoints.authorize"]


@pytest.mark.parametrize("url", DISAGREEING.values(), ids=DISAGREEING.keys())
def test_sec27_an_endpoint_override_browsers_read_differently_is_config_invalid(url: str) -> None:
    for name in ("authorize", "token"):
        with pytest.raises(fe.ConfigError) as caught:
            fe.AsyncEngine("podio", client=fe.Client("cid"), endpoints={name: url})
        assert caught.value.code == "config_invalid"
        assert name in caught.value.message


@pytest.mark.parametrize("url", DISAGREEING.values(), ids=DISAGREEING.keys())
async def test_sec27_a_redirect_uri_browsers_read_differently_is_refused(url: str) -> None:
    async with fe.AsyncEngine("podio", client=fe.Client("cid", "secret")) as engine:
        with pytest.raises(fe.ConfigError) as caught:
            await engine.start(redirect_uri=url)
        assert caught.value.code == "redirect_uri_invalid"
        assert await engine.flows() == []


@pytest.mark.parametrize("url", DISAGREEING.values(), ids=DISAGREEING.keys())
def test_sec27_the_public_judge_refuses_it_and_no_host_of_it_is_loopback(url: str) -> None:
    with pytest.raises(fe.ConfigError) as caught:
        fe.parse_web_url(url)
    assert caught.value.code == "url_invalid"
    assert not fe.is_loopback(url)


def test_sec27_a_hand_built_spec_cannot_smuggle_an_endpoint_past_the_engine() -> None:
    spec = fe.load_spec("podio")
    smuggled = attrs.evolve(spec, endpoints={**spec.endpoints, "token": DISAGREEING["backslash-userinfo"]})
    with pytest.raises(fe.SpecError) as caught:  # the engine judges a hand-built spec as load_spec does
        fe.AsyncEngine(smuggled, client=fe.Client("cid"))
    assert [p.path for p in caught.value.problems] == ["$.endpoints.token"]


@pytest.mark.parametrize("url", AGREEING.values(), ids=AGREEING.keys())
async def test_sec27_urls_every_reader_agrees_on_still_work(url: str) -> None:
    assert fe.parse_web_url(url).loopback
    assert fe.load_spec(_local_spec_with(url)).endpoints["authorize"] == url
    async with fe.AsyncEngine("podio", client=fe.Client("cid", "secret"), endpoints={"token": url}) as engine:
        flow = await engine.start(redirect_uri=url)
        assert flow.state == "redirected"


def test_sec27_the_judge_reads_hosts_as_a_browser_does() -> None:
    url = fe.parse_web_url("HTTPS://API.Example.COM:443/Path?q=1")
    assert (url.scheme, url.host, url.port, url.path, url.query) == (
        "https",
        "api.example.com",
        443,
        "/Path",
        "q=1",
    )
    assert url.origin == "https://api.example.com"
    assert not url.loopback
    assert fe.parse_web_url("http://[::1]:8080/").origin == "http://[::1]:8080"
    assert fe.parse_web_url("https://xn--bcher-kva.example/").host == "xn--bcher-kva.example"


def _issuer_spec() -> fe.FlowSpec:
    """The generic oidc spec, its issuer's pattern opened up: only the URL judge stands in the way."""
    data = fe.spec_document(fe.load_spec("oidc"))
    data["connection"]["issuer"]["pattern"] = ".+"
    return fe.load_spec(data)


@pytest.mark.parametrize(
    "url",
    [u.replace("http:", "https:", 1) for u in DISAGREEING.values()]
    + ["https://evil.example/..", "https://a/%2e%2e/b"],
    ids=[*DISAGREEING.keys(), "dot-dot", "escaped-dot-dot"],
)
async def test_sec27_an_issuer_browsers_read_differently_is_refused_before_any_fetch(url: str) -> None:
    fetched: list[str] = []

    def provider(request: fe.HttpRequest) -> fe.HttpResponse:
        fetched.append(request.url)
        return fe.HttpResponse(404, {}, b"")

    async with fe.AsyncEngine(
        _issuer_spec(),
        client=fe.Client("cid", "secret", "https://app.example/cb"),
        transport=MockTransport(provider),
    ) as engine:
        with pytest.raises(fe.ConfigError) as caught:
            await engine.start(connection={"issuer": url.removesuffix("/authorize")})
        assert caught.value.code in ("issuer_invalid", "connection_invalid")
    assert fetched == []
