"""Every bundled provider spec, exercised offline against its provider's documented samples.

For each file in ``samples/`` (one per provider, and a few variants), through the
public API with a ``MockTransport`` for the provider and a ``FakeClock``:

- the authorization URL the spec makes (its address and every parameter);
- the code exchange it sends (method, URL, encoding, client authentication, body);
- the provider's documented sample answer read into account, scope, expiry and type;
- for an OpenID Connect spec, the answer's ID token (``$id_token``: signed here with a test key,
  with the sample's ``id_token`` claims and the flow's nonce) validated against a test key set
  the same transport serves at the spec's ``jwks`` endpoint: the account is ``sub`` within ``iss``;
- the refresh and revocation requests, where the spec has them.

A sample file names its spec by its own name (``github.yaml``) or by ``spec:``; a
variant (``github-form.yaml``) is its spec's main sample with some parts replaced.
``$client_id``, ``$state``, ``$code`` ... stand for the values of the run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import pytest
import yaml
from flowengine import (
    AccountRef,
    AsyncEngine,
    Client,
    Flow,
    HttpRequest,
    HttpResponse,
    Token,
    digest,
    load_spec,
)
from flowengine.testing import FakeClock, MockTransport, json_response
from joserfc import jwt

from tests.support.keys import rsa_key

SAMPLES = Path(__file__).parent / "samples"
SPECS = Path(__file__).resolve().parents[2] / "specs"
NOW = 1_700_000_000.0
CLIENT = Client("sample-client-id", "sample-client-secret", "https://app.example.com/callback")
CODE = "sample-code"
REFRESH = "sample-refresh-token"
#: The 25 providers of issue 13 (and Slack's user-token variant); Podio's specs have their own tests.
PROVIDERS = [
    "airtable",
    "asana",
    "atlassian",
    "box",
    "discord",
    "dropbox",
    "figma",
    "github",
    "gitlab",
    "google",
    "hubspot",
    "intercom",
    "linkedin",
    "microsoft",
    "notion",
    "quickbooks",
    "salesforce",
    "shopify",
    "slack",
    "spotify",
    "stripe",
    "x",
    "xero",
    "zendesk",
    "zoom",
]


def _variant(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A variant: its parts replace the main sample's; ``authorization``, ``token_request`` and
    ``token`` are replaced key by key; a part set to null is removed."""
    merged = {**base, **over}
    for part in ("authorization", "token_request", "token", "id_token"):
        if isinstance(base.get(part), dict) and isinstance(over.get(part), dict):
            merged[part] = {**base[part], **over[part]}
    return {k: v for k, v in merged.items() if v is not None}


def _load_samples() -> dict[str, dict[str, Any]]:
    raw = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(SAMPLES.glob("*.yaml"))}
    samples = {}
    for name, data in raw.items():
        spec = data.get("spec", name)
        samples[name] = {**(_variant(raw[spec], data) if spec != name else data), "spec": spec}
    return samples


SAMPLE_DATA = _load_samples()
NAMES = sorted(SAMPLE_DATA)


#: The key the provider of an OpenID sample signs its ID tokens with, and the key set serving it.
SIGNING_KEY = rsa_key(0, {"kid": "sample-key", "use": "sig"})
JWKS = {"keys": [SIGNING_KEY.as_dict(private=False)]}


class Provider:
    """The provider: its token endpoint answers every POST with the sample (an ``$id_token`` in it
    signed for the flow's nonce), and a GET (the spec's ``jwks`` endpoint) with the test key set."""

    def __init__(self, answer: HttpResponse, sample: dict[str, Any]) -> None:
        self.answer = answer
        self.id_token: dict[str, Any] = sample.get("id_token", {})
        #: The issuer's discovery document, for a spec that discovers its endpoints.
        self.discovery: dict[str, Any] | None = sample.get("discovery")
        self.nonce: str | None = None
        self.transport = MockTransport(self._answer)

    def _answer(self, request: HttpRequest) -> HttpResponse:
        if request.method == "GET" and request.url.endswith("/.well-known/openid-configuration"):
            return json_response(self.discovery) if self.discovery else json_response({}, 404)
        if request.method == "GET":
            return json_response(JWKS)
        if b"$id_token" not in self.answer.body:
            return self.answer
        claims = {"aud": CLIENT.client_id, "iat": int(NOW), "exp": int(NOW) + 3600, **self.id_token}
        if self.nonce is not None:
            claims["nonce"] = self.nonce
        signed = jwt.encode({"alg": "RS256", "kid": "sample-key"}, claims, SIGNING_KEY)
        return HttpResponse(200, self.answer.headers, self.answer.body.replace(b"$id_token", signed.encode()))

    @property
    def sent(self) -> list[HttpRequest]:
        """The requests to the provider's token endpoints (its key set is not one)."""
        return [request for request in self.transport.sent if request.method != "GET"]


