"""The flow spec: an attrs model of one provider's flow, loaded from YAML.

``load_spec`` accepts a spec name (found through the ``flowengine_spec_paths``
hook), a path, YAML text or a mapping, and always runs the same validation:
structure (cattrs, no unknown keys, no silent coercion of ``1.9`` to ``1`` or
``None`` to ``"None"``) and meaning (endpoints, templates, the machine). Every
problem found is reported at once, each as ``FILE: $.path: message``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, is_sequence
from cattrs.gen import make_dict_structure_fn, override

from flowengine import _templates, _yaml
from flowengine._bounded import cap, shown
from flowengine._errors import PluginError, SpecError, SpecProblem
from flowengine._urls import UrlRefused, judge

__all__ = [
    "BUILTIN_VARIABLES",
    "ENGINE_TRIGGERS",
    "AccountRule",
    "AuthorizationRequest",
    "CallbackRules",
    "FlowSpec",
    "MachineSpec",
    "RedirectRules",
    "TokenRequest",
    "TokenResponseRules",
    "TransitionSpec",
    "UsageRules",
    "check_names",
    "check_spec",
    "endpoint_problem",
    "load_spec",
    "spec_from_mapping",
]

#: Variables every template may name; a spec adds its own through ``inputs``.
BUILTIN_VARIABLES = frozenset(
    {
        "client_id",
        "client_secret",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "code_verifier",
        "code",
        "refresh_token",
        "token",
        "token_type_hint",
    }
)

#: Events the engine fires; a spec's transitions hang off these.
ENGINE_TRIGGERS = frozenset({"callback", "exchange", "expire"})
_REQUIRED_TRIGGERS = ("callback", "exchange")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_HOST = re.compile(r"^[a-z0-9.-]+$")
_SCHEME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}")  # an RFC 9110 token
#: Bounds on what a spec may ask for (SECURITY.md 33): a flow waits a day at most for its
#: callback, and a token is treated as expired at most an hour early.
MAX_FLOW_TTL = 86_400
MAX_LEEWAY = 3_600


@attrs.frozen
class AuthorizationRequest:
    """Where the person is sent, and with which query parameters."""

    params: Mapping[str, str]
    endpoint: str = "authorize"
    scope_separator: str = " "


@attrs.frozen
class TokenRequest:
    """How one grant asks the token endpoint for a token."""

    params: Mapping[str, str]
    endpoint: str = "token"
    encoding: Literal["json", "form"] = "form"
    client_auth: Literal["body", "basic"] = "body"


@attrs.frozen
class CallbackRules:
    """Which query parameters of the callback carry what."""

    code: str = "code"
    state: str = "state"
    error: str = "error"
    error_reason: str | None = None
    error_description: str = "error_description"
    iss: str | None = None
    iss_required: bool = False
    repeated: Literal["last", "reject"] = "reject"
    denied_errors: tuple[str, ...] = ("access_denied",)


@attrs.frozen
class AccountRule:
    """Where the token response names the account (dotted paths, e.g. ``ref.id``)."""

    id: str
    type: str | None = None
    default_type: str = "account"


@attrs.frozen
class TokenResponseRules:
    """How a token response is read."""

    access_token: str = "access_token"
    token_type: str = "token_type"
    token_types: tuple[str, ...] = ("bearer",)
    expires_in: str = "expires_in"
    refresh_token: str = "refresh_token"
    scope: str = "scope"
    default_scope: str | None = None
    account: AccountRule | None = None
    leeway: int = 60
    rate_limit_status: tuple[int, ...] = (429,)


@attrs.frozen
class UsageRules:
    """How the token is used against the provider's API."""

    header_scheme: str = "Bearer"


@attrs.frozen
class RedirectRules:
    """Rules on the redirect URI; ``registered_domain`` is checked before any redirect."""

    registered_domain: str | None = None


@attrs.frozen
class TransitionSpec:
    """One edge of the machine: ``trigger`` moves ``source`` to ``dest``."""

    trigger: str
    source: tuple[str, ...]
    dest: str
    when: tuple[str, ...] = ()
    do: tuple[str, ...] = ()


@attrs.frozen
class MachineSpec:
    """The state machine of a flow."""

    states: tuple[str, ...]
    initial: str
    final: tuple[str, ...]
    transitions: tuple[TransitionSpec, ...]
    ttl: int = 600


