"""Reading and quoting what comes from outside, in bounded time and memory (SECURITY.md 25, 26).

Two things that look harmless are not: ``repr()`` of a value a document made
(an alias bomb's shared lists expand to gigabytes when printed; a 5,000-digit
integer cannot be printed at all) and ``json.loads`` of a body nested a few
hundred thousand levels deep (a ``RecursionError``, or a value that later code
cannot walk). ``shown`` quotes any value in at most ``limit`` characters;
``parse_json`` reads JSON or raises ``ValueError``, and never returns a value
deeper than ``max_depth``.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "cap", "carried", "parse_json", "shown", "text_problems"]

#: Deeper than any token response, error body or record the engine reads.
MAX_JSON_DEPTH = 32


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with ``…`` when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


class _Quoter(reprlib.Repr):
    """``reprlib`` with every limit small, and integers too long to print summarised."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 2
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 4
        self.maxstring = self.maxother = self.maxlong = 60

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # past ~38 digits nobody reads it, and past 4,300 repr() raises
            return f"<an integer of about {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        # reprlib sorts every key first: with 100,000 keys that alone is the cost. Take the first few.
        if len(x) <= self.maxdict or level <= 0:
            return super().repr_dict(x, level)
        head = dict(item for item, _ in zip(x.items(), range(self.maxdict), strict=False))
        return super().repr_dict(head, level)[:-1] + ", ...}"


_quoter = _Quoter()


def shown(value: object, limit: int = 80) -> str:
    """A ``repr`` of ``value`` for a message: at most ``limit`` characters, whatever the value."""
    try:
        text = _quoter.repr(value)
    except Exception:  # a foreign object whose __repr__ fails: name its type instead
        text = f"<{type(value).__name__}>"
    return cap(text, limit)


def parse_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value in ``data``; ``ValueError`` when it is not JSON or nests deeper than ``max_depth``.

    Too deep for the parser (``RecursionError``) and integers too long to read
    are ``ValueError`` too, so callers handle one exception for "not usable JSON".
    """
    try:
        if isinstance(data, bytes) and data[:1] in (b"{", b"[") and data[1:2] != b"\0":
            # What ``json.loads`` would find by ``detect_encoding``: UTF-8 (no BOM, no NUL
            # byte after the first), decoded here without that Python-level detection.
            data = data.decode("utf-8", "surrogatepass")
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {exc.reason}") from None
    if _openings(data) > max_depth and _depth_exceeds(value, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    if _surrogates_possible(data) and _holds_lone_surrogate(value):
        # "\udcff" is valid JSON but not text: it could be neither stored nor sent on (SECURITY.md 26).
        raise ValueError("JSON text holds a lone surrogate (a \\udXXX escape that is not half of a pair)")
    return value


def _surrogates_possible(data: bytes | str) -> bool:
    """False when ``data`` cannot hold a lone surrogate: no ``\\u`` escape and no encoded one."""
    if isinstance(data, bytes):
        return b"\\u" in data or b"\xed" in data
    return "\\u" in data or not carried(data)


def _holds_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in ``value`` (keys included) holds a lone surrogate."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and not carried(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _openings(data: bytes | str) -> int:
    """How many ``{`` and ``[`` the text holds: no value in it nests deeper (a token answer: one)."""
    if isinstance(data, str):
        return data.count("{") + data.count("[")
    return data.count(b"{") + data.count(b"[")


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    """True when containers nest deeper than ``max_depth`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def text_problems(**named: object) -> Iterator[str]:
    """What keeps each named text (or the keys and values of a mapping, or the items of a list)
    from being sent or stored: not being text (None aside), or a lone surrogate (U+D800 to
    U+DFFF), which UTF-8 cannot carry.

    Text decoded from bytes that were not UTF-8 with ``surrogateescape`` (file names,
    environment variables, some servers' query strings) holds them; refused where it
    comes in, it cannot fail later in a URL, a request body or a store's record as a
    ``UnicodeEncodeError`` (SECURITY.md 26). Each problem names the value, never shows it.
    """
    for name, value in named.items():
        if isinstance(value, Mapping):
            texts = [(f"{name} key", key) for key in value]
            texts += [(f"{name}[{key!r}]", item) for key, item in value.items()]
        elif isinstance(value, list | tuple):
            texts = [(name, item) for item in value]
        else:
            texts = [(name, value)]
        for label, text in texts:
            if text is None:
                continue
            if not isinstance(text, str):
                yield f"{cap(label, 80)} must be text, not {type(text).__name__}"
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                yield (
                    f"{cap(label, 80)} holds a lone surrogate (U+{ord(text[exc.start]):04X}) at "
                    f"position {exc.start}, which UTF-8 cannot carry"
                )


def carried(text: str) -> bool:
    """True when UTF-8 can carry ``text``: a key or id that it cannot carry names nothing stored."""
    return not any(text_problems(text=text))
