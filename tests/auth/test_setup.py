"""flowengine.auth's construction, its errors, what it imports, and aiohttp's origin rule."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import flowengine as fe
import httpx
import pytest
from flowengine.auth import AiohttpAuth, HttpxAuth, RequestsAuth

from tests.auth.conftest import AiohttpClient, Clocks, close_engine, log_in, open_engine, refreshes
from tests.conftest import SandboxFixture


@pytest.mark.slow  # a fresh interpreter
def test_importing_flowengine_auth_imports_no_http_library() -> None:
    code = (
        "import sys, flowengine, flowengine.auth\n"
        "print(sorted(m for m in ('httpx', 'aiohttp', 'requests') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("auth", [HttpxAuth, AiohttpAuth, RequestsAuth])
@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"key": ""}, "key"),
        ({"key": 42}, "key"),
        ({"key": "podio:user:1", "margin": -1}, "margin"),
        ({"key": "podio:user:1", "margin": float("inf")}, "margin"),
        ({"key": "podio:user:1", "margin": True}, "margin"),
    ],
)
async def test_bad_options_are_a_config_error_naming_them(
    auth: Any, options: dict[str, Any], named: str, sandbox: SandboxFixture, clocks: Clocks
) -> None:
    engine = open_engine(auth is RequestsAuth, sandbox, clocks.engine)
    try:
        with pytest.raises(fe.ConfigError, match=named):
            auth(engine, **options)
    finally:
        await close_engine(engine)


@pytest.mark.parametrize("auth", [HttpxAuth, AiohttpAuth, RequestsAuth])
def test_something_else_than_an_engine_is_a_config_error(auth: Any) -> None:
    with pytest.raises(fe.ConfigError, match="AsyncEngine or an Engine"):
        auth(object(), key="podio:user:1")


def test_the_key_is_keyword_only() -> None:
    """A later ``subject=`` can sit beside ``key=`` without breaking a caller."""
    with pytest.raises(TypeError):
        HttpxAuth(None, "podio:user:1")  # type: ignore[arg-type, call-arg]


async def test_requests_auth_refuses_an_async_engine(sandbox: SandboxFixture, clocks: Clocks) -> None:
    engine = open_engine(False, sandbox, clocks.engine)
    try:
        with pytest.raises(fe.ConfigError, match="sync Engine"):
            RequestsAuth(engine, key="podio:user:1001")  # type: ignore[arg-type]
    finally:
        await close_engine(engine)


async def test_httpx_sync_client_with_an_async_engine_is_a_config_error(
    sandbox: SandboxFixture, clocks: Clocks
) -> None:
    engine = open_engine(False, sandbox, clocks.engine)
    try:
        token = await log_in(engine, sandbox)
        with (
            httpx.Client(auth=HttpxAuth(engine, key=token.key), trust_env=False) as http,
            pytest.raises(fe.ConfigError, match="AsyncEngine serves async clients"),
        ):
            await asyncio.to_thread(http.get, f"{sandbox.server.url}/user/status")
    finally:
        await close_engine(engine)


async def test_an_unknown_key_is_token_unknown_and_sends_nothing(
    sandbox: SandboxFixture, clocks: Clocks
) -> None:
    engine = open_engine(False, sandbox, clocks.engine)
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    try:
        auth = HttpxAuth(engine, key="podio:user:999")
        async with httpx.AsyncClient(auth=auth, event_hooks={"request": [record]}, trust_env=False) as http:
            with pytest.raises(fe.FlowStateError) as raised:
                await http.get(f"{sandbox.server.url}/user/status")
        assert raised.value.code == "token_unknown"
        assert "podio:user:999" in str(raised.value)
        assert sent == []
    finally:
        await close_engine(engine)


async def test_aiohttp_sends_the_token_to_the_first_origin_only(
    sandbox: SandboxFixture, clocks: Clocks
) -> None:
    """aiohttp runs middlewares on every redirect hop: a second origin never gets the token."""
    engine = open_engine(False, sandbox, clocks.engine)
    try:
        token = await log_in(engine, sandbox)
        assert isinstance(engine, fe.AsyncEngine)
        http = AiohttpClient("aiohttp", engine, token.key, f"{sandbox.server.url}/user/status")
        try:
            assert (await http.call()).status == 200
            other = sandbox.server.url.replace("127.0.0.1", "localhost") + "/user/status"
            assert other != f"{sandbox.server.url}/user/status"

            reply = await http.call(url=other)

            assert reply.status == 401  # the same server, reached as another origin: no token
            assert http.sent[1] is None
            assert refreshes(sandbox) == 0
        finally:
            await http.aclose()
    finally:
        await close_engine(engine)
