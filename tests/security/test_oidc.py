"""OpenID Connect and the device grant against the checklist (docs/security.md 5, 11, 13, 15, 28, 32, 35).

Offline: the shipped Google and Microsoft specs against a provider made of a MockTransport
and a test key, so each spoiled ID token is exactly the one a check names. The same
checks run against Authlib's real provider in tests/oidc/.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import flowengine as fe
import pytest
from flowengine.testing import FakeClock, MockTransport, json_response
from joserfc import jwt

from tests.support.keys import rsa_key

NOW = 1_800_000_000.0
KEY = rsa_key(0, {"kid": "k1", "use": "sig"})
IMPOSTOR = rsa_key(1, {"kid": "k1", "use": "sig"})
CLIENT = fe.Client("client-1", "client-secret-" + "s" * 32, "https://app.example.com/callback")
GOOGLE = "https://accounts.google.com"
TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """A JWT no library would make (alg none, HMAC keyed with a public key): built by hand, on purpose."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    if header["alg"] == "none":
        return head + "."
    return head + "." + _b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


class Provider:
    """Google's (or Microsoft's) token endpoint and key set, its ID tokens spoiled on demand."""

    def __init__(self, issuer: str = GOOGLE, **claims: Any) -> None:
        self.issuer = issuer
        self.claims = claims
        self.nonce: str | None = None
        self.sign: Callable[[dict[str, Any]], str] = lambda c: jwt.encode(
            {"alg": "RS256", "kid": "k1"}, c, KEY
        )
        self.error_body: dict[str, Any] | None = None
        self.device_answers: list[dict[str, Any]] = []
        self.transport = MockTransport(self.answer)

    def id_token(self) -> str:
        claims = {"iss": self.issuer, "sub": "42", "aud": CLIENT.client_id, "iat": NOW, "exp": NOW + 3600}
        claims |= {"nonce": self.nonce} if self.nonce else {}
        return self.sign({**claims, **self.claims})

    def answer(self, request: fe.HttpRequest) -> fe.HttpResponse:
        if request.method == "GET":
            return json_response({"keys": [KEY.as_dict(private=False)]})
        if self.error_body is not None:
            return json_response(self.error_body, 400)
        form = dict(parse_qsl(request.body.decode()))
        if request.url.endswith("/device/code") or request.url.endswith("/devicecode"):
            return json_response(
                {
                    "device_code": "DEVICE-CODE-SECRET-" + "d" * 20,
                    "user_code": "ABCD-EFGH",
                    "verification_url": "https://www.google.com/device",
                    "expires_in": 1800,
                    "interval": 5,
                }
            )
        if form.get("grant_type", "").endswith("device_code") and self.device_answers:
            return json_response(self.device_answers.pop(0), 400)
        token = {"access_token": "ACCESS-TOKEN-SECRET", "token_type": "Bearer", "expires_in": 3600}
        return json_response({**token, "refresh_token": "REFRESH-TOKEN-SECRET", "id_token": self.id_token()})


def _engine(provider: Provider, spec: str | fe.FlowSpec = "google", **options: Any) -> fe.AsyncEngine:
    return fe.AsyncEngine(spec, client=CLIENT, transport=provider.transport, clock=FakeClock(NOW), **options)


async def _login(eng: fe.AsyncEngine, provider: Provider, **start: Any) -> fe.Flow:
    flow = await eng.start(**start)
    query = dict(parse_qsl(urlsplit(flow.authorization_url or "").query))
    provider.nonce = provider.nonce or query["nonce"]
    return await eng.callback({"code": "CODE-SECRET", "state": query["state"]})


async def _refused(provider: Provider, code: str, spec: str = "google", **start: Any) -> None:
    async with _engine(provider, spec) as eng:
        done = await _login(eng, provider, **start)
        assert (done.state, done.error.code if done.error else None) == ("failed", code)
        assert await eng.tokens() == [] and eng.unsaved_tokens == []
        stored = await eng.get(done.id)
        assert stored is not None and stored.token_key is None and stored.claims == {}


