"""The three jobs: what each plans, and how one item of it runs on an engine.

A job makes a *plan* (JSON-ready entries naming each item, no secrets) and
turns a planned entry into ``Work``: the item's rate-limit identity and a
coroutine that settles it through the engine's public API. The engine already
knows what is safe: it retries refreshes and grants, never sends a code twice,
serialises refreshes across workers with store leases and marks dead grants.
The jobs add what a batch needs on top: skip what another run already did,
retry an exchange only when nothing was sent, and name every outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from flowengine import AsyncEngine, Flow, FlowError, Outcome, ProviderError, RetryPolicy, TransportError

from ._results import ItemResult, ItemStatus
from ._transport import BatchStopped, RateLimitDeferred

__all__ = ["ExchangeItem", "GrantItem", "Job", "Work", "exchange_job", "grant_job", "refresh_job"]

log = logging.getLogger("flowengine.batch")


@attrs.frozen
class ExchangeItem:
    """One recorded callback to finish: its ``url`` (with ``session`` if the flow has one), or a ``flow_id``.

    ``id`` names the item in results (``line 3``); ``spec`` optionally says
    which spec the flow belongs to; ``invalid`` says why the input line could
    not be read (the item then fails with ``input_invalid``).
    """

    id: str
    url: str | None = attrs.field(default=None, repr=False)
    flow_id: str | None = None
    session: str | None = attrs.field(default=None, repr=False)
    spec: str | None = None
    invalid: str | None = None


@attrs.frozen
class GrantItem:
    """One set of credentials for a non-interactive grant; ``inputs`` are secret."""

    id: str
    inputs: Mapping[str, str] = attrs.field(repr=False)
    invalid: str | None = None
    #: The spec's connection variables this row gives (the tenant the grant is for).
    connection: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Work:
    """A planned item ready to run: whose budget it spends, and how it runs."""

    item: str
    client_id: str
    account: str | None
    run: Callable[[], Awaitable[ItemResult]]


@attrs.frozen
class Job:
    """A job: its name, the key its state file is checked against, its plan, and its items."""

    name: str
    key: str
    make_plan: Callable[[], Awaitable[list[dict[str, Any]]]]
    work: Callable[[dict[str, Any]], Work]


def _passthrough(exc: BaseException) -> bool:
    """Errors the runner handles itself: the run is stopping, or the limiter deferred the item."""
    return isinstance(exc, BatchStopped | RateLimitDeferred)


def _failed(item: str, exc: FlowError, **extra: Any) -> ItemResult:
    return ItemResult(item, "failed", error=exc.code, message=exc.message, **extra)


def _engine_key(engines: Iterable[AsyncEngine]) -> list[list[str]]:
    return sorted([engine.spec.name, engine.client.client_id] for engine in engines)


# --- refresh --------------------------------------------------------------------------


async def _refresh_plan(
    by_name: Mapping[str, AsyncEngine], keys: Sequence[str] | None, expiring_within: float | None, now: float
) -> list[dict[str, Any]]:
    """One entry per token to refresh: its key, provider, and the fingerprint and account it had."""
    entries: list[dict[str, Any]] = []
    if keys is not None:
        for token_key in dict.fromkeys(keys):
            # provider[@tenant...]:type:id: the provider is what comes before either.
            engine = by_name.get(token_key.partition(":")[0].partition("@")[0])
            token = await engine.get_token(token_key) if engine else None
            entries.append(
                {"id": token_key, "provider": engine.spec.name if engine else None}
                | ({"fp": token.fingerprint, "account": str(token.account)} if token else {})
            )
        return entries
    for name, engine in by_name.items():
        for token in await engine.tokens():
            if expiring_within is None or token.expires_within(expiring_within, now):
                entries.append(
                    {
                        "id": token.key,
                        "provider": name,
                        "fp": token.fingerprint,
                        "account": str(token.account),
                    }
                )
    return sorted(entries, key=lambda entry: entry["id"])


async def _refresh_one(engine: AsyncEngine | None, item: str, planned_fingerprint: str | None) -> ItemResult:
    """Refresh one planned token, unless it is gone, moved on since the plan, dead or not refreshable."""
    if engine is None:
        return ItemResult(item, "skipped", error="token_unknown", message="no engine for this provider")
    token = await engine.get_token(item)
    if token is None:
        return ItemResult(item, "skipped", error="token_unknown", message="the token is not in the store")
    if planned_fingerprint and token.fingerprint != planned_fingerprint:
        message = "refreshed since this run planned it (another run or worker)"
        return ItemResult(item, "refreshed", message=message, token_key=token.key)
    if token.dead:
        message = "the grant was already dead; a new authorization is needed"
        return ItemResult(item, "skipped", error="invalid_grant", message=message, token_key=token.key)
    if not token.refresh_token:
        return ItemResult(item, "skipped", error="no_refresh_token", message="the token has no refresh token")
    try:
        fresh = await engine.refresh(token)
    except ProviderError as exc:
        if exc.code == "invalid_grant":
            return ItemResult(item, "dead", error=exc.code, message=exc.message, token_key=token.key)
        return _failed(item, exc, token_key=token.key)
    except FlowError as exc:
        if _passthrough(exc):
            raise
        return _failed(item, exc, token_key=token.key)
    return ItemResult(item, "refreshed", token_key=fresh.key)


def refresh_job(
    engines: Sequence[AsyncEngine],
    *,
    expiring_within: float | None = None,
    keys: Sequence[str] | None = None,
    clock: Callable[[], float] = time.time,
) -> Job:
    """Refresh every token of the engines' providers (or those expiring within N seconds, or ``keys``).

    The plan records each token's fingerprint; an item whose stored token no
    longer has it was refreshed since (by an overlapping run, another worker,
    or this run before a kill) and is settled without a request.
    """
    by_name = {engine.spec.name: engine for engine in engines}
    key = json.dumps(["refresh", _engine_key(engines), expiring_within, sorted(keys) if keys else None])

    async def make_plan() -> list[dict[str, Any]]:
        return await _refresh_plan(by_name, keys, expiring_within, clock())

    def work(entry: dict[str, Any]) -> Work:
        item = str(entry["id"])
        engine = by_name.get(entry.get("provider") or "")
        client_id = engine.client.client_id if engine else ""
        return Work(
            item, client_id, entry.get("account"), lambda: _refresh_one(engine, item, entry.get("fp"))
        )

    return Job("refresh", key, make_plan, work)


# --- exchange -------------------------------------------------------------------------


#: The item status of each outcome of a flow: the one place batch reads ``flow.outcome``.
_ITEM_STATUS: dict[str, ItemStatus] = {"granted": "exchanged", "denied": "denied", "expired": "failed"}


def _flow_result(item: str, flow: Flow) -> ItemResult:
    if flow.outcome == Outcome.GRANTED:
        return ItemResult(item, "exchanged", token_key=flow.token_key, flow_id=flow.id)
    error = flow.error
    if flow.outcome is None or error is None:
        message = f"the flow stopped in state {flow.state!r}"
        return ItemResult(item, "failed", error="invalid_transition", message=message, flow_id=flow.id)
    said = error.description or error.message
    return ItemResult(
        item, _ITEM_STATUS.get(flow.outcome, "failed"), error=error.code, message=said, flow_id=flow.id
    )


def exchange_job(
    engine: AsyncEngine, items: Sequence[ExchangeItem], *, retry: RetryPolicy, key: str | None = None
) -> Job:
    """Finish flows from recorded callbacks (``url``) or exchange authorized flows (``flow_id``).

    The engine sends a code at most once; this job retries an item only when
    the engine says nothing was sent (the flow stays ``authorized``).
    """
    by_id = {item.id: item for item in items}
    job_key = key or json.dumps(["exchange", _engine_key([engine]), list(by_id)])

    async def make_plan() -> list[dict[str, Any]]:
        return [{"id": item_id} for item_id in by_id]

    async def settle(item: ExchangeItem) -> ItemResult:
        if item.invalid:
            return ItemResult(item.id, "failed", error="input_invalid", message=item.invalid)
        if item.spec and item.spec != engine.spec.name:
            message = f"the item is for spec {item.spec!r}, this run exchanges {engine.spec.name!r}"
            return ItemResult(item.id, "failed", error="wrong_provider", message=message)
        if item.flow_id is not None:
            flow = await engine.get(item.flow_id)
            if flow is None:
                return ItemResult(
                    item.id, "failed", error="flow_unknown", message="no such flow in the store"
                )
            if flow.spec != engine.spec.name:
                message = f"the flow belongs to spec {flow.spec!r}"
                return ItemResult(item.id, "failed", error="wrong_provider", message=message, flow_id=flow.id)
            return _flow_result(item.id, await engine.exchange(item.flow_id))
        assert item.url is not None
        return _flow_result(item.id, await engine.callback(item.url, session=item.session))

    def work(entry: dict[str, Any]) -> Work:
        item_id = str(entry["id"])
        item = by_id.get(item_id) or ExchangeItem(item_id, invalid="the input no longer has this item")

        async def run() -> ItemResult:
            for attempt in range(retry.attempts):
                try:
                    return await settle(item)
                except TransportError as exc:
                    if _passthrough(exc):
                        raise
                    if exc.sent or attempt + 1 >= retry.attempts:
                        return _failed(item.id, exc, flow_id=item.flow_id)
                    # Nothing reached the server: the code is unspent and the flow still authorized.
                    delay = retry.delay(attempt, None)
                    log.info("%s: %s before sending; trying again in %.2fs", item.id, exc.code, delay)
                    await asyncio.sleep(delay)
                except FlowError as exc:
                    return _failed(item.id, exc, flow_id=item.flow_id)
            raise AssertionError("unreachable")  # pragma: no cover

        return Work(item_id, engine.client.client_id, None, run)

    return Job("exchange", job_key, make_plan, work)


# --- grant ----------------------------------------------------------------------------


def grant_job(engine: AsyncEngine, grant: str, items: Sequence[GrantItem], *, key: str | None = None) -> Job:
    """Run ``grant`` (Podio's ``app`` or ``password``) once per item; each token is stored by account."""
    by_id = {item.id: item for item in items}
    job_key = key or json.dumps(["grant", _engine_key([engine]), grant, list(by_id)])

    async def make_plan() -> list[dict[str, Any]]:
        return [{"id": item_id} for item_id in by_id]

    def work(entry: dict[str, Any]) -> Work:
        item_id = str(entry["id"])
        item = by_id.get(item_id) or GrantItem(item_id, {}, invalid="the input no longer has this item")

        async def run() -> ItemResult:
            if item.invalid:
                return ItemResult(item_id, "failed", error="input_invalid", message=item.invalid)
            try:
                token = await engine.grant(grant, item.inputs, connection=item.connection)
            except FlowError as exc:
                if _passthrough(exc):
                    raise
                return _failed(item_id, exc)
            return ItemResult(item_id, "granted", token_key=token.key)

        return Work(item_id, engine.client.client_id, None, run)

    return Job("grant", job_key, make_plan, work)
