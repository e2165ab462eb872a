"""``flowengine status`` as people use it: in a real terminal (tmux), in a pipe, and as JSON.

The store holds the mix of tests/support/mix.py (granted, denied, failed, expired and
pending flows, a dead grant), made by a real engine against the sandbox; every number
the command prints is checked against the store's own counts.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import flowengine as fe
import pytest

from tests.cli.conftest import run
from tests.conftest import SandboxFixture
from tests.support.mix import Mix, clock_an_hour_back, make_mix
from tests.support.terminal import Terminal, flowengine_command, needs_tmux

# Slow lane: processes, a sandbox and (for one test) a real terminal.
pytestmark = pytest.mark.slow


class SandboxProvider:
    def __init__(self, sandbox: SandboxFixture) -> None:
        self.sandbox = sandbox

    async def consent(self, url: str | None, *, approve: bool = True) -> str:
        return await self.sandbox.consent(url, approve=approve)

    def forget_grants(self) -> None:
        self.sandbox.server.state.reset()


@pytest.fixture
async def mixed_store(sandbox: SandboxFixture, podio_spec: fe.FlowSpec, tmp_path: Path) -> tuple[str, Mix]:
    """A SQLite file holding the mix; its URL."""
    url = f"sqlite://{tmp_path}/status.db"
    clock = clock_an_hour_back()
    async with fe.AsyncEngine(
        podio_spec, client=sandbox.client, endpoints=sandbox.endpoints, store=url, clock=clock
    ) as engine:
        mix = await make_mix(engine, SandboxProvider(sandbox), clock)
    return url, mix


async def store_numbers(url: str) -> tuple[fe.FlowCounts, fe.TokenCounts, fe.Token]:
    store = fe.open_store(url)
    try:
        now = time.time()
        flows = await store.flow_counts(since=now - 86400, spec="podio")
        tokens = await store.token_counts(now=now, within=7200, provider="podio")
        dead = await store.get_token("podio:user:1001")
    finally:
        await store.aclose()
    assert dead is not None
    return flows, tokens, dead


def edge_counts(flows: fe.FlowCounts) -> dict[tuple[str, str, str], int]:
    taken: dict[tuple[str, str, str], int] = {}
    for step in flows.steps:
        taken[step.source, step.event, step.dest] = (
            taken.get((step.source, step.event, step.dest), 0) + step.count
        )
    return taken


def check_the_numbers(text: str, mix: Mix, flows: fe.FlowCounts, dead: fe.Token, *, arrow: str) -> None:
    """What both the pipe and the terminal print, against the store."""
    taken = edge_counts(flows)
    assert f"{mix.started} started" in text and taken["", "start", "redirected"] == mix.started
    ended = f"{mix.granted} granted, {mix.denied} denied, {mix.failed} failed in the last 24h"
    assert f"{ended}; {mix.pending} pending now" in text
    # Every edge the store counted is a row of the tree with that count at its end.
    for (source, event, dest), count in taken.items():
        if source:
            edge = re.compile(rf"{re.escape(event + arrow)}(?:\S+ )?{re.escape(dest)}\b.*?(\d+)\s*$", re.M)
            assert count in [int(n) for n in edge.findall(text)], (event, dest, text)
    for code, count in mix.failure_codes:
        assert re.search(rf"^\s*{code}\s+{count}\s*$", text, re.M), code
    assert "1 dead" in text and "? unsaved" in text
    dead_row = next(line for line in text.splitlines() if "podio:user:1001" in line)
    assert dead_row.split()[0] == "dead" and "user:1001" in dead_row and "ago" in dead_row
    assert dead.access_token not in text and (dead.refresh_token or "-") not in text


async def test_in_a_pipe_plain_aligned_text_with_the_stores_numbers(mixed_store: tuple[str, Mix]) -> None:
    url, mix = mixed_store
    flows, _tokens, dead = await store_numbers(url)
    done = run("status", "--store", url)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    check_the_numbers(text, mix, flows, dead, arrow="-> ")
    assert text.isascii() and "\x1b" not in text  # no colours, no box drawing in a pipe
    lines = text.splitlines()
    assert all(line == line.rstrip() for line in lines)
    # The machine's columns line up: every row's counts end where the header's do.
    header = next(i for i, line in enumerate(lines) if line.startswith("MACHINE"))
    end = len(lines[header])
    rows = lines[header + 1 : next(i for i in range(header, len(lines)) if "started and" in lines[i])]
    assert rows and all(len(row) == end for row in rows), rows
    assert lines[header + 1].startswith("* redirected") and "1 " in lines[header + 1]


async def test_json_for_scripts(mixed_store: tuple[str, Mix]) -> None:
    url, mix = mixed_store
    flows, tokens, dead = await store_numbers(url)
    done = run("status", "--store", url, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    [spec] = data["specs"]
    assert spec["started"] == mix.started
    assert spec["outcomes"] == {"granted": mix.granted, "denied": mix.denied, "failed": mix.failed}
    pending = {s["name"]: s["pending"] for s in spec["states"] if s["pending"] is not None}
    assert pending == {"redirected": 1, "authorized": 0, "exchanging": 0}
    assert {
        (e["source"], e["event"], e["dest"]): e["count"] for e in spec["edges"] if e["count"]
    } == edge_counts(flows)
    assert [(f["code"], f["count"]) for f in spec["failures"]] == list(mix.failure_codes)
    assert spec["tokens"]["counts"] == {
        "fresh": 0, "expiring": 0, "refreshable": 0, "expired": 0, "dead": 1, "unsaved": None,
    }  # fmt: skip
    assert {c.health.value: c.count for c in tokens.counts} == {"dead": 1}
    [row] = spec["tokens"]["shown"]
    assert (row["key"], row["health"], row["fingerprint"]) == (dead.key, "dead", dead.fingerprint)
    assert row["dead_at"] is not None and dead.access_token not in done.stdout


def test_a_window_over_a_week_is_refused(tmp_path: Path) -> None:
    done = run("status", "--store", f"sqlite://{tmp_path}/none.db", "--window", "8d")
    assert done.returncode == 2
    assert "Error: status_window_invalid:" in done.stderr and "7 days" in done.stderr


def test_an_empty_store_says_so(tmp_path: Path) -> None:
    done = run("status", "--store", f"sqlite://{tmp_path}/none.db")
    assert done.returncode == 0, done.stderr
    assert "No flows or tokens in this store yet." in done.stdout
    assert not (tmp_path / "none.db").exists()  # reading creates nothing


@needs_tmux
async def test_in_a_real_terminal_rich_and_never_cut(
    mixed_store: tuple[str, Mix], terminal: list[Terminal], tmp_path: Path
) -> None:
    url, mix = mixed_store
    flows, _tokens, dead = await store_numbers(url)
    # A narrow terminal: lines longer than it wrap (capture-pane -J joins them back); none is cut.
    term = Terminal(flowengine_command("status", "--store", url), {"TERM": "xterm-256color"}, width=60)
    terminal.append(term)
    term.wait_for(r"exit=\d+")
    screen = term.screen()
    assert "exit=0" in screen
    check_the_numbers(screen, mix, flows, dead, arrow="─▶ ")
    assert "● redirected" in screen and "■ exchanged (granted)" in screen  # drawn, not ASCII
    styled = term.tmux("capture-pane", "-p", "-e", "-J")
    assert "\x1b[" in styled  # rich coloured it
    (tmp_path / "terminal.txt").write_text(screen)
    print(f"terminal capture: {tmp_path / 'terminal.txt'}")
