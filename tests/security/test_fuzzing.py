"""SECURITY.md 12: arbitrary callbacks, token responses and spec documents never raise anything but a
``FlowError``, leave every stored flow in a declared state, and put no secret in any error text.

Hypothesis drives the engine in-process (memory store, a scripted transport), so each example
costs a millisecond or so. ``--hypothesis-profile=long`` runs many more (see conftest.py).
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import string
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import quote

import flowengine as fe
import pytest
import yaml
from flowengine.testing import MockTransport
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.security.helpers import (
    ScriptedTransport,
    json_response,
    podio_data,
    query_of,
    token_body,
    with_pkce,
)

_T = TypeVar("_T")

CLIENT_SECRET = "cs-FUZZ-client-secret-0123456789"
ACCESS = "at-FUZZ-access-token-" + "a" * 40
REFRESH = "rt-FUZZ-refresh-token-" + "r" * 40
CODE_MARK = "CODE-FUZZ-"
REDIRECT_URI = "https://app.example.com/callback"


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(coro)


def _podio(change: Any = None) -> fe.FlowSpec:
    data = podio_data()
    if change is not None:
        change(data)
    return fe.load_spec(data)


SPECS = {
    "podio": _podio(),
    "strict-pkce": _podio(lambda d: (with_pkce(d), d["callback"].update(repeated="reject"))),
    "issuer": _podio(
        lambda d: (d.update(issuer="https://podio.com"), d["callback"].update(iss="iss", iss_required=True))
    ),
}


def _engine(
    spec: fe.FlowSpec, *answers: fe.HttpResponse | fe.FlowError
) -> tuple[fe.AsyncEngine, MockTransport]:
    transport = ScriptedTransport(*answers)
    engine = fe.AsyncEngine(
        spec,
        client=fe.Client("fuzz-client", CLIENT_SECRET, REDIRECT_URI),
        transport=transport,
        retry=fe.RetryPolicy(attempts=2, base_delay=0, max_delay=0),
    )
    return engine, transport


def _good_token() -> fe.HttpResponse:
    return json_response(token_body(access_token=ACCESS, refresh_token=REFRESH))


async def _declared_states(engine: fe.AsyncEngine) -> None:
    declared = set(engine.spec.machine.states if engine.spec.machine else ())
    for flow in await engine.flows():
        assert flow.state in declared, flow.state


def _assert_no_secret(texts: list[str], secrets: list[str]) -> None:
    for text in texts:
        for secret in secrets:
            if secret and len(secret) >= 8:
                assert secret not in text, f"a secret leaked into {text[:300]!r}"


def _texts_of(error: BaseException | None, flow: fe.Flow | None = None) -> list[str]:
    texts: list[str] = []
    if error is not None:
        # Not ProviderError.body: it is the provider's own error document, kept as data.
        texts += [str(error), repr(error), error.message]
        if isinstance(error, fe.ProviderError):
            texts.append(error.description or "")
    if flow is not None:
        texts.append(repr(flow))
        if flow.error is not None:
            texts += [flow.error.message, flow.error.description or "", repr(flow.error)]
    return texts


# --- callback query strings ---------------------------------------------------------------------------

_NAMES = ["state", "code", "error", "error_reason", "error_description", "iss", "scope", "session", "x"]
_ESCAPES = [
    "%ff",
    "%fe%ff",
    "%C3%28",
    "%80",
    "%00",
    "%",
    "%zz",
    "%E2%82",
    "%ED%A0%80",
    "+",
    "%2B",
    "&",
    "=",
    "#",
]


def _value() -> st.SearchStrategy[str]:
    """A parameter value: never the real ``state`` or a code, which only go under their own names."""
    return st.one_of(
        st.sampled_from(["", "access_denied", "invalid_scope", "https://podio.com", "https://evil.example"]),
        st.text(max_size=40),
        st.lists(st.sampled_from(_ESCAPES), min_size=1, max_size=6).map("".join),
        st.integers(1, 20_000).map(lambda n: "v" * n),
    )


_CODES = st.text(string.ascii_letters + string.digits, min_size=4, max_size=12).map(lambda s: CODE_MARK + s)


@st.composite
def callback_inputs(draw: st.DrawFn, state: str) -> str | dict[str, Any]:
    """A callback as a URL, a query string or a mapping: repeated, missing, huge, badly escaped, fragments."""
    states = st.tuples(st.just("state"), st.one_of(st.just(state), st.just(state + "x"), _value()))
    codes = st.tuples(st.just("code"), st.one_of(_CODES, _value()))
    others = st.tuples(st.one_of(st.sampled_from(_NAMES), st.text(max_size=10)), _value())
    pairs = draw(st.lists(st.one_of(states, codes, others), max_size=12))
    if draw(st.booleans()):
        pairs.append(("state", state))
    if draw(st.integers(0, 4)) == 0:
        mapping: dict[str, Any] = {}
        for key, value in pairs:
            mapping.setdefault(key, []).append(value)
        out: dict[str, Any] = {
            k: (v[0] if len(v) == 1 and draw(st.booleans()) else v) for k, v in mapping.items()
        }
        if draw(st.booleans()):
            weird = st.one_of(st.none(), st.integers(), st.binary(max_size=4), st.just(["a", 1]))
            out[draw(st.sampled_from(_NAMES))] = draw(weird)
        return out
    encode = draw(st.booleans())
    parts = [f"{quote(k) if encode else k}={quote(v) if encode else v}" for k, v in pairs]
    query = "&".join(draw(st.permutations(parts)) if parts else [])
    fragment = draw(st.sampled_from(["", "#", "#code=frag&state=" + state, "#" + draw(st.text(max_size=10))]))
    prefix = draw(st.sampled_from(["", "?", REDIRECT_URI + "?", "https://other.example/cb?", "cb?"]))
    return prefix + query + fragment


@given(data=st.data(), spec_name=st.sampled_from(sorted(SPECS)), bind_session=st.booleans())
def test_sec12_any_callback_is_a_flow_or_a_flow_error(
    data: st.DataObject, spec_name: str, bind_session: bool
) -> None:
    async def scenario() -> None:
        engine, transport = _engine(SPECS[spec_name], _good_token())
        flow = await engine.start(session="session-1" if bind_session else None)
        state = query_of(flow.authorization_url or "")["state"]
        callback = data.draw(callback_inputs(state), label="callback")
        session = data.draw(st.sampled_from([None, "session-1", "session-2"]), label="session")
        result: fe.Flow | None = None
        error: BaseException | None = None
        try:
            result = await engine.callback(callback, session=session)
        except fe.FlowError as exc:
            error = exc
        await _declared_states(engine)
        codes = [v for v in json.dumps(callback, default=str).split('"') if v.startswith(CODE_MARK)]
        _assert_no_secret(_texts_of(error, result), [CLIENT_SECRET, ACCESS, REFRESH, state, *codes])
        if result is not None and result.state == "exchanged":
            assert len(transport.sent) == 1
        await engine.aclose()

    _run(scenario())


# --- token responses -------------------------------------------------------------------------------------

_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True), st.text(max_size=30)
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(...), strategy)  # `...` leaves the field out


token_like = st.fixed_dictionaries(
    {
        "access_token": _maybe(st.one_of(st.just(ACCESS), st.just(""), _JSON_SCALARS)),
        "token_type": _maybe(
            st.sampled_from(["bearer", "Bearer", "BEARER", "mac", "", " bearer", "OAuth2"]) | _JSON
        ),
        "expires_in": _maybe(
            st.one_of(
                st.integers(-(10**13), 10**13),
                st.floats(allow_nan=True, allow_infinity=True),
                st.sampled_from(["3600", " 3600 ", "3600.5", "-1", "1e3", "٣٦٠٠", "", "0x10"]),
                _JSON,
            )
        ),
        "refresh_token": _maybe(st.one_of(st.just(REFRESH), st.just(""), _JSON_SCALARS)),
        "scope": _maybe(st.one_of(st.text(max_size=20), st.lists(st.text(max_size=8), max_size=3), _JSON)),
        "ref": _maybe(
            st.one_of(
                st.fixed_dictionaries({"type": _maybe(_JSON_SCALARS), "id": _maybe(_JSON_SCALARS)}),
                _JSON,
            )
        ),
        "error": _maybe(st.sampled_from(["invalid_grant", "invalid_client", "server_error"]) | _JSON_SCALARS),
        "error_description": _maybe(st.text(max_size=30)),
    }
)


def _dumps(value: Any) -> bytes:
    return json.dumps(_present(value), allow_nan=True).encode()


def _present(value: Any) -> Any:
    """The value without the fields ``_maybe`` left out (``...``), at any depth."""
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not ...}
    return value


token_bodies = st.one_of(
    token_like.map(_dumps),
    _JSON.map(_dumps),
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"<html><body>Bad Gateway</body></html>", b"", b"null", b"{", b"\xef\xbb\xbf{}"]),
)
statuses = st.one_of(
    st.sampled_from([200, 201, 204, 302, 400, 401, 403, 420, 429, 500, 502, 503]), st.integers(100, 599)
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(
            ["application/json", "application/json; charset=utf-8", "text/html", "text/plain", "", "x/y"]
        )
        | st.text(max_size=20),
        "retry-after": st.sampled_from(["0", "5", "-1", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", "9" * 30])
        | st.text(max_size=10),
    },
)


def _check_token(token: fe.Token, spec: fe.FlowSpec) -> None:
    assert isinstance(token.access_token, str) and token.access_token
    assert token.token_type.lower() in {t.lower() for t in spec.token.token_types}
    if token.expires_at is not None:
        assert math.isfinite(token.expires_at) and token.expires_at >= token.obtained_at
    assert token.refresh_token is None or (isinstance(token.refresh_token, str) and token.refresh_token)


@given(status=statuses, head=headers, body=token_bodies)
def test_sec12_any_token_response_to_an_exchange_is_a_token_or_a_failed_flow(
    status: int, head: dict[str, str], body: bytes
) -> None:
    async def scenario() -> None:
        spec = SPECS["podio"]
        engine, transport = _engine(spec, fe.HttpResponse(status, head, body))
        flow = await engine.start()
        state = query_of(flow.authorization_url or "")["state"]
        done = await engine.callback({"state": state, "code": CODE_MARK + "exchange"})
        assert done.state in ("exchanged", "failed")
        await _declared_states(engine)
        tokens = await engine.tokens()
        if done.state == "exchanged":
            [token] = tokens
            _check_token(token, spec)
            assert 200 <= status < 300
        else:
            assert tokens == []
            _assert_no_secret(_texts_of(None, done), [CLIENT_SECRET, ACCESS, REFRESH, CODE_MARK + "exchange"])
        assert len(transport.sent) == 1  # a code exchange is never repeated
        await engine.aclose()

    _run(scenario())


@given(status=statuses, head=headers, body=token_bodies)
def test_sec12_any_token_response_to_a_refresh_keeps_a_usable_token(
    status: int, head: dict[str, str], body: bytes
) -> None:
    async def scenario() -> None:
        spec = SPECS["podio"]
        engine, _transport = _engine(spec, _good_token(), *[fe.HttpResponse(status, head, body)] * 2)
        flow = await engine.start()
        done = await engine.callback(
            {"state": query_of(flow.authorization_url or "")["state"], "code": "c0de"}
        )
        before = await engine.token_for(done)
        assert before is not None
        error: BaseException | None = None
        try:
            after = await engine.refresh(before)
        except fe.FlowError as exc:
            error = exc
            stored = await engine.get_token(before.key)
            assert stored is not None
            assert stored.access_token == before.access_token  # nothing half-replaced
            _assert_no_secret(_texts_of(exc), [CLIENT_SECRET, ACCESS, REFRESH])
        else:
            _check_token(after, spec)
            assert await engine.get_token(before.key) == after
        assert error is None or isinstance(error, fe.FlowError)
        await engine.aclose()

    _run(scenario())


# --- spec documents -----------------------------------------------------------------------------------

_YAML_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 10**6),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
        st.sampled_from(
            ["redirected", "authorized", "exchanged", "failed", "{code}", "{cod}", "{state}", "http://x", "*"]
        ),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a mapping or list inside ``node`` (the root included)."""
    found = [path] if isinstance(node, dict | list) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found += _containers(child, (*path, key))
    return found


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated_podio(draw: st.DrawFn) -> dict[str, Any]:
    """``specs/podio.yaml`` with one to four edits: keys dropped, renamed or added, values replaced."""
    data = copy.deepcopy(podio_data())
    for _ in range(draw(st.integers(1, 4))):
        target = _at(data, draw(st.sampled_from(_containers(data))))
        op = draw(st.sampled_from(["delete", "replace", "add", "rename", "swap"]))
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        if not keys and op != "add":
            continue
        if op == "delete":
            del target[draw(st.sampled_from(keys))]
        elif op == "replace":
            target[draw(st.sampled_from(keys))] = draw(_YAML_VALUES)
        elif op == "add":
            if isinstance(target, dict):
                target[draw(st.text(max_size=8))] = draw(_YAML_VALUES)
            else:
                target.append(draw(_YAML_VALUES))
        elif op == "rename" and isinstance(target, dict):
            key = draw(st.sampled_from(keys))
            target[draw(st.text(max_size=8) | st.sampled_from(["dest", "source", "when", "do", "ttl"]))] = (
                target.pop(key)
            )
        elif op == "swap" and len(keys) > 1 and isinstance(target, list):
            i, j = draw(st.permutations(keys))[:2]
            target[i], target[j] = target[j], target[i]
    return data


