"""SECURITY.md 26: only ``FlowError`` escapes a public call, however deep, huge or malformed the input.

The token answers come from the sandbox over real loopback HTTP, on both transports, so the whole
path (transport, reader, engine, store) is what is tested: 400 KB of nested JSON once raised
``RecursionError`` out of ``callback()`` and ``refresh()`` and left the flow ``authorized``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import flowengine as fe
import pytest

from flowengine_aiohttp import AiohttpTransport
from flowengine_httpx import HttpxTransport
from flowengine_sandbox.faults import Fault
from flowengine_sandbox.plugin import PodioSandbox
from tests.conftest import SandboxFixture
from tests.security.helpers import ScriptedTransport, json_response, token_body

FAST = fe.RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01)

#: Bodies a token endpoint might answer with that no JSON reader should choke on.
HOSTILE_BODIES = {
    "400KB-nested-arrays": "[" * 200_000 + "]" * 200_000,
    "400KB-nested-objects": '{"a":' * 80_000 + "1" + "}" * 80_000,
    "unclosed-nesting": "[" * 400_000,
    "nested-inside-a-token": '{"access_token":"at","token_type":"bearer","x":'
    + "[" * 100_000
    + "]" * 100_000
    + "}",
    "33-levels": '{"access_token":"at","token_type":"bearer","x":' + "[" * 33 + "]" * 33 + "}",
    "5000-digit-expires-in": '{"access_token":"at","token_type":"bearer","expires_in":' + "9" * 5000 + "}",
    "5000-digit-number": "1" * 5000,
    "huge-exponent": '{"access_token":"at","token_type":"bearer","expires_in":1e99999}',
}


@pytest.fixture(params=[AiohttpTransport, HttpxTransport], ids=["aiohttp", "httpx"])
async def engine(
    request: pytest.FixtureRequest, sandbox: SandboxFixture, podio_spec: fe.FlowSpec
) -> AsyncIterator[fe.AsyncEngine]:
    transport = request.param(fe.TransportConfig(timeout=5.0))
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, transport=transport, retry=FAST
    ) as engine:
        yield engine


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
async def test_sec26_a_hostile_token_answer_to_an_exchange_fails_the_flow_with_a_typed_error(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, body: str
) -> None:
    flow = await engine.start()
    callback = await sandbox.consent(flow.authorization_url)
    sandbox.settings.faults.add(
        Fault("respond", status=200, content_type="application/json", body=body, times=1)
    )
    done = await engine.callback(callback)
    assert done.state == "failed"
    assert done.error is not None and done.error.code == "invalid_token_response"
    assert await engine.tokens() == []
    again = await engine.callback(callback)  # a replay gives the same outcome, not exchange_interrupted
    assert again == done


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
async def test_sec26_a_hostile_token_answer_to_a_refresh_is_a_typed_error_and_keeps_the_token(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, body: str
) -> None:
    done = await engine.callback(await sandbox.consent((await engine.start()).authorization_url))
    before = await engine.token_for(done)
    assert before is not None
    sandbox.settings.faults.add(Fault("respond", status=200, content_type="application/json", body=body))
    with pytest.raises(fe.ProviderError) as caught:
        await engine.refresh(before)
    assert caught.value.code == "invalid_token_response"
    assert await engine.get_token(before.key) == before


@pytest.mark.parametrize("status", [400, 401, 500])
async def test_sec26_a_deeply_nested_error_body_is_a_typed_error(
    engine: fe.AsyncEngine, sandbox: SandboxFixture, status: int
) -> None:
    done = await engine.callback(await sandbox.consent((await engine.start()).authorization_url))
    before = await engine.token_for(done)
    assert before is not None
    sandbox.settings.faults.add(
        Fault(
            "respond",
            status=status,
            content_type="application/json",
            body=HOSTILE_BODIES["400KB-nested-arrays"],
        )
    )
    with pytest.raises(fe.ProviderError) as caught:
        await engine.refresh(before)
    assert caught.value.code in ("provider_error", "unauthorized", "provider_unavailable")


async def test_sec26_a_grant_with_a_hostile_answer_is_a_typed_error(sandbox: SandboxFixture) -> None:
    spec = fe.load_spec("podio-password")
    sandbox.settings.faults.add(
        Fault(
            "respond",
            status=200,
            content_type="application/json",
            body=HOSTILE_BODIES["400KB-nested-objects"],
        )
    )
    endpoints = PodioSandbox(spec, sandbox.server.url).endpoints
    async with fe.AsyncEngine(spec, client=sandbox.client, endpoints=endpoints, retry=FAST) as engine:
        with pytest.raises(fe.ProviderError) as caught:
            await engine.grant("password", {"username": "someone@example.com", "password": "pw-0123456789"})
        assert caught.value.code == "invalid_token_response"
        assert await engine.tokens() == []


@pytest.mark.parametrize(
    "callback",
    [
        pytest.param(None, id="None"),
        pytest.param(42, id="int"),
        pytest.param(b"state=x&code=y", id="bytes"),
        pytest.param(["state", "x"], id="list"),
        pytest.param({f"k{i}": "v" for i in range(100_000)}, id="100000-parameters"),
        pytest.param({"state": ["x"] * 1_000_000}, id="a-million-states"),
        pytest.param({"state": [[["deep"]]]}, id="nested-lists"),
        pytest.param("state=" + "%" * 20_000, id="too-long"),
        pytest.param("https://[x/cb?state=x", id="broken-ipv6"),
        pytest.param("?" + "&".join(["a=1"] * 10_000), id="10000-pairs"),
    ],
)
async def test_sec26_any_callback_value_is_a_callback_error(callback: Any) -> None:
    transport = ScriptedTransport(json_response(token_body()))
    async with fe.AsyncEngine(
        "podio", client=fe.Client("cid", "secret", "https://app.example.com/cb"), transport=transport
    ) as engine:
        await engine.start()
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(callback)
        assert caught.value.code in ("callback_invalid", "state_missing", "state_unknown")
        assert transport.sent == []


@pytest.mark.parametrize(
    "endpoint",
    ["https://api.podio.com\\oauth\\token", "https://api.podio.com/oauth/token\n", "https://[api/x"],
)
def test_sec26_a_malformed_token_endpoint_is_a_typed_error_not_a_value_error(endpoint: str) -> None:
    data: dict[str, Any] = fe.load_spec("podio").endpoints
    with pytest.raises(fe.ConfigError):
        fe.AsyncEngine("podio", client=fe.Client("cid"), endpoints={**data, "token": endpoint})
    with pytest.raises(fe.SpecError):
        fe.load_spec({**_podio_mapping(), "endpoints": {**data, "token": endpoint}})


def _podio_mapping() -> dict[str, Any]:
    from tests.security.helpers import podio_data

    return podio_data()


def test_sec26_a_deeply_nested_batch_input_line_is_an_invalid_item(tmp_path: Any) -> None:
    from flowengine_batch import read_exchange_file

    path = tmp_path / "callbacks.jsonl"
    path.write_text('{"url": "https://app.example.com/cb?state=s&code=c"}\n' + "[" * 100_000 + "\n")
    first, second = read_exchange_file(path)
    assert first.invalid is None and second.invalid == "not a JSON object"


@pytest.mark.parametrize(
    "damage",
    ["[" * 100_000, "[1, 2]", '{"no": "item"}', '"text"'],
    ids=["nested", "list", "no-item", "string"],
)
def test_sec26_a_damaged_batch_state_file_is_a_config_error(tmp_path: Any, damage: str) -> None:
    from flowengine_batch import Journal

    path = tmp_path / "state.jsonl"
    path.write_text(
        '{"flowengine_batch": 1, "job": "refresh:all", "created_at": 0, "plan": []}\n' + damage + "\n{}\n"
    )
    journal = Journal(path)
    with pytest.raises(fe.ConfigError):
        journal.open("refresh:all")


# --- text UTF-8 cannot carry --------------------------------------------------------------
# A lone surrogate (what ``surrogateescape`` makes of bytes that were not UTF-8) once escaped as
# ``UnicodeEncodeError`` from ``start()`` on every store, or became a retryable ``store_unavailable``.

BAD = "x\udcff"


def _callback_with(flow: fe.Flow, name: str) -> str:
    state = flow.authorization_url.split("state=", 1)[1].split("&", 1)[0]
    values = {"code": "the-code", "state": state}
    values[name] += BAD
    return "https://app.example.com/cb?" + "&".join(f"{key}={value}" for key, value in values.items())


ENTRY_POINTS: dict[str, tuple[str, Any]] = {
    "start scope": ("config_invalid", lambda engine: engine.start(scope=BAD)),
    "start scope list": ("config_invalid", lambda engine: engine.start(scope=["read", BAD])),
    "start scope set": ("config_invalid", lambda engine: engine.start(scope={BAD})),
    "start subject": ("config_invalid", lambda engine: engine.start(subject=BAD)),
    "start session": ("config_invalid", lambda engine: engine.start(session=BAD)),
    "grant input": ("config_invalid", lambda engine: engine.grant("app", {"app_id": BAD, "app_token": "t"})),
    "grant subject": (
        "config_invalid",
        lambda engine: engine.grant("app", {"app_id": "1", "app_token": "t"}, subject=BAD),
    ),
    "refresh key": ("token_unknown", lambda engine: engine.refresh(BAD)),
    "exchange id": ("flow_unknown", lambda engine: engine.exchange(BAD)),
}


@pytest.mark.parametrize("store", ["memory://", "sqlite"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
async def test_sec26_text_utf8_cannot_carry_is_a_typed_error_at_every_entry(
    entry: str, store: str, tmp_path: Any
) -> None:
    code, call = ENTRY_POINTS[entry]
    transport = ScriptedTransport(json_response(token_body()))
    spec = "podio-app" if entry.startswith("grant") else "podio"
    url = store if store == "memory://" else f"sqlite://{tmp_path / 's.db'}"
    client = fe.Client("cid", "secret", "https://app.example.com/cb")
    async with fe.AsyncEngine(spec, client=client, store=url, transport=transport) as engine:
        with pytest.raises(fe.FlowError) as caught:
            await call(engine)
        assert caught.value.code == code, caught.value
        assert "\udcff" not in caught.value.message  # named, never shown: a terminal could not print it
        assert transport.sent == []
        assert await engine.get(BAD) is None


@pytest.mark.parametrize("parameter", ["code", "state"])
async def test_sec26_a_callback_parameter_utf8_cannot_carry_is_a_callback_error(parameter: str) -> None:
    transport = ScriptedTransport(json_response(token_body()))
    client = fe.Client("cid", "secret", "https://app.example.com/cb")
    async with fe.AsyncEngine("podio", client=client, transport=transport) as engine:
        flow = await engine.start()
        with pytest.raises(fe.CallbackError) as caught:
            await engine.callback(_callback_with(flow, parameter))
        assert caught.value.code == "callback_invalid" and repr(parameter) in caught.value.message
        assert transport.sent == []
        assert (await engine.get(flow.id)) == flow  # nothing happened to the flow


@pytest.mark.parametrize(
    "field", ["client_id", "client_secret", "redirect_uri", "registered_domain", "private_key"]
)
def test_sec26_a_client_with_text_utf8_cannot_carry_is_a_config_error(field: str) -> None:
    values: dict[str, Any] = {"client_id": "cid", field: BAD}
    with pytest.raises(fe.ConfigError) as caught:
        fe.Client(**values)
    assert field in caught.value.message and "\udcff" not in caught.value.message


ANSWERS_WITH_A_LONE_SURROGATE = {
    "access_token": {"access_token": BAD},
    "refresh_token": {"refresh_token": BAD},
    "scope": {"scope": BAD},
    "account id": {"ref": {"type": "user", "id": BAD}},
    "an extra field's key": {BAD: 1},
}


@pytest.mark.parametrize("answer", list(ANSWERS_WITH_A_LONE_SURROGATE))
async def test_sec26_a_token_answer_with_a_lone_surrogate_is_refused_and_stores_nothing(
    answer: str, tmp_path: Any
) -> None:
    """JSON may write ``"\\udcff"``; no store could keep it (a SQLite store once retried for a
    minute, then lost the token with ``token_unsaved``), and no header could carry it."""
    transport = ScriptedTransport(json_response(token_body(**ANSWERS_WITH_A_LONE_SURROGATE[answer])))
    client = fe.Client("cid", "secret", "https://app.example.com/cb")
    store = f"sqlite://{tmp_path / 's.db'}"
    async with fe.AsyncEngine("podio", client=client, transport=transport, store=store, retry=FAST) as engine:
        flow = await engine.start()
        done = await engine.callback(_callback_with(flow, "code").replace(BAD, ""))
        assert (done.outcome, done.error and done.error.code) == ("failed", "invalid_token_response")
        assert await engine.tokens() == []


async def test_sec26_a_spec_file_whose_name_is_not_utf8_keeps_its_token(
    tmp_path: Any, sandbox: SandboxFixture
) -> None:
    """The token records its spec's file (``spec_source``); a name decoded with surrogateescape
    once made every store's record unwritable, and the token was lost."""
    folder = tmp_path / os.fsdecode(b"specs-\xff")
    folder.mkdir()
    path = folder / os.fsdecode(b"podio-\xff.yaml")
    path.write_bytes(Path(fe.load_spec("podio").source).read_bytes())
    store = f"sqlite://{tmp_path / 's.db'}"
    async with fe.AsyncEngine(
        fe.load_spec(path), client=sandbox.client, endpoints=sandbox.endpoints, store=store
    ) as engine:
        done = await engine.callback(await sandbox.consent((await engine.start()).authorization_url))
        token = await engine.token_for(done)
    assert token is not None and token.spec_source == str(path)


