"""The batch frontend: thousands of refreshes, exchanges and grants, within the provider's limits.

Python programs drive it with ``Batch`` and iterate a ``BatchRun`` for results::

    batch = Batch(concurrency=32)
    async with batch.engine("podio", client=client, store="sqlite:///tokens.db") as engine:
        async for result in batch.refresh(engine, expiring_within=3600):
            print(result.item, result.outcome, result.error)

The command line gets ``flowengine batch refresh|exchange|grant`` through the
``flowengine_commands`` hook. See docs/batch.md.
"""

from __future__ import annotations

import click
from flowengine import hookimpl

from ._inputs import read_exchange_file, read_grant_file
from ._jobs import ExchangeItem, GrantItem
from ._journal import Journal, JournalBusy, default_state_dir
from ._limits import PODIO_LIMIT, RateLimit, RateLimiter
from ._results import DONE_OUTCOMES, OK_OUTCOMES, ItemResult, Outcome, Report
from ._runner import Batch, BatchRun
from ._transport import BatchStopped, LimitedTransport, RateLimitDeferred

__all__ = [
    "DONE_OUTCOMES",
    "OK_OUTCOMES",
    "PODIO_LIMIT",
    "Batch",
    "BatchRun",
    "BatchStopped",
    "ExchangeItem",
    "GrantItem",
    "ItemResult",
    "Journal",
    "JournalBusy",
    "LimitedTransport",
    "Outcome",
    "RateLimit",
    "RateLimitDeferred",
    "RateLimiter",
    "Report",
    "default_state_dir",
    "flowengine_commands",
    "read_exchange_file",
    "read_grant_file",
]


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``flowengine batch refresh|exchange|grant``."""
    from ._cli import batch

    cli.add_command(batch)