@st.composite
def mangled_yaml(draw: st.DrawFn) -> str:
    """The YAML text of podio.yaml with a few characters deleted, inserted or replaced."""
    text = yaml.safe_dump(podio_data(), sort_keys=False)
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        piece = draw(
            st.sampled_from(
                [":", " ", "\n", "-", "'", '"', "{", "[", "*", "&a", "!!python/name:os.system", "\t"]
            )
            | st.text(max_size=3)
        )
        cut = draw(st.integers(0, 3))
        text = text[:at] + piece + text[at + cut :]
    return text + "\n"


async def _drive(spec: fe.FlowSpec) -> None:
    """Run one flow of a spec that loaded: every step may refuse, but only with a FlowError."""
    try:
        engine, _transport = _engine(spec, _good_token())  # compiling checks guard and action names
    except fe.SpecError:
        return
    try:
        flow = await engine.start()
        query = query_of(flow.authorization_url or "")
        state = next((v for v in query.values() if v and len(v) >= 43), "")
        callback = {spec.callback.state: state, spec.callback.code: "c0de"}
        if spec.callback.iss and spec.issuer:
            callback[spec.callback.iss] = spec.issuer
        done = await engine.callback(callback)
        if done.token_key:
            await engine.refresh(done.token_key)
    except fe.FlowError:
        pass
    finally:
        await _declared_states(engine)
        await engine.aclose()


