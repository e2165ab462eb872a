"""Where the terminal gets the client: flags, FLOWENGINE_<SPEC>_…, config.toml, a prompt."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from flowengine import ConfigError
from flowengine.cli import config_path, load_config, resolve_client

from tests.cli.conftest import AUTHORIZE_URL, Running, local_spec, run
from tests.conftest import SandboxFixture


def _write_config(text: str, mode: int = 0o600) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_the_config_file_is_under_xdg_config_home() -> None:
    assert config_path() == Path(os.environ["XDG_CONFIG_HOME"]) / "flowengine" / "config.toml"


def test_flags_beat_the_environment_which_beats_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    _write_config(
        '[podio]\nclient_id = "from-config"\nclient_secret = "config-secret"\nscope = "user:read"\n'
    )
    settings = resolve_client("podio", prompt=False)
    assert (settings.client.client_id, settings.client.client_secret, settings.scope) == (
        "from-config",
        "config-secret",
        "user:read",
    )
    monkeypatch.setenv("FLOWENGINE_PODIO_CLIENT_ID", "from-env")
    assert resolve_client("podio", prompt=False).client.client_id == "from-env"
    assert resolve_client("podio", client_id="from-flag", prompt=False).client.client_id == "from-flag"
    assert resolve_client("podio", prompt=False).client.client_secret == "config-secret"


def test_missing_credentials_without_a_terminal_name_every_source() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_client("my-provider", prompt=False)
    message = str(caught.value)
    assert "FLOWENGINE_MY_PROVIDER_CLIENT_ID" in message
    assert "FLOWENGINE_MY_PROVIDER_CLIENT_SECRET" in message
    assert str(config_path()) in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[podio]\nclient_secert = "x"\n', "unknown key(s) client_secert"),
        ("[podio\n", "not valid TOML"),
        ("podio = 3\n", "must be a table"),
        ("[podio]\nclient_id = 3\n", "[podio].client_id must be a string"),
    ],
)
def test_a_mistake_in_the_config_is_named(text: str, says: str) -> None:
    path = _write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_config("podio")
    assert str(path) in str(caught.value)
    assert says in str(caught.value)


def test_a_secret_in_a_file_others_can_read_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    _write_config('[podio]\nclient_secret = "s"\n', mode=0o644)
    assert load_config("podio") == {"client_secret": "s"}
    assert "chmod 600" in capsys.readouterr().err
    _write_config('[podio]\nclient_secret = "s"\n', mode=0o600)
    load_config("podio")
    assert capsys.readouterr().err == ""


@pytest.mark.slow
async def test_login_with_credentials_from_the_config_file(
    sandbox: SandboxFixture, env: dict[str, str], running: list[Running], tmp_path: Path
) -> None:
    secret = sandbox.settings.clients["sandbox-client"].client_secret
    _write_config(f'[podio]\nclient_id = "sandbox-client"\nclient_secret = "{secret}"\n')
    login = Running("login", str(local_spec(tmp_path, sandbox.server.url)), "--no-browser", env=env)
    running.append(login)
    url = login.wait_for(AUTHORIZE_URL)[0]
    async with httpx.AsyncClient(trust_env=False) as browser:
        await browser.get(await sandbox.consent(url))
    code, out, err = login.finish()
    assert code == 0, err
    assert "Authorized as user:1001" in out
    assert secret not in out + err


@pytest.mark.slow  # the command in a subprocess
def test_login_without_credentials_names_them_and_suggests_the_sandbox() -> None:
    result = run("login", "podio", "--no-browser")
    assert result.returncode == 2
    assert "FLOWENGINE_PODIO_CLIENT_SECRET" in result.stderr
    assert "--sandbox" in result.stderr
