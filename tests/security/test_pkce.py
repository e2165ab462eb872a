"""SECURITY.md 2: PKCE is S256 whenever the spec enables it, never ``plain``, never a fallback."""

from __future__ import annotations

import json
import string

import flowengine as fe
import pytest
from oauthlib.oauth2 import WebApplicationClient
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import code_challenge_method_s256

from tests.conftest import SandboxFixture
from tests.security.helpers import (
    ScriptedTransport,
    assert_nothing_sent,
    podio_variant,
    query_of,
    with_pkce,
)

RFC7636_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC7636_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def test_sec2_rfc7636_appendix_b_vector() -> None:
    assert fe._security.pkce_challenge(RFC7636_VERIFIER) == RFC7636_CHALLENGE


async def test_sec2_every_challenge_is_what_oauthlib_computes_for_the_verifier() -> None:
    """The engine's own verifiers and the challenges it sends, checked by a library we did not write."""
    engine = fe.AsyncEngine(
        podio_variant(with_pkce),
        client=fe.Client("cid", "secret", "https://app.example.com/cb"),
        transport=ScriptedTransport(),
    )
    oauthlib_client = WebApplicationClient("cid")
    for _ in range(300):
        flow = await engine.start()
        verifier = flow.code_verifier
        assert verifier is not None
        assert 43 <= len(verifier) <= 128 and set(verifier) <= UNRESERVED  # RFC 7636 §4.1
        query = query_of(flow.authorization_url or "")
        assert query["code_challenge_method"] == "S256"
        assert query["code_challenge"] == oauthlib_client.create_code_challenge(verifier, "S256")
        assert code_challenge_method_s256(verifier, query["code_challenge"])
        assert query["code_challenge"] != verifier


@pytest.mark.parametrize(
    ("method", "why"),
    [
        ("plain", "plain"),
        ("s256", "plain"),
        (None, "no method (which means plain)"),
    ],
)
def test_sec2_a_spec_that_could_send_plain_is_refused(method: str | None, why: str) -> None:
    def change(data: dict[str, object]) -> None:
        with_pkce(data)  # type: ignore[arg-type]
        params = data["authorization"]["params"]  # type: ignore[index]
        if method is None:
            del params["code_challenge_method"]
        else:
            params["code_challenge_method"] = method

    with pytest.raises(fe.SpecError) as caught:
        podio_variant(change)
    [problem] = caught.value.problems
    assert problem.path == "$.authorization.params.code_challenge_method"
    assert why in problem.message


async def test_sec2_s256_flow_against_the_sandbox_sends_the_matching_verifier(
    sandbox: SandboxFixture,
) -> None:
    async with fe.AsyncEngine(
        podio_variant(with_pkce), client=sandbox.client, endpoints=sandbox.endpoints
    ) as engine:
        flow = await engine.start()
        done = await engine.callback(await sandbox.consent(flow.authorization_url))
    assert done.state == "exchanged"
    [request] = sandbox.token_requests()
    assert request.fields["code_verifier"] == flow.code_verifier
    assert done.code_verifier is None  # forgotten once exchanged


async def test_sec2_a_stolen_code_injected_into_another_flow_is_refused_by_its_verifier(
    sandbox: SandboxFixture,
) -> None:
    """Code injection: the attacker's flow has its own verifier, which does not match the victim's code."""
    async with fe.AsyncEngine(
        podio_variant(with_pkce), client=sandbox.client, endpoints=sandbox.endpoints
    ) as engine:
        victim = await engine.start()
        stolen = query_of(await sandbox.consent(victim.authorization_url))["code"]
        attacker = await engine.start()
        attacker_state = query_of(attacker.authorization_url or "")["state"]
        done = await engine.callback({"state": attacker_state, "code": stolen})
        assert await engine.tokens() == []
    assert done.state == "failed"
    assert done.error is not None and done.error.code == "invalid_grant"
    [request] = sandbox.token_requests()
    assert request.status == 400


async def test_sec2_no_pkce_parameter_is_sent_when_the_spec_has_none(
    engine: fe.AsyncEngine, sandbox: SandboxFixture
) -> None:
    flow = await engine.start()
    assert not {"code_challenge", "code_challenge_method"} & set(query_of(flow.authorization_url or ""))
    await engine.callback(await sandbox.consent(flow.authorization_url))
    [request] = sandbox.token_requests()
    assert "code_verifier" not in request.fields


async def test_sec2_a_refused_pkce_request_is_not_retried_without_pkce(sandbox: SandboxFixture) -> None:
    """No fallback: when the provider refuses the challenge, the flow fails; nothing is re-sent plainly."""
    sandbox.settings.consent = "approve"
    async with fe.AsyncEngine(
        podio_variant(with_pkce), client=sandbox.client, endpoints=sandbox.endpoints
    ) as engine:
        flow = await engine.start()
        url = (flow.authorization_url or "").replace(
            "code_challenge_method=S256", "code_challenge_method=plain"
        )
        callback = await sandbox.consent(url)
        assert query_of(callback)["error"] == "invalid_request"
        done = await engine.callback(callback)
    assert done.state == "failed" and done.error is not None
    assert done.error.code == "provider_error"
    assert_nothing_sent(sandbox)
    assert json.dumps(done.error.description).find("S256") >= 0
