"""Checking what a caller passes in: text every URL, body and store can carry (SECURITY.md 26).

Refused where it comes in, a value cannot fail later, deep inside, as a
``UnicodeEncodeError`` or ``TypeError``: the error names the argument, never shows it.
"""

from __future__ import annotations

from collections.abc import Iterable

from flowengine._bounded import text_problems
from flowengine._errors import ConfigError

__all__ = ["refuse_bad_text", "scope_items"]


def refuse_bad_text(**named: object) -> None:
    """``ConfigError`` for the first named argument that is not text UTF-8 can carry (``text_problems``)."""
    for problem in text_problems(**named):
        raise ConfigError(problem)


def scope_items(scope: object) -> list[str]:
    """The scopes of a ``scope=`` given as a list, set or other iterable of text; else ``ConfigError``."""
    if not isinstance(scope, Iterable):
        raise ConfigError(f"scope must be text or a list of text, not {type(scope).__name__}")
    items = list(scope)
    refuse_bad_text(scope=items)
    return [str(item) for item in items]
