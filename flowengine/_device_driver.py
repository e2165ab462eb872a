"""The driver's device flow (RFC 8628): ask for a user code, then poll until the person decides.

``start_device`` sends the device authorization request (retried like a grant: nothing is
spent by sending it twice) and stores the flow, which holds the device code. ``poll_device``
polls the token endpoint under a store lease (one poller across processes), waiting the
provider's ``interval`` between polls and 5 s more after each ``slow_down`` (§3.5), until
the flow is final: granted, denied, expired (``expired_token``, or the code's lifetime ran
out while polls were pending) or failed. Waiting goes through the engine's clock, so a
test with a ``FakeClock`` runs a ten-minute wait at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from flowengine._arguments import refuse_bad_text, scope_items
from flowengine._bounded import carried
from flowengine._clock import Clock
from flowengine._core import FlowCore
from flowengine._core_device import SLOW_DOWN
from flowengine._entropy import flow_secrets
from flowengine._errors import (
    ConfigError,
    ErrorCode,
    FlowStateError,
    StoreError,
    TransportError,
)
from flowengine._http import HttpRequest, HttpResponse
from flowengine._oidc_driver import new_assertion_id
from flowengine._records import Flow
from flowengine._reporting import RequestTimer
from flowengine._saving import store_call
from flowengine._steps import Answer, BeginDevice, Expire, SendFailed, SendRequest, Step
from flowengine._store import Lease, Store

__all__ = ["DeviceOperations"]

log = logging.getLogger("flowengine")
_T = TypeVar("_T")


class DeviceOperations:
    """``start_device`` and ``poll_device`` for ``AsyncEngine`` (which provides the attributes below)."""

    core: FlowCore
    store: Store
    clock: Clock
    lease_ttl: float

    if TYPE_CHECKING:

        async def core_for(self, connection: Mapping[str, str] | None) -> FlowCore: ...

        async def send_attempts(
            self,
            build: Callable[[], tuple[HttpRequest, tuple[str, ...]]],
            what: str,
            read: Callable[[HttpResponse, tuple[str, ...]], _T],
        ) -> _T: ...

        async def send_once(self, request: HttpRequest) -> HttpResponse: ...

        async def single_flight(self, key: str, work: Callable[[], Awaitable[_T]]) -> _T: ...

        async def settle(self, core: FlowCore, flow: Flow, step: Step) -> Step: ...

        async def release(self, lease: Lease) -> None: ...

        async def _apply(self, step: Step, *, answered: bool = False) -> bool: ...

        async def _apply_or_conflict(self, step: Step, *, answered: bool = False) -> SendRequest | None: ...

        async def _reload(self, flow_id: str) -> Flow: ...

        def time_request(
            self, purpose: str, request: HttpRequest, attempt: int, **ids: str
        ) -> RequestTimer: ...

    async def start_device(
        self,
        *,
        scope: str | Sequence[str] | None = None,
        subject: str | None = None,
        connection: Mapping[str, str] | None = None,
    ) -> Flow:
        """Begin a device flow (RFC 8628): the flow carries ``device.user_code`` and the URIs to show.

        The person opens ``flow.device.verification_uri`` on any device and types the user
        code (or opens ``verification_uri_complete``); ``poll_device`` then waits for their
        decision. ``ConfigError`` ``device_unsupported`` for a spec without ``device:``.
        """
        self.core.device_rules()
        if scope is not None and not isinstance(scope, str):
            scope = self.core.spec.scope_separator.join(scope_items(scope))
        refuse_bad_text(scope=scope, subject=subject)
        values = self.core.connection(connection)
        core = await self.core_for(values)
        scope = scope or core.default_scope()
        authorization, lifetime = await self.send_attempts(
            lambda: core.device_request(scope, values, now=self.clock(), assertion_id=new_assertion_id()),
            "device_authorization",
            lambda r, sent: core.read_device_answer(r, now=self.clock(), sent=sent),
        )
        begin = BeginDevice(
            flow_secrets(pkce=False), authorization, lifetime, scope=scope, subject=subject, connection=values
        )
        step = core.step(None, begin, self.clock())
        await self._apply(step)
        log.debug("device flow %s started (%s)", step.flow.id, self.core.spec.name)
        return step.flow

    # The timeout is on the engine's clock (a FakeClock in tests), not the event loop's: no asyncio.timeout.
    async def poll_device(self, flow: Flow | str, *, timeout: float | None = None) -> Flow:  # noqa: ASYNC109
        """Poll for a device flow's token until the flow is final (or ``timeout`` seconds pass).

        Returns the flow: ``granted`` (its token stored), ``denied``, ``expired`` or ``failed``,
        or still ``requested`` when ``timeout`` ran out first. Concurrent callers share one
        poller; across processes a store lease picks it, and the others wait for its outcome.
        """
        if not isinstance(flow, str | Flow):
            raise ConfigError(f"poll_device() takes a Flow or its id, not {type(flow).__name__}")
        flow_id = flow if isinstance(flow, str) else flow.id
        if not carried(flow_id):
            raise FlowStateError(f"no flow {flow_id!r}", code=ErrorCode.FLOW_UNKNOWN, flow_id=flow_id)
        return await self.single_flight(f"poll:{flow_id}", lambda: self._poll_under_lease(flow_id, timeout))

    async def _poll_under_lease(self, flow_id: str, timeout: float | None) -> Flow:  # noqa: ASYNC109
        give_up = None if timeout is None else self.clock() + timeout
        while True:
            lease = await store_call(self.store.acquire(f"poll:{flow_id}", self.lease_ttl))
            if lease is not None:
                break
            flow = await self._reload(flow_id)  # another worker polls: wait for its outcome
            if flow.outcome is not None or (give_up is not None and self.clock() >= give_up):
                return flow
            await self.clock.sleep(flow.device.interval if flow.device else 1.0)
        try:
            return await self._poll(flow_id, give_up)
        finally:
            await self.release(lease)

    async def _poll(self, flow_id: str, give_up: float | None) -> Flow:
        flow = await self._reload(flow_id)
        if flow.device is None:
            raise FlowStateError(f"flow {flow_id} is not a device flow", flow_id=flow_id)
        core = await self.core_for(flow.connection)
        machine = core.machine_of(flow)
        interval = float(flow.device.interval)
        while not machine.is_final(flow):
            now = self.clock()
            if now >= flow.expires_at:
                expired = core.step(flow, Expire(), now)
                await self._apply_or_conflict(expired)
                return expired.flow
            wait = min(interval, flow.expires_at - now)
            if give_up is not None and now + wait > give_up:
                return flow  # the caller's own timeout: the flow stays requested
            await self.clock.sleep(wait)
            if self.clock() >= flow.expires_at:
                continue
            flow, interval = await self._poll_once(core, flow, interval)
        return flow

    async def _poll_once(self, core: FlowCore, flow: Flow, interval: float) -> tuple[Flow, float]:
        """One poll: the flow it leads to (saved when it moved) and the interval from now on."""
        request, sent = core.poll_request(flow, now=self.clock(), assertion_id=new_assertion_id())
        timer = self.time_request("device_poll", request, 1, flow_id=flow.id)
        status = None
        try:
            response = await self.send_once(request)
        except TransportError as exc:
            log.info("device poll of %s failed (%s); polling again", flow.id, exc.code)
            step = core.step(flow, SendFailed(exc), self.clock())
        else:
            status = response.status
            step = core.step(flow, Answer(response, sent), self.clock())
        if step.poll == "slow_down":
            interval += SLOW_DOWN
        step = await self.settle(core, flow, step)
        recorded = step.flow.error.code if step.flow.error is not None and step.moved else None
        timer.done(status=status, error=recorded)
        if step.intents and not await self._apply(step, answered=True):
            raise StoreError(
                "the device flow changed while it was polled", code=ErrorCode.STORE_CONFLICT, flow_id=flow.id
            )
        return step.flow, interval
