"""``flowengine status``: per spec, the machine with live counts, the failures, every token's health.

It reads through the Store API only (``read_status``: the counts a store keeps,
never every record), so it works on every store. Tokens a worker holds unsaved
live in that worker's memory: this process cannot see them, and says so.
"""

from __future__ import annotations

import json
import time

import click
from flowengine import FlowSpec, read_status
from flowengine.cli import opened_store, parse_duration, run_command, spec_argument, store_option

from .status_text import print_status

__all__ = ["status"]


def _find(name: str) -> FlowSpec | None:
    """The spec named ``name`` where ``load_spec`` finds it (None when it is nowhere here)."""
    return spec_argument(name)


@click.command()
@store_option
@click.option("--spec", "spec_ref", metavar="SPEC", help="Only this spec (a name or a YAML file).")
@click.option(
    "--window",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="Count outcomes, edges and failures over this (whole hours, at most 7d).",
)
@click.option(
    "--refresh-window",
    default="2h",
    show_default=True,
    metavar="DURATION",
    help="Tokens expiring within this are 'expiring' (match your keep_fresh window).",
)
@click.option(
    "--tokens",
    "shown",
    default=10,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="Tokens needing attention listed per spec.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(
    store: str | None, spec_ref: str | None, window: str, refresh_window: str, shown: int, as_json: bool
) -> None:
    """Show each spec's machine with the flows in each state, failures, and tokens by health.

    NOW is the flows waiting in a state; LAST is the flows that took an edge in
    the window (the first row: flows started). Tokens are fresh, expiring (within
    --refresh-window), expired but refreshable, expired, or dead (the grant is lost:
    the account must log in again); dead, expired and expiring ones are listed.

    \b
    Examples:
      flowengine status
      flowengine status --spec podio --window 1h
      flowengine status --json | jq '.specs[].tokens.counts'
    """
    window_s, refresh_s = parse_duration(window), parse_duration(refresh_window)

    async def work() -> None:
        only = None
        specs: list[FlowSpec] = []
        if spec_ref is not None:
            spec = spec_argument(spec_ref)
            only, specs = {spec.name}, [spec]
        async with opened_store(store, reading=True) as backend:
            found = await read_status(
                backend,
                now=time.time(),
                window=window_s,
                refresh_window=refresh_s,
                specs=specs,
                only=only,
                find_spec=_find,
                unsaved=None,  # held by other processes: not knowable from here
                shown=shown,
            )
        if as_json:
            click.echo(json.dumps(found.as_json(), indent=2))
        else:
            print_status(found)

    run_command(work)