@attrs.frozen(eq=False)
class FlowSpec:
    """A whole provider flow, validated; build one with ``load_spec``.

    Specs compare and hash by identity, so a compiled machine can be cached per spec.
    """

    name: str
    endpoints: Mapping[str, str]
    grants: Mapping[str, TokenRequest]
    #: The redirect leg; absent in a grant-only spec (Podio's app or password grant).
    authorization: AuthorizationRequest | None = None
    #: The flow's machine; present exactly when ``authorization`` is.
    machine: MachineSpec | None = None
    #: How a token is revoked (RFC 7009), when the provider can.
    revocation: TokenRequest | None = None
    description: str = ""
    local_only: bool = False
    issuer: str | None = None
    pkce: bool = False
    inputs: tuple[str, ...] = ()
    redirect: RedirectRules = RedirectRules()
    callback: CallbackRules = CallbackRules()
    token: TokenResponseRules = TokenResponseRules()
    usage: UsageRules = UsageRules()
    #: Where the spec came from (a file path, ``<text>``); not a YAML key.
    source: str = attrs.field(default="<spec>", eq=False)

    @property
    def scope_separator(self) -> str:
        """How scopes are joined (the authorization request's, else a space)."""
        return self.authorization.scope_separator if self.authorization else " "

    @property
    def variables(self) -> frozenset[str]:
        """Every variable name templates of this spec may use."""
        return BUILTIN_VARIABLES | frozenset(self.inputs)


# --- structuring ---------------------------------------------------------------------


class _WrongType(TypeError):
    """A value of the wrong YAML type; its message is shown as it is."""


def _expect(kind: type | tuple[type, ...], label: str) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _type: Any) -> Any:
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise _WrongType(f"expected {label}, got a boolean")
        if not isinstance(value, kind):
            got = "nothing (null)" if value is None else f"{type(value).__name__} {shown(value)}"
            raise _WrongType(f"expected {label}, got {got}")
        return value

    return hook


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _expect(str, "a string"))
    conv.register_structure_hook(int, _expect(int, "an integer"))
    conv.register_structure_hook(bool, _expect(bool, "true or false"))

    def tuples(type_: Any) -> Callable[[Any, Any], Any]:
        inner = homogenous_tuple_structure_factory(type_, conv)

        def hook(value: Any, t: Any) -> Any:
            if not isinstance(value, list | tuple):
                raise _WrongType(f"expected a list, got {type(value).__name__}")
            return inner(value, t)

        return hook

    conv.register_structure_hook_factory(
        lambda t: is_sequence(t) and getattr(t, "__origin__", None) is tuple, tuples
    )

    def mappings(value: Any, type_: Any) -> Any:
        if not isinstance(value, dict):
            raise _WrongType(f"expected a mapping, got {type(value).__name__}")
        key_type, value_type = get_args(type_)
        out: dict[Any, Any] = {}
        errors: list[Exception] = []
        for key, item in value.items():
            try:
                out[conv.structure(key, key_type)] = conv.structure(item, value_type)
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), f"key {shown(key)}"]
                errors.append(_KeyedError(key, exc))
        if errors:
            raise cattrs.ClassValidationError("mapping", errors, dict)
        return out

    conv.register_structure_hook_factory(
        lambda t: getattr(t, "__origin__", None) in (Mapping, dict), lambda _t: mappings
    )

    def literals(type_: Any) -> Callable[[Any, Any], Any]:
        allowed = get_args(type_)

        def hook(value: Any, _t: Any) -> Any:
            if value not in allowed or type(value) is not type(allowed[0]):
                choices = ", ".join(repr(a) for a in allowed)
                raise _WrongType(f"expected one of {choices}, got {shown(value)}")
            return value

        return hook

    conv.register_structure_hook_factory(lambda t: getattr(t, "__origin__", None) is Literal, literals)

    transition_fn = make_dict_structure_fn(TransitionSpec, conv)

    def transition(value: Any, type_: Any) -> TransitionSpec:
        if isinstance(value, dict) and isinstance(value.get("source"), str):
            value = {**value, "source": [value["source"]]}
        return transition_fn(value, type_)

    conv.register_structure_hook(TransitionSpec, transition)
    conv.register_structure_hook(FlowSpec, make_dict_structure_fn(FlowSpec, conv, source=override(omit=True)))
    return conv


