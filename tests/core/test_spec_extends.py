"""``extends``, YAML merge keys, and finding a spec by its ``name:`` (docs/spec.md, "Reusing a spec").

Everything goes through ``load_spec`` on files written to a temporary folder,
as a person writing specs would use them.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from flowengine import PluginError, SpecError, load_spec

BASE = """
name: base
description: the base
endpoints:
  authorize: https://auth.example.com/authorize
  token: https://auth.example.com/token
authorization:
  default_scopes: [read, write]
  params:
    response_type: code
    client_id: "{client_id}"
    redirect_uri: "{redirect_uri}"
    scope: "{scope}"
    state: "{state}"
    prompt: consent
grants:
  authorization_code:
    client_auth: basic
    params: {grant_type: authorization_code, code: "{code}", redirect_uri: "{redirect_uri}"}
token:
  leeway: 30
  token_types: [bearer, mac]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(ref: Path | str, **kwargs: object) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(ref, **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def test_extends_by_path_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(
        tmp_path,
        "child.yaml",
        """
        extends: base.yaml
        name: child
        authorization:
          default_scopes: [admin]
          params: {prompt: login}
        token: {token_types: [bearer]}
        """,
    )
    spec = load_spec(child)
    assert spec.name == "child"
    assert spec.description == "the base"
    assert spec.authorization is not None
    assert spec.authorization.default_scopes == ("admin",)  # a list replaces
    assert spec.authorization.params["prompt"] == "login"  # a mapping merges key by key
    assert spec.authorization.params["client_id"] == "{client_id}"
    assert spec.token.token_types == ("bearer",)
    assert spec.token.leeway == 30
    assert spec.grants["authorization_code"].client_auth == "basic"
    assert spec.source == str(child)


def test_null_removes_an_inherited_key(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE)
    child = write(
        tmp_path,
        "child.yaml",
        """
        extends: ./base.yaml
        name: child
        authorization: {params: {prompt: null}, default_scopes: null}
        grants: {authorization_code: {client_auth: null}}
        """,
    )
    spec = load_spec(child)
    assert spec.authorization is not None
    assert "prompt" not in spec.authorization.params
    assert spec.authorization.default_scopes == ()
    assert spec.grants["authorization_code"].client_auth == "body"  # back to the default


def test_extends_a_named_spec_and_a_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "base.yaml", BASE)
    write(tmp_path, "middle.yaml", "extends: base\nname: middle\ntoken: {leeway: 10}\n")
    child = write(tmp_path, "child.yaml", "extends: middle\nname: child\n")
    monkeypatch.setenv("FLOWENGINE_SPEC_PATH", str(tmp_path))
    loaded = load_spec(child)
    assert loaded.name == "child"
    assert loaded.token.leeway == 10
    assert loaded.authorization is not None and loaded.authorization.default_scopes == ("read", "write")


def test_a_spec_may_extend_the_bundled_spec_it_shadows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "podio.yaml", "extends: podio\ntoken: {leeway: 5}\n")
    monkeypatch.setenv("FLOWENGINE_SPEC_PATH", str(tmp_path))
    spec = load_spec("podio")
    assert spec.source == str(tmp_path / "podio.yaml")
    assert spec.name == "podio"  # inherited
    assert spec.token.leeway == 5
    assert spec.usage.header_scheme == "OAuth2"


def test_an_extends_cycle_is_refused_naming_the_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\nname: b\n")
    [line] = problems(a)
    assert "cycle" in line and "a.yaml" in line and "b.yaml" in line


def test_extends_is_bounded_in_depth(tmp_path: Path) -> None:
    for i in range(12):
        write(tmp_path, f"s{i}.yaml", f"extends: s{i + 1}.yaml\nname: s{i}\n")
    write(tmp_path, "s12.yaml", BASE)
    [line] = problems(tmp_path / "s0.yaml")
    assert "more than 8 deep" in line


def test_problems_of_a_spec_built_on_another_name_both_files(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE + "colour: blue\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\n")
    [line] = problems(child)
    assert line.startswith(f"{child} (extends {tmp_path / 'base.yaml'}): $: unknown key(s): colour")


