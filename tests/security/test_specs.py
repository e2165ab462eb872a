"""SECURITY.md 11: a broken spec is ``spec_invalid``, naming the file and the path that is wrong."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flowengine as fe
import pytest
import yaml

from tests.security.helpers import podio_data

Change = Callable[[dict[str, Any]], None]


def _transition(index: int, **fields: object) -> Change:
    return lambda d: d["machine"]["transitions"][index].update(fields)


CASES: list[Any] = [
    pytest.param(
        _transition(3, dest="exchnged"),
        "$.machine.transitions[3].dest",
        "unknown state 'exchnged'",
        id="unknown-dest",
    ),
    pytest.param(
        _transition(0, source="redirectd"),
        "$.machine.transitions[0].source[0]",
        "unknown state 'redirectd'",
        id="unknown-source",
    ),
    pytest.param(
        lambda d: d["machine"].update(colour="blue"), "$.machine", "unknown key(s): colour", id="unknown-key"
    ),
    pytest.param(
        lambda d: d.update(pkce_mode="S256"), "$", "unknown key(s): pkce_mode", id="unknown-top-key"
    ),
    pytest.param(
        lambda d: d["machine"].update(ttl=1.5), "$.machine.ttl", "expected an integer", id="float-for-int"
    ),
    pytest.param(lambda d: d.update(pkce="yes"), "$.pkce", "expected true or false", id="string-for-bool"),
    pytest.param(
        lambda d: d.update(description=5), "$.description", "expected a string", id="int-for-string"
    ),
    pytest.param(
        lambda d: d["grants"]["authorization_code"].update(encoding="xml"),
        "$.grants.authorization_code.encoding",
        "expected one of 'json', 'form'",
        id="bad-choice",
    ),
    pytest.param(
        lambda d: d["machine"]["states"].append("limbo"),
        "$.machine.states[6]",
        "unreachable",
        id="unreachable-state",
    ),
    pytest.param(
        lambda d: d["grants"]["authorization_code"]["params"].update(code="{cod}"),
        "$.grants.authorization_code.params.code",
        "unknown variable 'cod'",
        id="unknown-variable",
    ),
    pytest.param(
        lambda d: d["authorization"]["params"].update(scope="{scope!r}"),
        "$.authorization.params.scope",
        "format specs and conversions are not allowed",
        id="template-conversion",
    ),
    pytest.param(
        lambda d: d["endpoints"].update(token="http://api.podio.com/oauth/token/v2"),
        "$.endpoints.token",
        "uses http://",
        id="http-endpoint",
    ),
    pytest.param(
        lambda d: (
            d.update(local_only=True) or d["endpoints"].update(token="http://api.podio.com/oauth/token")
        ),
        "$.endpoints.token",
        "uses http://",
        id="http-off-loopback-even-local-only",
    ),
    pytest.param(
        lambda d: d["endpoints"].update(token="https://api.podio.com/oauth/token#x"),
        "$.endpoints.token",
        "fragment",
        id="endpoint-fragment",
    ),
    pytest.param(
        lambda d: d["machine"].pop("initial"), "$.machine.initial", "required key missing", id="missing-key"
    ),
]


@pytest.mark.parametrize(("change", "path", "message"), CASES)
def test_sec11_a_broken_spec_is_spec_invalid_naming_file_and_path(
    tmp_path: Path, change: Change, path: str, message: str
) -> None:
    data = podio_data()
    change(data)
    spec_file = tmp_path / "x.yaml"
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(spec_file)
    assert caught.value.code == "spec_invalid"
    lines = [str(p) for p in caught.value.problems]
    assert any(line.startswith(f"{spec_file}: {path}: ") and message in line for line in lines), lines


def test_sec11_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    spec_file = tmp_path / "x.yaml"
    spec_file.write_text("name: x\nendpoints: {authorize: [\n")
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(spec_file)
    [problem] = caught.value.problems
    assert str(problem).startswith(f"{spec_file}: line ")
    assert "invalid YAML" in problem.message


def test_sec11_a_duplicate_key_is_refused_not_silently_overwritten(tmp_path: Path) -> None:
    spec_file = tmp_path / "x.yaml"
    text = Path(fe.load_spec("podio").source).read_text()
    spec_file.write_text(text + "\npkce: true\n")  # a second `pkce:` key
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(spec_file)
    assert "duplicate key 'pkce'" in str(caught.value)


def test_sec11_loopback_http_is_allowed_only_for_local_specs() -> None:
    def local(data: dict[str, Any]) -> None:
        data["endpoints"] = {name: "http://127.0.0.1:8790/x" for name in data["endpoints"]}

    data = podio_data()
    local(data)
    with pytest.raises(fe.SpecError):
        fe.load_spec(data)
    data["local_only"] = True
    assert fe.load_spec(data).local_only


def test_sec11_the_engine_refuses_a_broken_spec_too(tmp_path: Path) -> None:
    data = podio_data()
    data["machine"]["transitions"][2]["dest"] = "exchnged"
    spec_file = tmp_path / "x.yaml"
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(fe.SpecError) as caught:
        fe.AsyncEngine(spec_file, client=fe.Client("cid"))
    assert f"{spec_file}: $.machine.transitions[2].dest: unknown state 'exchnged'" in str(caught.value)


@pytest.mark.slow
def test_sec11_spec_validate_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    data = podio_data()
    data["machine"]["transitions"][2]["dest"] = "exchnged"
    data["grants"]["authorization_code"]["params"]["code"] = "{cod}"
    spec_file = tmp_path / "x.yaml"
    spec_file.write_text(yaml.safe_dump(data, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-c", "from flowengine.cli import main; main()", "spec", "validate", str(spec_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert f"{spec_file}: $.machine.transitions[2].dest: unknown state 'exchnged'" in output
    assert (
        f"{spec_file}: $.grants.authorization_code.params.code: template names unknown variable 'cod'"
        in output
    )