class _KeyedError(Exception):
    def __init__(self, key: Any, error: Exception) -> None:
        super().__init__(str(error))
        self.key = key
        self.error = error


_converter = _make_converter()


def _flatten(exc: BaseException, path: str) -> list[tuple[str, str]]:
    """Turn cattrs' nested exception groups into (path, message) pairs."""
    if isinstance(exc, _KeyedError):
        return _flatten(exc.error, f"{path}.{cap(str(exc.key), _MAX_KEY)}")
    if isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        if isinstance(exc, cattrs.ClassValidationError) and exc.cl is dict:
            return [pair for sub in exc.exceptions for pair in _flatten(sub, path)]
        out: list[tuple[str, str]] = []
        for sub in exc.exceptions:
            note = next(
                (
                    n
                    for n in getattr(sub, "__notes__", [])
                    if isinstance(n, cattrs.AttributeValidationNote | cattrs.IterableValidationNote)
                ),
                None,
            )
            if isinstance(note, cattrs.AttributeValidationNote):
                out += _flatten(sub, f"{path}.{note.name}")
            elif isinstance(note, cattrs.IterableValidationNote):
                out += _flatten(sub, f"{path}[{note.index}]")
            else:
                out += _flatten(sub, path)
        return out
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        keys = sorted(cap(str(key), _MAX_KEY) for key in exc.extra_fields)
        more = f" and {len(keys) - 10} more" if len(keys) > 10 else ""
        return [(path, f"unknown key(s): {', '.join(keys[:10])}{more}")]
    if isinstance(exc, KeyError):
        return [(path, "required key missing")]
    if isinstance(exc, _WrongType):
        return [(path, str(exc))]
    return [(path, f"invalid value ({type(exc).__name__}: {cap(str(exc), _MAX_MESSAGE)})")]


# --- loading -------------------------------------------------------------------------


_Names = tuple[Collection[str], Collection[str]] | None
#: A report lists this many problems at most, each message and path cut to a readable length.
MAX_PROBLEMS = 50
_MAX_MESSAGE = 300
_MAX_KEY = 80


def _refuse(problems: Iterable[SpecProblem]) -> SpecError:
    """The SpecError for ``problems``: at most MAX_PROBLEMS of them, each cut short (SECURITY.md 25)."""
    kept: list[SpecProblem] = []
    more = 0
    for p in problems:
        if len(kept) < MAX_PROBLEMS:
            kept.append(SpecProblem(cap(p.path, 200), cap(p.message, _MAX_MESSAGE), cap(p.source, 200)))
        else:
            more += 1
    if more:
        kept.append(SpecProblem("$", f"and {more} more problem(s) not listed", kept[0].source))
    return SpecError(kept)


def spec_from_mapping(data: Any, *, source: str = "<mapping>", names: _Names = None) -> FlowSpec:
    """Structure and validate a spec given as a mapping (e.g. parsed YAML or JSON).

    ``names`` (known guard names, known action names) adds the compile-time
    name checks to the same report, so every problem is listed at once.
    """
    if not isinstance(data, dict):
        got = "an empty document" if data is None else type(data).__name__
        raise _refuse([SpecProblem("$", f"a spec is a mapping, got {got}", source)])
    try:
        _yaml.check_tree(data)
    except _yaml.YamlRefused as exc:
        raise _refuse([SpecProblem(exc.where, exc.message, source)]) from None
    try:
        spec = _converter.structure(data, FlowSpec)
    except Exception as exc:
        raise _refuse(SpecProblem(path, message, source) for path, message in _flatten(exc, "$")) from None
    spec = attrs.evolve(spec, source=source)
    problems = list(check_spec(spec))
    if names is not None:
        problems += check_names(spec, *names)
    if problems:
        raise _refuse(problems)
    return spec


def _from_text(text: str, source: str, names: _Names = None) -> FlowSpec:
    try:
        data = _yaml.load(text)
    except _yaml.YamlRefused as exc:
        raise _refuse([SpecProblem(exc.where, exc.message, source)]) from None
    return spec_from_mapping(data, source=source, names=names)


