"""Which variables choose a host the engine talks to, and whether the spec confines them.

A connection variable or kept callback parameter in the host of an endpoint or of the
issuer picks where the client's credentials go (SECURITY.md 36). Such a variable is
*confined* when the spec bounds the hosts it can make to one provider's domain:

- the host ends, after the variable, in fixed text holding a registrable domain
  (``https://{subdomain}.zendesk.com``: any host under ``zendesk.com``), or
- the variable's pattern (its first group, when it has one) is an allow-list: either at
  most 64 literal values (``accounts\\.zoho\\.(?:com|eu|in)``), or host characters
  (letters, digits, ``- . _``) ending in a literal ``.`` and a registrable domain
  (``[a-z0-9-]+\\.zoho\\.com``). A variable that is a whole URL (``{issuer}``) is
  confined only by a list of literal values.

A registrable domain is two labels or more of letters, digits and ``-``, the last not a
number, and three or more when the last two read as a public suffix (``co.uk``,
``com.au``). Any other host variable is *free*: it could name any host (the generic
``oidc`` spec's ``{issuer}``, GitLab's ``{host}``). A free connection variable is given
by configuration only, never by a request; a free kept parameter is a spec problem.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from re import _parser as _sre  # type: ignore[attr-defined]
from typing import Any

from flowengine import _templates
from flowengine._spec import ConnectionVariable, FlowSpec, KeptParameter

__all__ = ["free_hosts", "pinned_connection"]

#: An allow-list longer than this is not read as one.
_MAX_CHOICES = 64
_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "-._")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
#: Second-level labels that make ``LABEL.CC`` a public suffix (co.uk, com.au, ne.jp, gov.br).
_PUBLIC_SECOND = frozenset(
    {"ac", "co", "com", "edu", "go", "gob", "gov", "mil", "ne", "net", "nic", "or", "org"}
)
_MARK = "\x00"


def free_hosts(spec: FlowSpec) -> dict[str, str]:
    """Each variable that can name any host, with the path of the first template it does so in."""
    rules: dict[str, ConnectionVariable | KeptParameter] = {**spec.connection, **spec.callback.keep}
    templates = [(f"$.endpoints.{name}", url) for name, url in spec.endpoints.items()]
    if spec.issuer is not None:
        templates.append(("$.issuer", spec.issuer))
    free: dict[str, str] = {}
    for path, template in templates:
        for name, suffix in host_variables(template).items():
            rule = rules.get(name)
            if rule is None or name in free or _confined(suffix, rule.pattern):
                continue
            free[name] = path
    return free


def pinned_connection(spec: FlowSpec) -> frozenset[str]:
    """The connection variables that can name any host: configuration gives them, never a request."""
    return frozenset(name for name in free_hosts(spec) if name in spec.connection)


def host_variables(template: str) -> dict[str, str | None]:
    """The variables in a URL template's scheme or host, each with the fixed text the host ends in.

    ``None``: the variable is (or starts) the whole URL, so it chooses the scheme and host.
    """
    try:
        names = _templates.variables(template)
    except _templates.TemplateError:
        return {}
    marks = {name: f"{_MARK}{index}{_MARK}" for index, name in enumerate(names)}
    text = _templates.render(template, marks) or ""
    scheme_end = text.find("://")
    head = text[:scheme_end] if scheme_end >= 0 else text
    rest = text[scheme_end + 3 :] if scheme_end >= 0 else ""
    whole = {name: None for name in names if marks[name] in head}
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    in_host = [name for name in names if name not in whole and marks[name] in authority]
    if not in_host:
        return dict(whole)
    tail = authority[authority.rfind(_MARK) + 1 :]
    host_tail = re.sub(r":[0-9]*$", "", tail)
    return {**whole, **dict.fromkeys(in_host, host_tail)}


def _confined(suffix: str | None, pattern: str) -> bool:
    """True when a variable with this host tail and pattern names hosts of one domain only."""
    if suffix and "." in suffix and _registrable(suffix.split(".", 1)[1]):
        return True
    items = _value_items(pattern)
    if items is None:
        return False
    choices = _strings(items)
    if choices is not None:
        return bool(choices)
    return suffix is not None and _suffix_confined(items)


def _registrable(domain: str) -> bool:
    labels = domain.lower().split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return False
    return not (len(labels) == 2 and labels[0] in _PUBLIC_SECOND and len(labels[1]) == 2)


def _value_items(pattern: str) -> list[Any] | None:
    """The parsed pattern of what the value is: its first group when it has one."""
    try:
        tree = _sre.parse(pattern)
    except Exception:  # re.error, RecursionError, OverflowError: not a pattern (validation says so)
        return None
    items = list(tree)
    return _group_one(items) if tree.state.groups > 1 else items


def _group_one(items: Iterable[Any]) -> list[Any] | None:
    for op, av in items:
        if op is _sre.SUBPATTERN:
            if av[0] == 1:
                return list(av[3])
            found = _group_one(av[3])
        elif op is _sre.BRANCH:
            found = next((f for b in av[1] if (f := _group_one(b)) is not None), None)
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            found = _group_one(av[2])
        else:
            continue
        if found is not None:
            return found
    return None


def _strings(items: Iterable[Any]) -> frozenset[str] | None:
    """Every string the items match when they are few literal ones; None otherwise."""
    out = {""}
    for op, av in items:
        options = _node_strings(op, av)
        if options is None:
            return None
        out = {a + b for a in out for b in options}
        if len(out) > _MAX_CHOICES:
            return None
    return frozenset(out)


def _node_strings(op: Any, av: Any) -> frozenset[str] | None:
    if op is _sre.LITERAL:
        return frozenset({chr(av)})
    if op is _sre.AT:
        return frozenset({""})
    if op is _sre.SUBPATTERN:
        return _strings(av[3])
    if op is _sre.BRANCH:
        branches = [_strings(b) for b in av[1]]
        return None if None in branches else frozenset().union(*branches)  # type: ignore[arg-type]
    if op is _sre.IN and all(o is _sre.LITERAL for o, _ in av):
        return frozenset(chr(c) for _, c in av)
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and av[1] <= 4:
        once = _strings(av[2])
        counts = [_repeat(once, n) if once is not None else None for n in range(av[0], av[1] + 1)]
        if any(c is None for c in counts):
            return None
        return frozenset().union(*counts)  # type: ignore[arg-type]
    return None


def _repeat(once: frozenset[str], times: int) -> frozenset[str] | None:
    out = {""}
    for _ in range(times):
        out = {a + b for a in out for b in once}
        if len(out) > _MAX_CHOICES:
            return None
    return frozenset(out)


def _suffix_confined(items: list[Any]) -> bool:
    """Host characters, then a literal ``.`` and registrable domain at the very end."""
    while items and items[-1][0] is _sre.AT:
        items = items[:-1]
    suffix, cut = "", len(items)
    while cut > 0:
        tail = _strings(items[cut - 1 :])
        if tail is None or len(tail) != 1:
            break
        suffix, cut = next(iter(tail)), cut - 1
    if "." not in suffix or not _registrable(suffix.split(".", 1)[1]):
        return False
    chars = _chars(items[:cut])
    return chars is not None and chars <= _HOST_CHARS


def _chars(items: Iterable[Any]) -> set[str] | None:
    """Every character the items can match, or None when that is unbounded (``.``, ``[^x]``)."""
    out: set[str] = set()
    for op, av in items:
        if op is _sre.LITERAL:
            out.add(chr(av))
        elif op is _sre.IN:
            found = _set_chars(av)
            if found is None:
                return None
            out |= found
        elif op in (_sre.SUBPATTERN, _sre.BRANCH, _sre.MAX_REPEAT, _sre.MIN_REPEAT):
            parts = [av[3]] if op is _sre.SUBPATTERN else av[1] if op is _sre.BRANCH else [av[2]]
            for part in parts:
                found = _chars(part)
                if found is None:
                    return None
                out |= found
        elif op is not _sre.AT:
            return None
    return out


def _set_chars(av: Iterable[Any]) -> set[str] | None:
    out: set[str] = set()
    for op, value in av:
        if op is _sre.LITERAL:
            out.add(chr(value))
        elif op is _sre.RANGE and value[1] - value[0] < 256:
            out |= {chr(c) for c in range(value[0], value[1] + 1)}
        elif op is _sre.CATEGORY and value is _sre.CATEGORY_DIGIT:
            out |= set(string.digits)
        elif op is _sre.CATEGORY and value is _sre.CATEGORY_WORD:
            out |= set(string.ascii_letters + string.digits + "_")
        else:
            return None
    return out
