"""Reading a spec document in bounded time and memory, or refusing it (SECURITY.md 25).

``yaml.safe_load`` is safe from code execution, not from size: 5 KB of nested
aliases (a "billion laughs") load in milliseconds as shared lists and then expand
to gigabytes in whatever walks them; a few hundred ``[`` overflow the composer's
recursion; a 5,000-digit integer raises ``ValueError``. Here every document is
checked while it is read: its size, its nesting depth, the number of nodes it
would have with every alias expanded (counted while composing, so a bomb fails
before it is built), a node that contains itself, and the length of numbers.
Duplicate keys are refused too, rather than the last one silently winning; merge keys
(``<<``) are honoured, their values counted like any other.
A mapping made in Python goes through ``check_tree``, the same limits after the fact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml
import yaml.composer

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_NUMBER_CHARS",
    "MAX_SPEC_BYTES",
    "YamlRefused",
    "check_tree",
    "load",
]

#: Thirteen times the largest bundled spec; the pure-Python reader takes well under a second on it.
MAX_SPEC_BYTES = 64 * 1024
#: A spec nests five or six levels deep.
MAX_DEPTH = 32
#: Values of the whole document with every alias expanded (the bundled specs have 60 to 300).
MAX_NODES = 5_000
#: Characters of one number (``1e-300`` has six; a TTL or a status has at most a few).
MAX_NUMBER_CHARS = 32


# For a first look at flow nesting, one left-to-right pass: a quoted string (closed or not)
# or a comment is one token, so the brackets inside it do not count.
_TOKENS = re.compile(r"'(?:[^']|'')*'?|\"(?:[^\"\\]|\\.)*\"?|(?:^|(?<=\s))#[^\n]*|[\[\]{}]", re.MULTILINE)


class YamlRefused(ValueError):
    """A document that is not read: ``where`` (``line 3, column 5`` or ``$``) and why."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "$"