def _looks_like_text(spec: str) -> bool:
    """True for YAML text rather than a name or a path (a path check that fails is not a path)."""
    if not spec.strip() or "\n" in spec or len(spec) > 4096 or "\0" in spec:
        return True
    try:
        return ":" in spec and not Path(spec).exists()
    except (OSError, ValueError):
        return True


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name the system cannot even look up (too long, say)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def load_spec(
    spec: str | Path | Mapping[str, Any] | FlowSpec,
    *,
    search_paths: Iterable[Path] | None = None,
    names: _Names = None,
) -> FlowSpec:
    """Load and validate a spec from a name, a path, YAML text, a mapping or a FlowSpec.

    A bare name (``"podio"``) is looked up as ``NAME.yaml`` in ``search_paths``,
    which default to the folders plugins return from ``flowengine_spec_paths``.
    A FlowSpec built in Python goes through the same checks as YAML, types included.
    ``names`` = (guard names, action names) also checks the names ``when:``/``do:`` use.
    """
    if isinstance(spec, FlowSpec):
        data = _converter.unstructure(spec)
        data.pop("source", None)
        spec_from_mapping(data, source=spec.source, names=names)
        return spec  # the same object: compiled machines are cached per spec
    if isinstance(spec, Mapping):
        return spec_from_mapping(dict(spec), names=names)
    if isinstance(spec, Path):
        return _from_file(spec, names)
    if not isinstance(spec, str):
        got = type(spec).__name__
        raise _refuse(
            [SpecProblem("$", f"a spec is a name, a path, YAML text or a mapping, not {got}", "<spec>")]
        )
    if _looks_like_text(spec):
        return _from_text(spec, "<text>", names)
    if _NAME.match(spec) and not spec.endswith((".yaml", ".yml")):
        if search_paths is None:
            from flowengine._plugins import spec_paths

            search_paths = spec_paths()
        folders = list(search_paths)
        for folder in folders:
            candidate = Path(folder) / f"{spec}.yaml"
            if _is_file(candidate):
                found = _from_file(candidate, names)
                if found.name != spec:
                    # Flows and tokens are recorded under `name:`; a mismatch would file them elsewhere.
                    message = f"the spec found as {spec!r} must say name: {spec}, not {found.name!r}"
                    raise _refuse([SpecProblem("$.name", message, str(candidate))])
                return found
        where = ", ".join(str(f) for f in folders) or "no folders"
        raise PluginError(f"no spec named {spec!r} (looked in {where})", code="spec_not_found")
    return _from_file(Path(spec), names)


#: Specs read from files, by (path, mtime, size, names): a spec that did not change on
#: disk is the same FlowSpec object, so its compiled machine is reused too.
_file_cache: dict[tuple[str, int, int, object], FlowSpec] = {}


def _from_file(path: Path, names: _Names = None) -> FlowSpec:
    try:
        stat = path.stat()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        why = getattr(exc, "strerror", None) or str(exc)
        raise _refuse([SpecProblem("$", f"cannot read: {why}", str(path))]) from None
    if stat.st_size > _yaml.MAX_SPEC_BYTES:
        message = f"the file is larger than {_yaml.MAX_SPEC_BYTES // 1024} KiB"
        raise _refuse([SpecProblem("$", message, str(path))])
    known = None if names is None else (frozenset(names[0]), frozenset(names[1]))
    key = (str(path), stat.st_mtime_ns, stat.st_size, known)
    cached = _file_cache.get(key)
    if cached is None:
        cached = _file_cache[key] = _read_file(path, names)
    return cached


def _read_file(path: Path, names: _Names) -> FlowSpec:
    try:
        with path.open("rb") as file:  # no more than the limit, whatever the file grew to since
            text = file.read(_yaml.MAX_SPEC_BYTES + 1).decode("utf-8")
    except OSError as exc:
        raise _refuse([SpecProblem("$", f"cannot read: {exc.strerror}", str(path))]) from None
    except UnicodeDecodeError:
        raise _refuse([SpecProblem("$", "not UTF-8 text", str(path))]) from None
    return _from_text(text, str(path), names)


# --- meaning -------------------------------------------------------------------------


