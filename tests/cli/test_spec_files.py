"""A spec given as a file works everywhere (issue 13, 6): tokens remember the file their spec came from.

``login path/to/spec.yaml`` files the token under the spec's ``name:``; ``tokens
refresh``, ``tokens revoke`` and ``token header`` find the spec again through
``token.spec_source``, or through ``--spec`` when the file has moved.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli.conftest import invoke
from tests.conftest import SandboxFixture

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.fixture
def file_spec(tmp_path: Path, sandbox: SandboxFixture, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spec no search path knows: GitHub's, renamed, in a folder of its own."""
    monkeypatch.setenv("FLOWENGINE_SANDBOX_URL", sandbox.server.url)
    monkeypatch.setenv("FLOWENGINE_STORE", f"sqlite://{tmp_path / 'store.db'}")
    path = tmp_path / "mine" / "acme-git.yaml"
    path.parent.mkdir()
    path.write_text((SPECS / "github.yaml").read_text().replace("name: github", "name: acme-git"))
    return path


def _login(path: Path) -> str:
    ran = invoke("login", str(path), "--sandbox", "--approve")
    assert ran.returncode == 0, ran.stderr
    [key] = re.findall(r"acme-git:flow:[\w-]+", invoke("tokens", "list").stdout)
    return key


def test_tokens_refresh_finds_the_file_the_token_came_from(file_spec: Path) -> None:
    key = _login(file_spec)
    ran = invoke("tokens", "refresh", key, "--sandbox")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"refreshed {key}: ")


def test_a_moved_spec_file_is_named_with_spec(file_spec: Path, tmp_path: Path) -> None:
    key = _login(file_spec)
    moved = file_spec.rename(tmp_path / "elsewhere.yaml")
    lost = invoke("tokens", "refresh", key, "--sandbox")
    assert lost.returncode == 2 and "spec_not_found" in lost.stderr
    ran = invoke("tokens", "refresh", key, "--sandbox", "--spec", str(moved))
    assert ran.returncode == 0, ran.stderr


def test_another_spec_given_with_spec_is_refused(file_spec: Path) -> None:
    key = _login(file_spec)
    ran = invoke("tokens", "refresh", key, "--sandbox", "--spec", "github")
    assert ran.returncode == 2
    assert "is named 'github', but the token" in ran.stderr


def test_token_header_refreshes_through_the_file(file_spec: Path) -> None:
    _login(file_spec)
    ran = invoke("token", "header", str(file_spec), "--min-validity", "3650d", "--sandbox")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("Authorization: Bearer ")


def test_tokens_revoke_through_the_file(file_spec: Path) -> None:
    key = _login(file_spec)
    ran = invoke("tokens", "revoke", key, "--sandbox")
    assert ran.returncode == 0, ran.stderr
    assert "acme-git" not in invoke("tokens", "list").stdout
