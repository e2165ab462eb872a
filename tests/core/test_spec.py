"""Loading and validating flow specs (SECURITY.md 11), through ``load_spec``, ``compile_flow`` and the CLI.

Every error case mutates a deep copy of the shipped Podio spec, so each test
changes exactly one thing (or several on purpose, to prove that every problem
is reported at once) and names the path it expects.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import pytest
import yaml
from click.testing import CliRunner
from flowengine import FlowSpec, PluginError, SpecError, SpecProblem, load_spec
from flowengine._machine import BUILTIN_ACTIONS, BUILTIN_GUARDS, compile_flow
from flowengine._records import Outcome
from flowengine._spec import (
    BUILTIN_VARIABLES,
    AuthorizationRequest,
    MachineSpec,
    TokenRequest,
    TransitionSpec,
)
from flowengine._spec_load import spec_from_mapping
from flowengine.cli import cli

PODIO_PATH = Path(__file__).resolve().parents[2] / "specs" / "podio.yaml"
PODIO_TEXT = PODIO_PATH.read_text(encoding="utf-8")
_PODIO_DATA = yaml.safe_load(PODIO_TEXT)
# podio.yaml takes the preset machine; the tests mutate it written out (as the Authlib example writes it).
_PODIO_DATA["machine"] = yaml.safe_load(
    (PODIO_PATH.parent / "examples" / "authlib.yaml").read_text(encoding="utf-8")
)["machine"]
SOURCE = "specs/x.yaml"

SpecData = dict[str, Any]


@pytest.fixture
def podio() -> SpecData:
    """A deep copy of the Podio spec as a mapping, free to mutate."""
    return copy.deepcopy(_PODIO_DATA)


def problems_of(data: Any, source: str = SOURCE) -> list[SpecProblem]:
    """The problems ``spec_from_mapping`` reports for ``data`` (fails if it loads)."""
    with pytest.raises(SpecError) as info:
        spec_from_mapping(data, source=source)
    assert info.value.code == "spec_invalid"
    assert info.value.problems, "a SpecError must list at least one problem"
    return list(info.value.problems)


def pairs(problems: list[SpecProblem]) -> set[tuple[str, str]]:
    return {(p.path, p.message) for p in problems}


def only_problem(data: Any) -> SpecProblem:
    problems = problems_of(data)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def transition(data: SpecData, i: int) -> SpecData:
    result: SpecData = data["machine"]["transitions"][i]
    return result


# --- loading the shipped spec ---------------------------------------------------------


def test_sec11_podio_loads_by_path() -> None:
    spec = load_spec(PODIO_PATH)
    assert isinstance(spec, FlowSpec)
    assert spec.name == "podio"
    assert spec.source == str(PODIO_PATH)


def test_sec11_podio_loads_by_path_string() -> None:
    spec = load_spec(str(PODIO_PATH))
    assert spec.name == "podio"
    assert spec.source == str(PODIO_PATH)


def test_sec11_podio_loads_by_name() -> None:
    spec = load_spec("podio")
    assert spec.name == "podio"
    assert Path(spec.source).name == "podio.yaml"


def test_sec11_podio_loads_from_yaml_text() -> None:
    spec = load_spec(PODIO_TEXT)
    assert spec.name == "podio"
    assert spec.source == "<text>"


def test_sec11_podio_loads_from_mapping(podio: SpecData) -> None:
    spec = load_spec(podio)
    assert spec.name == "podio"
    assert spec.source == "<mapping>"
    # Any Mapping, not only dict.
    assert load_spec(MappingProxyType(podio)).name == "podio"


def test_sec11_every_form_gives_the_same_spec(podio: SpecData) -> None:
    """Specs compare by identity, so compare their parts (the preset machine written out is the preset)."""
    del podio["machine"]
    forms = [load_spec(PODIO_PATH), load_spec("podio"), load_spec(PODIO_TEXT), load_spec(podio)]
    for spec in forms[1:]:
        for field in attrs.fields(FlowSpec):
            if field.name != "source":
                assert getattr(spec, field.name) == getattr(forms[0], field.name), field.name


def test_podio_facts_are_read_as_written() -> None:
    spec = load_spec("podio")
    assert spec.endpoints["token"] == "https://api.podio.com/oauth/token/v2"
    assert spec.authorization.endpoint == "authorize"
    assert spec.grants["authorization_code"].encoding == "json"
    assert spec.grants["authorization_code"].client_auth == "body"
    assert set(spec.grants) == {"authorization_code", "refresh_token"}
    assert spec.callback.repeated == "last"
    assert spec.callback.error_reason == "error_reason"
    assert spec.callback.denied_errors == ("access_denied",)
    assert spec.token.rate_limit_status == (420, 429)
    assert spec.token.leeway == 60
    assert spec.token.default_scope == "global:all"
    assert spec.token.account is not None
    assert (spec.token.account.type, spec.token.account.id) == ("ref.type", "ref.id")
    assert spec.usage.header_scheme == "OAuth2"
    assert spec.machine.ttl == 600
    assert spec.machine.initial == "redirected"
    assert set(spec.machine.final) == {"denied", "exchanged", "failed"}
    assert spec.pkce is False
    assert spec.local_only is False
    assert spec.variables == BUILTIN_VARIABLES
    # A scalar ``source:`` is read as a one-element list.
    assert spec.machine.transitions[0].source == ("redirected",)
    assert spec.machine.transitions[8].source == ("redirected", "authorized")
    assert spec.machine.preset == "authorization_code"


def test_podio_compiles() -> None:
    compiled = compile_flow(load_spec("podio"))
    assert compiled.states == ("redirected", "authorized", "exchanging", "exchanged", "denied", "failed")
    assert dict(compiled.final) == {"exchanged": "granted", "denied": "denied", "failed": "failed"}
    assert compiled.can_fire("redirected", "callback")
    assert compiled.can_fire("authorized", "exchange")
    assert not compiled.can_fire("exchanged", "callback")


def test_sec11_named_spec_is_found_in_search_paths(tmp_path: Path, podio: SpecData) -> None:
    podio["name"] = "acme"
    (tmp_path / "acme.yaml").write_text(yaml.safe_dump(podio), encoding="utf-8")
    spec = load_spec("acme", search_paths=[tmp_path])
    assert spec.name == "acme"
    assert spec.source == str(tmp_path / "acme.yaml")


def test_sec11_spec_path_env_shadows_the_bundled_spec(
    tmp_path: Path, podio: SpecData, monkeypatch: pytest.MonkeyPatch
) -> None:
    podio["description"] = "a user's own podio"
    (tmp_path / "podio.yaml").write_text(yaml.safe_dump(podio), encoding="utf-8")
    monkeypatch.setenv("FLOWENGINE_SPEC_PATH", str(tmp_path))
    assert load_spec("podio").description == "a user's own podio"


def test_sec11_unknown_name_is_a_plugin_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError) as info:
        load_spec("no-such-provider", search_paths=[tmp_path])
    assert info.value.code == "spec_not_found"
    assert "no-such-provider" in info.value.message
    assert str(tmp_path) in info.value.message


def test_sec11_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (problem,) = info.value.problems
    assert problem.source == str(path)
    assert problem.path == "$"
    assert "cannot read" in problem.message


def test_sec11_non_utf8_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (problem,) = info.value.problems
    assert problem.message == "not UTF-8 text"


# --- a FlowSpec built in Python ---------------------------------------------------------


def _python_spec() -> FlowSpec:
    return FlowSpec(
        name="demo",
        endpoints={"authorize": "https://id.example/authorize", "token": "https://id.example/token"},
        authorization=AuthorizationRequest(
            params={"response_type": "code", "client_id": "{client_id}", "state": "{state}"}
        ),
        grants={
            "authorization_code": TokenRequest(params={"grant_type": "authorization_code", "code": "{code}"})
        },
        machine=MachineSpec(
            states=("waiting", "authorized", "sending", "done", "failed"),
            initial="waiting",
            final={"done": Outcome.GRANTED, "failed": Outcome.FAILED},
            transitions=(
                TransitionSpec("callback", ("waiting",), "authorized", when=("code_present",)),
                TransitionSpec("callback", ("waiting",), "failed"),
                TransitionSpec("exchange", ("authorized",), "sending"),
                TransitionSpec("answer", ("sending",), "done", when=("token_received",)),
                TransitionSpec("answer", ("sending",), "failed"),
                TransitionSpec("unsent", ("sending",), "authorized"),
                TransitionSpec("interrupt", ("sending",), "failed"),
            ),
        ),
    )


def test_sec11_python_spec_is_revalidated_and_returned() -> None:
    spec = _python_spec()
    assert load_spec(spec) is spec
    compile_flow(spec)


def test_sec11_python_spec_gets_the_meaning_checks() -> None:
    spec = attrs.evolve(
        _python_spec(),
        endpoints={"authorize": "http://id.example/authorize", "token": "https://id.example/token"},
        machine=attrs.evolve(_python_spec().machine, initial="nowhere"),
    )
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    found = pairs(list(info.value.problems))
    assert any(path == "$.endpoints.authorize" and "http://" in msg for path, msg in found)
    assert ("$.machine.initial", "unknown state 'nowhere'") in found


def test_sec11_python_spec_gets_the_type_checks() -> None:
    spec = attrs.evolve(
        _python_spec(),
        description=None,  # type: ignore[arg-type]
        machine=attrs.evolve(_python_spec().machine, ttl=1.9),  # type: ignore[arg-type]
    )
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    paths = {p.path for p in info.value.problems}
    assert {"$.description", "$.machine.ttl"} <= paths


# --- malformed YAML and non-mapping documents -------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: podio\nendpoints: [a, b\n", 3),
        ("name: podio\n  bad: indent\n", 2),
        ("name: podio\ndescription: x\n\tmachine: 1\n", 3),
        ('name: "unterminated\n', 2),
    ],
)
def test_sec11_malformed_yaml_names_the_line(text: str, line: int) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(text)
    (problem,) = info.value.problems
    assert problem.path.startswith(f"line {line}, column ")
    assert problem.message.startswith("invalid YAML: ")
    assert str(problem).startswith(f"<text>: line {line}, column ")


def test_sec11_malformed_yaml_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    broken = PODIO_TEXT.replace("  header_scheme: OAuth2", "  header_scheme: [OAuth2,,")
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (problem,) = info.value.problems
    assert problem.source == str(path)
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "header_scheme: [OAuth2,," in text)
    assert problem.path.startswith(f"line {line}, ")


def test_sec11_yaml_python_tags_are_refused_not_run() -> None:
    with pytest.raises(SpecError) as info:
        load_spec('name: !!python/object/apply:os.system ["echo pwned"]\n')
    (problem,) = info.value.problems
    assert problem.path.startswith("line 1, ")
    assert "invalid YAML" in problem.message


def test_sec11_duplicate_yaml_keys_are_refused() -> None:
    text = PODIO_TEXT + "\nname: podio2\n"
    with pytest.raises(SpecError) as info:
        load_spec(text)
    assert any("duplicate" in p.message.lower() or "twice" in p.message for p in info.value.problems)


@pytest.mark.parametrize(
    ("document", "got"),
    [
        ([], "list"),
        (["name", "podio"], "list"),
        ("podio", "str"),
        (42, "int"),
        (None, "an empty document"),
    ],
)
def test_sec11_non_mapping_document(document: Any, got: str) -> None:
    problem = only_problem(document)
    assert problem.path == "$"
    assert problem.message == f"a spec is a mapping, got {got}"


@pytest.mark.parametrize(
    ("text", "got"),
    [
        ("- a\n- b\n", "list"),
        ("\n", "an empty document"),
        ("---\n", "an empty document"),
        ("# only\n", "an empty document"),
    ],
)
def test_sec11_non_mapping_yaml_text(text: str, got: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(text)
    (problem,) = info.value.problems
    assert str(problem) == f"<text>: $: a spec is a mapping, got {got}"


def test_sec11_empty_text_is_an_empty_document() -> None:
    with pytest.raises(SpecError) as info:
        load_spec("")
    (problem,) = info.value.problems
    assert problem.message == "a spec is a mapping, got an empty document"


def test_sec11_empty_mapping_lists_every_required_key() -> None:
    found = pairs(problems_of({}))
    for key in ("name", "endpoints", "grants"):
        assert (f"$.{key}", "required key missing") in found


# --- unknown keys ---------------------------------------------------------------------------


def test_sec11_unknown_keys_at_every_depth_are_all_reported(podio: SpecData) -> None:
    podio["bogus"] = 1
    podio["callback"]["stat"] = "state"
    podio["token"]["account"]["kind"] = "user"
    podio["grants"]["authorization_code"]["header"] = "x"
    podio["machine"]["timeout"] = 5
    transition(podio, 2)["guard"] = "x"
    podio["token"]["a"] = 1
    podio["token"]["b"] = 2
    found = pairs(problems_of(podio))
    assert found == {
        ("$", "unknown key(s): bogus"),
        ("$.callback", "unknown key(s): stat"),
        ("$.token.account", "unknown key(s): kind"),
        ("$.grants.authorization_code", "unknown key(s): header"),
        ("$.machine", "unknown key(s): timeout"),
        ("$.machine.transitions[2]", "unknown key(s): guard"),
        ("$.token", "unknown key(s): a, b"),
    }


def test_sec11_source_is_not_a_yaml_key(podio: SpecData) -> None:
    podio["source"] = "somewhere"
    assert pairs(problems_of(podio)) == {("$", "unknown key(s): source")}


# --- wrong types: no silent coercion ------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [
        pytest.param(
            lambda d: d["machine"].update(ttl=1.9),
            "$.machine.ttl",
            "expected an integer, got float 1.9",
            id="ttl-float",
        ),
        pytest.param(
            lambda d: d["machine"].update(ttl="600"),
            "$.machine.ttl",
            "expected an integer, got str '600'",
            id="ttl-str",
        ),
        pytest.param(
            lambda d: d["machine"].update(ttl=True),
            "$.machine.ttl",
            "expected an integer, got a boolean",
            id="ttl-bool",
        ),
        pytest.param(
            lambda d: d["token"].update(leeway=60.0),
            "$.token.leeway",
            "expected an integer, got float 60.0",
            id="leeway-float",
        ),
        pytest.param(
            lambda d: d.update(description=None),
            "$.description",
            "expected a string, got nothing (null)",
            id="desc-null",
        ),
        pytest.param(
            lambda d: d.update(name=True), "$.name", "expected a string, got a boolean", id="name-bool"
        ),
        pytest.param(
            lambda d: d.update(description=1.5),
            "$.description",
            "expected a string, got float 1.5",
            id="desc-num",
        ),
        pytest.param(
            lambda d: d["endpoints"].update(token=5),
            "$.endpoints.token",
            "expected a string, got int 5",
            id="endpoint-int",
        ),
        pytest.param(
            lambda d: d["authorization"]["params"].update(scope=None),
            "$.authorization.params.scope",
            "expected a string, got nothing (null)",
            id="param-null",
        ),
        pytest.param(
            lambda d: d["callback"].update(code=False),
            "$.callback.code",
            "expected a string, got a boolean",
            id="cb-bool",
        ),
        pytest.param(
            lambda d: d.update(pkce="yes"), "$.pkce", "expected true or false, got str 'yes'", id="pkce-str"
        ),
        pytest.param(
            lambda d: d.update(pkce=1), "$.pkce", "expected true or false, got int 1", id="pkce-int"
        ),
        pytest.param(
            lambda d: d["machine"].update(states="redirected"),
            "$.machine.states",
            "expected a list, got str",
            id="states-str",
        ),
        pytest.param(
            lambda d: d["callback"].update(denied_errors="access_denied"),
            "$.callback.denied_errors",
            "expected a list, got str",
            id="denied-str",
        ),
        pytest.param(
            lambda d: d["machine"]["transitions"][0].update(when="code_present"),
            "$.machine.transitions[0].when",
            "expected a list, got str",
            id="when-str",
        ),
        pytest.param(
            lambda d: d.update(inputs="tenant"), "$.inputs", "expected a list, got str", id="inputs-str"
        ),
        pytest.param(
            lambda d: d["token"].update(rate_limit_status=["420"]),
            "$.token.rate_limit_status[0]",
            "expected an integer, got str '420'",
            id="status-str",
        ),
        pytest.param(
            lambda d: d.update(endpoints=["https://podio.com"]),
            "$.endpoints",
            "expected a mapping, got list",
            id="endpoints-list",
        ),
        pytest.param(
            lambda d: d["machine"]["transitions"][0].pop("dest"),
            "$.machine.transitions[0].dest",
            "required key missing",
            id="dest-missing",
        ),
        pytest.param(
            lambda d: d["token"]["account"].pop("id"),
            "$.token.account.id",
            "required key missing",
            id="account-id-missing",
        ),
    ],
)
def test_sec11_wrong_type_is_refused_with_its_path(
    podio: SpecData, mutate: Callable[[SpecData], Any], path: str, message: str
) -> None:
    mutate(podio)
    problem = only_problem(podio)
    assert (problem.path, problem.message) == (path, message)


def test_sec11_yaml_norway_problem_is_refused() -> None:
    """YAML 1.1 reads ``no`` as false: a string field must not silently accept it."""
    with pytest.raises(SpecError) as info:
        load_spec(PODIO_TEXT.replace("name: podio", "name: no"))
    (problem,) = info.value.problems
    assert (problem.path, problem.message) == ("$.name", "expected a string, got a boolean")


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [
        pytest.param(
            lambda d: d["callback"].update(repeated="first"),
            "$.callback.repeated",
            "expected one of 'last', 'reject', got 'first'",
            id="repeated",
        ),
        pytest.param(
            lambda d: d["grants"]["authorization_code"].update(encoding="xml"),
            "$.grants.authorization_code.encoding",
            "expected one of 'json', 'form', 'query', got 'xml'",
            id="encoding",
        ),
        pytest.param(
            lambda d: d["grants"]["refresh_token"].update(client_auth="Basic"),
            "$.grants.refresh_token.client_auth",
            "expected one of 'body', 'basic', 'client_secret_jwt', 'private_key_jwt', got 'Basic'",
            id="client-auth-case",
        ),
        pytest.param(
            lambda d: d["callback"].update(repeated=1),
            "$.callback.repeated",
            "expected one of 'last', 'reject', got 1",
            id="literal-int",
        ),
    ],
)
def test_sec11_bad_literal(
    podio: SpecData, mutate: Callable[[SpecData], Any], path: str, message: str
) -> None:
    mutate(podio)
    problem = only_problem(podio)
    assert (problem.path, problem.message) == (path, message)


def test_sec11_all_type_problems_are_reported_at_once(podio: SpecData) -> None:
    podio["machine"]["ttl"] = 1.9
    podio["description"] = None
    podio["callback"]["repeated"] = "first"
    podio["grants"]["authorization_code"]["encoding"] = "xml"
    podio["machine"]["states"] = "redirected"
    podio["endpoints"]["api"] = 443
    found = pairs(problems_of(podio))
    assert {path for path, _ in found} == {
        "$.machine.ttl",
        "$.description",
        "$.callback.repeated",
        "$.grants.authorization_code.encoding",
        "$.machine.states",
        "$.endpoints.api",
    }


# --- the machine ----------------------------------------------------------------------------


def test_sec11_unknown_dest_state(podio: SpecData) -> None:
    transition(podio, 2)["dest"] = "exchnged"
    problems = problems_of(podio)
    assert ("$.machine.transitions[2].dest", "unknown state 'exchnged'") in pairs(problems)


def test_sec11_unknown_source_state(podio: SpecData) -> None:
    transition(podio, 5)["source"] = ["redirected", "authorised"]
    problem = only_problem(podio)
    assert (problem.path, problem.message) == (
        "$.machine.transitions[5].source[1]",
        "unknown state 'authorised'",
    )


def test_sec11_unknown_initial_state(podio: SpecData) -> None:
    podio["machine"]["initial"] = "start"
    assert ("$.machine.initial", "unknown state 'start'") in pairs(problems_of(podio))


def test_sec11_unknown_final_state(podio: SpecData) -> None:
    podio["machine"]["final"]["done"] = "granted"
    problem = only_problem(podio)
    assert (problem.path, problem.message) == ("$.machine.final.done", "unknown state 'done'")


def test_sec11_unknown_outcome(podio: SpecData) -> None:
    podio["machine"]["final"]["exchanged"] = "won"
    problem = only_problem(podio)
    assert problem.path == "$.machine.final.exchanged"
    assert problem.message == "expected an outcome (granted, denied, expired, failed), got 'won'"


def test_sec11_final_states_have_no_way_out(podio: SpecData) -> None:
    podio["machine"]["transitions"].append({"trigger": "expire", "source": "denied", "dest": "failed"})
    problem = only_problem(podio)
    assert problem.path == "$.machine.transitions[9].source[0]"
    assert problem.message == "state 'denied' is final: nothing leaves it"


def test_sec11_unreachable_state(podio: SpecData) -> None:
    podio["machine"]["states"].append("limbo")
    podio["machine"]["final"]["limbo"] = "failed"
    problem = only_problem(podio)
    assert (problem.path, problem.message) == (
        "$.machine.states[6]",
        "state 'limbo' is unreachable from 'redirected'",
    )


def test_sec11_dead_end_state(podio: SpecData) -> None:
    podio["machine"]["states"].append("limbo")
    podio["machine"]["transitions"].append({"trigger": "exchange", "source": "authorized", "dest": "limbo"})
    problem = only_problem(podio)
    assert (problem.path, problem.message) == (
        "$.machine.states[6]",
        "state 'limbo' is not final and has no way out",
    )


def test_sec11_a_self_loop_is_no_way_out(podio: SpecData) -> None:
    podio["machine"]["states"].append("limbo")
    podio["machine"]["transitions"] += [
        {"trigger": "exchange", "source": "authorized", "dest": "limbo"},
        {"trigger": "expire", "source": "limbo", "dest": "limbo"},
    ]
    problem = only_problem(podio)
    assert (problem.path, problem.message) == (
        "$.machine.states[6]",
        "state 'limbo' is not final and has no way out",
    )


def test_sec11_a_final_state_no_longer_final_is_a_dead_end(podio: SpecData) -> None:
    del podio["machine"]["final"]["exchanged"]
    problem = only_problem(podio)
    assert (problem.path, problem.message) == (
        "$.machine.states[3]",
        "state 'exchanged' is not final and has no way out",
    )


def test_sec11_wildcard_source_is_accepted(podio: SpecData) -> None:
    transition(podio, 8)["source"] = "*"
    spec = spec_from_mapping(podio)
    assert spec.machine.transitions[8].source == ("*",)
    compiled = compile_flow(spec)
    # "*" is every state that is not final: a final state stays final.
    assert compiled.can_fire("exchanging", "expire")
    assert not compiled.can_fire("exchanged", "expire")


def test_sec11_unknown_trigger(podio: SpecData) -> None:
    transition(podio, 0)["trigger"] = "callbak"
    problem = problems_of(podio)[0]
    assert problem.path == "$.machine.transitions[0].trigger"
    assert problem.message == (
        "unknown trigger 'callbak' (the engine fires answer, callback, exchange, expire, interrupt, unsent)"
    )


@pytest.mark.parametrize("trigger", ["callback", "exchange", "answer", "unsent", "interrupt"])
def test_sec11_required_trigger_missing(podio: SpecData, trigger: str) -> None:
    podio["machine"]["transitions"] = [t for t in podio["machine"]["transitions"] if t["trigger"] != trigger]
    found = [m for p, m in pairs(problems_of(podio)) if p == "$.machine.transitions"]
    assert any(m.startswith(f"no transition fires on {trigger!r} (") for m in found), found


def test_sec11_a_preset_is_expanded_and_takes_only_ttl(podio: SpecData) -> None:
    podio["machine"] = {"preset": "authorization_code", "ttl": 120}
    spec = spec_from_mapping(podio)
    assert spec.machine.ttl == 120
    assert spec.machine.states == load_spec("podio").machine.states
    podio["machine"] = {"preset": "authorization_code", "states": ["a"]}
    problem = only_problem(podio)
    assert problem.path == "$.machine"
    assert "a preset machine takes only ttl" in problem.message
    podio["machine"] = {"preset": "implicit"}
    problem = only_problem(podio)
    assert (problem.path, problem.message) == (
        "$.machine.preset",
        "unknown preset 'implicit' (there is authorization_code, device)",
    )


def test_sec11_duplicate_state(podio: SpecData) -> None:
    podio["machine"]["states"].append("failed")
    assert ("$.machine.states", "a state is listed twice") in pairs(problems_of(podio))


@pytest.mark.parametrize("ttl", [0, -5])
def test_sec11_ttl_must_be_positive(podio: SpecData, ttl: int) -> None:
    podio["machine"]["ttl"] = ttl
    problem = only_problem(podio)
    assert (problem.path, problem.message) == ("$.machine.ttl", "must be a positive number of seconds")


def test_sec11_every_machine_problem_is_reported_at_once(podio: SpecData) -> None:
    transition(podio, 0)["dest"] = "authorised"
    transition(podio, 3)["source"] = "authorised"
    transition(podio, 1)["trigger"] = "callbak"
    podio["machine"]["final"]["done"] = "granted"
    found = pairs(problems_of(podio))
    expected = {
        ("$.machine.transitions[0].dest", "unknown state 'authorised'"),
        ("$.machine.transitions[3].source[0]", "unknown state 'authorised'"),
        ("$.machine.final.done", "unknown state 'done'"),
        ("$.machine.states[1]", "state 'authorized' is unreachable from 'redirected'"),
        ("$.machine.states[3]", "state 'exchanged' is unreachable from 'redirected'"),
    }
    assert expected <= found
    assert any(path == "$.machine.transitions[1].trigger" for path, _ in found)


# --- templates and inputs -------------------------------------------------------------------


def test_sec11_template_naming_unknown_variable(podio: SpecData) -> None:
    podio["authorization"]["params"]["tenant"] = "{tenant}"
    podio["grants"]["refresh_token"]["params"]["audience"] = "api://{audiance}/x"
    found = pairs(problems_of(podio))
    assert found == {
        ("$.authorization.params.tenant", "template names unknown variable 'tenant'"),
        ("$.grants.refresh_token.params.audience", "template names unknown variable 'audiance'"),
    }


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{a.b}", "{a.b} is not a plain variable name"),
        ("{a[0]}", "{a[0]} is not a plain variable name"),
        ("{0}", "{0} is not a plain variable name"),
        ("{}", "{} is not a plain variable name"),
        ("{x!r}", "format specs and conversions are not allowed"),
        ("{scope:>10}", "format specs and conversions are not allowed"),
        ("{", "malformed template '{'"),
        ("}", "malformed template '}'"),
        ("Bearer {client_id", "malformed template"),
    ],
)
def test_sec11_malformed_template(podio: SpecData, template: str, fragment: str) -> None:
    podio["authorization"]["params"]["extra"] = template
    problem = only_problem(podio)
    assert problem.path == "$.authorization.params.extra"
    assert fragment in problem.message


def test_sec11_literal_braces_are_not_variables(podio: SpecData) -> None:
    podio["authorization"]["params"]["claims"] = '{{"id_token": null}}'
    spec = spec_from_mapping(podio)
    assert spec.authorization.params["claims"] == '{{"id_token": null}}'


def test_sec11_declared_inputs_make_a_variable_known(podio: SpecData) -> None:
    podio["authorization"]["params"]["tenant"] = "{tenant}"
    podio["inputs"] = ["tenant"]
    spec = spec_from_mapping(podio)
    assert "tenant" in spec.variables
    assert spec.inputs == ("tenant",)


def test_sec11_inputs_must_be_new_identifiers(podio: SpecData) -> None:
    podio["inputs"] = ["scope", "1tenant", "ok_name"]
    found = pairs(problems_of(podio))
    assert found == {
        ("$.inputs", "'scope' is built in; do not declare it"),
        ("$.inputs", "'1tenant' is not a valid variable name"),
    }


# --- endpoints and grants ---------------------------------------------------------------------


def test_sec11_http_endpoint_is_refused(podio: SpecData) -> None:
    podio["endpoints"]["token"] = "http://api.podio.com/oauth/token/v2"
    problem = only_problem(podio)
    assert problem.path == "$.endpoints.token"
    assert "http://" in problem.message
    assert "local_only" in problem.message


def test_sec11_http_endpoint_is_accepted_for_local_testing(podio: SpecData) -> None:
    podio["endpoints"]["token"] = "http://127.0.0.1:8080/oauth/token/v2"
    podio["local_only"] = True
    spec = spec_from_mapping(podio)
    assert spec.local_only is True
    assert spec.endpoints["token"] == "http://127.0.0.1:8080/oauth/token/v2"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("/oauth/token", "is not an absolute http(s) URL"),
        ("api.podio.com/oauth/token", "is not an absolute http(s) URL"),
        ("ftp://api.podio.com/token", "is not an absolute http(s) URL"),
        ("https://", "is not an absolute http(s) URL"),
        ("https://api.podio.com/token#x", "must not have a fragment"),
    ],
)
def test_sec11_endpoint_must_be_an_absolute_url(podio: SpecData, url: str, fragment: str) -> None:
    podio["endpoints"]["token"] = url
    problem = only_problem(podio)
    assert problem.path == "$.endpoints.token"
    assert fragment in problem.message


def test_sec11_authorization_endpoint_must_exist(podio: SpecData) -> None:
    podio["authorization"]["endpoint"] = "authorise"
    problem = only_problem(podio)
    assert (problem.path, problem.message) == ("$.authorization.endpoint", "no endpoint named 'authorise'")


def test_sec11_grant_endpoint_must_exist(podio: SpecData) -> None:
    podio["grants"]["refresh_token"]["endpoint"] = "tokn"
    problem = only_problem(podio)
    assert (problem.path, problem.message) == ("$.grants.refresh_token.endpoint", "no endpoint named 'tokn'")


def test_sec11_authorization_code_grant_is_required(podio: SpecData) -> None:
    del podio["grants"]["authorization_code"]
    problem = only_problem(podio)
    assert (problem.path, problem.message) == (
        "$.grants",
        "an authorization request needs the authorization_code grant",
    )


def test_grant_only_spec_needs_no_authorization_or_machine(podio: SpecData) -> None:
    del podio["authorization"], podio["machine"], podio["grants"]["authorization_code"]
    spec = spec_from_mapping(podio)
    assert spec.authorization is None
    assert spec.machine is None
    assert set(spec.grants) == {"refresh_token"}


def test_a_machine_needs_an_authorization_request(podio: SpecData) -> None:
    del podio["authorization"]
    del podio["grants"]["authorization_code"]
    problem = only_problem(podio)
    assert (problem.path, problem.message) == (
        "$.machine",
        "a machine needs an authorization request to start its flows",
    )


def test_an_authorization_request_without_a_machine_gets_the_preset(podio: SpecData) -> None:
    del podio["machine"]
    spec = spec_from_mapping(podio)
    assert spec.machine is not None
    assert spec.machine.preset == "authorization_code"
    assert spec.machine.initial == "redirected"


@pytest.mark.parametrize("domain", ["https://podio.com", "podio.com/path", "PODIO.COM"])
def test_sec11_registered_domain_must_be_a_host(podio: SpecData, domain: str) -> None:
    podio["redirect"]["registered_domain"] = domain
    problem = only_problem(podio)
    assert problem.path == "$.redirect.registered_domain"


def test_sec11_negative_leeway(podio: SpecData) -> None:
    podio["token"]["leeway"] = -1
    problem = only_problem(podio)
    assert (problem.path, problem.message) == ("$.token.leeway", "must not be negative")


@pytest.mark.parametrize("name", ["Podio", "podio flow", "", "-podio"])
def test_sec11_spec_name_must_be_a_name(podio: SpecData, name: str) -> None:
    podio["name"] = name
    assert only_problem(podio).path == "$.name"


# --- PKCE and issuer --------------------------------------------------------------------------


def _enable_pkce(data: SpecData) -> None:
    data["pkce"] = True
    data["authorization"]["params"]["code_challenge"] = "{code_challenge}"
    data["authorization"]["params"]["code_challenge_method"] = "{code_challenge_method}"
    data["grants"]["authorization_code"]["params"]["code_verifier"] = "{code_verifier}"


def test_sec11_pkce_without_challenge_and_verifier(podio: SpecData) -> None:
    podio["pkce"] = True
    found = pairs(problems_of(podio))
    assert found == {
        ("$.authorization.params", "pkce is on but no parameter sends {code_challenge}"),
        ("$.grants.authorization_code.params", "pkce is on but no parameter sends {code_verifier}"),
        (
            "$.authorization.params.code_challenge_method",
            "pkce is on: send code_challenge_method as {code_challenge_method} (S256); "
            "plain, or no method (which means plain), is never used",
        ),
    }


def test_sec11_pkce_with_challenge_and_verifier(podio: SpecData) -> None:
    _enable_pkce(podio)
    assert spec_from_mapping(podio).pkce is True


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda d: d["authorization"]["params"].update(code_challenge_method="plain"),
            id="method-plain",
        ),
        pytest.param(
            lambda d: d["authorization"]["params"].pop("code_challenge_method"),
            id="method-absent",
        ),
    ],
)
def test_sec2_pkce_spec_never_asks_for_plain(podio: SpecData, mutate: Callable[[SpecData], Any]) -> None:
    _enable_pkce(podio)
    mutate(podio)
    problems = problems_of(podio)
    assert any(p.path.startswith("$.authorization.params") for p in problems)


def test_sec11_issuer_without_callback_iss(podio: SpecData) -> None:
    podio["issuer"] = "https://podio.com"
    problem = only_problem(podio)
    assert problem.path == "$.callback.iss"
    assert "issuer is set" in problem.message


def test_sec11_issuer_with_callback_iss(podio: SpecData) -> None:
    podio["issuer"] = "https://podio.com"
    podio["callback"]["iss"] = "iss"
    spec = spec_from_mapping(podio)
    assert (spec.issuer, spec.callback.iss) == ("https://podio.com", "iss")


def test_sec5_iss_required_without_issuer_is_refused(podio: SpecData) -> None:
    podio["callback"]["iss"] = "iss"
    podio["callback"]["iss_required"] = True
    assert any(p.path in ("$.issuer", "$.callback.iss_required") for p in problems_of(podio))


# --- everything at once, and how problems read ------------------------------------------------


def test_sec11_problems_of_every_kind_are_reported_at_once(podio: SpecData) -> None:
    podio["endpoints"]["api"] = "http://api.podio.com"
    podio["authorization"]["params"]["tenant"] = "{tenant}"
    podio["authorization"]["endpoint"] = "authorise"
    transition(podio, 2)["dest"] = "exchnged"
    podio["pkce"] = True
    podio["issuer"] = "https://podio.com"
    paths = {p.path for p in problems_of(podio)}
    assert {
        "$.endpoints.api",
        "$.authorization.params.tenant",
        "$.authorization.endpoint",
        "$.machine.transitions[2].dest",
        "$.authorization.params",
        "$.grants.authorization_code.params",
        "$.callback.iss",
    } <= paths


def test_sec11_problem_reads_file_path_message(tmp_path: Path, podio: SpecData) -> None:
    transition(podio, 2)["dest"] = "exchnged"
    podio["endpoints"]["api"] = "http://api.podio.com"
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(podio, sort_keys=False), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    lines = {str(p) for p in info.value.problems}
    assert f"{path}: $.machine.transitions[2].dest: unknown state 'exchnged'" in lines
    assert any(line.startswith(f"{path}: $.endpoints.api: ") for line in lines)
    # The exception message lists them all too.
    message = str(info.value)
    assert message.startswith("spec_invalid: 2 problem(s) in spec:")
    for line in lines:
        assert line in message


def test_sec11_type_problem_reads_file_path_message(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(PODIO_TEXT.replace("  leeway: 60", "  leeway: 1.9"), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (problem,) = info.value.problems
    assert str(problem) == f"{path}: $.token.leeway: expected an integer, got float 1.9"


# --- compile time: guards and actions --------------------------------------------------------


def test_sec11_unknown_guard_and_action_at_compile_time(podio: SpecData) -> None:
    transition(podio, 1)["when"] = ["error_is_denial", "is_weekday"]
    transition(podio, 3)["do"] = ["record_token", "frobnicate"]
    spec = spec_from_mapping(podio, source=SOURCE)  # names are only known at compile time
    with pytest.raises(SpecError) as info:
        compile_flow(spec)
    assert [str(p) for p in info.value.problems] == [
        f"{SOURCE}: $.machine.transitions[1].when[1]: unknown guard 'is_weekday'",
        f"{SOURCE}: $.machine.transitions[3].do[1]: unknown action 'frobnicate'",
    ]


def test_sec11_guards_given_to_compile_flow_are_known(podio: SpecData) -> None:
    transition(podio, 0)["when"] = ["code_present", "is_weekday"]
    spec = spec_from_mapping(podio)
    compiled = compile_flow(
        spec, guards={**BUILTIN_GUARDS, "is_weekday": lambda ctx: True}, actions=BUILTIN_ACTIONS
    )
    assert compiled.can_fire("redirected", "callback")


# --- the CLI ------------------------------------------------------------------------------------


def _bad_spec_file(tmp_path: Path, podio: SpecData) -> Path:
    transition(podio, 2)["dest"] = "exchnged"
    podio["endpoints"]["api"] = "http://api.podio.com"
    podio["authorization"]["params"]["tenant"] = "{tenant}"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(podio, sort_keys=False), encoding="utf-8")
    return path


def test_sec11_cli_validate_podio_exits_0() -> None:
    result = CliRunner().invoke(cli, ["spec", "validate", "podio", str(PODIO_PATH)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"podio: ok\n{PODIO_PATH}: ok\n"


def test_sec11_cli_validate_bad_file_exits_2_listing_every_problem(tmp_path: Path, podio: SpecData) -> None:
    path = _bad_spec_file(tmp_path, podio)
    result = CliRunner().invoke(cli, ["spec", "validate", "podio", str(path)])
    assert result.exit_code == 2
    assert result.stdout == "podio: ok\n"
    lines = result.stderr.splitlines()
    assert f"{path}: $.machine.transitions[2].dest: unknown state 'exchnged'" in lines
    assert f"{path}: $.authorization.params.tenant: template names unknown variable 'tenant'" in lines
    assert any(line.startswith(f"{path}: $.endpoints.api: ") for line in lines)


def test_sec11_cli_validate_reports_compile_problems(tmp_path: Path, podio: SpecData) -> None:
    transition(podio, 0)["when"] = ["code_present", "nope"]
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(podio), encoding="utf-8")
    result = CliRunner().invoke(cli, ["spec", "validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr == f"{path}: $.machine.transitions[0].when[1]: unknown guard 'nope'\n"


def test_sec11_cli_validate_lists_guard_problems_with_the_others(tmp_path: Path, podio: SpecData) -> None:
    transition(podio, 0)["when"] = ["code_present", "nope"]
    path = _bad_spec_file(tmp_path, podio)
    result = CliRunner().invoke(cli, ["spec", "validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}: $.machine.transitions[0].when[1]: unknown guard 'nope'" in result.stderr.splitlines()
    assert f"{path}: $.machine.transitions[2].dest: unknown state 'exchnged'" in result.stderr.splitlines()


def test_sec11_cli_validate_unknown_name_exits_2() -> None:
    result = CliRunner().invoke(cli, ["spec", "validate", "no-such-provider"])
    assert result.exit_code == 2
    assert "spec_not_found" in result.stderr


def _edges(spec: FlowSpec, separator: str) -> list[tuple[str, str, str]]:
    """(source, dest, label) of every edge, labelled as transitions draws it (guards joined by ``&``)."""
    pending = [s for s in spec.machine.states if s not in spec.machine.final]
    edges = []
    for t in spec.machine.transitions:
        label = t.trigger + (f" [{separator.join(t.when)}]" if t.when else "")
        edges += [(source, t.dest, label) for source in (pending if "*" in t.source else t.source)]
    return edges


def test_cli_graph_mermaid_prints_every_transition_with_its_guards() -> None:
    result = CliRunner().invoke(cli, ["spec", "graph", "podio", "--format", "mermaid"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "stateDiagram-v2" in lines
    assert "[*] --> redirected" in lines
    spec = load_spec("podio")
    # transitions joins the labels of edges with the same ends by " | ".
    by_ends: dict[tuple[str, str], list[str]] = {}
    for source, dest, label in _edges(spec, " & "):
        by_ends.setdefault((source, dest), []).append(label)
    for (source, dest), labels in by_ends.items():
        assert f"{source} --> {dest}: {' | '.join(labels)}" in lines
    assert "redirected --> authorized: callback [code_present]" in lines
    assert "exchanging --> exchanged: answer [token_received]" in lines
    assert "redirected --> failed: callback | expire" in lines
    for state in spec.machine.final:
        assert f"{state} --> [*]" in lines
    assert len([line for line in lines if " --> " in line and "[*]" not in line]) == len(by_ends) == 8


def test_cli_graph_is_mermaid_by_default() -> None:
    default = CliRunner().invoke(cli, ["spec", "graph", "podio"])
    explicit = CliRunner().invoke(cli, ["spec", "graph", "podio", "--format", "mermaid"])
    assert default.exit_code == 0
    assert default.stdout == explicit.stdout


def test_cli_graph_dot_prints_every_transition_with_its_guards() -> None:
    result = CliRunner().invoke(cli, ["spec", "graph", "podio", "--format", "dot"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("digraph podio {")
    assert out.rstrip().endswith("}")
    lines = [line.strip() for line in out.splitlines()]
    spec = load_spec("podio")
    # transitions joins the labels of edges with the same ends by " | ".
    by_ends: dict[tuple[str, str], list[str]] = {}
    for source, dest, label in _edges(spec, " & "):
        by_ends.setdefault((source, dest), []).append(label)
    for (source, dest), labels in by_ends.items():
        label = " | ".join(labels)
        shown = f'"{label}"' if not label.isidentifier() else label
        assert f"{source} -> {dest} [label={shown}]" in lines, (source, dest, label)
    for state in spec.machine.final:
        assert f"{state} [peripheries=2]" in lines


def test_cli_graph_joins_several_guards(tmp_path: Path, podio: SpecData) -> None:
    transition(podio, 0)["when"] = ["code_present", "pkce_enabled"]
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(podio), encoding="utf-8")
    mermaid = CliRunner().invoke(cli, ["spec", "graph", str(path)])
    assert "redirected --> authorized: callback [code_present & pkce_enabled]" in [
        line.strip() for line in mermaid.stdout.splitlines()
    ]
    dot = CliRunner().invoke(cli, ["spec", "graph", str(path), "--format", "dot"])
    assert '[label="callback [code_present & pkce_enabled]"]' in dot.stdout


def test_cli_graph_of_bad_spec_exits_2(tmp_path: Path, podio: SpecData) -> None:
    path = _bad_spec_file(tmp_path, podio)
    result = CliRunner().invoke(cli, ["spec", "graph", str(path)])
    assert result.exit_code == 2
    assert f"{path}: $.machine.transitions[2].dest: unknown state 'exchnged'" in result.stderr.splitlines()
    assert result.stdout == ""


def test_cli_graph_refuses_unknown_format() -> None:
    result = CliRunner().invoke(cli, ["spec", "graph", "podio", "--format", "pdf"])
    assert result.exit_code == 2
