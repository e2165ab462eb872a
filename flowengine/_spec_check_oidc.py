"""What a spec's OpenID Connect, discovery, device and signed-client-authentication keys mean.

``check_openid`` yields every problem with ``issuer``, ``discovery``, ``openid``, ``device``
and the ``client_auth`` of signed assertions, each with its path, as ``_spec_check`` does
for the rest of a spec.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flowengine import _templates, _variables
from flowengine._discovery import check_issuer
from flowengine._errors import ConfigError, SpecProblem
from flowengine._oidc import MAX_LEEWAY
from flowengine._oidc_jws import check_algorithms
from flowengine._presets import AUTHORIZATION_CODE
from flowengine._spec import FlowSpec, OpenIdRules, TokenRequest

__all__ = ["check_openid"]

_Problem = Callable[[str, str], SpecProblem]
#: ``_spec_check._check_params``: (spec, path, params, problem, place=) -> problems.
ParamsCheck = Callable[..., Iterable[SpecProblem]]


def check_openid(spec: FlowSpec, problem: _Problem, check_params: ParamsCheck) -> Iterable[SpecProblem]:
    """Yield every problem with the spec's issuer, discovery, openid, device and signed client auth."""
    yield from _check_issuer(spec, problem)
    if spec.discovery is not None and spec.issuer is None:
        yield problem("$.discovery", "discovery reads the issuer's metadata: name the spec's issuer")
    if spec.openid is not None:
        yield from _check_openid(spec, spec.openid, problem)
    yield from _check_device(spec, problem, check_params)
    requests: dict[str, TokenRequest] = {f"$.grants.{name}": rule for name, rule in spec.grants.items()}
    if spec.revocation is not None:
        requests["$.revocation"] = spec.revocation
    if spec.device is not None:
        requests["$.device"] = spec.device
    for where, rule in requests.items():
        if rule.client_auth in ("client_secret_jwt", "private_key_jwt") and rule.encoding != "form":
            yield problem(
                f"{where}.encoding", f"client_auth {rule.client_auth} sends its assertion in a form"
            )
    if spec.machine is not None and spec.machine.kind != AUTHORIZATION_CODE:
        yield problem(
            "$.machine.kind",
            f"the authorization flow's machine is of kind {AUTHORIZATION_CODE}; "
            "device flows (a device: section) run on the device preset",
        )


def _check_issuer(spec: FlowSpec, problem: _Problem) -> Iterable[SpecProblem]:
    """An issuer is an https URL (http on loopback) whose variables are connection variables."""
    if spec.issuer is None:
        return
    try:
        names = _templates.variables(spec.issuer)
    except _templates.TemplateError as exc:
        yield problem("$.issuer", str(exc))
        return
    claimed = set(spec.openid.issuer_claims) if spec.openid is not None else set()
    for name in names:
        if name not in spec.connection and name not in claimed:
            yield problem("$.issuer", f"{{{name}}} names no connection variable (nor openid.issuer_claims)")
    samples = _variables.sample_values(spec.connection.items())
    filled = _templates.render(spec.issuer, {**samples, **dict.fromkeys(claimed, "x")})
    if filled is None or any(n not in spec.connection and n not in claimed for n in names):
        return
    try:
        check_issuer(filled)
    except ConfigError as exc:
        yield problem("$.issuer", exc.message)


def _check_openid(spec: FlowSpec, rules: OpenIdRules, problem: _Problem) -> Iterable[SpecProblem]:
    if spec.issuer is None:
        yield problem("$.issuer", "openid validates the ID token's iss: name the spec's issuer")
    authorization = spec.authorization
    if authorization is not None:
        sent = {v for t in authorization.params.values() for v in _safe(t)}
        if "nonce" not in sent:
            yield problem("$.authorization.params", 'openid is on: send the flow\'s nonce (nonce: "{nonce}")')
        if authorization.default_scopes and "openid" not in authorization.default_scopes:
            yield problem("$.authorization.default_scopes", "openid is on: ask for the openid scope")
    for key in ("jwks", "userinfo"):
        name = getattr(rules, key)
        if name is not None and name not in spec.endpoint_names:
            yield problem(f"$.openid.{key}", f"no endpoint named {name!r} (write it, or use discovery)")
    if rules.algorithms:
        try:
            check_algorithms(rules.algorithms)
        except ConfigError as exc:
            yield problem("$.openid.algorithms", exc.message)
    if not 0 <= rules.leeway <= MAX_LEEWAY:
        yield problem("$.openid.leeway", f"must be between 0 and {MAX_LEEWAY:g} seconds")
    if rules.max_age is not None and rules.max_age < 0:
        yield problem("$.openid.max_age", "must not be negative")
    issuer_vars = set(_safe(spec.issuer or ""))
    for variable, claim in rules.issuer_claims.items():
        if variable not in issuer_vars:
            yield problem(f"$.openid.issuer_claims.{variable}", "the issuer names no such variable")
        if not claim:
            yield problem(f"$.openid.issuer_claims.{variable}", "name the claim that fills it")
        if variable in spec.connection and not rules.multi_tenant.get(variable):
            yield problem(
                f"$.openid.multi_tenant.{variable}",
                f"list the values of {{{variable}}} that name no one tenant (common): only for them may the "
                "token's claim fill it; any other value is the tenant the token's issuer must name",
            )
    for variable in rules.multi_tenant:
        if variable not in rules.issuer_claims:
            yield problem(f"$.openid.multi_tenant.{variable}", "no openid.issuer_claims entry fills it")
    if spec.token.account is not None:
        yield problem("$.token.account", "openid names the account (sub within iss): leave token.account out")


def _check_device(spec: FlowSpec, problem: _Problem, check_params: ParamsCheck) -> Iterable[SpecProblem]:
    device = spec.device
    if device is None:
        return
    if device.endpoint not in spec.endpoint_names:
        yield problem("$.device.endpoint", f"no endpoint named {device.endpoint!r}")
    if device.method != "POST":
        yield problem("$.device.method", "the device authorization request is a POST (RFC 8628 §3.1)")
    yield from check_params(spec, "$.device.params", device.params, problem, place="device")
    grant = spec.grants.get(device.grant)
    if grant is None:
        yield problem("$.device.grant", f"no grant named {device.grant!r} for the polls to send")
    elif "device_code" not in {v for t in grant.params.values() for v in _safe(t)}:
        yield problem(f"$.grants.{device.grant}.params", "no parameter sends the {device_code} a poll needs")


def _safe(template: str) -> tuple[str, ...]:
    try:
        return _templates.variables(template)
    except _templates.TemplateError:
        return ()
