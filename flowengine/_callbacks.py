"""Reading a callback: a URL, a query string or a mapping, per the spec's rules.

Whatever arrives is bounded (16 KiB, 64 parameters) and anything unreadable is a
``CallbackError`` (SECURITY.md 7, 26); the provider's text in an error callback is
scrubbed of the ``state`` and code it carries before it is kept (28).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

import attrs

from flowengine._bounded import text_problems
from flowengine._errors import CallbackError, ProviderError
from flowengine._security import digest, scrub
from flowengine._spec import CallbackRules, FlowSpec

__all__ = [
    "CallbackInput",
    "CallbackParams",
    "callback_digest",
    "callback_error",
    "callback_state",
    "parse_callback",
]

#: A callback longer than this is not a callback (and not worth parsing).
MAX_CALLBACK_LENGTH = 16 * 1024
MAX_PARAMETERS = 64

CallbackInput = str | Mapping[str, str | Sequence[str]]


@attrs.frozen(slots=True)
class CallbackParams:
    """The parameters of a callback that matter, read per the spec's callback rules."""

    state: str | None = attrs.field(default=None, repr=False)
    code: str | None = attrs.field(default=None, repr=False)
    error: str | None = None
    error_reason: str | None = None
    error_description: str | None = None
    iss: str | None = None
    #: The parameters the spec keeps (``callback.keep``), by parameter name, as they came.
    kept: dict[str, str] = attrs.field(factory=dict)


def _pairs(data: CallbackInput) -> list[tuple[str, str]]:
    if not isinstance(data, str | Mapping):
        got = type(data).__name__
        raise CallbackError(
            f"a callback is a URL, a query string or a mapping, not {got}", code="callback_invalid"
        )
    if isinstance(data, str):
        if len(data) > MAX_CALLBACK_LENGTH:
            raise CallbackError("the callback is too long", code="callback_invalid")
        try:
            query = urlsplit(data).query if ("?" in data or "://" in data) else data.lstrip("?")
        except ValueError:  # e.g. an unclosed `[` of an IPv6 host
            raise CallbackError("the callback URL is malformed", code="callback_invalid") from None
        try:
            # errors="strict": a code mangled by bad percent-escapes is refused, not "repaired".
            return parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_PARAMETERS, errors="strict")
        except UnicodeDecodeError:
            raise CallbackError(
                "the callback holds percent-escapes that are not UTF-8", code="callback_invalid"
            ) from None
        except ValueError:
            raise CallbackError("the callback has too many parameters", code="callback_invalid") from None
    pairs: list[tuple[str, str]] = []
    size = 0
    for key, value in data.items():
        values = [value] if isinstance(value, str) else value if isinstance(value, list | tuple) else [value]
        for item in values:
            if not isinstance(key, str) or not isinstance(item, str):
                raise CallbackError(
                    f"callback parameter {str(key)[:40]!r} is not text", code="callback_invalid"
                )
            size += len(key) + len(item) + 2
            pairs.append((key, item))
            if len(pairs) > MAX_PARAMETERS:
                raise CallbackError("the callback has too many parameters", code="callback_invalid")
            if size > MAX_CALLBACK_LENGTH:
                raise CallbackError("the callback is too long", code="callback_invalid")
    return pairs


#: What ``_reading`` worked out per spec's rules, by the rules' id (with the rules, so the id
#: stays theirs); a spec's rules are read once, not at every callback.
_READINGS: dict[int, tuple[CallbackRules, dict[str, str | None], dict[str, str], frozenset[str]]] = {}


def _reading(rules: CallbackRules) -> tuple[dict[str, str | None], dict[str, str], frozenset[str]]:
    """The rules' parameter name of each field, the field of each parameter, and the kept ones."""
    found = _READINGS.get(id(rules))
    if found is None or found[0] is not rules:
        names = {
            "state": rules.state,
            "code": rules.code,
            "error": rules.error,
            "error_reason": rules.error_reason,
            "error_description": rules.error_description,
            "iss": rules.iss,
        }
        wanted = {name: field for field, name in names.items() if name}
        keep = frozenset(rule.param or name for name, rule in rules.keep.items())
        if len(_READINGS) >= 256:
            _READINGS.clear()
        found = _READINGS[id(rules)] = (rules, names, wanted, keep)
    return found[1], found[2], found[3]


def parse_callback(data: CallbackInput, rules: CallbackRules) -> CallbackParams:
    """The parameters that matter, with repeated ones taken last or rejected (SECURITY.md 6)."""
    names, wanted, keep = _reading(rules)
    seen: dict[str, list[str]] = {}
    for key, value in _pairs(data):
        field = wanted.get(key) or (f"kept:{key}" if key in keep else None)
        if field is not None:
            seen.setdefault(field, []).append(value)
    values: dict[str, str | None] = {}
    kept: dict[str, str] = {}
    for field, found in seen.items():
        name = names.get(field) or field.removeprefix("kept:")
        for problem in text_problems(**{f"{name!r} parameter": found}):
            raise CallbackError(f"the callback's {problem}", code="callback_invalid")
        if len(found) > 1 and rules.repeated == "reject":
            raise CallbackError(f"the callback repeats the {name!r} parameter", code="repeated_parameter")
        if field.startswith("kept:"):
            if found[-1]:
                kept[field.removeprefix("kept:")] = found[-1]
        else:
            values[field] = found[-1] or None
    return CallbackParams(**values, kept=kept)


def callback_state(callback: CallbackInput, spec: FlowSpec) -> str | None:
    """The ``state`` a callback carries (None without one), read by ``spec``'s callback rules.

    For a frontend that must tell whether a callback (a pasted URL, a request on
    a listener) belongs to the flow it waits on before handing it to the engine:
    compare ``digest(state)`` with ``flow.state_hash`` using ``digests_equal``.
    ``CallbackError`` when the callback cannot be read (malformed, repeated parameters).
    """
    return parse_callback(callback, spec.callback).state


def callback_error(params: CallbackParams, rules: CallbackRules) -> ProviderError | None:
    """The error a callback reports (denial, provider error, or no code at all), or None.

    The provider's words are kept without the callback's own ``state`` and code, should
    it echo them (they are secrets wherever they are shown, SECURITY.md 13, 28).
    """
    carried = [value for value in (params.state, params.code) if value]
    body = {
        "error": params.error and scrub(params.error, carried),
        "error_reason": params.error_reason and scrub(params.error_reason, carried),
        "error_description": params.error_description and scrub(params.error_description, carried),
    }
    if params.error:
        denied = params.error in rules.denied_errors
        message = (
            "the person denied the request"
            if denied
            else f"the provider answered {scrub(params.error, carried)[:80]!r}"
        )
        if body["error_description"]:
            message += f": {body['error_description'][:200]}"
        return ProviderError(message, code="access_denied" if denied else "provider_error", body=body)
    if not params.code:
        return ProviderError("the callback carries neither a code nor an error", code="missing_code")
    return None


def callback_digest(params: CallbackParams) -> str:
    """Names one callback, so a replay of the same one can be told from a different one."""
    if params.code:
        return digest("code\0" + params.code)
    return digest(
        "\0".join(("error", params.error or "", params.error_reason or "", params.error_description or ""))
    )
