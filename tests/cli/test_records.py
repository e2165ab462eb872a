"""`flowengine flows …` and `flowengine tokens …` over a store shared by separate commands."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import invoke
from tests.conftest import SandboxFixture
from tests.support.old_records import as_0_1_0, rewrite_flows

run = invoke  # in-process: these tests are about what the commands do


@pytest.fixture
def env(sandbox: SandboxFixture, tmp_path: Path) -> dict[str, str]:
    return {"FLOWENGINE_SANDBOX_URL": sandbox.server.url, "FLOWENGINE_STORE": f"sqlite://{tmp_path}/fe.db"}


def test_login_then_list_show_refresh_and_delete_the_token(
    env: dict[str, str], sandbox: SandboxFixture
) -> None:
    assert run("login", "podio", "--sandbox", env=env).returncode == 0

    listed = json.loads(run("tokens", "list", "--json", env=env).stdout)
    assert [t["key"] for t in listed] == ["podio:user:1001"]
    before = listed[0]["fingerprint"]
    table = run("tokens", "list", env=env).stdout
    assert "podio:user:1001" in table
    assert before in table

    shown = run("tokens", "show", "podio:user:1001", env=env)
    assert "fingerprint:" in shown.stdout

    refreshed = run("tokens", "refresh", "podio:user:1001", "--sandbox", "--json", env=env)
    assert refreshed.returncode == 0, refreshed.stderr
    after = json.loads(refreshed.stdout)["fingerprint"]
    assert after != before
    assert [r.grant_type for r in sandbox.token_requests()] == ["authorization_code", "refresh_token"]

    assert run("tokens", "delete", "podio:user:1001", env=env).returncode == 0
    assert json.loads(run("tokens", "list", "--json", env=env).stdout) == []
    missing = run("tokens", "delete", "podio:user:1001", env=env)
    assert missing.returncode == 4
    assert "no token" in missing.stderr


def test_flows_list_show_and_purge(env: dict[str, str]) -> None:
    run("login", "podio", "--sandbox", env=env)
    run("login", "podio", "--sandbox", "--deny", env=env)

    flows = json.loads(run("flows", "list", "--json", env=env).stdout)
    assert [(f["state"], f["outcome"]) for f in flows] == [("exchanged", "granted"), ("denied", "denied")]
    failed_only = json.loads(run("flows", "list", "--state", "denied", "--json", env=env).stdout)
    assert [f["id"] for f in failed_only] == [flows[1]["id"]]

    shown = run("flows", "show", flows[1]["id"], env=env)
    assert "access_denied" in shown.stdout
    assert "callback  redirected -> denied" in shown.stdout
    assert run("flows", "show", "nope", env=env).returncode == 4
    assert run("flows", "purge", env=env).stdout == "purged 0 flow(s)\n"


def test_the_default_store_is_sqlite_in_the_data_folder(sandbox: SandboxFixture) -> None:
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    assert run("login", "podio", "--sandbox", env=env).returncode == 0
    database = Path(os.environ["XDG_DATA_HOME"]) / "flowengine" / "flowengine.db"
    assert database.is_file()
    assert database.stat().st_mode & 0o777 == 0o600
    assert json.loads(run("tokens", "list", "--json", env=env).stdout)[0]["key"] == "podio:user:1001"


def test_refresh_without_credentials_names_the_variables(env: dict[str, str]) -> None:
    run("login", "podio", "--sandbox", env=env)
    result = run("tokens", "refresh", "podio:user:1001", env=env)
    assert result.returncode == 2
    assert "FLOWENGINE_PODIO_CLIENT_SECRET" in result.stderr


def test_refresh_with_sandbox_but_no_running_sandbox_explains(env: dict[str, str]) -> None:
    result = run(
        "tokens", "refresh", "podio:user:1001", "--sandbox", env={**env, "FLOWENGINE_SANDBOX_URL": ""}
    )
    assert result.returncode == 2
    assert "flowengine sandbox serve" in result.stderr


def test_expiring_within_filters(env: dict[str, str]) -> None:
    run("login", "podio", "--sandbox", env=env)
    assert json.loads(run("tokens", "list", "--expiring-within", "1h", "--json", env=env).stdout) == []
    assert len(json.loads(run("tokens", "list", "--expiring-within", "9h", "--json", env=env).stdout)) == 1
    bad = run("tokens", "list", "--expiring-within", "soon", env=env)
    assert bad.returncode == 2
    assert "not a duration" in bad.stderr


def test_revoke_says_the_spec_names_no_revocation_endpoint_and_keeps_the_token(env: dict[str, str]) -> None:
    run("login", "podio", "--sandbox", env=env)
    result = run("tokens", "revoke", "podio:user:1001", env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: revocation_unsupported: ")
    assert "names no revocation endpoint" in result.stderr
    assert "flowengine tokens delete podio:user:1001" in result.stderr
    assert [t["key"] for t in json.loads(run("tokens", "list", "--json", env=env).stdout)] == [
        "podio:user:1001"
    ]
    assert run("tokens", "revoke", "podio:user:2", env=env).returncode == 4


def test_tables_keep_every_cell_whole(env: dict[str, str]) -> None:
    run("login", "podio", "--sandbox", env=env)
    [header, row] = run("tokens", "list", env=env).stdout.splitlines()
    assert header.split() == ["KEY", "WHOSE", "FINGERPRINT", "EXPIRES", "SCOPE", "STATUS"]
    assert row.split()[0] == "podio:user:1001"
    assert row.split()[1] == "user:1001"  # whose token it is (SECURITY.md 32)
    assert row.split()[2].startswith("sha256:") and len(row.split()[2]) == 19
    assert row == row.rstrip()


def test_flows_stored_by_0_1_0_list_and_show_with_the_outcome_their_state_means(
    env: dict[str, str], tmp_path: Path
) -> None:
    run("login", "podio", "--sandbox", env=env)
    run("login", "podio", "--sandbox", "--deny", env=env)
    assert rewrite_flows(tmp_path / "fe.db", as_0_1_0) == 2

    flows = json.loads(run("flows", "list", "--json", env=env).stdout)
    assert [(f["state"], f["outcome"]) for f in flows] == [("exchanged", "granted"), ("denied", "denied")]
    shown = json.loads(run("flows", "show", flows[1]["id"], "--json", env=env).stdout)
    assert shown["outcome"] == "denied"


def test_a_flow_whose_stored_outcome_disagrees_with_its_state_is_left_out_or_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    run("login", "podio", "--sandbox", "--deny", env=env)
    forged_ids: list[str] = []

    def forged(data: dict[str, Any]) -> None:
        data["outcome"] = "granted"
        forged_ids.append(data["id"])

    rewrite_flows(tmp_path / "fe.db", forged)
    listed = run("flows", "list", "--json", env=env)
    assert json.loads(listed.stdout) == []
    assert f"flow {forged_ids[0]} left out: store_corrupt" in listed.stderr
    shown = run("flows", "show", forged_ids[0], env=env)
    assert shown.returncode == 4 and "store_corrupt" in shown.stderr