def sample_answer(sample: dict[str, Any]) -> HttpResponse:
    answer = sample["answer"]
    body = answer["text"].encode() if "text" in answer else json.dumps(answer["body"]).encode()
    return HttpResponse(200, {"content-type": answer["content_type"]}, body)


def fill(value: Any, values: dict[str, str]) -> Any:
    """The sample's value with its ``$placeholders`` replaced by this run's values."""
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    if isinstance(value, str):
        return re.sub(r"\$(\w+)", lambda m: values[m[1]], value)
    return value


def run_values(flow: Flow | None = None, *, token: str = REFRESH) -> dict[str, str]:
    values = {
        "client_id": CLIENT.client_id,
        "client_secret": CLIENT.client_secret or "",
        "redirect_uri": CLIENT.redirect_uri or "",
        "client_redirect_uri": CLIENT.redirect_uri or "",
        "code": CODE,
        "refresh_token": REFRESH,
        "token": token,
    }
    if flow is not None and flow.code_verifier:
        raw = hashlib.sha256(flow.code_verifier.encode()).digest()
        values["code_verifier"] = flow.code_verifier
        values["code_challenge"] = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return values


def engine(sample: dict[str, Any], provider: Provider) -> AsyncEngine:
    spec = load_spec(sample["spec"])
    return AsyncEngine(spec, client=CLIENT, transport=provider.transport, clock=FakeClock(NOW))


def provider_for(sample: dict[str, Any], answer: HttpResponse | None = None) -> Provider:
    return Provider(answer or sample_answer(sample), sample)


async def start(eng: AsyncEngine, sample: dict[str, Any], provider: Provider) -> Flow:
    flow = await eng.start(connection=sample.get("connection"), **sample.get("start", {}))
    provider.nonce = dict(parse_qsl(urlsplit(flow.authorization_url or "").query)).get("nonce")
    return flow


def callback_url(flow: Flow, sample: dict[str, Any]) -> dict[str, str]:
    url = flow.authorization_url or ""
    state = dict(parse_qsl(urlsplit(url).query))["state"]
    return {"code": CODE, "state": state, **sample.get("callback", {})}


def assert_request(request: HttpRequest, expected: dict[str, Any], values: dict[str, str]) -> None:
    """The request has the sample's method, URL, encoding, client authentication, headers and body."""
    expected = fill(expected, values)
    assert request.method == expected.get("method", "POST")
    encoding = expected["encoding"]
    url, _, query = request.url.partition("?")
    assert url == expected["url"]
    content_type = request.headers.get("content-type")
    if encoding == "json":
        assert content_type == "application/json"
        body = json.loads(request.body)
    elif encoding == "form":
        assert content_type == "application/x-www-form-urlencoded"
        body = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
    else:
        assert request.body == b"" and content_type is None
        body = dict(parse_qsl(query))
    assert body == expected["body"]
    authorization = request.headers.get("authorization", "")
    if expected.get("basic"):
        user, _, password = base64.b64decode(authorization.removeprefix("Basic ")).decode().partition(":")
        assert (unquote_plus(user), unquote_plus(password)) == (CLIENT.client_id, CLIENT.client_secret)
    elif "authorization" not in expected.get("headers", {}):
        assert not authorization
    for name, value in expected.get("headers", {}).items():
        assert request.headers.get(name) == value, name


def test_every_provider_of_the_issue_ships_with_a_sample() -> None:
    shipped = {p.stem for p in SPECS.glob("*.yaml")} - {"podio", "podio-app", "podio-password"}
    assert set(PROVIDERS) <= shipped
    assert {s["spec"] for s in SAMPLE_DATA.values()} == shipped | set()
    for name in shipped:
        assert "https://" in (SPECS / f"{name}.yaml").read_text().split("\nname:")[0], f"{name}: no doc page"


