"""``Batch`` runs many refreshes, exchanges or grants; ``BatchRun`` is an async iterator of results.

Concurrency is a fixed pool of workers pulling items from the plan, so 10,000
items cost ``concurrency`` tasks, not 10,000. Before an item calls the engine,
its worker takes the item's first rate-limit permit: the wait happens outside
the engine, holding no store lease and with no flow marked as exchanging.

Stopping has two steps, as a person at a terminal expects. ``stop()`` starts no
new item and lets requests already on the wire finish; nothing new is sent, so
an item caught between two requests ends ``interrupted`` (a rerun takes it up)
and an exchange keeps its flow ``authorized``. ``stop(now=True)`` cancels what
is in flight; those items end ``interrupted`` too. Either way every settled
outcome is already in the state file.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
import pluggy
from flowengine import (
    AsyncEngine,
    Client,
    ConfigError,
    FlowError,
    FlowSpec,
    RetryPolicy,
    Store,
    Transport,
    TransportConfig,
    load_spec,
    open_transport,
)

from ._jobs import ExchangeItem, GrantItem, Job, Work, exchange_job, grant_job, refresh_job
from ._journal import Journal
from ._limits import PODIO_LIMIT, RateLimit, RateLimiter, Stopped
from ._results import ItemResult, Report
from ._transport import BatchStopped, ItemScope, LimitedTransport, RateLimitDeferred, current_item

__all__ = ["Batch", "BatchRun"]

log = logging.getLogger("flowengine.batch")

_DEFAULT_RETRY = RetryPolicy()
#: How often one item may be put back because the rate limit deferred it.
MAX_DEFERRALS = 1000


class Batch:
    """Runs jobs over many items with bounded concurrency, within the provider's rate limits.

    ``concurrency`` items run at once. ``account_limit`` is the budget per
    account and API key (Podio: 1,000 calls an hour); ``client_limit`` an
    optional cap per API key over all accounts. ``retry`` is the backoff the
    engines use for refreshes and grants (and the batch for exchanges that sent
    nothing). Build engines with ``batch.engine(...)`` so every request they
    send passes the limiter.
    """

    def __init__(
        self,
        *,
        concurrency: int = 32,
        account_limit: RateLimit | None = PODIO_LIMIT,
        client_limit: RateLimit | None = None,
        retry: RetryPolicy = _DEFAULT_RETRY,
        max_limiter_wait: float = 10.0,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.limiter = RateLimiter(account_limit, client_limit)
        self.retry = retry
        self.max_limiter_wait = max_limiter_wait

    def engine(
        self,
        spec: FlowSpec | str | Path,
        *,
        client: Client,
        store: Store | str = "memory://",
        endpoints: Mapping[str, str] | None = None,
        transport: Transport | None = None,
        transport_config: TransportConfig | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
        **options: Any,
    ) -> AsyncEngine:
        """An AsyncEngine whose requests pass this batch's rate limiter.

        ``transport`` is the one to wrap (default: the plugin's, with a pool as
        large as the concurrency); other options go to ``AsyncEngine``.
        """
        spec = spec if isinstance(spec, FlowSpec) else load_spec(spec)
        config = transport_config or TransportConfig(max_connections=max(100, self.concurrency))
        inner = transport or open_transport(config, plugin_manager)
        limited = LimitedTransport(
            inner,
            self.limiter,
            rate_limit_status=spec.token.rate_limit_status,
            max_wait=self.max_limiter_wait,
        )
        return AsyncEngine(
            spec,
            client=client,
            store=store,
            endpoints=endpoints,
            transport=limited,
            retry=self.retry,
            transport_config=config,
            plugin_manager=plugin_manager,
            **options,
        )

    def _check(self, engines: Sequence[AsyncEngine]) -> None:
        for engine in engines:
            transport = engine.transport
            if not isinstance(transport, LimitedTransport) or transport.limiter is not self.limiter:
                raise ConfigError(
                    f"the {engine.spec.name!r} engine was not made by this batch: build it with "
                    "batch.engine() so that the rate limiter sees every request"
                )

    def refresh(
        self,
        engines: AsyncEngine | Sequence[AsyncEngine],
        *,
        expiring_within: float | None = None,
        keys: Sequence[str] | None = None,
        journal: Journal | None = None,
    ) -> BatchRun:
        """Refresh the engines' stored tokens: all, those expiring within N seconds, or ``keys``.

        Tokens already dead are reported ``skipped`` (``invalid_grant``); a grant
        that dies now is ``dead``; a token refreshed since the plan was made (by
        another run) is ``refreshed`` without a request.
        """
        engines = [engines] if isinstance(engines, AsyncEngine) else list(engines)
        self._check(engines)
        job = refresh_job(engines, expiring_within=expiring_within, keys=keys)
        return BatchRun(self, job, journal)

    def exchange(
        self,
        engine: AsyncEngine,
        items: Sequence[ExchangeItem],
        *,
        journal: Journal | None = None,
        key: str | None = None,
    ) -> BatchRun:
        """Finish flows from recorded callback URLs, or exchange authorized flows by id.

        ``key`` identifies the input for the state file (the CLI passes the
        file's path, size and time); by default the item ids.
        """
        self._check([engine])
        return BatchRun(self, exchange_job(engine, items, retry=self.retry, key=key), journal)

    def grant(
        self,
        engine: AsyncEngine,
        grant: str,
        items: Sequence[GrantItem],
        *,
        journal: Journal | None = None,
        key: str | None = None,
    ) -> BatchRun:
        """Run a non-interactive grant once per item of credentials; each token is stored."""
        self._check([engine])
        if grant not in engine.spec.grants or grant == "authorization_code":
            known = sorted(g for g in engine.spec.grants if g not in ("authorization_code", "refresh_token"))
            raise ConfigError(
                f"spec {engine.spec.name!r} has no non-interactive grant {grant!r} (it has {known})",
                code="grant_unsupported",
            )
        return BatchRun(self, grant_job(engine, grant, items, key=key), journal)


_END = object()


class BatchRun:
    """One run of a job: iterate it (``async for``) for results in the order they settle.

    Results carried over from an interrupted run (via the journal) come first,
    marked ``resumed``. ``report`` is kept up to date; ``stop()`` ends the run
    early. Leaving an ``async with`` block, or ``aclose()``, cancels what is left.
    """

    def __init__(self, batch: Batch, job: Job, journal: Journal | None) -> None:
        self.batch = batch
        self.job = job
        self.journal = journal
        self.report = Report(job.name)
        self._queue: deque[Work] = deque()
        self._results: asyncio.Queue[ItemResult | object] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False
        self._finished = asyncio.Event()

    # --- iteration ------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[ItemResult]:
        return self

    async def __anext__(self) -> ItemResult:
        if not self._started:
            await self._start()
        result = await self._results.get()
        if result is _END:
            self._results.put_nowait(_END)  # iterating again ends at once
            raise StopAsyncIteration
        assert isinstance(result, ItemResult)
        return result

    async def wait(self) -> Report:
        """Run to the end without looking at each result; return the report."""
        async for _ in self:
            pass
        return self.report

    async def __aenter__(self) -> BatchRun:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel whatever still runs and wait until the state file is closed."""
        if self._supervisor is None:
            return
        if not self._finished.is_set():
            self.stop(now=True)
        await self._finished.wait()

    # --- control --------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stopping

    def stop(self, *, now: bool = False) -> None:
        """Start no new item and send nothing new; with ``now``, also cancel what is in flight."""
        self._stopping = True
        self.batch.limiter.wake()
        if now:
            for worker in self._workers:
                worker.cancel()

    # --- running --------------------------------------------------------------------

    async def _start(self) -> None:
        self._started = True
        done = self.journal.open(self.job.key) if self.journal is not None else None
        if done is not None and self.journal is not None:
            plan = self.journal.plan  # a rerun settles the first run's plan, not a new selection
        else:
            plan = await self.job.make_plan()
            if self.journal is not None:
                self.journal.start(self.job.key, plan)
        done = done or {}
        self.report.total = len(plan)
        for entry in plan:
            previous = done.get(str(entry["id"]))
            if previous is not None:
                self._emit(previous, record=False)
            else:
                self._queue.append(self.job.work(entry))
        workers = min(self.batch.concurrency, len(self._queue))
        self._workers = [asyncio.create_task(self._worker()) for _ in range(workers)]
        self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        try:
            await asyncio.gather(*self._workers, return_exceptions=True)
            self.report.finish(stopped=self._stopping)
            if self.journal is not None:
                if self.report.complete:
                    self.journal.finish()
                else:
                    self.journal.close()
        finally:
            self._results.put_nowait(_END)
            self._finished.set()

    async def _worker(self) -> None:
        while self._queue and not self._stopping:
            work = self._queue.popleft()
            try:
                result = await self._run(work, time.monotonic())
            except asyncio.CancelledError:
                self._emit(ItemResult(work.item, "interrupted", error="batch_stopped", message="cancelled"))
                raise
            self._emit(result)

    def _emit(self, result: ItemResult, *, record: bool = True) -> None:
        if record and self.journal is not None and result.done:
            self.journal.record(result)
        self.report.add(result)
        self._results.put_nowait(result)

    async def _run(self, work: Work, started: float) -> ItemResult:
        """Settle one item: take its first permit, run it, put it back when the limiter defers it.

        The result carries the requests the item sent and the seconds it took since ``started``.
        """
        scope = ItemScope(work.client_id, work.account, stopping=lambda: self._stopping)
        for _ in range(MAX_DEFERRALS):
            try:
                scope.permit = await self.batch.limiter.acquire(
                    work.client_id, work.account, stopping=lambda: self._stopping
                )
            except Stopped:
                return self._interrupted(work, scope, started)
            context = current_item.set(scope)
            try:
                result = await work.run()
            except BatchStopped:
                return self._interrupted(work, scope, started)
            except RateLimitDeferred as exc:
                log.info("%s: rate limited for %.0fs; it waits outside the engine", work.item, exc.wait)
                continue
            except FlowError as exc:  # a store that fails, say: this item fails, the run goes on
                result = ItemResult(work.item, "failed", error=exc.code, message=exc.message)
            except Exception as exc:
                log.exception("%s: unexpected error", work.item)
                result = ItemResult(work.item, "failed", error="unexpected_error", message=type(exc).__name__)
            finally:
                current_item.reset(context)
                if scope.permit is not None:  # the item settled without sending its first request
                    scope.permit.finish(sent=False)
                    scope.permit = None
            return attrs.evolve(result, requests=scope.requests, elapsed=time.monotonic() - started)
        return ItemResult(
            work.item,
            "failed",
            error="rate_limited",
            message="deferred too often by the rate limit",
            elapsed=time.monotonic() - started,
        )

    @staticmethod
    def _interrupted(work: Work, scope: ItemScope, started: float) -> ItemResult:
        message = "the batch stopped before this item's next request; a rerun tries it again"
        return ItemResult(
            work.item,
            "interrupted",
            error="batch_stopped",
            message=message,
            requests=scope.requests,
            elapsed=time.monotonic() - started,
        )
