"""SECURITY.md 25: a spec loads or fails in bounded time and memory, and every failure is ``spec_invalid``.

Each hostile document is tried as YAML text, as a file, and through ``flowengine spec validate``
(exit 2, one problem line per problem). What is bounded is asserted as work and size: how many
problems are listed, how long a message is, that nothing but a ``SpecError`` escapes; the time
(under a second each) is a target of ``python -m benchmarks.spec_load``, not of this suite.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import flowengine as fe
import pytest
import yaml
from click.testing import CliRunner
from flowengine.cli import cli

from tests.security.helpers import podio_data

#: Far above any real spec's report, far below what an unbounded one printed (39 MB, 889 KB).
MAX_REPORT = 20_000


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each level a list of nine aliases of the one before (9**levels strings)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def bomb_in_a_spec(levels: int) -> str:
    """Podio's spec whose description is the bomb's last level: a wrong type, quoted in the message."""
    text = yaml.safe_dump(podio_data(), sort_keys=False)
    return alias_bomb(levels).replace("a0:", "x-a0:", 1) + text.replace(
        "description: ", f"description: *a{levels - 1}\nx-description: ", 1
    )


HOSTILE: dict[str, Callable[[], str]] = {
    "alias-bomb": alias_bomb,
    "alias-bomb-in-a-spec": lambda: bomb_in_a_spec(7),
    "200KB-of-brackets": lambda: "[" * 200_000,
    "60KB-of-brackets": lambda: "[" * 60_000,
    "nested-mappings": lambda: "{a: " * 5_000,
    "nested-blocks": lambda: "".join(" " * i + "- \n" for i in range(500)),
    "5000-digit-integer": lambda: "name: x\nmachine:\n  ttl: " + "1" * 5_000 + "\n",
    "5000-digit-float": lambda: "name: x\nmachine:\n  ttl: 1." + "1" * 5_000 + "\n",
    "100k-unknown-keys": lambda: "".join(f"k{i}: 1\n" for i in range(100_000)),
    "a-self-containing-alias": lambda: "name: &n [*n]\n",
    "a-list-as-a-key": lambda: "? [a, b]\n: c\n",
    "a-merge-key": lambda: "a: &x {b: 1}\nc: {<<: *x}\n",
    "a-megabyte-string": lambda: "name: " + "x" * 1_000_000 + "\n",
    "a-NUL": lambda: "name: x\x00\n",
}


def _report(error: fe.SpecError) -> str:
    return "\n".join(str(problem) for problem in error.problems)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_sec25_a_hostile_spec_text_is_spec_invalid_with_a_bounded_report(name: str) -> None:
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(HOSTILE[name]())
    error = caught.value
    assert error.code == "spec_invalid"
    assert 1 <= len(error.problems) <= 51
    assert len(str(error)) < MAX_REPORT, len(str(error))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_sec25_a_hostile_spec_file_fails_spec_validate_with_exit_2(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(HOSTILE[name](), encoding="utf-8")
    result = CliRunner().invoke(cli, ["spec", "validate", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert not isinstance(result.exception, RecursionError | ValueError | MemoryError)
    assert str(path) in result.output
    assert len(result.output) < MAX_REPORT
    with pytest.raises(fe.SpecError):
        fe.load_spec(path)


def test_sec25_the_alias_bomb_fails_on_its_expansion_not_on_its_type() -> None:
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(alias_bomb())
    [problem] = caught.value.problems
    assert "aliases are expanded" in problem.message and problem.path.startswith("line ")


def test_sec25_too_many_plain_values_are_not_blamed_on_aliases(tmp_path: Path) -> None:
    path = tmp_path / "wide.yaml"
    path.write_text("name: wide\n" + "".join(f"k{i}: 1\n" for i in range(3000)))
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(path)
    [problem] = caught.value.problems
    assert problem.message.endswith("invalid YAML: has more than 5000 values"), problem.message


def test_sec25_an_alias_tree_under_the_limit_is_quoted_short() -> None:
    """Seven levels are refused outright (above); three are built, and quoted in a bounded message."""
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(bomb_in_a_spec(3))  # 729 strings in a list where a string belongs
    [problem] = [p for p in caught.value.problems if p.path == "$.description"]
    assert len(problem.message) <= 300
    assert len(str(caught.value)) < MAX_REPORT


def test_sec25_too_many_problems_are_counted_not_listed() -> None:
    data = podio_data()
    data["endpoints"].update({f"e{i}": f"http://bad{i}.example/x" for i in range(500)})
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(data)
    problems = caught.value.problems
    assert len(problems) == 51
    assert problems[-1].message == "and 450 more problem(s) not listed"


def test_sec25_a_huge_value_is_quoted_short() -> None:
    data = podio_data()
    data["description"] = ["x" * 1_000_000]
    data["machine"]["ttl"] = 10**5000  # not printable by repr() at all
    data["x" * 100_000] = 1
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(data)
    assert all(len(p.message) <= 300 and len(p.path) <= 200 for p in caught.value.problems)
    assert len(str(caught.value)) < MAX_REPORT


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: _nested(10_000), id="10000-levels"),
        pytest.param(lambda: _self_containing(), id="contains-itself"),
        pytest.param(lambda: {f"k{i}": i for i in range(100_000)}, id="100k-keys"),
        pytest.param(lambda: {**podio_data(), "description": 10**5000}, id="5000-digit-int"),
        pytest.param(lambda: 42, id="not-a-mapping"),
        pytest.param(lambda: b"name: x", id="bytes"),
    ],
)
def test_sec25_a_hostile_mapping_is_spec_invalid(build: Callable[[], Any]) -> None:
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(build())
    assert len(str(caught.value)) < MAX_REPORT


def test_sec25_a_spec_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w", encoding="utf-8") as f:
        f.write(yaml.safe_dump(podio_data()))
        f.write("# " + "x" * 70_000 + "\n")
    with pytest.raises(fe.SpecError) as caught:
        fe.load_spec(path)
    assert "larger than 64 KiB" in caught.value.problems[0].message


@pytest.mark.parametrize(
    "text", ["a:" * 100_000, "x\x00:", "name:\x00"], ids=["long-line", "nul-path", "nul"]
)
def test_sec25_text_that_is_no_path_is_read_as_yaml_not_as_a_file_name(text: str) -> None:
    with pytest.raises(fe.SpecError):
        fe.load_spec(text)


def test_sec25_the_bundled_specs_and_their_aliases_still_load() -> None:
    """The limits leave room: anchors and aliases are fine, and so are the bundled specs."""
    text = yaml.safe_dump(podio_data(), sort_keys=False)
    text = text.replace(
        "  token: https://api.podio.com/oauth/token/v2", "  token: &tok https://api.podio.com/oauth/token/v2"
    )
    text = text.replace("  token_form: https://api.podio.com/oauth/token", "  token_form: *tok")
    assert fe.load_spec(text).endpoints["token_form"] == "https://api.podio.com/oauth/token/v2"
    for name in ("podio", "podio-app", "podio-password"):
        assert fe.load_spec(name).name == name


def _nested(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        node["a"] = {}
        node = node["a"]
    return root


def _self_containing() -> dict[str, Any]:
    data = podio_data()
    data["endpoints"]["loop"] = data
    return data
