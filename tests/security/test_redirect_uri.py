"""SECURITY.md 10: the redirect URI is sent byte-identical to the token endpoint, and one that could
leak a code is refused before anyone is redirected anywhere."""

from __future__ import annotations

import flowengine as fe
import httpx
import pytest

from flowengine_web import create_app
from tests.conftest import SandboxFixture
from tests.security.helpers import assert_nothing_sent, podio_variant, query_of

ODD_BUT_VALID = "http://127.0.0.1:8765/cb/%7Euser/a+b?next=/a%2Fb&x=1+2&e=%C3%A9&empty="


async def test_sec10_token_request_carries_the_authorization_requests_redirect_uri_byte_for_byte(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> None:
    async with fe.AsyncEngine(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints) as engine:
        flow = await engine.start(redirect_uri=ODD_BUT_VALID)
        sent = query_of(flow.authorization_url or "")["redirect_uri"]
        assert sent.encode() == ODD_BUT_VALID.encode()
        callback = await sandbox.consent(flow.authorization_url)
        assert callback.startswith(ODD_BUT_VALID + "&")  # the sandbox redirected to it as sent
        done = await engine.callback(callback)
    assert done.state == "exchanged"  # the sandbox compares the two byte for byte, too
    [request] = sandbox.token_requests()
    assert request.fields["redirect_uri"].encode() == ODD_BUT_VALID.encode()


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example/callback",
        "https://127.0.0.1.evil.example/callback",
        "https://evil.example\\@127.0.0.1/callback",
        "http://127.0.0.1@evil.example/callback",
        "http://127.0.0.1:8765/callback#fragment",
        "http://127.0.0.1:99999/callback",
        "http://10.0.0.1/callback",
        "javascript:alert(1)",
        "//127.0.0.1/callback",
        "http://127.0.0.1/cb\n",
        "http://127.0.0.1/cällback",
    ],
)
async def test_sec10_a_redirect_uri_off_the_registered_domain_is_refused_before_any_redirect(
    engine: fe.AsyncEngine, uri: str
) -> None:
    assert engine.client.registered_domain == "127.0.0.1"
    with pytest.raises(fe.ConfigError) as caught:
        await engine.start(redirect_uri=uri)
    assert caught.value.code == "redirect_uri_invalid"
    assert await engine.flows() == []  # no flow, so no authorization URL was ever made


async def test_sec10_the_specs_registered_domain_applies_when_the_client_names_none(
    sandbox: SandboxFixture,
) -> None:
    spec = podio_variant(lambda d: d["redirect"].update(registered_domain="example.com"))
    client = fe.Client("cid", "secret", "https://app.example.com.evil.net/cb")
    async with fe.AsyncEngine(spec, client=client, endpoints=sandbox.endpoints) as engine:
        with pytest.raises(fe.ConfigError) as caught:
            await engine.start()
        assert caught.value.code == "redirect_uri_invalid"
        assert (await engine.start(redirect_uri="https://app.example.com/cb")).state == "redirected"
    assert_nothing_sent(sandbox)


async def test_sec10_the_web_frontend_refuses_to_redirect_off_domain(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    app = create_app(
        engine, secret_key="security-tests-secret-key-0123456789", base_url="https://evil.example"
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as browser:
        page = await browser.get("/auth/podio")
    assert page.status_code == 500
    assert "location" not in page.headers
    assert "redirect_uri_invalid" in page.text
    assert await engine.flows() == []
    assert_nothing_sent(sandbox)
