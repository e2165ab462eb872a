"""flowengine.serving: the loopback server the sandbox and the web frontend share."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from typing import Any

import flowengine as fe
import httpx
import pytest
from flowengine.serving import AppServer, bind, url_of


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest ASGI app: says which path and query it got."""
    if scope["type"] != "http":
        return
    body = f"{scope['path']}?{scope['query_string'].decode()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.slow  # a fresh interpreter
def test_importing_it_does_not_import_uvicorn() -> None:
    code = "import sys, flowengine.serving; assert 'uvicorn' not in sys.modules, 'imported too early'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_port_in_use_is_port_in_use() -> None:
    with bind("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        assert url_of(taken) == f"http://127.0.0.1:{port}"
        assert taken.proto == socket.IPPROTO_TCP  # so that asyncio turns Nagle off
        with pytest.raises(fe.ConfigError) as caught:
            bind("127.0.0.1", port)
    assert caught.value.code == "port_in_use"
    assert f"port {port} on 127.0.0.1 is already in use" in caught.value.message


def test_an_app_served_in_a_thread_writes_no_access_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = logging.getLogger("uvicorn.access")
    monkeypatch.setattr(access, "level", access.level)  # put back after the test
    server = AppServer(hello)
    with pytest.raises(RuntimeError, match="not running"):
        server.url  # noqa: B018
    with caplog.at_level(logging.DEBUG), server:
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        # Even with the access logger let down to DEBUG by someone, nothing of a request reaches a log.
        access.setLevel(logging.DEBUG)
        answer = httpx.get(f"{server.url}/callback", params={"code": "secret-code", "state": "s"})
    assert answer.text == "/callback?code=secret-code&state=s"
    served = [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")]
    assert not any("secret-code" in line for line in served), "SECURITY.md 14: the query carries the code"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/")
