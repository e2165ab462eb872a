"""``flowengine batch exchange`` and ``flowengine batch grant``, through the CLI and the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import flowengine as fe
import pytest

from flowengine_batch import Batch, ExchangeItem
from flowengine_httpx import HttpxTransport
from flowengine_sandbox.faults import Fault, FaultPlan
from tests.batch.conftest import FAST_RETRY, flowengine, register_apps
from tests.conftest import SandboxFixture


async def _callbacks(sandbox: SandboxFixture, store: str) -> tuple[list[str], str, str]:
    """Three approved callback URLs, one denied, and the id of a flow already authorized."""
    async with fe.AsyncEngine(
        "podio", client=sandbox.client, endpoints=sandbox.endpoints, store=store, auto_exchange=False
    ) as engine:
        approved = [await sandbox.consent((await engine.start()).authorization_url) for _ in range(3)]
        denied = await sandbox.consent((await engine.start()).authorization_url, approve=False)
        authorized = await engine.callback(await sandbox.consent((await engine.start()).authorization_url))
    assert authorized.state == "authorized"
    return approved, denied, authorized.id


@pytest.mark.slow
async def test_exchange_finishes_recorded_callbacks_once(
    sandbox: SandboxFixture, store_url: str, tmp_path: Path
) -> None:
    approved, denied, flow_id = await _callbacks(sandbox, store_url)
    lines = [
        json.dumps({"url": approved[0]}),
        json.dumps({"url": approved[1]}),
        "",
        json.dumps({"url": approved[0]}),  # delivered twice: the second sends nothing
        json.dumps({"url": denied}),
        json.dumps({"flow_id": flow_id}),
        "not json",
        json.dumps({"url": approved[2], "flow_id": "both"}),
        json.dumps({"flow_id": "no-such-flow"}),
    ]
    callbacks = tmp_path / "callbacks.jsonl"
    callbacks.write_text("\n".join(lines) + "\n")
    report_path = tmp_path / "report.json"
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    result = flowengine(
        "batch",
        "exchange",
        str(callbacks),
        "--sandbox",
        "--store",
        store_url,
        "--report",
        str(report_path),
        env=env,
    )
    assert result.returncode == 4, result.stderr  # some items need attention
    report = json.loads(report_path.read_text())
    outcomes = {item["item"]: (item["outcome"], item["error"]) for item in report["items"]}
    assert outcomes == {
        "line 1": ("exchanged", None),
        "line 2": ("exchanged", None),
        "line 4": ("exchanged", None),
        "line 5": ("denied", "access_denied"),
        "line 6": ("exchanged", None),
        "line 7": ("failed", "input_invalid"),
        "line 8": ("failed", "input_invalid"),
        "line 9": ("failed", "flow_unknown"),
    }
    codes = [r for r in sandbox.token_requests() if r.grant_type == "authorization_code"]
    assert len(codes) == 3, "one exchange per code, the replayed callback included"
    for secret in (approved[0].split("code=")[1][:12], "sandbox-secret"):
        assert secret not in result.stderr + result.stdout + report_path.read_text()
    assert "exchange: 8 item(s)" in result.stderr


async def test_an_exchange_that_may_have_reached_the_server_is_never_retried(
    sandbox: SandboxFixture, store_url: str
) -> None:
    approved, _, _ = await _callbacks(sandbox, store_url)
    sandbox.settings.faults = FaultPlan([Fault("status", times=1), Fault("reset", times=1)])
    batch = Batch(retry=FAST_RETRY)
    async with batch.engine(
        "podio", client=sandbox.client, store=store_url, endpoints=sandbox.endpoints
    ) as engine:
        items = [ExchangeItem(f"line {n}", url=url) for n, url in enumerate(approved, start=1)]
        report = await batch.exchange(engine, items).wait()
    outcomes = sorted((r.outcome, r.error, r.requests) for r in report.results.values())
    assert outcomes == [
        ("exchanged", None, 1),
        ("failed", "provider_unavailable", 1),
        ("failed", "transport_error", 1),
    ]


class RefusingOnce:
    """A transport whose first connection is refused: nothing reaches the server."""

    def __init__(self) -> None:
        self.real = HttpxTransport()
        self.refused = 0

    async def send(self, request: fe.HttpRequest) -> fe.HttpResponse:
        if not self.refused:
            self.refused += 1
            raise fe.TransportError("connection refused", sent=False)
        return await self.real.send(request)

    async def aclose(self) -> None:
        await self.real.aclose()


async def test_an_exchange_that_sent_nothing_is_tried_again(sandbox: SandboxFixture, store_url: str) -> None:
    approved, _, _ = await _callbacks(sandbox, store_url)
    batch = Batch(retry=FAST_RETRY)
    engine = batch.engine(
        "podio", client=sandbox.client, store=store_url, endpoints=sandbox.endpoints, transport=RefusingOnce()
    )
    async with engine:
        report = await batch.exchange(engine, [ExchangeItem("line 1", url=approved[0])]).wait()
    [result] = report.results.values()
    assert (result.outcome, result.requests) == ("exchanged", 2)


@pytest.mark.slow
async def test_grant_runs_the_app_grant_for_every_row(
    sandbox: SandboxFixture, store_url: str, tmp_path: Path
) -> None:
    items = register_apps(sandbox, 5)
    rows = ["app_id,app_token"] + [f"{i.inputs['app_id']},{i.inputs['app_token']}" for i in items]
    rows += ["3001,wrong-token", "3002,"]
    apps_csv = tmp_path / "apps.csv"
    apps_csv.write_text("\n".join(rows) + "\n")
    report_path = tmp_path / "granted.json"
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    result = flowengine(
        "batch", "grant", "podio-app", str(apps_csv), "--sandbox", "--store", store_url,
        "--report", str(report_path), "--concurrency", "3", env=env,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    report = json.loads(report_path.read_text())
    assert report["counts"] == {"granted": 5, "failed": 2}
    by_row = {item["item"]: item for item in report["items"]}
    assert by_row["row 1"]["token_key"] == "podio-app:app:3000"
    assert (by_row["row 6"]["error"], by_row["row 7"]["error"]) == ("invalid_grant", "input_invalid")
    assert "wrong-token" not in report_path.read_text() + result.stderr
    listed = flowengine("tokens", "list", "--store", store_url, "--json")
    assert {t["key"] for t in json.loads(listed.stdout)} == {f"podio-app:app:{3000 + n}" for n in range(5)}


@pytest.mark.slow  # the command in a subprocess
def test_grant_refuses_a_header_that_names_no_input(
    sandbox: SandboxFixture, store_url: str, tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text("username,pasword\nuser@example.com,sandbox-password\n")
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    result = flowengine(
        "batch", "grant", "podio-password", str(people), "--sandbox", "--store", store_url, env=env
    )
    assert result.returncode == 2
    assert "pasword" in result.stderr and "sandbox-password" not in result.stderr


@pytest.mark.slow  # the command in a subprocess
def test_password_grant_for_a_service_account(
    sandbox: SandboxFixture, store_url: str, tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text("username,password\nuser@example.com,sandbox-password\n")
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    result = flowengine(
        "batch",
        "grant",
        "podio-password",
        str(people),
        "--sandbox",
        "--store",
        store_url,
        "--report",
        "-",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["items"][0]["token_key"] == "podio-password:user:1001"


@pytest.mark.slow  # the command in a subprocess
@pytest.mark.parametrize("job", [["refresh", "--all"], ["exchange", "FILE"]])
def test_sandbox_refresh_and_exchange_need_a_running_sandbox(job: list[str], tmp_path: Path) -> None:
    args = [str(tmp_path / "in.jsonl") if a == "FILE" else a for a in job]
    (tmp_path / "in.jsonl").write_text("")
    result = flowengine("batch", *args, "--sandbox", "--store", f"sqlite:///{tmp_path / 's.db'}")
    assert result.returncode == 2
    assert "FLOWENGINE_SANDBOX_URL" in result.stderr


@pytest.mark.slow
def test_refresh_needs_a_selection_and_a_valid_rate(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 's.db'}"
    assert flowengine("batch", "refresh", "--store", store).returncode == 2
    bad = flowengine("batch", "refresh", "--all", "--rate-limit", "lots", "--store", store)
    assert bad.returncode == 2 and "1000/1h" in bad.stderr


@pytest.mark.slow  # the command in a subprocess
def test_an_empty_store_is_nothing_to_do(tmp_path: Path) -> None:
    result = flowengine(
        "batch", "refresh", "--all", "--store", f"sqlite:///{tmp_path / 's.db'}", "--report", "-"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {}


@pytest.mark.slow
def test_progress_bar_and_lines(sandbox: SandboxFixture, store_url: str, tmp_path: Path) -> None:
    register_apps(sandbox, 2)
    apps_csv = tmp_path / "apps.csv"
    apps_csv.write_text("app_id,app_token\n3000,app-token-3000\n3001,app-token-3001\n")
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    common = ("batch", "grant", "podio-app", str(apps_csv), "--sandbox", "--store", store_url, "--fresh")
    bar = flowengine(*common, "--progress", "bar", env=env)
    assert bar.returncode == 0, bar.stderr
    assert "2/2" in bar.stderr and "granted 2" in bar.stderr
    lines = flowengine(*common, "--progress", "lines", env=env)
    assert sorted(lines.stderr.splitlines()[:2]) == ["granted row 1", "granted row 2"]


@pytest.mark.slow
def test_grant_rows_name_their_tenant_in_connection_columns(
    sandbox: SandboxFixture, store_url: str, tmp_path: Path
) -> None:
    spec = tmp_path / "tenanted.yaml"
    spec.write_text(
        "name: tenanted\n"
        "connection: {site: {pattern: '[a-z]+', description: the tenant}}\n"
        "endpoints: {token: 'https://{site}.tenanted.example/oauth/token'}\n"
        "grants:\n"
        "  client_credentials:\n"
        "    client_auth: basic\n"
        "    params: {grant_type: client_credentials, scope: '{scope}'}\n"
    )
    rows = tmp_path / "sites.csv"
    rows.write_text("site\nacme\nbeta\nEVIL.example/\n")
    env = {"FLOWENGINE_SANDBOX_URL": sandbox.server.url}
    report_path = tmp_path / "granted.json"
    result = flowengine(
        "batch", "grant", str(spec), str(rows), "--sandbox", "--store", store_url,
        "--report", str(report_path), env=env,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    by_row = {item["item"]: item for item in json.loads(report_path.read_text())["items"]}
    assert by_row["row 1"]["token_key"].startswith("tenanted@acme:")
    assert by_row["row 2"]["token_key"].startswith("tenanted@beta:")
    assert by_row["row 3"]["error"] == "connection_invalid"
    paths = [r.path for r in sandbox.token_requests()]
    assert [p.split("/")[4] for p in paths] == ["acme.tenanted.example", "beta.tenanted.example"]
