"""`flowengine doctor`: each check seen passing and failing, with its fix, and the exit status."""

from __future__ import annotations

import os
import re
from pathlib import Path

import flowengine as fe
import pytest

from tests.cli.conftest import Ran, invoke
from tests.conftest import SandboxFixture


def _lines(result: Ran) -> dict[str, tuple[str, str]]:
    """Check name -> (status, detail and fix), from doctor's output."""
    found: dict[str, tuple[str, str]] = {}
    name = ""
    for line in result.stdout.splitlines():
        match = re.match(r"(ok|warn|FAIL)\s+(\S+(?: \S+)?)\s{2,}(.*)", line)
        if match:
            name = match[2]
            found[name] = (match[1], match[3])
        elif line.strip().startswith("fix: ") and name:
            status, detail = found[name]
            found[name] = (status, f"{detail} | {line.strip()}")
    return found


def test_a_fresh_setup_is_well_and_creates_nothing(tmp_path: Path) -> None:
    result = invoke("doctor", "--store", f"sqlite://{tmp_path}/new/fe.db")
    assert result.returncode == 0, result.stdout
    checks = _lines(result)
    for name in ("python", "store", "key", "specs", "config", "sandbox", "graphviz", "extra web"):
        assert checks[name][0] == "ok", (name, checks[name])
    assert "not created yet; the first login creates it" in checks["store"][1]
    assert result.stdout.rstrip().endswith("All is well.")
    assert not (tmp_path / "new").exists()
    assert "chromium" not in checks, "contributor tools only with --dev"


def test_a_store_in_use_is_read_and_written(env: dict[str, str]) -> None:
    assert invoke("login", "podio", "--sandbox", env=env).returncode == 0
    result = invoke("doctor", env=env)
    assert result.returncode == 0, result.stdout
    assert "readable and writable; 1 token(s), 1 flow(s)" in _lines(result)["store"][1]


def test_a_bare_path_fails_the_store_check_with_its_fix(tmp_path: Path) -> None:
    result = invoke("doctor", "--store", "tokens.db")
    assert result.returncode == 4
    status, said = _lines(result)["store"]
    assert status == "FAIL"
    assert "store_unsupported" in said and "sqlite://" in said and "fix: " in said
    assert "1 check(s) failed: store." in result.stderr


def test_an_encrypted_store_needs_its_key(env: dict[str, str], tmp_path: Path) -> None:
    key = fe.new_store_key()
    assert invoke("login", "podio", "--sandbox", env={**env, "FLOWENGINE_KEY": key}).returncode == 0
    without = invoke("doctor", env=env)
    assert without.returncode == 4
    status, said = _lines(without)["key"]
    assert status == "FAIL" and "store_key_missing" in said and "fix: set FLOWENGINE_KEY" in said
    wrong = invoke("doctor", env={**env, "FLOWENGINE_KEY": fe.new_store_key()})
    assert wrong.returncode == 4
    assert "cannot be read" in _lines(wrong)["key"][1]
    right = invoke("doctor", env={**env, "FLOWENGINE_KEY": key})
    assert right.returncode == 0
    assert _lines(right)["key"] == ("ok", "from FLOWENGINE_KEY")


def test_spec_folders_and_specs_are_checked(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = invoke("doctor", "--store", "memory://", env={"FLOWENGINE_SPEC_PATH": str(missing)})
    assert result.returncode == 4
    assert _lines(result)["spec path"][0] == "FAIL"
    (tmp_path / "broken.yaml").write_text("name: broken\n", encoding="utf-8")
    result = invoke("doctor", "--store", "memory://", env={"FLOWENGINE_SPEC_PATH": str(tmp_path)})
    assert result.returncode == 4
    status, said = _lines(result)["specs"]
    assert status == "FAIL" and "fix: flowengine spec validate broken" in said


def test_the_config_file_is_checked(tmp_path: Path) -> None:
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "flowengine" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[podio]\nclient_secert = "x"\n', encoding="utf-8")
    result = invoke("doctor", "--store", "memory://")
    assert result.returncode == 4
    assert _lines(result)["config"][0] == "FAIL" and "client_secert" in _lines(result)["config"][1]
    config.write_text('[podio]\nclient_secret = "x"\n', encoding="utf-8")
    config.chmod(0o644)
    loose = invoke("doctor", "--store", "memory://")
    assert loose.returncode == 0, "a warning, not a failure"
    assert _lines(loose)["config"] == ("warn", f"{config}: readable by other users | fix: chmod 600 {config}")


def test_a_sandbox_url_must_answer(sandbox: SandboxFixture, tmp_path: Path) -> None:
    running = invoke("doctor", "--store", "memory://", env={"FLOWENGINE_SANDBOX_URL": sandbox.server.url})
    assert running.returncode == 0
    assert _lines(running)["sandbox"] == ("ok", f"a sandbox answers at {sandbox.server.url}")
    gone = invoke("doctor", "--store", "memory://", env={"FLOWENGINE_SANDBOX_URL": "localhost:1"})
    assert gone.returncode == 4
    assert "sandbox_unreachable" in _lines(gone)["sandbox"][1]


def test_graphviz_is_optional(tmp_path: Path) -> None:
    result = invoke("doctor", "--store", "memory://", env={"PATH": str(tmp_path)})
    assert result.returncode == 0
    status, said = _lines(result)["graphviz"]
    assert status == "warn" and "fix: apt-get install graphviz" in said
    assert result.stdout.rstrip().endswith("(1 warning(s) about optional things).")


@pytest.mark.skipif(not Path("/usr/bin/chromium").is_file(), reason="Chromium (apt-get install -y chromium)")
def test_dev_adds_what_contributors_need() -> None:
    result = invoke("doctor", "--store", "memory://", "--dev")
    assert result.returncode == 0, result.stdout
    checks = _lines(result)
    assert checks["chromium"] == ("ok", "/usr/bin/chromium, for tests/web/test_browser.py")
    assert checks["playwright"][0] == checks["pytest"][0] == "ok"
