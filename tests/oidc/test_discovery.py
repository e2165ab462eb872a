"""Discovery (OpenID Connect Discovery 1.0, RFC 8414) against Authlib's provider, and its HTTP cache.

The requests are built by ``flowengine._discovery``, sent by the installed transport plugin,
answered by the provider; the answers are read back by the module under test.
"""

from __future__ import annotations

import json
from email.utils import formatdate

import flowengine as fe
import pytest
from flowengine._discovery import (
    DiscoveryCache,
    ProviderMetadata,
    check_issuer,
    discovery_request,
    discovery_url,
    read_discovery,
)
from flowengine._oidc_errors import DiscoveryError
from flowengine._oidc_http import CachePolicy, fresh_until

from tests.support.oidc_provider import OidcProvider

NOW = 1_800_000_000.0


async def _discover(provider: OidcProvider, transport: fe.Transport, **kw: str) -> ProviderMetadata:
    issuer = kw.pop("issuer", provider.issuer)
    response = await transport.send(discovery_request(issuer, **kw))  # type: ignore[arg-type]
    return read_discovery(response, issuer=issuer, **kw)  # type: ignore[arg-type]


def _refusal(error: pytest.ExceptionInfo[fe.FlowError]) -> str:
    return error.value.code


@pytest.mark.parametrize(
    ("issuer", "form", "url"),
    [
        ("https://op.example", "openid", "https://op.example/.well-known/openid-configuration"),
        ("https://op.example/", "openid", "https://op.example/.well-known/openid-configuration"),
        (
            "https://op.example/tenant/v2",
            "openid",
            "https://op.example/tenant/v2/.well-known/openid-configuration",
        ),
        ("https://op.example", "oauth", "https://op.example/.well-known/oauth-authorization-server"),
        (
            "https://op.example/tenant/",
            "oauth",
            "https://op.example/.well-known/oauth-authorization-server/tenant",
        ),
        ("http://127.0.0.1:8080", "openid", "http://127.0.0.1:8080/.well-known/openid-configuration"),
    ],
)
def test_the_metadata_url_follows_each_standard(issuer: str, form: str, url: str) -> None:
    request = discovery_request(issuer, form)  # type: ignore[arg-type]
    assert (discovery_url(issuer, form), request.method, request.url) == (url, "GET", url)  # type: ignore[arg-type]
    assert request.body == b"" and "authorization" not in request.headers


@pytest.mark.parametrize(
    "issuer",
    [
        "http://op.example",  # http off loopback
        "https://op.example?tenant=1",
        "https://op.example#x",
        "https://user@op.example",
        "https://op.example\\@evil.example",
        "ftp://op.example",
        "op.example",
        "https://[::1",
    ],
)
def test_an_issuer_that_is_not_https_or_is_ambiguous_is_refused(issuer: str) -> None:
    with pytest.raises(fe.ConfigError) as error:
        check_issuer(issuer)
    assert _refusal(error) == "issuer_invalid"
    with pytest.raises(fe.ConfigError):
        discovery_request(issuer)