def check_spec(spec: FlowSpec) -> Iterable[SpecProblem]:
    """Yield every problem with what a structurally valid spec means."""

    def problem(path: str, message: str) -> SpecProblem:
        return SpecProblem(path, message, spec.source)

    if not _NAME.match(spec.name):
        yield problem("$.name", f"{spec.name!r} is not a name (lowercase letters, digits, _ . -)")
    for name, url in spec.endpoints.items():
        reason = endpoint_problem(url, local_ok=spec.local_only)
        if reason:
            yield problem(f"$.endpoints.{name}", reason)
    for name in spec.inputs:
        if not name.isidentifier():
            yield problem("$.inputs", f"{name!r} is not a valid variable name")
        elif name in BUILTIN_VARIABLES:
            yield problem("$.inputs", f"{name!r} is built in; do not declare it")
    known = spec.variables

    def check_params(path: str, params: Mapping[str, str]) -> Iterable[SpecProblem]:
        for key, template in params.items():
            try:
                names = _templates.variables(template)
            except _templates.TemplateError as exc:
                yield problem(f"{path}.{key}", str(exc))
                continue
            for var in names:
                if var not in known:
                    yield problem(f"{path}.{key}", f"template names unknown variable {var!r}")

    authorization = spec.authorization
    if authorization is not None:
        if authorization.endpoint not in spec.endpoints:
            yield problem("$.authorization.endpoint", f"no endpoint named {authorization.endpoint!r}")
        yield from check_params("$.authorization.params", authorization.params)
        if "authorization_code" not in spec.grants:
            yield problem("$.grants", "an authorization request needs the authorization_code grant")
        if spec.machine is None:
            yield problem("$.machine", "an authorization request needs a machine")
        if not authorization.scope_separator:
            yield problem("$.authorization.scope_separator", "must not be empty")
    else:
        if spec.machine is not None:
            yield problem("$.machine", "a machine needs an authorization request to start its flows")
        if "authorization_code" in spec.grants:
            yield problem(
                "$.grants.authorization_code", "the authorization_code grant needs an authorization request"
            )
        if spec.pkce:
            yield problem("$.pkce", "pkce needs an authorization request")
        if not spec.grants:
            yield problem("$.grants", "a grant-only spec needs at least one grant")
    for grant, request in spec.grants.items():
        if request.endpoint not in spec.endpoints:
            yield problem(f"$.grants.{grant}.endpoint", f"no endpoint named {request.endpoint!r}")
        yield from check_params(f"$.grants.{grant}.params", request.params)
    requests = {f"$.grants.{grant}": request for grant, request in spec.grants.items()}
    if spec.revocation is not None:
        requests["$.revocation"] = spec.revocation
        if spec.revocation.endpoint not in spec.endpoints:
            yield problem("$.revocation.endpoint", f"no endpoint named {spec.revocation.endpoint!r}")
        yield from check_params("$.revocation.params", spec.revocation.params)
        if not any("token" in _safe_vars(t) for t in spec.revocation.params.values()):
            yield problem("$.revocation.params", "no parameter sends the {token} to revoke")
    for where, request in requests.items():
        if request.client_auth == "basic" and any(
            "client_secret" in _safe_vars(t) for t in request.params.values()
        ):
            yield problem(
                f"{where}.params",
                "client_auth is basic: the secret goes in the Authorization header, "
                "not also in the body (RFC 6749 §2.3.1)",
            )
    if spec.pkce and authorization is not None:
        used = {v for t in authorization.params.values() for v in _safe_vars(t)}
        if "code_challenge" not in used:
            yield problem("$.authorization.params", "pkce is on but no parameter sends {code_challenge}")
        method = authorization.params.get("code_challenge_method")
        if method not in ("{code_challenge_method}", "S256"):
            yield problem(
                "$.authorization.params.code_challenge_method",
                "pkce is on: send code_challenge_method as {code_challenge_method} (S256); "
                "plain, or no method (which means plain), is never used",
            )
        code_grant = spec.grants.get("authorization_code")
        if code_grant and "code_verifier" not in {
            v for t in code_grant.params.values() for v in _safe_vars(t)
        }:
            yield problem(
                "$.grants.authorization_code.params", "pkce is on but no parameter sends {code_verifier}"
            )
    if spec.redirect.registered_domain is not None and not _HOST.match(spec.redirect.registered_domain):
        yield problem("$.redirect.registered_domain", "expected a host name such as example.com")
    if spec.token.leeway < 0:
        yield problem("$.token.leeway", "must not be negative")
    elif spec.token.leeway > MAX_LEEWAY:
        yield problem("$.token.leeway", f"must be at most {MAX_LEEWAY} seconds (an hour)")
    for i, status in enumerate(spec.token.rate_limit_status):
        if not 100 <= status <= 599:
            yield problem(f"$.token.rate_limit_status[{i}]", "must be an HTTP status from 100 to 599")
    if not _SCHEME.fullmatch(spec.usage.header_scheme):
        yield problem("$.usage.header_scheme", "must be one word of visible characters (Bearer, OAuth2)")
    if spec.issuer is not None and not spec.callback.iss:
        yield problem("$.callback.iss", "issuer is set: name the callback parameter that carries it")
    if spec.callback.iss_required and spec.issuer is None:
        yield problem("$.callback.iss_required", "iss_required needs the spec's issuer to compare with")
    if not spec.token.token_types:
        yield problem("$.token.token_types", "list at least one accepted token type")
    if spec.machine is not None:
        yield from _check_machine(spec.machine, problem)