def test_a_broken_base_is_reported_with_the_file_that_extends_it(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", "name: [unclosed\n")
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\n")
    [line] = problems(child)
    assert f"{tmp_path / 'base.yaml'} (extended by {child})" in line and "invalid YAML" in line


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("missing.yaml", "no spec file"), ("nonesuch", "no spec named 'nonesuch'"), ("5", "expected the name")],
)
def test_a_missing_base_is_refused(tmp_path: Path, ref: str, expected: str) -> None:
    child = write(tmp_path, "child.yaml", f"extends: {ref}\nname: child\n")
    [line] = problems(child)
    assert "$.extends" in line and expected in line


def test_yaml_merge_keys_work_and_explicit_keys_win(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        "merged.yaml",
        """
        name: merged
        endpoints:
          authorize: https://auth.example.com/authorize
          token: https://auth.example.com/token
        authorization:
          params: {client_id: "{client_id}", redirect_uri: "{redirect_uri}", state: "{state}"}
        x-common: &common
          client_auth: basic
          encoding: json
          params: {grant_type: authorization_code, code: "{code}", redirect_uri: "{redirect_uri}"}
        grants:
          authorization_code:
            <<: *common
            encoding: form
        """,
    )
    # `x-common` is an unknown key: an anchor to merge from lives under a key the spec knows.
    assert any("x-common" in line for line in problems(spec))
    ok = write(
        tmp_path,
        "ok.yaml",
        """
        name: ok
        endpoints:
          authorize: https://auth.example.com/authorize
          token: https://auth.example.com/token
        authorization:
          params: {client_id: "{client_id}", redirect_uri: "{redirect_uri}", state: "{state}"}
        grants:
          authorization_code: &code
            client_auth: basic
            encoding: json
            params: {grant_type: authorization_code, code: "{code}", redirect_uri: "{redirect_uri}"}
          refresh_token:
            <<: *code
            encoding: form
            params: {grant_type: refresh_token, refresh_token: "{refresh_token}"}
        """,
    )
    loaded = load_spec(ok)
    refresh = loaded.grants["refresh_token"]
    assert (refresh.client_auth, refresh.encoding) == ("basic", "form")
    assert dict(refresh.params) == {"grant_type": "refresh_token", "refresh_token": "{refresh_token}"}


def test_a_key_written_twice_is_still_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "twice.yaml", BASE + "name: again\n")
    [line] = problems(path)
    assert "duplicate key 'name'" in line


def test_a_spec_is_found_by_its_name_whatever_its_file_is_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "my-provider-v2.yaml", BASE.replace("name: base", "name: acme"))
    monkeypatch.setenv("FLOWENGINE_SPEC_PATH", str(tmp_path))
    spec = load_spec("acme")
    assert spec.name == "acme" and spec.source == str(tmp_path / "my-provider-v2.yaml")
    with pytest.raises(PluginError) as info:
        load_spec("my-provider-v2")  # found by its name:, not by its file name
    assert info.value.code == "spec_not_found"


def test_a_file_named_for_a_spec_but_saying_another_name_is_not_that_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "acme.yaml", BASE.replace("name: base", "name: acme-staging"))
    write(tmp_path, "zzz.yaml", BASE.replace("name: base", "name: acme"))
    monkeypatch.setenv("FLOWENGINE_SPEC_PATH", str(tmp_path))
    assert load_spec("acme").source == str(tmp_path / "zzz.yaml")
    assert load_spec("acme-staging").source == str(tmp_path / "acme.yaml")


def test_an_earlier_folder_wins_even_through_another_file_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "my-podio.yaml", "extends: podio\nname: podio\ntoken: {leeway: 7}\n")
    monkeypatch.setenv("FLOWENGINE_SPEC_PATH", str(tmp_path))
    assert load_spec("podio").token.leeway == 7


def test_a_changed_base_is_read_again(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\n")
    assert load_spec(child).token.leeway == 30
    base.write_text(textwrap.dedent(BASE).replace("leeway: 30", "leeway: 45"), encoding="utf-8")
    assert load_spec(child).token.leeway == 45


def test_a_deep_folder_does_not_cut_the_file_names_off_a_problem(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-folder-of-a-long-project-path"] * 8)
    deep.mkdir(parents=True)
    write(deep, "base.yaml", "name: [unclosed\n")
    child = write(deep, "child.yaml", "extends: base.yaml\nname: child\n")
    [line] = problems(child)
    assert f"{deep / 'base.yaml'} (extended by {child})" in line