@pytest.mark.parametrize("name", NAMES)
async def test_authorization_url(name: str) -> None:
    sample = SAMPLE_DATA[name]
    provider = provider_for(sample)
    async with engine(sample, provider) as eng:
        flow = await start(eng, sample, provider)
    url = urlsplit(flow.authorization_url or "")
    assert f"{url.scheme}://{url.netloc}{url.path}" == sample["authorization"]["url"]
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    assert digest(params["state"]) == flow.state_hash  # a fresh state, kept only as its digest
    secrets = {"state": params["state"], "nonce": params.get("nonce", "")}
    expected = fill(sample["authorization"]["params"], {**run_values(flow), **secrets})
    assert params == expected


@pytest.mark.parametrize("name", NAMES)
async def test_token_request(name: str) -> None:
    sample = SAMPLE_DATA[name]
    provider = provider_for(sample)
    async with engine(sample, provider) as eng:
        flow = await start(eng, sample, provider)
        await eng.callback(callback_url(flow, sample))
    [request] = provider.sent
    assert_request(request, sample["token_request"], run_values(flow))


@pytest.mark.parametrize("name", NAMES)
async def test_the_documented_answer(name: str) -> None:
    sample = SAMPLE_DATA[name]
    provider = provider_for(sample)
    async with engine(sample, provider) as eng:
        flow = await start(eng, sample, provider)
        done = await eng.callback(callback_url(flow, sample))
        token = await eng.token_for(done)
    if "error" in sample:
        assert token is None and done.outcome == "failed" and done.error is not None
        assert (done.error.code, done.error.provider_error) == tuple(sample["error"].values())
        return
    assert done.outcome == "granted", done.error
    assert token is not None
    expected = sample["token"]
    account = AccountRef("flow", flow.id) if expected["account"] == "flow" else None
    assert str(token.account) == str(account or expected["account"])
    assert token.scope == expected["scope"]
    assert token.token_type == expected["token_type"]
    lifetime = expected["expires_in"]
    assert token.expires_at == (None if lifetime is None else NOW + lifetime - min(60, lifetime / 2))
    assert token.kept == expected.get("kept", {})
    assert token.connection == done.connection
    prefix = expected.get("key_prefix", f"{sample['spec']}:").replace("flow:", f"flow:{flow.id}")
    assert token.key.startswith(prefix)
    assert done.granted_scope == expected["scope"]
    if "id_token" in sample:  # OpenID Connect: the claims, never the nonce, on the flow and the token
        assert token.claims["sub"] == sample["id_token"]["sub"] == done.claims["sub"]
        assert "nonce" not in token.claims and "id_token" not in token.extra


def _token(sample: dict[str, Any], flow: Flow) -> Token:
    return Token(
        provider=sample["spec"],
        account=AccountRef("flow", flow.id),
        access_token="sample-access-token",
        token_type="bearer",
        obtained_at=NOW - 3600,  # before the refresh is asked for: it is the one to refresh
        refresh_token=REFRESH,
        client_id=CLIENT.client_id,
        connection=dict(flow.connection),
        kept=dict(sample.get("token", {}).get("kept", {})),
    )


@pytest.mark.parametrize("name", NAMES)
async def test_refresh_request(name: str) -> None:
    sample = SAMPLE_DATA[name]
    rules = load_spec(sample["spec"]).token
    fresh: dict[str, Any] = {}
    for path, value in ((rules.access_token, "fresh-token"), (rules.token_type, rules.token_types[0])):
        *parents, last = path.split(".")
        inner = fresh
        for part in parents:
            inner = inner.setdefault(part, {})
        inner[last] = value
    fresh_answer = HttpResponse(200, {"content-type": "application/json"}, json.dumps(fresh).encode())
    provider = provider_for(sample, fresh_answer)
    async with engine(sample, provider) as eng:
        flow = await start(eng, sample, provider)
        if "refresh_token" not in eng.spec.grants:
            assert "refresh" not in sample
            return
        await eng.refresh(_token(sample, flow))
    [request] = provider.sent
    assert_request(request, sample["refresh"], run_values())


@pytest.mark.parametrize("name", NAMES)
async def test_revocation_request(name: str) -> None:
    sample = SAMPLE_DATA[name]
    provider = provider_for(sample, HttpResponse(200, {}, b""))
    async with engine(sample, provider) as eng:
        flow = await start(eng, sample, provider)
        if eng.spec.revocation is None:
            assert "revocation" not in sample
            return
        await eng.revoke(_token(sample, flow))
    [request] = provider.sent
    assert_request(request, sample["revocation"], run_values())