def test_sec26_a_batch_callback_line_that_is_not_utf8_is_an_invalid_item(tmp_path: Any) -> None:
    from flowengine_batch import read_exchange_file

    path = tmp_path / "callbacks.jsonl"
    path.write_bytes(b'{"url": "https://app.example.com/cb?state=s&code=\xff"}\n{"flow_id": "f-2"}\n')
    first, second = read_exchange_file(path)
    assert first.invalid == "not UTF-8 text" and second.flow_id == "f-2"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"app_id,app_token\n2002,caf\xe9\n", id="latin-1"),
        pytest.param(b"app_id,app_token\n1," + b"x" * 200_000 + b"\n", id="a-200KB-cell"),
    ],
)
def test_sec26_a_grant_file_that_cannot_be_read_is_a_config_error(content: bytes, tmp_path: Any) -> None:
    from flowengine_batch import read_grant_file

    path = tmp_path / "apps.csv"
    path.write_bytes(content)
    with pytest.raises(fe.ConfigError) as caught:
        read_grant_file(path, fe.load_spec("podio-app"))
    assert str(path) in caught.value.message


@pytest.mark.parametrize(
    ("url", "code"),
    [
        pytest.param("postgresql://x\udcff@localhost/db", "store_url_invalid", id="postgres-surrogate"),
        pytest.param("redis://x\udcff@localhost/0", "store_url_invalid", id="redis-surrogate"),
        pytest.param("redis://[::1", "store_url_invalid", id="redis-broken-ipv6"),
        pytest.param("sqlite:///tmp/s.db?key_file=/a%00", "store_key_invalid", id="sqlite-nul-key-file"),
        pytest.param("redis://localhost/0?key_file=/a%00", "store_key_invalid", id="redis-nul-key-file"),
        pytest.param(
            "postgresql://localhost/db?key_file=/a%00", "store_key_invalid", id="postgres-nul-key-file"
        ),
        pytest.param(None, "store_url_invalid", id="None"),
    ],
)
def test_sec26_a_store_url_no_driver_can_use_is_a_config_error(url: Any, code: str) -> None:
    with pytest.raises(fe.ConfigError) as caught:
        fe.open_store(url)
    assert caught.value.code == code
    assert "\udcff" not in caught.value.message