# --- 35: the ID token is validated before any token is kept ----------------------------------

_PUBLIC_PEM = KEY.as_pem(private=False)
SPOILED: list[tuple[str, Callable[[Provider], None], str]] = [
    (
        "alg-none",
        lambda p: setattr(p, "sign", lambda c: _forged({"alg": "none"}, c, b"")),
        "id_token_alg_not_allowed",
    ),
    (
        "hs256-public-key",
        lambda p: setattr(p, "sign", lambda c: _forged({"alg": "HS256", "kid": "k1"}, c, _PUBLIC_PEM)),
        "id_token_alg_not_allowed",
    ),
    (
        "bad-signature",
        lambda p: setattr(p, "sign", lambda c: jwt.encode({"alg": "RS256", "kid": "k1"}, c, IMPOSTOR)),
        "id_token_invalid_signature",
    ),
    (
        "unknown-kid",
        lambda p: setattr(p, "sign", lambda c: jwt.encode({"alg": "RS256", "kid": "k9"}, c, IMPOSTOR)),
        "id_token_unknown_key",
    ),
    ("expired", lambda p: p.claims.update(iat=NOW - 7200, exp=NOW - 3600), "id_token_expired"),
    ("wrong-aud", lambda p: p.claims.update(aud="someone-else"), "id_token_wrong_audience"),
    (
        "foreign-azp",
        lambda p: p.claims.update(aud=[CLIENT.client_id, "x"], azp="x"),
        "id_token_untrusted_audience",
    ),
    ("other-nonce", lambda p: setattr(p, "nonce", "the-nonce-of-another-flow"), "id_token_nonce_mismatch"),
    ("future", lambda p: p.claims.update(iat=NOW + 3600), "id_token_issued_in_future"),
    ("at-hash", lambda p: p.claims.update(at_hash="AAAAAAAAAAAAAAAAAAAAAA"), "id_token_at_hash_mismatch"),
    ("no-sub", lambda p: p.claims.update(sub=""), "id_token_claim_invalid"),
]


@pytest.mark.parametrize(("spoil", "code"), [(s, c) for _, s, c in SPOILED], ids=[n for n, _, _ in SPOILED])
async def test_sec35_a_spoiled_id_token_fails_the_flow_and_no_token_is_kept(
    spoil: Callable[[Provider], None], code: str
) -> None:
    provider = Provider()
    spoil(provider)
    await _refused(provider, code)


async def test_sec35_a_token_answer_without_an_id_token_is_refused() -> None:
    provider = Provider()
    provider.answer = lambda _r: json_response({"access_token": "a", "token_type": "Bearer"})  # type: ignore[method-assign]
    provider.transport = MockTransport(lambda r: json_response({"access_token": "a", "token_type": "Bearer"}))
    await _refused(provider, "id_token_missing")


async def test_sec35_a_valid_id_token_is_kept_as_claims_never_as_a_token() -> None:
    provider = Provider(email="alice@example.com")
    async with _engine(provider) as eng:
        done = await _login(eng, provider)
        token = await eng.token_for(done)
    assert done.outcome == "granted" and token is not None
    assert token.claims["email"] == "alice@example.com" and "id_token" not in token.extra


# --- 5: the issuer ------------------------------------------------------------------------------


async def test_sec5_an_id_token_of_another_issuer_is_refused() -> None:
    await _refused(Provider(iss="https://accounts.google.com.evil.example"), "id_token_wrong_issuer")


