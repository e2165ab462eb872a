"""docs/web.md stays true: each app marked ``<!-- test: app -->`` runs a whole flow.

The examples configure a real Podio client from the environment; here their
``AsyncEngine`` is re-pointed at the sandbox (and a memory store), and each app
is driven like a browser: its home page, its link, Grant, and where it ends;
then the same with Deny.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import flowengine
import pytest

from tests.conftest import SandboxFixture
from tests.web.conftest import Browser

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- test: app -->"
_BLOCK = re.compile(r"^" + re.escape(MARKER) + r"[ \t]*\n```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
TEXT = (ROOT / "docs" / "web.md").read_text(encoding="utf-8")
BLOCKS = _BLOCK.findall(TEXT)


def test_every_marker_is_on_a_python_block() -> None:
    assert len(BLOCKS) == TEXT.count(MARKER) >= 3


@pytest.fixture
def example_env(
    monkeypatch: pytest.MonkeyPatch, sandbox: SandboxFixture, podio_spec: flowengine.FlowSpec
) -> list[flowengine.AsyncEngine]:
    for name in ("PODIO_CLIENT_ID", "PODIO_CLIENT_SECRET"):
        monkeypatch.setenv(name, "from-the-environment")
    monkeypatch.setenv("FLOWENGINE_WEB_SECRET", "a-docs-example-secret-key")
    made: list[flowengine.AsyncEngine] = []
    real = flowengine.AsyncEngine

    def pointed_at_the_sandbox(spec: Any, **options: Any) -> flowengine.AsyncEngine:
        assert spec == "podio" and options["client"].client_id == "from-the-environment"
        engine = real(podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store="memory://")
        made.append(engine)
        return engine

    monkeypatch.setattr(flowengine, "AsyncEngine", pointed_at_the_sandbox)
    return made


async def _walk(browser: Browser, *, approve: bool) -> str:
    """From the home page through the provider and back; the text of the page it ends on."""
    home = await browser.get("/")
    link = re.search(r'href="([^"]*/auth/podio)"', home.text)
    assert link, home.text
    started = await browser.get(link.group(1))
    assert started.status_code == 302
    response = await browser.get(await browser.sandbox.consent(started.headers["location"], approve=approve))
    for _ in range(3):
        if response.status_code not in (302, 303, 307):
            break
        response = await browser.get(response.headers["location"])
    assert response.status_code == 200, response.text
    return response.text


@pytest.mark.parametrize("code", BLOCKS, ids=[f"web.md#{i + 1}" for i in range(len(BLOCKS))])
async def test_documented_app_runs_a_flow(
    code: str, example_env: list[flowengine.AsyncEngine], make_browser: Any, sandbox: SandboxFixture
) -> None:
    if "fastapi" in code:
        pytest.importorskip("fastapi", reason="FastAPI is not a dependency of flowengine")
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(code, "docs/web.md", "exec"), namespace)  # noqa: S102 - our own documentation
    try:
        granted = await _walk(make_browser(namespace["app"]), approve=True)
        assert "user:1001" in granted or "You were authorized" in granted
        if "connected" in namespace:
            assert namespace["connected"] == ["podio:user:1001"]
        denied = await _walk(make_browser(namespace["app"]), approve=False)
        assert "The user denied your request." in denied
        assert len(sandbox.token_requests()) == 1
    finally:
        for engine in example_env:
            await engine.aclose()