def test_sec26_a_key_file_that_is_not_ascii_text_is_a_config_error(tmp_path: Any) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"caf\xe9")
    with pytest.raises(fe.ConfigError) as caught:
        fe.open_store(f"sqlite://{tmp_path / 's.db'}?key_file={key_file}")
    assert caught.value.code == "store_key_invalid"


LONG = "a" * 300  # over the 255 bytes a file name may have: the file system says ENAMETOOLONG


@pytest.mark.parametrize(
    ("args", "said"),
    [
        pytest.param(["spec", "validate", f"{LONG}.yaml"], "config_invalid", id="spec-file"),
        pytest.param(
            ["tokens", "list", "--store", "sqlite:///tmp/{LONG}/s.db"], "store_url_invalid", id="store"
        ),
        pytest.param(
            ["batch", "refresh", "--all", "--store", "memory://", "--report", "{TMP}/{LONG}"],
            "output_unwritable",
            id="report",
        ),
    ],
)
def test_sec26_a_path_the_file_system_refuses_is_an_error_line_not_a_traceback(
    args: list[str], said: str, sandbox: SandboxFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from click.testing import CliRunner
    from flowengine import _plugins as plugins
    from flowengine.cli import cli

    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)  # as main() does
    monkeypatch.setenv("FLOWENGINE_SANDBOX_URL", sandbox.server.url)
    result = CliRunner().invoke(
        cli, [arg.replace("{LONG}", LONG).replace("{TMP}", str(tmp_path)) for arg in args]
    )
    assert isinstance(result.exception, SystemExit) and result.exit_code != 0, result.exception
    assert said in result.output


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:1/a\udcff", id="not-utf8"),
        pytest.param("http://xn--zz/", id="bad-punycode"),
        pytest.param("http://" + "a" * 70 + ".com/", id="70-character-label"),
    ],
)
def test_sec26_a_sandbox_url_no_transport_can_use_is_an_error_line(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from flowengine import _plugins as plugins
    from flowengine.cli import cli

    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    monkeypatch.setenv("FLOWENGINE_SANDBOX_URL", url)
    result = CliRunner().invoke(cli, ["login", "podio", "--sandbox", "--approve", "--store", "memory://"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, result.exception
    assert "sandbox_unreachable" in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        pytest.param(["tokens", "show", BAD], "token_unknown", id="tokens-show"),
        pytest.param(["tokens", "delete", BAD], "token_unknown", id="tokens-delete"),
        pytest.param(["flows", "show", BAD], "flow_unknown", id="flows-show"),
        pytest.param(["flows", "list", "--spec", BAD], "", id="flows-list"),
        pytest.param(["tokens", "list", "--provider", BAD], "", id="tokens-list"),
    ],
)
def test_sec26_a_key_or_filter_utf8_cannot_carry_finds_nothing_in_a_sqlite_store(
    args: list[str], said: str, tmp_path: Any
) -> None:
    """Not ``store_unavailable``: no store holds such a key, and retrying would not change it."""
    from click.testing import CliRunner
    from flowengine import _plugins as plugins
    from flowengine.cli import cli

    plugins.get_plugin_manager().hook.flowengine_commands(cli=cli)
    path = tmp_path / "s.db"
    sqlite3.connect(path).close()  # the file exists: the commands read it rather than skip it
    result = CliRunner().invoke(cli, [*args, "--store", f"sqlite://{path}"])
    assert "store_unavailable" not in result.output and said in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


WRONG_TYPES: dict[str, Any] = {
    "start session": lambda engine: engine.start(session=5),
    "start scope item": lambda engine: engine.start(scope=["read", 5]),
    "start scope": lambda engine: engine.start(scope=5),
    "start inputs": lambda engine: engine.start(inputs={"login_hint": 5}),
    "refresh": lambda engine: engine.refresh(5),
    "grant input": lambda engine: engine.grant("app", {"app_id": 5, "app_token": "t"}),
}


@pytest.mark.parametrize("entry", list(WRONG_TYPES))
async def test_sec26_a_value_of_the_wrong_type_is_a_config_error(entry: str) -> None:
    transport = ScriptedTransport(json_response(token_body()))
    spec = "podio-app" if entry.startswith("grant") else "podio"
    client = fe.Client("cid", "secret", "https://app.example.com/cb")
    async with fe.AsyncEngine(spec, client=client, transport=transport) as engine:
        with pytest.raises(fe.FlowError) as caught:
            await WRONG_TYPES[entry](engine)
    assert caught.value.code in ("config_invalid", "input_unknown"), caught.value
    assert transport.sent == []


@pytest.mark.parametrize("endpoints", [{"token": 5}, 5, ["token"]])
def test_sec26_endpoints_of_the_wrong_type_are_a_config_error(endpoints: Any) -> None:
    with pytest.raises(fe.ConfigError):
        fe.AsyncEngine("podio", client=fe.Client("cid"), endpoints=endpoints)
