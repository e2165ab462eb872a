"""The documented error codes are the registry's: every code, with the class it belongs to, and no other.

docs/index.md has a row per code (class and where it arises); the OpenID Connect codes are
in docs/oidc.md's table. Every ``code=`` a module of flowengine/ or plugins/ raises names a
registered code, so no free code string can drift from the docs again.
"""

from __future__ import annotations

import re
from pathlib import Path

from flowengine import ErrorCode
from flowengine._errors import ERROR_CLASSES

ROOT = Path(__file__).resolve().parents[2]


def _rows(page: str, section: str) -> dict[str, str]:
    """code -> the class column, from the rows starting ``| `code` |`` in one section of a page."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    text = text[text.index(f"\n## {section}\n") :]
    text = text[: text.find("\n## ", 1) if "\n## " in text[1:] else len(text)]
    return {code: cls for code, cls in re.findall(r"^\| `([a-z_]+)` \| (\w*)", text, re.MULTILINE)}


def test_every_code_is_documented_once_with_its_class() -> None:
    index, oidc = _rows("index.md", "Errors"), _rows("oidc.md", "Error codes")
    missing = [code.value for code in ErrorCode if code.value not in index and code.value not in oidc]
    assert not missing, f"codes nobody documents: {missing}"
    wrong = [
        f"{code}: docs say {cls}, the registry {ERROR_CLASSES[ErrorCode(code)].__name__}"
        for code, cls in index.items()
        if code in set(ErrorCode) and ERROR_CLASSES[ErrorCode(code)].__name__ != cls
    ]
    assert not wrong, wrong
    unknown = sorted((set(index) | set(oidc)) - set(ErrorCode))
    assert not unknown, f"documented codes the registry does not have: {unknown}"


def test_every_code_raised_in_the_source_is_registered() -> None:
    raised: set[str] = set()
    for path in [*ROOT.joinpath("flowengine").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]:
        raised |= set(re.findall(r'\bcode="([a-z_]+)"', path.read_text(encoding="utf-8")))
    unregistered = sorted(raised - set(ErrorCode))
    assert not unregistered, f"code strings the registry does not know: {unregistered}"
