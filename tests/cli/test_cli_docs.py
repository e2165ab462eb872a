"""docs/cli.md cannot drift: every exit status and error code it documents is exercised by a test.

The two tables of its "Exit codes and errors" section are read; each row must
be listed in ``EXERCISED_BY`` with a test that runs the command and checks that
status (and that code). A row added to the docs with no test here fails, and so
does a test named here that does not exist or no longer checks what it is named for.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"

#: (status, code or None) -> the test (file::function) that exercises it through the command line.
EXERCISED_BY: dict[tuple[int, str | None], str] = {
    (2, "device_unsupported"): (
        "tests/oidc/test_cli.py::test_device_login_of_a_spec_without_a_device_section_exits_2"
    ),
    (0, None): "tests/cli/test_login.py::test_login_sandbox_approve_starts_its_own_sandbox_and_exits_0",
    (2, None): "tests/cli/test_login.py::test_login_options_that_do_not_go_together_exit_2",
    (3, None): "tests/cli/test_login.py::test_login_sandbox_deny_exits_3_with_the_description",
    (4, None): "tests/cli/test_login.py::test_login_failure_exits_4",
    (5, None): "tests/cli/test_loopback.py::test_loopback_timeout_exits_5_and_closes_the_listener",
    (
        130,
        None,
    ): "tests/cli/test_newcomer.py::test_a_stopped_loopback_login_says_truthfully_what_it_left_in_the_store",
    (
        143,
        None,
    ): "tests/cli/test_newcomer.py::test_a_stopped_loopback_login_says_truthfully_what_it_left_in_the_store",
    (
        2,
        "spec_not_found",
    ): "tests/cli/test_newcomer.py::test_an_unknown_spec_suggests_the_closest_name_and_spec_list",
    (
        2,
        "grant_only_spec",
    ): "tests/cli/test_newcomer.py::test_login_of_a_grant_only_spec_points_to_batch_grant",
    (
        2,
        "grant_unsupported",
    ): "tests/cli/test_newcomer_messages.py::test_batch_grant_of_a_flow_spec_says_to_log_in",
    (4, "store_corrupt"): (
        "tests/cli/test_newcomer_messages.py::test_every_reading_command_refuses_a_store_opened_with_the_wrong_key"
    ),
    (2, "token_endpoint_mismatch"): (
        "tests/cli/test_newcomer_messages.py::test_refreshing_a_token_of_a_gone_sandbox_says_it_is_gone"
    ),
    (2, "graphviz_missing"): "tests/cli/test_newcomer.py::test_graph_without_graphviz_is_graphviz_missing",
    (
        2,
        "store_unsupported",
    ): "tests/cli/test_newcomer.py::test_a_bare_store_path_gets_the_sqlite_url_to_write",
    (
        2,
        "store_url_invalid",
    ): "tests/cli/test_newcomer.py::test_a_bare_store_path_gets_the_sqlite_url_to_write",
    (
        2,
        "credentials_missing",
    ): "tests/cli/test_newcomer.py::test_credential_messages_name_what_is_actually_missing",
    (2, "config_invalid"): "tests/cli/test_newcomer.py::test_a_mistake_in_the_config_file_is_named",
    (
        2,
        "port_in_use",
    ): "tests/cli/test_newcomer.py::test_a_busy_port_is_one_line_and_exit_2_for_sandbox_serve_and_web_serve",
    (2, "sandbox_unreachable"): "tests/cli/test_newcomer.py::test_token_commands_say_when_no_sandbox_answers",
    (2, "revocation_unsupported"): "tests/cli/test_records.py::test_revoke_says_the_spec_names_no_revocation_"
    "endpoint_and_keeps_the_token",
    (4, "flow_unknown"): "tests/cli/test_newcomer.py::test_every_error_is_one_line_error_code_message",
    (
        4,
        "token_unknown",
    ): "tests/cli/test_newcomer.py::test_commands_that_read_create_no_folder_and_no_database",
    (
        4,
        "no_refresh_token",
    ): "tests/cli/test_newcomer.py::test_a_token_without_refresh_token_about_to_expire_says_so",
    (
        4,
        "store_key_missing",
    ): "tests/cli/test_newcomer.py::test_an_encrypted_store_without_its_key_says_so_in_every_reading_command",
    (4, "paste_ended"): "tests/cli/test_paste.py::test_paste_from_a_pipe_then_end_of_input_exits_4",
    (141, None): "tests/cli/test_outputs.py::test_a_reader_that_went_away_ends_the_command_quietly_with_141",
    (
        2,
        "output_unwritable",
    ): "tests/cli/test_outputs.py::test_spec_graph_to_a_missing_folder_is_output_unwritable",
    (5, "login_timeout"): "tests/cli/test_loopback.py::test_loopback_timeout_exits_5_and_closes_the_listener",
}


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Exit codes and errors")
    return text[start : text.index("\n## ", start + 1)]


def documented() -> set[tuple[int, str | None]]:
    """Every (status, None) of the status table and (status, code) of the codes table."""
    found: set[tuple[int, str | None]] = set()
    for line in _section().splitlines():
        if match := re.match(r"\| (\d+) \|", line):
            found.add((int(match[1]), None))
        elif match := re.match(r"\| `([a-z_]+)` \| (\d+) \|", line):
            found.add((int(match[2]), match[1]))
    return found


def _source(test_id: str) -> str:
    """One test function's source with its decorators and the parameter lists they name; fails if absent."""
    file, name = test_id.split("::")
    text = (ROOT / file).read_text(encoding="utf-8")
    tree = ast.parse(text)
    constants = {
        target.id: node
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            parts = [ast.get_source_segment(text, part) or "" for part in (*node.decorator_list, node)]
            named = {n.id for d in node.decorator_list for n in ast.walk(d) if isinstance(n, ast.Name)}
            parts += [
                ast.get_source_segment(text, constants[n]) or "" for n in sorted(named & constants.keys())
            ]
            return "\n".join(parts)
    pytest.fail(f"{test_id} does not exist")


def test_the_section_is_read() -> None:
    rows = documented()
    assert {status for status, _ in rows} >= {0, 2, 3, 4, 5, 130}
    assert sum(code is not None for _, code in rows) >= 10


def test_every_documented_status_and_code_has_a_test() -> None:
    missing = sorted(documented() - EXERCISED_BY.keys(), key=str)
    assert not missing, f"docs/cli.md documents {missing} and no test is listed in EXERCISED_BY"
    stale = sorted(EXERCISED_BY.keys() - documented(), key=str)
    assert not stale, f"EXERCISED_BY lists {stale}, which docs/cli.md no longer documents"


@pytest.mark.parametrize(("row", "test_id"), sorted(EXERCISED_BY.items(), key=str), ids=str)
def test_the_listed_test_checks_that_status_and_code(row: tuple[int, str | None], test_id: str) -> None:
    status, code = row
    source = _source(test_id)
    # The status is asserted in the test itself, or given in the parameters it runs with.
    assert re.search(rf"(==|,|\(|\[) ?{status}\b", source), f"{test_id} does not check exit status {status}"
    if code is not None:
        assert f"{code}" in source, f"{test_id} does not check the code {code}"
