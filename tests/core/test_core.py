"""The pure core: a flow and an input in, the new flow and its intents out. No server, no event loop.

Every test here is a plain function: ``FlowCore.step`` never awaits, reads no
clock (``now`` is an argument) and draws no randomness (``FlowSecrets`` is an
input), so the same inputs give the same Step every time.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import attrs
import flowengine as fe
import pytest
from flowengine._callbacks import CallbackParams
from flowengine._core import FlowCore
from flowengine._machine import compile_flow
from flowengine._steps import (
    Answer,
    Begin,
    Callback,
    Exchange,
    Expire,
    FlowSecrets,
    SaveFlow,
    SaveToken,
    SendFailed,
    SendRequest,
    Step,
)
from flowengine.testing import json_response

NOW = 1_700_000_000.0
CLIENT = fe.Client("cid", "cs-SECRET", "https://app.example.com/callback")
SECRETS = FlowSecrets("flow-1", "state-SECRET-" + "s" * 30, None)
TOKEN_BODY = {
    "access_token": "at-SECRET",
    "token_type": "bearer",
    "expires_in": 28800,
    "refresh_token": "rt-SECRET",
    "scope": "global:all",
    "ref": {"type": "user", "id": 7},
}


@pytest.fixture(scope="module")
def core() -> FlowCore:
    spec = fe.load_spec("podio")
    return FlowCore(spec, compile_flow(spec), CLIENT, spec.endpoints)


def begin(core: FlowCore, **changes: object) -> Step:
    event = attrs.evolve(Begin(SECRETS, CLIENT.redirect_uri or ""), **changes)
    return core.step(None, event, NOW)


def code_callback(code: str = "code-SECRET", state: str = SECRETS.state) -> Callback:
    return Callback(CallbackParams(state=state, code=code))


def authorized(core: FlowCore) -> fe.Flow:
    return core.step(begin(core).flow, code_callback(), NOW + 1).flow


def test_begin_makes_the_flow_and_asks_to_create_it(core: FlowCore) -> None:
    step = begin(core, scope="user:read")
    flow = step.flow
    assert (flow.id, flow.state, flow.version, flow.outcome) == ("flow-1", "redirected", 1, None)
    assert flow.expires_at == NOW + 600
    assert flow.state_hash == fe.digest(SECRETS.state)
    query = parse_qs(urlsplit(flow.authorization_url or "").query)
    assert query["state"] == [SECRETS.state]
    assert query["scope"] == ["user:read"]
    (intent,) = step.intents
    assert isinstance(intent, SaveFlow)
    assert intent.expected_version is None
    assert intent.flow.authorization_url is None  # the stored record never holds state in clear


def test_the_core_is_a_function_of_its_inputs(core: FlowCore) -> None:
    assert begin(core) == begin(core)
    flow = begin(core).flow
    assert core.step(flow, code_callback(), NOW) == core.step(flow, code_callback(), NOW)


def test_a_code_callback_authorizes_and_asks_for_compare_and_set(core: FlowCore) -> None:
    flow = begin(core).flow
    step = core.step(flow, code_callback(), NOW + 1)
    assert (step.event, step.source, step.flow.state) == ("callback", "redirected", "authorized")
    assert step.flow.code == "code-SECRET"
    assert step.intents == (SaveFlow(step.flow, 1),)
    assert step.flow.version == 2


@pytest.mark.parametrize(
    ("params", "state", "outcome", "code"),
    [
        ({"error": "access_denied"}, "denied", "denied", "access_denied"),
        ({"error": "server_error"}, "failed", "failed", "provider_error"),
        ({}, "failed", "failed", "missing_code"),
    ],
)
def test_a_callback_without_a_code_ends_the_flow(
    core: FlowCore, params: dict[str, str], state: str, outcome: str, code: str
) -> None:
    flow = begin(core).flow
    step = core.step(flow, Callback(CallbackParams(state=SECRETS.state, **params)), NOW + 1)
    assert (step.flow.state, step.flow.outcome) == (state, outcome)
    assert step.flow.error is not None
    assert step.flow.error.code == code


def test_the_same_callback_again_changes_nothing_and_another_is_refused(core: FlowCore) -> None:
    flow = authorized(core)
    again = core.step(flow, code_callback(), NOW + 2)
    assert again == Step(flow)
    with pytest.raises(fe.CallbackError) as refused:
        core.step(flow, code_callback(code="other-code"), NOW + 2)
    assert refused.value.code == "state_used"


def test_a_late_callback_expires_the_flow_then_is_refused(core: FlowCore) -> None:
    flow = begin(core).flow
    step = core.step(flow, code_callback(), NOW + 601)
    assert (step.flow.state, step.flow.outcome) == ("failed", "failed")
    assert step.flow.error is not None
    assert step.flow.error.code == "flow_expired"
    assert isinstance(step.error, fe.CallbackError)
    assert step.error.code == "flow_expired"
    with pytest.raises(fe.CallbackError, match="flow_expired"):
        core.step(step.flow, code_callback(), NOW + 602)


def test_a_callback_from_another_session_or_client_is_refused(core: FlowCore) -> None:
    bound = begin(core, session="browser-1").flow
    with pytest.raises(fe.CallbackError) as other_session:
        core.step(bound, Callback(code_callback().params, session="browser-2"), NOW)
    assert other_session.value.code == "session_mismatch"
    foreign = attrs.evolve(begin(core).flow, client_id="someone-else")
    with pytest.raises(fe.CallbackError) as other_client:
        core.step(foreign, code_callback(), NOW)
    assert other_client.value.code == "wrong_provider"


def test_exchange_moves_to_exchanging_then_sends_the_code_once(core: FlowCore) -> None:
    step = core.step(authorized(core), Exchange(), NOW + 2)
    assert (step.event, step.flow.state) == ("exchange", "exchanging")
    save, send = step.intents
    assert isinstance(save, SaveFlow)
    assert isinstance(send, SendRequest)
    assert json.loads(send.request.body) == {
        "grant_type": "authorization_code",
        "client_id": "cid",
        "redirect_uri": CLIENT.redirect_uri,
        "client_secret": "cs-SECRET",
        "code": "code-SECRET",
    }
    assert set(send.sent_secrets) == {"cs-SECRET", "code-SECRET"}


def test_an_answer_saves_the_token_before_the_flow(core: FlowCore) -> None:
    exchanging = core.step(authorized(core), Exchange(), NOW + 2).flow
    step = core.step(exchanging, Answer(json_response(TOKEN_BODY)), NOW + 3)
    assert (step.event, step.flow.state, step.flow.outcome) == ("answer", "exchanged", "granted")
    token_intent, flow_intent = step.intents
    assert isinstance(token_intent, SaveToken)
    assert isinstance(flow_intent, SaveFlow)
    assert token_intent.token.account == fe.AccountRef("user", 7)
    assert step.flow.token_key == token_intent.token.key
    assert step.flow.code is None
    assert step.flow.code_verifier is None


def test_a_refused_exchange_fails_the_flow(core: FlowCore) -> None:
    exchanging = core.step(authorized(core), Exchange(), NOW + 2).flow
    answer = Answer(json_response({"error": "invalid_grant"}, status=400))
    step = core.step(exchanging, answer, NOW + 3)
    assert (step.flow.state, step.flow.outcome) == ("failed", "failed")
    assert step.flow.error is not None
    assert step.flow.error.code == "invalid_grant"
    assert not any(isinstance(i, SaveToken) for i in step.intents)


def test_a_request_that_never_left_returns_the_flow_to_authorized(core: FlowCore) -> None:
    exchanging = core.step(authorized(core), Exchange(), NOW + 2).flow
    unsent = fe.TransportError("refused", sent=False)
    step = core.step(exchanging, SendFailed(unsent), NOW + 3)
    assert (step.event, step.flow.state) == ("unsent", "authorized")
    assert step.flow.code == "code-SECRET"  # unspent: it may still be exchanged
    assert step.error is unsent
    sent = core.step(exchanging, SendFailed(fe.TransportError("reset")), NOW + 3)
    assert (sent.flow.state, sent.flow.outcome) == ("failed", "failed")


def test_a_flow_found_exchanging_under_the_lease_was_interrupted(core: FlowCore) -> None:
    exchanging = core.step(authorized(core), Exchange(), NOW + 2).flow
    step = core.step(exchanging, Exchange(), NOW + 3)
    assert (step.event, step.flow.state) == ("interrupt", "failed")
    assert step.flow.error is not None
    assert step.flow.error.code == "exchange_interrupted"
    assert not any(isinstance(i, SendRequest) for i in step.intents)


def test_expiry_fails_a_pending_flow_and_leaves_a_final_one(core: FlowCore) -> None:
    step = core.step(begin(core).flow, Expire(), NOW + 601)
    assert (step.flow.state, step.flow.outcome) == ("failed", "failed")
    assert core.step(step.flow, Expire(), NOW + 700) == Step(step.flow)


def test_without_an_account_in_the_answer_the_token_is_the_subjects_or_the_flows() -> None:
    podio = fe.load_spec("podio")
    spec = attrs.evolve(podio, token=attrs.evolve(podio.token, account=None))
    core = FlowCore(spec, compile_flow(spec), CLIENT, spec.endpoints)
    cases = (("alice", fe.AccountRef("subject", "alice")), (None, fe.AccountRef("flow", "flow-1")))
    for subject, account in cases:
        flow = core.step(None, Begin(SECRETS, CLIENT.redirect_uri or "", subject=subject), NOW).flow
        flow = core.step(flow, code_callback(), NOW).flow
        flow = core.step(flow, Exchange(), NOW).flow
        step = core.step(flow, Answer(json_response(TOKEN_BODY)), NOW)
        assert step.flow.account == account
        assert step.flow.token_key == f"podio:{account}"


def test_every_random_value_of_a_flow_comes_from_the_drivers_one_source() -> None:
    """Flow id, state, PKCE verifier and nonce all come from one replaceable source (review finding 5)."""
    from flowengine.testing import seeded_randomness

    client = fe.Client("id", "secret", "https://app.example/cb")

    async def start_google() -> fe.Flow:
        async with fe.AsyncEngine("google", client=client) as engine:
            return await engine.start()

    with seeded_randomness(7):
        first = asyncio.run(start_google())
    with seeded_randomness(7):
        again = asyncio.run(start_google())
    other = asyncio.run(start_google())

    query = parse_qs(urlsplit(first.authorization_url or "").query)
    assert {"state", "code_challenge", "nonce"} <= set(query)  # every random value is in the URL
    assert (again.id, again.authorization_url) == (first.id, first.authorization_url)
    assert other.id != first.id
    assert not {"state", "code_challenge", "nonce"} & {
        k for k, v in parse_qs(urlsplit(other.authorization_url or "").query).items() if v == query[k]
    }
