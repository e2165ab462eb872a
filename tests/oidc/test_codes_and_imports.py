"""The OIDC error codes are one documented list, and ``import flowengine`` does not load joserfc."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from flowengine._oidc_errors import OIDC_CODES

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "_discovery",
    "_jwks",
    "_oidc",
    "_oidc_http",
    "_oidc_jws",
    "_oidc_userinfo",
    "_client_auth",
    "_core_openid",
    "_core_tokens",
]


def _raised_codes() -> set[str]:
    codes: set[str] = set()
    for name in MODULES:
        source = (ROOT / "flowengine" / f"{name}.py").read_text(encoding="utf-8")
        codes |= set(re.findall(r'(?:code=|else )"([a-z_]+)"', source))
        for suffix in re.findall(r'refuse\("([a-z_]+)"', source):
            codes |= {f"id_token_{suffix}", f"userinfo_{suffix}"}
    return codes


def test_every_code_raised_is_in_the_list() -> None:
    assert _raised_codes() - set(OIDC_CODES) == set()


def test_every_listed_code_is_raised_somewhere() -> None:
    assert set(OIDC_CODES) - _raised_codes() == set()


def test_the_docs_table_is_the_list() -> None:
    docs = (ROOT / "docs" / "oidc.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| `?[A-Za-z]+`? \| (.+?) \|$", docs, re.M))
    assert rows == OIDC_CODES


@pytest.mark.slow  # a fresh interpreter
def test_importing_flowengine_and_the_oidc_modules_loads_no_jose_library() -> None:
    modules = ", ".join(f"flowengine.{name}" for name in MODULES)
    loaded = "sorted(m for m in sys.modules if 'jose' in m or 'authlib' in m)"
    code = f"import sys, flowengine, {modules}; print({loaded})"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
