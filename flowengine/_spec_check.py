"""What a structurally valid spec means: every problem with it, each with its path.

``check_spec`` judges endpoints, templates, grants, PKCE and the machine;
``check_names`` the guard and action names a machine uses, given the known ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping

from flowengine import _templates, _variables
from flowengine._bounded import shown
from flowengine._errors import SpecProblem
from flowengine._hosts import free_hosts
from flowengine._presets import KINDS, PRESETS
from flowengine._records import Outcome
from flowengine._spec import BUILTIN_VARIABLES, ConnectionVariable, FlowSpec, KeptParameter, MachineSpec
from flowengine._spec_check_oidc import check_openid
from flowengine._urls import UrlRefused, judge

__all__ = [
    "MAX_FLOW_TTL",
    "MAX_LEEWAY",
    "SPEC_NAME",
    "check_names",
    "check_spec",
    "endpoint_problem",
    "override_problem",
]

#: What a spec name looks like (it names files, store keys and URL paths).
SPEC_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_HOST = re.compile(r"^[a-z0-9.-]+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_SCHEME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}")  # an RFC 9110 token
#: Bounds on what a spec may ask for (SECURITY.md 33): a flow waits a day at most for its
#: callback, and a token is treated as expired at most an hour early.
MAX_FLOW_TTL = 86_400
MAX_LEEWAY = 3_600


_Problem = Callable[[str, str], SpecProblem]


def check_spec(spec: FlowSpec) -> Iterable[SpecProblem]:
    """Yield every problem with what a structurally valid spec means."""

    def problem(path: str, message: str) -> SpecProblem:
        return SpecProblem(path, message, spec.source)

    if not SPEC_NAME.match(spec.name):
        yield problem("$.name", f"{spec.name!r} is not a name (lowercase letters, digits, _ . -)")
    for name in spec.inputs:
        if not name.isidentifier():
            yield problem("$.inputs", f"{name!r} is not a valid variable name")
        elif name in BUILTIN_VARIABLES:
            yield problem("$.inputs", f"{name!r} is built in; do not declare it")
    yield from _check_declared(spec, problem)
    yield from _check_endpoints(spec, problem)
    yield from _check_kept_hosts(spec, problem)
    yield from _check_legs(spec, problem)
    yield from _check_requests(spec, problem)
    yield from _check_pkce(spec, problem)
    yield from _check_rules(spec, problem)
    yield from check_openid(spec, problem, _check_params)
    if spec.machine is not None:
        yield from _check_machine(spec.machine, problem)


def _check_params(
    spec: FlowSpec, path: str, params: Mapping[str, str], problem: _Problem, *, place: str
) -> Iterable[SpecProblem]:
    """Templates that are malformed, name an unknown variable, or one that never has a value there."""
    here = _variables.available(spec, place)
    for key, template in params.items():
        try:
            names = _templates.variables(template)
        except _templates.TemplateError as exc:
            yield problem(f"{path}.{key}", str(exc))
            continue
        for var in names:
            if var not in spec.variables:
                yield problem(f"{path}.{key}", f"template names unknown variable {var!r}")
            elif var not in here:
                yield problem(f"{path}.{key}", f"{{{var}}} never has a value in {_PLACES.get(place, place)}")


_PLACES = {
    "authorization": "the authorization request",
    "revocation": "a revocation request",
    "grant:authorization_code": "the code exchange",
    "grant:refresh_token": "a refresh request",
    "device": "the device authorization request",
}


def _check_declared(spec: FlowSpec, problem: _Problem) -> Iterable[SpecProblem]:
    """Connection variables and kept callback parameters: names that are free, patterns that work."""
    taken = BUILTIN_VARIABLES | frozenset(spec.inputs)
    rules: list[tuple[str, str, ConnectionVariable | KeptParameter]] = [
        *((f"$.connection.{n}", n, r) for n, r in spec.connection.items()),
        *((f"$.callback.keep.{n}", n, r) for n, r in spec.callback.keep.items()),
    ]
    for path, name, rule in rules:
        if not name.isidentifier():
            yield problem(path, f"{name!r} is not a valid variable name")
        elif name in taken:
            yield problem(path, f"{name!r} is already a variable (built in, or an input)")
        elif path.startswith("$.callback") and name in spec.connection:
            yield problem(path, f"{name!r} is already a connection variable")
        if _variables.compiled(rule.pattern) is None:
            yield problem(f"{path}.pattern", "not a regular expression")
            continue
        for what in ("default", "example"):
            value = getattr(rule, what)
            if value is not None and _variables.matched_value(rule, value) is None:
                yield problem(f"{path}.{what}", f"{value[:60]!r} does not match the pattern")


def _check_endpoints(spec: FlowSpec, problem: _Problem) -> Iterable[SpecProblem]:
    """Endpoints are URLs (their variables filled with stand-ins) whose variables exist there."""
    declared: dict[str, ConnectionVariable | KeptParameter] = {**spec.connection, **spec.callback.keep}
    samples = {**_variables.sample_values(declared.items()), "client_id": "x"}
    known = {*declared, "client_id"}
    authorization = spec.authorization
    for name, url in spec.endpoints.items():
        try:
            names = _variables.endpoint_variables(url)
        except _templates.TemplateError as exc:
            yield problem(f"$.endpoints.{name}", str(exc))
            continue
        here = _variables.available(spec, f"endpoint:{name}")
        for var in names:
            if var not in known:
                yield problem(
                    f"$.endpoints.{name}",
                    f"{{{var}}} names no connection variable or kept callback parameter "
                    "(declare it under connection:, or write {{ }} for a literal brace)",
                )
            elif var not in here:
                yield problem(f"$.endpoints.{name}", f"{{{var}}} has no value yet when this endpoint is used")
            elif var in spec.connection and not spec.connection[var].required:
                yield problem(
                    f"$.endpoints.{name}", f"{{{var}}} is optional: an endpoint cannot do without it"
                )
        if any(var not in known for var in names):
            continue
        in_fragment = (
            authorization is not None
            and authorization.endpoint == name
            and authorization.params_in == "fragment"
        )
        filled = _templates.render(url, samples) or url
        reason = endpoint_problem(filled, local_ok=spec.local_only, fragment_ok=in_fragment)
        if reason:
            yield problem(f"$.endpoints.{name}", reason)
        elif in_fragment and "#" not in filled:
            yield problem(f"$.endpoints.{name}", "params_in is fragment: the endpoint must have a # part")


def _check_kept_hosts(spec: FlowSpec, problem: _Problem) -> Iterable[SpecProblem]:
    """A host from a callback must be one of an allow-list: the callback would choose it (SECURITY.md 36)."""
    for name, where in free_hosts(spec).items():
        if name in spec.callback.keep:
            yield problem(
                f"$.callback.keep.{name}",
                f"{{{name}}} comes from the callback and fills the host of {where}, and its pattern "
                f"{shown(spec.callback.keep[name].pattern)} allows any host: make the pattern an allow-list "
                "(literal host names, or host characters ending in a literal .domain.example)",
            )


def _check_legs(spec: FlowSpec, problem: _Problem) -> Iterable[SpecProblem]:
    """The redirect leg and the machine come together; a grant-only spec has grants."""
    authorization = spec.authorization
    if authorization is not None:
        if authorization.endpoint not in spec.endpoint_names:
            yield problem("$.authorization.endpoint", f"no endpoint named {authorization.endpoint!r}")
        yield from _check_params(
            spec, "$.authorization.params", authorization.params, problem, place="authorization"
        )
        if "authorization_code" not in spec.grants:
            yield problem("$.grants", "an authorization request needs the authorization_code grant")
        if not authorization.scope_separator:
            yield problem("$.authorization.scope_separator", "must not be empty")
        for name in authorization.unescaped:
            if name not in authorization.params:
                yield problem("$.authorization.unescaped", f"no parameter named {name!r}")
        return
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


def _check_requests(spec: FlowSpec, problem: _Problem) -> Iterable[SpecProblem]:
    """Grants and revocation: endpoints that exist, templates that fill, one place for the secret."""
    for grant, request in spec.grants.items():
        if request.endpoint not in spec.endpoint_names:
            yield problem(f"$.grants.{grant}.endpoint", f"no endpoint named {request.endpoint!r}")
        yield from _check_params(
            spec, f"$.grants.{grant}.params", request.params, problem, place=f"grant:{grant}"
        )
        yield from _check_params(
            spec, f"$.grants.{grant}.headers", request.headers, problem, place=f"grant:{grant}"
        )
    requests = {f"$.grants.{grant}": request for grant, request in spec.grants.items()}
    if spec.revocation is not None:
        requests["$.revocation"] = spec.revocation
        if spec.revocation.endpoint not in spec.endpoint_names:
            yield problem("$.revocation.endpoint", f"no endpoint named {spec.revocation.endpoint!r}")
        yield from _check_params(
            spec, "$.revocation.params", spec.revocation.params, problem, place="revocation"
        )
        yield from _check_params(
            spec, "$.revocation.headers", spec.revocation.headers, problem, place="revocation"
        )
        sent = [*spec.revocation.params.values(), *spec.revocation.headers.values()]
        if not any("token" in _safe_vars(t) for t in sent):
            yield problem("$.revocation.params", "no parameter sends the {token} to revoke (nor any header)")
    for where, request in requests.items():
        for header in request.headers:
            if not _HEADER_NAME.match(header) or header.lower() in ("content-type", "content-length", "host"):
                yield problem(f"{where}.headers.{header}", "not a header a spec may set")
            elif header.lower() == "authorization" and request.client_auth == "basic":
                yield problem(f"{where}.headers.{header}", "client_auth is basic: it sets Authorization")
        if request.client_auth != "body" and any(
            "client_secret" in _safe_vars(t) for t in request.params.values()
        ):
            yield problem(
                f"{where}.params",
                f"client_auth is {request.client_auth}: the secret is never sent in the body as well "
                "(RFC 6749 §2.3.1, RFC 7523 §2.2)",
            )


def _check_pkce(spec: FlowSpec, problem: _Problem) -> Iterable[SpecProblem]:
    """PKCE on means S256 sent, and the verifier sent with the code (SECURITY.md 2)."""
    authorization = spec.authorization
    if not spec.pkce or authorization is None:
        return
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
    if code_grant and "code_verifier" not in {v for t in code_grant.params.values() for v in _safe_vars(t)}:
        yield problem(
            "$.grants.authorization_code.params", "pkce is on but no parameter sends {code_verifier}"
        )


def _check_rules(spec: FlowSpec, problem: _Problem) -> Iterable[SpecProblem]:
    """The redirect, callback and token-response rules."""
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
    account = spec.token.account
    if account is not None and account.userinfo is not None and account.userinfo not in spec.endpoint_names:
        yield problem("$.token.account.userinfo", f"no endpoint named {account.userinfo!r}")
    if spec.issuer is not None and not spec.callback.iss and spec.openid is None and not spec.discovery:
        yield problem(
            "$.callback.iss", "issuer is set: name the callback parameter that carries it (or use openid)"
        )
    if spec.callback.iss_required and spec.issuer is None:
        yield problem("$.callback.iss_required", "iss_required needs the spec's issuer to compare with")
    if not spec.token.token_types:
        yield problem("$.token.token_types", "list at least one accepted token type")
    default_type = spec.token.default_token_type
    if default_type is not None and default_type.lower() not in {t.lower() for t in spec.token.token_types}:
        yield problem("$.token.default_token_type", f"{default_type!r} is not one of token_types")
    for name, path in _token_paths(spec):
        if not path or any(not part for part in path.split(".")):
            yield problem(f"$.token.{name}", f"{path!r} is not a field name or dotted path")
    if spec.authorization is not None and any(not s.strip() for s in spec.authorization.default_scopes):
        yield problem("$.authorization.default_scopes", "a scope must not be empty")


def _token_paths(spec: FlowSpec) -> Iterable[tuple[str, str]]:
    rules = spec.token
    for name in ("access_token", "token_type", "expires_in", "refresh_token", "scope", "expires_at"):
        value = getattr(rules, name)
        if value is not None:
            yield name, value


def _safe_vars(template: str) -> tuple[str, ...]:
    try:
        return _templates.variables(template)
    except _templates.TemplateError:
        return ()


def endpoint_problem(url: str, *, local_ok: bool, fragment_ok: bool = False) -> str | None:
    """Why ``url`` is not an acceptable endpoint, or None when it is (SECURITY.md 11, 27).

    The URL is judged as a browser reads it (``flowengine._urls``); ``http://`` is
    accepted only when ``local_ok`` and only on a loopback host. A fragment only when
    ``fragment_ok`` (an authorization endpoint whose parameters go after its ``#``,
    ``params_in: fragment``): the part before it is judged, the fragment is held to
    the same characters.
    """
    base, hash_sign, fragment = url.partition("#") if isinstance(url, str) else (url, "", "")
    if hash_sign and not fragment_ok:
        return "an endpoint must not have a fragment (except with params_in: fragment)"
    try:
        parsed = judge(base)
        if (fragment and not fragment.isprintable()) or any(c in fragment for c in " \\\t"):
            raise UrlRefused("holds characters after its # that browsers read differently")
    except UrlRefused as exc:
        return f"{shown(url, 120)} {exc.reason}"
    if parsed.scheme == "http" and not (local_ok and parsed.loopback):
        only = "only https:// is allowed, or http:// on loopback with local_only"
        return f"{shown(url, 120)} uses http://; {only}"
    return None


def override_problem(spec: FlowSpec, name: str, url: str) -> str | None:
    """Why ``url`` cannot re-point the spec's endpoint ``name`` at run time, or None.

    An override may use ``http://`` on loopback (a sandbox), and the variables of the
    endpoint it replaces, and no others (the sandbox keeps a tenant's host in its path).
    """
    try:
        names = _variables.endpoint_variables(url)
    except _templates.TemplateError as exc:
        return str(exc)
    allowed = set(_safe_vars(spec.endpoints.get(name, "")))  # a discovered endpoint has none
    extra = sorted(set(names) - allowed)
    if extra:
        return f"names variable(s) {extra} that the spec's endpoint does not"
    declared: dict[str, ConnectionVariable | KeptParameter] = {**spec.connection, **spec.callback.keep}
    filled = _templates.render(url, {**_variables.sample_values(declared.items()), "client_id": "x"}) or url
    authorization = spec.authorization
    fragment_ok = (
        authorization is not None
        and authorization.endpoint == name
        and (authorization.params_in == "fragment")
    )
    # local_ok: an override may use http://, which endpoint_problem allows on loopback only.
    return endpoint_problem(filled, local_ok=True, fragment_ok=fragment_ok)


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


def _check_machine(machine: MachineSpec, problem: _Problem) -> Iterable[SpecProblem]:
    if machine.preset is not None and machine.preset not in PRESETS:
        known = ", ".join(sorted(PRESETS))
        yield problem("$.machine.preset", f"unknown preset {machine.preset!r} (there is {known})")
        return
    if machine.ttl <= 0:
        yield problem("$.machine.ttl", "must be a positive number of seconds")
    elif machine.ttl > MAX_FLOW_TTL:
        yield problem("$.machine.ttl", f"must be at most {MAX_FLOW_TTL} seconds (a day)")
    kind = KINDS.get(machine.kind)
    if kind is None:
        yield problem(
            "$.machine.kind", f"unknown kind {machine.kind!r} (there is {', '.join(sorted(KINDS))})"
        )
        return
    states = set(machine.states)
    if not machine.states:
        yield problem("$.machine.states", "list the states (or use a preset)")
        return
    if len(states) != len(machine.states):
        yield problem("$.machine.states", "a state is listed twice")
    if machine.initial not in states:
        yield problem("$.machine.initial", f"unknown state {machine.initial!r}")
    for name, outcome in machine.final.items():
        if name not in states:
            yield problem(f"$.machine.final.{name}", f"unknown state {name!r}")
        if outcome not in set(Outcome):
            yield problem(f"$.machine.final.{name}", f"unknown outcome {outcome!r} ({', '.join(Outcome)})")
    if machine.initial in machine.final:
        yield problem("$.machine.initial", "the initial state cannot be final")
    edges, edge_problems = _edges(machine, kind.triggers, problem)
    yield from edge_problems
    triggers = {t.trigger for t in machine.transitions}
    for required in sorted(kind.required - triggers):
        yield problem(
            "$.machine.transitions", f"no transition fires on {str(required)!r} ({kind.triggers[required]})"
        )
    yield from _check_reachable(machine, edges, problem)


def _edges(
    machine: MachineSpec, triggers: Mapping[str, str], problem: Callable[[str, str], SpecProblem]
) -> tuple[dict[str, set[str]], list[SpecProblem]]:
    """The machine's edges (state -> next states), and the problems with its transitions."""
    states = set(machine.states)
    edges: dict[str, set[str]] = {s: set() for s in states}
    problems: list[SpecProblem] = []
    for i, t in enumerate(machine.transitions):
        where = f"$.machine.transitions[{i}]"
        if t.trigger not in triggers:
            known = ", ".join(sorted(triggers))
            problems.append(
                problem(f"{where}.trigger", f"unknown trigger {t.trigger!r} (the engine fires {known})")
            )
        if t.dest not in states:
            problems.append(problem(f"{where}.dest", f"unknown state {t.dest!r}"))
        for j, source in enumerate(t.source):
            if source == "*":
                for s in states:
                    edges[s].add(t.dest)
            elif source not in states:
                problems.append(problem(f"{where}.source[{j}]", f"unknown state {source!r}"))
            elif source in machine.final:
                problems.append(
                    problem(f"{where}.source[{j}]", f"state {source!r} is final: nothing leaves it")
                )
            else:
                edges[source].add(t.dest)
    return edges, problems


def _check_reachable(
    machine: MachineSpec, edges: Mapping[str, set[str]], problem: Callable[[str, str], SpecProblem]
) -> Iterable[SpecProblem]:
    states = set(machine.states)
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
    for i, name in enumerate(machine.states):
        if name not in machine.final and not edges.get(name, set()) - {name}:
            yield problem(f"$.machine.states[{i}]", f"state {name!r} is not final and has no way out")
