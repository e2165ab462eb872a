"""SECURITY.md 29: a token goes into an ``Authorization`` header, so it must be safe there.

An access token, refresh token or ``token_type`` holding CR, LF, any other control character,
a space or anything beyond visible ASCII is refused as ``invalid_token_response`` and never
stored; ``authorization_header()`` can never return a line break, whatever token it is given.
"""

from __future__ import annotations

import json

import attrs
import flowengine as fe
import pytest

from flowengine_sandbox.faults import Fault
from tests.conftest import SandboxFixture
from tests.security.helpers import ScriptedTransport, json_response, query_of, token_body

UNSAFE = {
    "crlf": "at-good\r\nX-Injected: yes",
    "lf": "at-good\nSet-Cookie: a=b",
    "cr": "at-good\r",
    "nul": "at-\x00good",
    "tab": "at-\tgood",
    "space": "at good",
    "del": "at-good\x7f",
    "non-ascii": "at-göod",
    "unicode-line-separator": "at-good\u2028x",
    "vertical-tab": "at-good\x0bx",
}
FIELDS = ["access_token", "refresh_token", "token_type"]


def _answer(field: str, value: str) -> dict[str, object]:
    if field == "token_type":
        value = "bearer" + value.removeprefix("at-good")
    return token_body(**{field: value})


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", UNSAFE.values(), ids=UNSAFE.keys())
async def test_sec29_an_exchange_answering_an_unsafe_token_fails_and_stores_nothing(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, field: str, value: str
) -> None:
    flow = await engine.start()
    callback = await sandbox.consent(flow.authorization_url)
    body = json.dumps(_answer(field, value))
    sandbox.settings.faults.add(
        Fault("respond", status=200, content_type="application/json", body=body, times=1)
    )
    done = await engine.callback(callback)
    assert done.state == "failed"
    assert done.error is not None and done.error.code == "invalid_token_response"
    assert await engine.tokens() == []


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", UNSAFE.values(), ids=UNSAFE.keys())
async def test_sec29_a_refresh_answering_an_unsafe_token_keeps_the_old_one(field: str, value: str) -> None:
    transport = ScriptedTransport(json_response(token_body()), json_response(_answer(field, value)))
    client = fe.Client("cid", "secret", "https://app.example.com/cb")
    async with fe.AsyncEngine(
        "podio", client=client, transport=transport, retry=fe.RetryPolicy(attempts=1)
    ) as engine:
        flow = await engine.start()
        done = await engine.callback(
            {"state": query_of(flow.authorization_url or "")["state"], "code": "c0de"}
        )
        before = await engine.token_for(done)
        assert before is not None
        with pytest.raises(fe.ProviderError) as caught:
            await engine.refresh(before)
        assert caught.value.code == "invalid_token_response"
        assert await engine.get_token(before.key) == before


@pytest.mark.parametrize("value", UNSAFE.values(), ids=UNSAFE.keys())
def test_sec29_authorization_header_never_returns_a_line_break(value: str) -> None:
    token = fe.Token(
        provider="podio",
        account=fe.AccountRef("user", 1),
        access_token="at-good",
        token_type="bearer",
        obtained_at=0,
    )
    assert token.authorization_header() == "Bearer at-good"
    for unsafe in (
        attrs.evolve(token, access_token=value),
        attrs.evolve(token, header_scheme="Bearer\r\nX:"),
    ):
        with pytest.raises(fe.ProviderError) as caught:
            unsafe.authorization_header()
        assert caught.value.code == "invalid_token_response"


@pytest.mark.parametrize("scheme", ["Bearer\r\nX", "Bear er", "", "Bearer\x00"])
def test_sec29_a_spec_header_scheme_must_be_one_visible_word(scheme: str) -> None:
    from tests.security.helpers import podio_data

    data = podio_data()
    data["usage"]["header_scheme"] = scheme
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(data)
    assert caught.value.problems[0].path == "$.usage.header_scheme"