async def test_the_providers_document_is_read_into_a_typed_record(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    metadata = await _discover(provider, transport)
    iss = provider.issuer
    assert metadata.issuer == iss
    assert (metadata.authorization_endpoint, metadata.token_endpoint) == (f"{iss}/authorize", f"{iss}/token")
    assert (metadata.jwks_uri, metadata.userinfo_endpoint) == (f"{iss}/jwks", f"{iss}/userinfo")
    assert metadata.device_authorization_endpoint == f"{iss}/device_authorization"
    assert metadata.revocation_endpoint == f"{iss}/revoke"
    assert metadata.end_session_endpoint is None
    assert metadata.code_challenge_methods_supported == ("S256",)
    assert metadata.id_token_signing_alg_values_supported == ("RS256", "ES256", "PS256")
    assert "private_key_jwt" in metadata.token_endpoint_auth_methods_supported
    assert "urn:ietf:params:oauth:grant-type:device_code" in metadata.grant_types_supported
    assert metadata.response_types_supported == ("code",)
    assert metadata.authorization_response_iss_parameter_supported is True
    assert metadata.document["subject_types_supported"] == ("public",)  # nothing the provider said is lost
    with pytest.raises(TypeError):
        metadata.document["issuer"] = "changed"  # type: ignore[index]


async def test_the_rfc8414_form_is_read_too(provider: OidcProvider, transport: fe.Transport) -> None:
    metadata = await _discover(provider, transport, form="oauth")
    assert metadata.token_endpoint == f"{provider.issuer}/token"


async def test_a_document_naming_another_issuer_is_refused(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    provider.discovery(issuer="https://impostor.example")
    with pytest.raises(DiscoveryError) as error:
        await _discover(provider, transport)
    assert _refusal(error) == "discovery_issuer_mismatch"


async def test_the_issuer_must_match_exactly_not_up_to_a_slash(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    with pytest.raises(DiscoveryError) as error:
        await _discover(provider, transport, issuer=provider.issuer + "/")
    assert _refusal(error) == "discovery_issuer_mismatch"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token_endpoint", "http://op.example/token"),
        ("jwks_uri", "http://keys.example/jwks"),
        ("userinfo_endpoint", "https://user:pw@op.example/userinfo"),
        ("authorization_endpoint", "https://op.example/authorize#frag"),
        ("device_authorization_endpoint", "https://op.example\\@evil.example/device"),
    ],
)
async def test_an_endpoint_off_https_or_ambiguous_is_refused(
    provider: OidcProvider, transport: fe.Transport, field: str, value: str
) -> None:
    provider.discovery(**{field: value})
    with pytest.raises(DiscoveryError) as error:
        await _discover(provider, transport)
    assert _refusal(error) == "discovery_insecure_url"
    assert field in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "form"),
    [
        ({"jwks_uri": None}, "openid"),
        ({"authorization_endpoint": None}, "openid"),
        ({"response_types_supported": None}, "oauth"),
        ({"scopes_supported": "openid profile"}, "openid"),
        ({"grant_types_supported": ["authorization_code", 7]}, "openid"),
        ({"token_endpoint": ["https://op.example/token"]}, "openid"),
        ({"authorization_response_iss_parameter_supported": "yes"}, "openid"),
    ],
)
async def test_a_document_lacking_a_field_or_mistyped_is_refused(
    provider: OidcProvider, transport: fe.Transport, overrides: dict[str, object], form: str
) -> None:
    provider.discovery(**overrides)
    with pytest.raises(DiscoveryError) as error:
        await _discover(provider, transport, form=form)
    assert _refusal(error) == "discovery_invalid"


def test_absent_lists_take_the_defaults_the_standards_give() -> None:
    body = {"issuer": "https://op.example", "response_types_supported": ["code"]}
    metadata = read_discovery(
        fe.HttpResponse(200, {}, json.dumps(body).encode()), issuer=body["issuer"], form="oauth"
    )
    assert metadata.grant_types_supported == ("authorization_code", "implicit")
    assert metadata.token_endpoint_auth_methods_supported == ("client_secret_basic",)
    assert metadata.code_challenge_methods_supported == ()
    assert metadata.authorization_response_iss_parameter_supported is False


@pytest.mark.parametrize(
    ("response", "code", "retryable"),
    [
        (fe.HttpResponse(503, {}, b"down"), "discovery_unavailable", True),
        (fe.HttpResponse(429, {}, b""), "discovery_unavailable", True),
        (fe.HttpResponse(404, {}, b"not here"), "discovery_invalid", False),
        (fe.HttpResponse(200, {"content-type": "text/html"}, b"<html>"), "discovery_invalid", False),
        (fe.HttpResponse(200, {}, b"{not json"), "discovery_invalid", False),
        (fe.HttpResponse(200, {}, b"[1, 2]"), "discovery_invalid", False),
        (fe.HttpResponse(200, {}, b"[" * 100_000 + b"]" * 100_000), "discovery_invalid", False),
        (fe.HttpResponse(200, {}, b'{"issuer": ' + b"9" * 5000 + b"}"), "discovery_invalid", False),
        (fe.HttpResponse(200, {}, b'{"issuer": "' + b"x" * 300_000 + b'"}'), "discovery_invalid", False),
        (
            fe.HttpResponse(
                200,
                {},
                b'{"issuer": "https://op.example", "authorization_endpoint": "https://op.example/a", '
                b'"jwks_uri": "https://op.example/k", "response_types_supported": ["code"], "x": '
                + b"[" * 20
                + b"]" * 20
                + b"}",
            ),
            "discovery_invalid",
            False,
        ),
    ],
    ids=["503", "429", "404", "html", "not-json", "array", "deep", "huge-number", "too-large", "nested"],
)
def test_unusable_answers_are_typed_refusals(response: fe.HttpResponse, code: str, retryable: bool) -> None:
    with pytest.raises(DiscoveryError) as error:
        read_discovery(response, issuer="https://op.example")
    assert (error.value.code, error.value.retryable) == (code, retryable)