@given(document=st.one_of(mutated_podio(), mangled_yaml()))
def test_sec12_any_spec_document_loads_or_is_spec_invalid(document: dict[str, Any] | str) -> None:
    try:
        spec = fe.load_spec(document)
    except fe.SpecError as exc:
        refused: fe.SpecError | None = exc
    except fe.FlowError:  # e.g. a one-line text read as a spec name
        assume(isinstance(document, str))
        return
    else:
        refused = None
    if refused is not None:
        assert refused.problems and all(p.path for p in refused.problems)
        return
    _run(_drive(spec))


# --- what the long profile found ------------------------------------------------------------------------


def test_sec12_an_endpoint_with_a_broken_ipv6_host_is_spec_invalid() -> None:
    data = podio_data()
    data["endpoints"]["token"] = "https://[api.podio.com/oauth/token/v2"
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(data)
    assert caught.value.problems[0].path == "$.endpoints.token"


def test_sec12_an_endpoint_override_with_a_broken_ipv6_host_is_config_invalid() -> None:
    with pytest.raises(fe.ConfigError):
        fe.AsyncEngine("podio", client=fe.Client("cid"), endpoints={"token": "http://[::1/oauth/token"})


async def test_sec12_a_redirect_uri_with_a_broken_ipv6_host_is_refused() -> None:
    engine, _ = _engine(SPECS["podio"])
    with pytest.raises(fe.ConfigError) as caught:
        await engine.start(redirect_uri="http://[::1/callback")
    assert caught.value.code == "redirect_uri_invalid"


async def test_sec12_a_callback_url_with_a_broken_ipv6_host_is_callback_invalid() -> None:
    engine, transport = _engine(SPECS["podio"])
    flow = await engine.start()
    state = query_of(flow.authorization_url or "")["state"]
    with pytest.raises(fe.CallbackError) as caught:
        await engine.callback(f"https://[app.example.com/callback?state={state}&code=c0de")
    assert caught.value.code == "callback_invalid"
    assert transport.sent == []
