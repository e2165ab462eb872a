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

from typing import TYPE_CHECKING

from flowengine import hookimpl, lazy_exports

if TYPE_CHECKING:
    import click

    from ._collector import BATCH_GC_THRESHOLD, tune_collector
    from ._inputs import read_exchange_file, read_grant_file
    from ._jobs import ExchangeItem, GrantItem
    from ._journal import Journal, JournalBusy, default_state_dir
    from ._limits import PODIO_LIMIT, RateLimit, RateLimiter
    from ._results import DONE_OUTCOMES, OK_OUTCOMES, ItemResult, ItemStatus, Report
    from ._runner import Batch, BatchRun
    from ._transport import BatchStopped, LimitedTransport, RateLimitDeferred


__all__ = [
    "BATCH_GC_THRESHOLD",
    "DONE_OUTCOMES",
    "OK_OUTCOMES",
    "PODIO_LIMIT",
    "Batch",
    "BatchRun",
    "BatchStopped",
    "ExchangeItem",
    "GrantItem",
    "ItemResult",
    "ItemStatus",
    "Journal",
    "JournalBusy",
    "LimitedTransport",
    "RateLimit",
    "RateLimitDeferred",
    "RateLimiter",
    "Report",
    "default_state_dir",
    "flowengine_commands",
    "read_exchange_file",
    "read_grant_file",
    "tune_collector",
]


# Public names load on first use, not with the plugin (flowengine._plugins.lazy_exports).
__getattr__ = lazy_exports(
    __name__,
    {
        "BATCH_GC_THRESHOLD": "._collector",
        "tune_collector": "._collector",
        "read_exchange_file": "._inputs",
        "read_grant_file": "._inputs",
        "ExchangeItem": "._jobs",
        "GrantItem": "._jobs",
        "Journal": "._journal",
        "JournalBusy": "._journal",
        "default_state_dir": "._journal",
        "PODIO_LIMIT": "._limits",
        "RateLimit": "._limits",
        "RateLimiter": "._limits",
        "DONE_OUTCOMES": "._results",
        "OK_OUTCOMES": "._results",
        "ItemResult": "._results",
        "ItemStatus": "._results",
        "Report": "._results",
        "Batch": "._runner",
        "BatchRun": "._runner",
        "BatchStopped": "._transport",
        "LimitedTransport": "._transport",
        "RateLimitDeferred": "._transport",
    },
)


@hookimpl
def flowengine_commands(cli: click.Group) -> None:
    """Add ``flowengine batch refresh|exchange|grant``."""
    from ._cli import batch

    cli.add_command(batch)