@pytest.mark.parametrize(
    ("tid", "iss", "ok"),
    [
        (TENANT, f"https://login.microsoftonline.com/{TENANT}/v2.0", True),
        (TENANT, "https://login.microsoftonline.com/another-tenant/v2.0", False),
        ("evil.example/x", "https://login.microsoftonline.com/evil.example/x/v2.0", False),
        (None, f"https://login.microsoftonline.com/{TENANT}/v2.0", False),
    ],
)
async def test_sec5_a_multi_tenant_issuer_names_the_tokens_own_tenant(
    tid: str | None, iss: str, ok: bool
) -> None:
    claims = {"iss": iss} | ({"tid": tid} if tid else {})
    provider = Provider(**claims)
    async with _engine(provider, "microsoft") as eng:
        done = await _login(eng, provider)
    assert (done.outcome == "granted") is ok, done.error
    if not ok:
        assert done.error is not None and done.error.code == "id_token_wrong_issuer"


OTHER_TENANT = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"


@pytest.mark.parametrize(
    ("tenant", "tid", "ok"),
    [
        (TENANT, OTHER_TENANT, False),  # one tenant configured: another tenant's token is refused
        (TENANT, TENANT, True),
        ("common", OTHER_TENANT, True),  # the multi-tenant aliases: the token names its tenant
        ("organizations", OTHER_TENANT, True),
        ("consumers", OTHER_TENANT, True),
    ],
)
async def test_sec35_a_configured_tenant_is_never_replaced_by_the_tokens_own_claim(
    tenant: str, tid: str, ok: bool
) -> None:
    provider = Provider(iss=f"https://login.microsoftonline.com/{tid}/v2.0", tid=tid)
    async with _engine(provider, "microsoft") as eng:
        done = await _login(eng, provider, connection={"tenant": tenant})
        assert (done.outcome == "granted") is ok, done.error
        if not ok:
            assert done.error is not None and done.error.code == "id_token_wrong_issuer"
            assert await eng.tokens() == [] and eng.unsaved_tokens == []


def test_sec35_a_spec_must_say_which_values_let_a_claim_name_the_tenant() -> None:
    data = fe.spec_document(fe.load_spec("microsoft"))
    del data["openid"]["multi_tenant"]
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(data)
    assert [p.path for p in caught.value.problems] == ["$.openid.multi_tenant.tenant"]


# --- 32: the account is sub within iss -------------------------------------------------------


async def test_sec32_the_account_is_sub_within_its_issuer_whatever_the_caller_says() -> None:
    keys = set()
    for spec, issuer, extra in (
        ("google", GOOGLE, {}),
        ("microsoft", f"https://login.microsoftonline.com/{TENANT}/v2.0", {"tid": TENANT}),
        (
            "microsoft",
            "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0",
            {"tid": "00000000-0000-0000-0000-000000000001"},
        ),
    ):
        provider = Provider(issuer, **extra)  # the same sub, 42, at each
        async with _engine(provider, spec) as eng:
            done = await _login(eng, provider, subject="the-callers-idea")
            assert done.account == fe.AccountRef(issuer, "42")
            keys.add(done.token_key)
    assert len(keys) == 3


# --- 13: no secret shows ----------------------------------------------------------------------


class _Observer:
    def __init__(self) -> None:
        self.seen: list[fe.Flow] = []

    @fe.hookimpl
    def flowengine_transition(self, flow: fe.Flow, event: str, source: str, dest: str) -> None:
        self.seen.append(flow)


async def test_sec13_no_id_token_nonce_device_code_or_assertion_shows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    pm = fe.new_plugin_manager()
    observer = _Observer()
    pm.register(observer)
    provider = Provider(email="alice@example.com")
    provider.device_answers = [{"error": "authorization_pending"}, {"error": "slow_down"}]
    async with _engine(provider, plugin_manager=pm) as eng:
        done = await _login(eng, provider)
        token = await eng.token_for(done)
        device = await eng.start_device()
        polled = await eng.poll_device(device)
    assert done.outcome == "granted" and polled.outcome == "granted" and token is not None
    secrets = {
        provider.id_token(),
        provider.nonce or "",
        "DEVICE-CODE-SECRET",
        "ACCESS-TOKEN-SECRET",
        "CODE-SECRET",
    }
    seen = [
        caplog.text,
        repr(done),
        repr(token),
        repr(device),
        repr(polled),
        json.dumps(token.claims),
        json.dumps(done.claims),
        json.dumps(token.extra),
        *(repr(f) + json.dumps(f.claims) + repr(f.device and f.device.device_code) for f in observer.seen),
    ]
    for secret in secrets:
        assert secret and not any(secret in text for text in seen), secret[:12]
    assert "nonce" not in token.claims and "at_hash" not in token.claims