# HTTP caching ---------------------------------------------------------------------------------


def _answer(**headers: str) -> fe.HttpResponse:
    return fe.HttpResponse(200, {k.replace("_", "-"): v for k, v in headers.items()}, b"{}")


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({}, 3600),
        ({"cache_control": "public, max-age=300"}, 300),
        ({"cache_control": "max-age=300", "age": "100"}, 200),
        ({"cache_control": "max-age=300", "age": "900"}, 0),
        ({"cache_control": "no-store"}, 0),
        ({"cache_control": "max-age=300, no-cache"}, 0),
        ({"cache_control": 'max-age="120"'}, 120),
        ({"cache_control": "max-age=-5"}, 3600),  # an invalid directive is ignored
        ({"cache_control": "max-age=999999999"}, 86400),  # capped
        ({"expires": formatdate(NOW + 600, usegmt=True)}, 600),
        ({"expires": formatdate(NOW + 600, usegmt=True), "date": formatdate(NOW - 100, usegmt=True)}, 700),
        ({"expires": "0"}, 0),  # an unreadable Expires means already stale (RFC 9111 §5.3)
        ({"expires": formatdate(NOW + 600, usegmt=True), "cache_control": "max-age=60"}, 60),
    ],
)
def test_freshness_follows_rfc9111(headers: dict[str, str], lifetime: float) -> None:
    assert fresh_until(_answer(**headers), NOW) == NOW + lifetime


def test_the_policy_bounds_freshness_both_ways() -> None:
    policy = CachePolicy(default_ttl=600, min_ttl=60, max_ttl=900)
    assert fresh_until(_answer(cache_control="no-store"), NOW, policy) == NOW + 60
    assert fresh_until(_answer(cache_control="max-age=86400"), NOW, policy) == NOW + 900
    assert fresh_until(_answer(), NOW, policy) == NOW + 600
    with pytest.raises(ValueError, match="min_ttl"):
        CachePolicy(default_ttl=10, min_ttl=60)


async def test_the_cache_keeps_a_document_as_long_as_its_headers_say(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    provider.discovery(headers={"Cache-Control": "public, max-age=300"})
    cache = DiscoveryCache()
    assert cache.get(provider.issuer, NOW) is None
    response = await transport.send(discovery_request(provider.issuer))
    metadata = cache.accept(response, issuer=provider.issuer, now=NOW)
    entry = cache.entry(provider.issuer)
    assert entry is not None and entry.fresh_until == NOW + 300
    assert cache.get(provider.issuer, NOW + 299) == metadata
    assert cache.get(provider.issuer, NOW + 300) is None  # stale: fetch again
    assert cache.get(provider.issuer, NOW + 300, allow_stale=True) == metadata


async def test_no_store_makes_every_use_a_fetch(provider: OidcProvider, transport: fe.Transport) -> None:
    provider.discovery(headers={"Cache-Control": "no-store"})
    cache = DiscoveryCache()
    cache.accept(await transport.send(discovery_request(provider.issuer)), issuer=provider.issuer, now=NOW)
    assert cache.get(provider.issuer, NOW) is None


async def test_a_refused_document_leaves_the_cached_one(
    provider: OidcProvider, transport: fe.Transport
) -> None:
    cache = DiscoveryCache()
    good = cache.accept(
        await transport.send(discovery_request(provider.issuer)), issuer=provider.issuer, now=NOW
    )
    provider.discovery(issuer="https://impostor.example")
    with pytest.raises(DiscoveryError):
        cache.accept(
            await transport.send(discovery_request(provider.issuer)), issuer=provider.issuer, now=NOW + 1
        )
    assert cache.get(provider.issuer, NOW + 1) == good


def test_the_cache_holds_a_bounded_number_of_issuers() -> None:
    cache = DiscoveryCache(max_issuers=2)
    for n in range(3):
        issuer = f"https://op{n}.example"
        body = json.dumps({"issuer": issuer, "response_types_supported": ["code"]}).encode()
        cache.accept(fe.HttpResponse(200, {}, body), issuer=issuer, now=NOW, form="oauth")
    assert cache.get("https://op0.example", NOW) is None
    assert cache.get("https://op2.example", NOW) is not None
    cache.discard("https://op2.example")
    assert cache.entry("https://op2.example") is None
