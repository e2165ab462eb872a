"""A flow's outcome read back from a store is what its machine gives its state (review finding 4).

Flows stored by 0.1.0 carry no ``outcome``: they read with their state's. A stored
outcome the machine disagrees with is a damaged record (``store_corrupt``).
"""

from __future__ import annotations

from pathlib import Path

import flowengine as fe
import pytest

from tests.conftest import SandboxFixture
from tests.support.old_records import as_0_1_0, rewrite_flows


def _engine(sandbox: SandboxFixture, spec: fe.FlowSpec, url: str) -> fe.AsyncEngine:
    return fe.AsyncEngine(spec, client=sandbox.client, endpoints=sandbox.endpoints, store=url)


async def _three_flows(sandbox: SandboxFixture, spec: fe.FlowSpec, url: str) -> tuple[list[fe.Flow], str]:
    """A granted, a denied and a waiting flow in the store at ``url``; and the denied one's callback."""
    async with _engine(sandbox, spec, url) as eng:
        granted = await eng.callback(await sandbox.consent((await eng.start()).authorization_url))
        refusal = await sandbox.consent((await eng.start()).authorization_url, approve=False)
        denied = await eng.callback(refusal)
        waiting = await eng.start()
    assert [f.outcome for f in (granted, denied, waiting)] == ["granted", "denied", None]
    return [granted, denied, waiting], refusal


async def test_flows_stored_without_an_outcome_read_with_the_one_their_state_means(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, tmp_path: Path
) -> None:
    url = f"sqlite://{tmp_path}/fe.db"
    flows, refusal = await _three_flows(sandbox, podio_spec, url)
    assert rewrite_flows(tmp_path / "fe.db", as_0_1_0) == 3
    sent = len(sandbox.token_requests())

    async with _engine(sandbox, podio_spec, url) as eng:
        read = [await eng.get(f.id) for f in flows]
        listed = {f.id: f.outcome for f in await eng.flows()}
        exchanged_again = await eng.exchange(flows[0].id)
        replayed = await eng.callback(refusal)

    assert [f.outcome if f else "gone" for f in read] == ["granted", "denied", None]
    assert listed == {flows[0].id: "granted", flows[1].id: "denied", flows[2].id: None}
    assert (exchanged_again.state, exchanged_again.outcome) == ("exchanged", "granted")
    assert (replayed.state, replayed.outcome) == ("denied", "denied")
    assert len(sandbox.token_requests()) == sent  # final flows: nothing sent again


async def test_a_stored_outcome_the_machine_disagrees_with_is_store_corrupt(
    sandbox: SandboxFixture, podio_spec: fe.FlowSpec, tmp_path: Path
) -> None:
    url = f"sqlite://{tmp_path}/fe.db"
    flows, refusal = await _three_flows(sandbox, podio_spec, url)

    def forged(data: dict[str, object]) -> None:
        if data["state"] == "denied":
            data["outcome"] = "granted"

    rewrite_flows(tmp_path / "fe.db", forged)
    async with _engine(sandbox, podio_spec, url) as eng:
        with pytest.raises(fe.StoreError) as info:
            await eng.get(flows[1].id)
        with pytest.raises(fe.StoreError) as replay:
            await eng.callback(refusal)
        listed = [f.id for f in await eng.flows()]
    assert info.value.code == replay.value.code == "store_corrupt"
    assert listed == [flows[0].id, flows[2].id]  # left out, as stores leave out unreadable records
