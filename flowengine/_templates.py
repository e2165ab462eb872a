"""Parameter templates: ``"{client_id}"``, ``"Bearer {token}"``, ``"code"``.

A template is text with ``{name}`` placeholders and nothing else: no format
specs, conversions, attribute or index access. ``{{`` and ``}}`` are literal
braces. A parameter whose template names a variable that has no value (None)
is left out of the request, which is how optional parameters (``scope``,
``code_challenge``) are written.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping

__all__ = ["TemplateError", "render", "variables"]

_formatter = string.Formatter()


class TemplateError(ValueError):
    """A template is malformed; the message says how."""


def variables(template: str) -> tuple[str, ...]:
    """Return the variable names a template uses, in order of appearance."""
    names: list[str] = []
    try:
        parsed = _parsed(template)
    except ValueError as exc:
        raise TemplateError(f"malformed template {template!r}: {exc}") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier():
            raise TemplateError(f"template {template!r}: {{{field}}} is not a plain variable name")
        if spec or conversion:
            raise TemplateError(f"template {template!r}: format specs and conversions are not allowed")
        names.append(field)
    return tuple(names)


@functools.lru_cache(maxsize=2048)
def _parsed(template: str) -> tuple[tuple[str, str | None, str | None, str | None], ...]:
    """``string.Formatter().parse`` of a template, parsed once (a spec's templates are few)."""
    return tuple(_formatter.parse(template))


@functools.lru_cache(maxsize=2048)
def _alone(template: str) -> str | None:
    """The variable a template is made of alone (``{client_id}``: most are), else None."""
    parsed = _parsed(template)
    if len(parsed) == 1 and parsed[0][0] == "" and parsed[0][1] is not None:
        return parsed[0][1]
    return None


def render(template: str, values: Mapping[str, str | None]) -> str | None:
    """Fill a template; None when any variable it names has no value."""
    if "{" not in template and "}" not in template:
        return template
    alone = _alone(template)
    if alone is not None:
        return values.get(alone)
    out: list[str] = []
    for literal, field, _spec, _conversion in _parsed(template):
        out.append(literal)
        if field is None:
            continue
        value = values.get(field)
        if value is None:
            return None
        out.append(value)
    return "".join(out)