# --- 15: the device code is encrypted at rest, and forgotten -----------------------------------


async def test_sec15_a_device_code_is_sealed_at_rest_and_dropped_when_the_flow_ends(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(fe.new_store_key())
    db = tmp_path / "flows.db"
    provider = Provider()
    provider.device_answers = [{"error": "authorization_pending"}]
    async with _engine(provider, store=f"sqlite:///{db}?key_file={key_file}") as eng:
        flow = await eng.start_device()
        stored = await eng.get(flow.id)
        assert stored is not None and stored.device is not None
        assert stored.device.device_code == "DEVICE-CODE-SECRET-" + "d" * 20  # readable with the key
        assert b"DEVICE-CODE-SECRET" not in b"".join(p.read_bytes() for p in tmp_path.glob("flows.db*"))
        done = await eng.poll_device(flow)
        ended = await eng.get(flow.id)
    assert done.outcome == "granted"
    assert ended is not None and ended.device is not None and ended.device.device_code is None


# --- 28: what the provider echoes back is scrubbed ---------------------------------------------


async def test_sec28_a_client_assertion_echoed_back_is_scrubbed(tmp_path: Path) -> None:
    spec = tmp_path / "signed.yaml"
    spec.write_text(
        "extends: google\ngrants:\n  authorization_code:\n    client_auth: client_secret_jwt\n"
        "    params: {client_secret: null}\n",
        encoding="utf-8",
    )
    sent: list[str] = []

    def echo(request: fe.HttpRequest) -> fe.HttpResponse:
        assertion = dict(parse_qsl(request.body.decode())).get("client_assertion", "")
        sent.append(assertion)
        return json_response(
            {"error": "invalid_client", "error_description": f"bad assertion {assertion}"}, 401
        )

    provider = Provider()
    provider.transport = MockTransport(echo)
    async with _engine(provider, fe.load_spec(spec)) as eng:
        done = await _login(eng, provider)
    assert sent and sent[0]
    assert done.error is not None and done.error.code == "invalid_client"
    assert sent[0] not in (done.error.description or "") and sent[0][:12] not in repr(done.error)


# --- 11: a spec's OpenID and device sections are judged -----------------------------------------


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d["authorization"]["params"].pop("nonce"), "$.authorization.params"),
        (lambda d: d.pop("issuer"), "$.issuer"),
        (lambda d: d["openid"].update(algorithms=["HS256"]), "$.openid.algorithms"),
        (lambda d: d["openid"].update(algorithms=["none"]), "$.openid.algorithms"),
        (lambda d: d["openid"].update(leeway=3600), "$.openid.leeway"),
        (lambda d: d["openid"].update(jwks="keys"), "$.openid.jwks"),
        (lambda d: d.update(issuer="http://accounts.google.com"), "$.issuer"),
        (lambda d: d["grants"]["device_code"]["params"].pop("device_code"), "$.grants.device_code.params"),
        (lambda d: d["device"].update(grant="nothing"), "$.device.grant"),
        (lambda d: d.update(token={"account": {"id": "user.id"}}), "$.token.account"),
    ],
)
def test_sec11_a_spec_that_would_weaken_openid_or_the_device_grant_is_refused(
    change: Callable[[dict[str, Any]], Any], path: str
) -> None:
    document = fe.spec_document(fe.load_spec("google"))
    change(document)
    with pytest.raises(fe.SpecError) as info:
        fe.load_spec(document)
    assert path in {p.path for p in info.value.problems}, info.value.problems