def _safe_vars(template: str) -> tuple[str, ...]:
    try:
        return _templates.variables(template)
    except _templates.TemplateError:
        return ()


def endpoint_problem(url: str, *, local_ok: bool) -> str | None:
    """Why ``url`` is not an acceptable endpoint, or None when it is (SECURITY.md 11, 27).

    The URL is judged as a browser reads it (``flowengine._urls``); ``http://`` is
    accepted only when ``local_ok`` and only on a loopback host.
    """
    try:
        parsed = judge(url)
    except UrlRefused as exc:
        return f"{shown(url, 120)} {exc.reason}"
    if parsed.scheme == "http" and not (local_ok and parsed.loopback):
        only = "only https:// is allowed, or http:// on loopback with local_only"
        return f"{shown(url, 120)} uses http://; {only}"
    return None


def check_names(spec: FlowSpec, guards: Collection[str], actions: Collection[str]) -> list[SpecProblem]:
    """Problems with the guard and action names the machine uses, given the known ones."""
    problems: list[SpecProblem] = []
    for i, t in enumerate(spec.machine.transitions if spec.machine else ()):
        for kind, used, known in (("when", t.when, guards), ("do", t.do, actions)):
            for j, name in enumerate(used):
                if name not in known:
                    what = "guard" if kind == "when" else "action"
                    where = f"$.machine.transitions[{i}].{kind}[{j}]"
                    problems.append(SpecProblem(where, f"unknown {what} {name!r}", spec.source))
    return problems


def _check_machine(machine: MachineSpec, problem: Callable[[str, str], SpecProblem]) -> Iterable[SpecProblem]:
    states = set(machine.states)
    if len(states) != len(machine.states):
        yield problem("$.machine.states", "a state is listed twice")
    if machine.initial not in states:
        yield problem("$.machine.initial", f"unknown state {machine.initial!r}")
    for i, name in enumerate(machine.final):
        if name not in states:
            yield problem(f"$.machine.final[{i}]", f"unknown state {name!r}")
    if machine.ttl <= 0:
        yield problem("$.machine.ttl", "must be a positive number of seconds")
    elif machine.ttl > MAX_FLOW_TTL:
        yield problem("$.machine.ttl", f"must be at most {MAX_FLOW_TTL} seconds (a day)")
    edges: dict[str, set[str]] = {s: set() for s in states}
    for i, t in enumerate(machine.transitions):
        where = f"$.machine.transitions[{i}]"
        if t.trigger not in ENGINE_TRIGGERS:
            known = ", ".join(sorted(ENGINE_TRIGGERS))
            yield problem(f"{where}.trigger", f"unknown trigger {t.trigger!r} (the engine fires {known})")
        if t.dest not in states:
            yield problem(f"{where}.dest", f"unknown state {t.dest!r}")
        for j, source in enumerate(t.source):
            if source == "*":
                for s in states:
                    edges[s].add(t.dest)
            elif source not in states:
                yield problem(f"{where}.source[{j}]", f"unknown state {source!r}")
            else:
                edges[source].add(t.dest)
    triggers = {t.trigger for t in machine.transitions}
    for required in _REQUIRED_TRIGGERS:
        if required not in triggers:
            yield problem("$.machine.transitions", f"no transition fires on {required!r}")
    if machine.initial in states:
        seen, todo = {machine.initial}, [machine.initial]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt in states and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        for i, name in enumerate(machine.states):
            if name not in seen:
                yield problem(
                    f"$.machine.states[{i}]", f"state {name!r} is unreachable from {machine.initial!r}"
                )
    final = set(machine.final)
    for i, name in enumerate(machine.states):
        if name not in final and not edges.get(name, set()) - {name}:
            yield problem(f"$.machine.states[{i}]", f"state {name!r} is not final and has no way out")