def _children(node: yaml.Node) -> Iterable[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        children: list[yaml.Node] = node.value
        return children
    if isinstance(node, yaml.MappingNode):
        return (child for pair in node.value for child in pair)
    return ()


class _Limited(yaml.constructor.ConstructorError):
    """A limit exceeded while composing or constructing (a YAMLError, so it carries its mark)."""


class _Bounded(yaml.composer.Composer):
    """The composing half of a loader: counts depth and expanded nodes, refuses self-reference.

    Put before the parser in a loader's bases, so that its Python composer runs
    over the parser's events, libyaml's or PyYAML's own.
    """

    def _start(self) -> None:
        self._depth = 0
        self._sizes: dict[int, int] = {}  # expanded node count of every node composed, by id
        self._total = 0  # nodes of the document so far, aliases expanded: fails fast on a bomb
        self._aliased = False  # an alias was expanded: the count is not the file's own

    def _next_event(self) -> Any:
        return self.peek_event()  # type: ignore[attr-defined]

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):  # type: ignore[attr-defined]
            event = self._next_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:  # still open: it contains itself
                raise _Limited(None, None, "an alias refers to a node that contains it", event.start_mark)
            self._aliased = True
            self._count(self._sizes[id(target)] if target is not None else 0, event.start_mark)
            return super().compose_node(parent, index)
        self._count(1, self._next_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self._next_event().start_mark
                raise _Limited(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None:
            self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node

    def _count(self, nodes: int, mark: Any) -> None:
        self._total += nodes
        if self._total > MAX_NODES:
            message = f"has more than {MAX_NODES} values"
            if self._aliased:
                message += " once its aliases are expanded"
            raise _Limited(None, None, message, mark)


class _BoundedLoader(_Bounded, yaml.SafeLoader):
    """PyYAML's pure-Python reader, scanner and parser under the bounded composer."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self._start()


_CParser: Any = getattr(yaml.cyaml, "CParser", None) if getattr(yaml, "__with_libyaml__", False) else None

if _CParser is not None:

    class _BoundedCLoader(_Bounded, _CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
        """libyaml's scanner and parser (C, ten times faster) under the same bounded composer."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._start()

    _LOADER: type[_BoundedLoader] | type[_BoundedCLoader] = _BoundedCLoader
else:  # pragma: no cover - PyYAML built without libyaml
    _LOADER = _BoundedLoader


def _number(kind: str, construct: Any) -> Any:
    def checked(loader: Any, node: yaml.ScalarNode) -> Any:
        if len(node.value) > MAX_NUMBER_CHARS:
            message = f"{kind} longer than {MAX_NUMBER_CHARS} characters"
            raise _Limited(None, None, message, node.start_mark)
        return construct(loader, node)

    return checked


def _mapping(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
    """A mapping, its merge keys (``<<: *defaults``) applied; a key written twice in it is refused.

    Keys a ``<<`` brings in are not duplicates of the mapping's own: the YAML
    merge-key rule says the mapping's own key wins, and so it does.
    """
    seen: set[Any] = set()
    for key_node, _value in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            raise _Limited(
                None, None, "a key must be a plain value, not a list or mapping", key_node.start_mark
            )
        key = loader.construct_object(key_node)
        if key in seen:
            raise _Limited(None, None, f"duplicate key {str(key)[:80]!r}", key_node.start_mark)
        seen.add(key)
    loader.flatten_mapping(node)  # merged keys first, then the mapping's own: dict() keeps the last
    return dict(loader.construct_pairs(node))


for _loader in {_BoundedLoader, _LOADER}:
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
    _loader.add_constructor(
        "tag:yaml.org,2002:int", _number("an integer", yaml.SafeLoader.construct_yaml_int)
    )
    _loader.add_constructor(
        "tag:yaml.org,2002:float", _number("a number", yaml.SafeLoader.construct_yaml_float)
    )


def load(text: str) -> Any:
    """The data of one YAML document, or ``YamlRefused`` naming where and why.

    Bounded whatever ``text`` holds: its size, depth, expanded size and numbers
    are checked before anything walks the data (``check_tree`` runs last).
    """
    if len(text) > MAX_SPEC_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise YamlRefused("$", f"the document is larger than {MAX_SPEC_BYTES // 1024} KiB")
    if _flow_depth_exceeds(text):
        raise YamlRefused("$", f"invalid YAML: nested deeper than {MAX_DEPTH} levels")
    loader: _BoundedLoader | _BoundedCLoader | None = None
    try:
        loader = _LOADER(text)  # the reader refuses control characters here already
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        where = _at(getattr(exc, "problem_mark", None))
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlRefused(where, f"invalid YAML: {problem}") from None
    except RecursionError:  # the depth limit makes this unreachable; a last line of defence
        raise YamlRefused("$", f"invalid YAML: nested deeper than {MAX_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    check_tree(data)
    return data


def _flow_depth_exceeds(text: str) -> bool:
    """True when ``[`` and ``{`` nest deeper than MAX_DEPTH, judged before the YAML reader runs.

    PyYAML's scanner weighs every open bracket as a possible key at each step, so a
    line of 60,000 ``[`` costs it a third of a second before the composer's own depth
    limit is reached; this linear count refuses it first. It may undercount (a stray
    quote hides brackets), never overcount brackets a spec could need, and the
    composer's limit still applies.
    """
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif token in ("]", "}"):
            depth = max(depth - 1, 0)
    return False


def check_tree(data: Any) -> None:
    """Refuse data deeper than ``MAX_DEPTH`` or larger than ``MAX_NODES``.

    For mappings made in Python (or decoded from JSON), which no reader bounded:
    shared and self-containing lists count once per appearance, so a cycle is
    refused as too deep. Walked without recursion. A huge integer is left to the
    field's own check, which names its path (``shown`` quotes it safely).
    """
    stack: list[tuple[Any, int]] = [(data, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise YamlRefused("$", f"the document has more than {MAX_NODES} values")
        if isinstance(node, dict):
            children: Iterable[Any] = (x for pair in node.items() for x in pair)
        elif isinstance(node, list | tuple | set | frozenset):
            children = node
        else:
            continue
        if depth > MAX_DEPTH:
            raise YamlRefused(
                "$", f"the document is nested deeper than {MAX_DEPTH} levels (or contains itself)"
            )
        stack.extend((child, depth + 1) for child in children)
