"""What each task does, on a worker's engines: refresh a token, exchange a flow's code, run a grant.

Exactly once comes from the store, not from the broker. A broker delivers a
message at least once (``acks_late``: a worker that dies before it acknowledges
gets its messages handed to another), and a beat may plan the same token twice;
so every task checks, before it spends anything, that its work is still to do:

- a refresh carries the fingerprint the plan saw; a stored token with another
  fingerprint was refreshed since (by this fleet, a batch, a web worker) and
  the task ends ``fresh`` without a request. Two copies running at once meet at
  the engine's store lease (``refresh:<key>``): one sends, the other finds the
  token refreshed under the lease and sends nothing. A copy whose predecessor
  died with the request on the wire finds its ``SendMarker`` and sends nothing
  either (``interrupted``, ``refresh_interrupted``): the answer died with the
  worker, and a second request would be a second refresh, or ``invalid_grant``
  for a provider that rotated the refresh token. The next plan retries the
  token once ``resend_after`` has passed;
- an exchange runs under the engine's lease and the flow's ``exchanging``
  state: a code is never sent twice, a replayed message returns the outcome;
- a grant is at least once: each run makes the provider issue a token, stored
  under the account's key (a redelivered grant replaces the first token with a
  second; the first simply goes unused).

Each task takes its first rate-limit permit before it calls the engine, so it
never waits for the limiter while holding the store lease. Task results are small
dicts (JSON for Celery's result backend, when one is configured).
"""

from __future__ import annotations

import contextlib
import logging
import tomllib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import attrs
from flowengine import ConfigError, FlowError, InvalidGrantError, TransportError
from flowengine.cli import readable_by_others

from ._limiter import TooLong
from ._runtime import FleetRuntime
from ._transport import Deferred, Interrupted, SendMarker, TaskScope, current_task

__all__ = ["Requeue", "TaskResult", "exchange", "grant", "refresh"]

log = logging.getLogger("flowengine.celery")


@attrs.frozen
class TaskResult:
    """How a task ended: ``refreshed``, ``fresh`` (nothing to do), ``exchanged``, ``granted``,
    ``skipped``, ``dead``, ``interrupted``, ``denied`` or ``failed``; an error code; requests sent."""

    item: str
    outcome: str
    error: str | None = None
    requests: int = 0

    def to_json(self) -> dict[str, Any]:
        """The task's result (no secret: names, codes, counts)."""
        return attrs.asdict(self)


#: The task status of each outcome of a flow: the one place the worker reads ``flow.outcome``.
_TASK_STATUS = {"granted": "exchanged", "denied": "denied", "expired": "failed", "failed": "failed"}


class Requeue(Exception):
    """Send the task back to the queue, to run again in ``countdown`` seconds (nothing was sent)."""

    def __init__(self, countdown: float, reason: str, *, counted: bool) -> None:
        super().__init__(reason)
        self.countdown = countdown
        self.reason = reason
        self.counted = counted  # a failure (counts against the task's retries), not a rate-limit wait


def _names(rt: FleetRuntime, kind: str, spec: object, *names: object) -> list[str] | None:
    """The message's arguments as names (spec first), or None when it cannot be acted on.

    A message is input from the broker: a spec this fleet does not serve, or an
    argument that is not a short string, is refused (and logged) without a request.
    """
    values = [spec, *names]
    if not all(isinstance(value, str) and 0 < len(value) <= 512 for value in values):
        log.warning("%s refused: the task's arguments are not names", kind)
        return None
    if not rt.settings.serves(str(spec)):
        log.warning("%s refused: this fleet serves %s, not %r", kind, ", ".join(rt.settings.specs), spec)
        return None
    return [str(value) for value in values]


@contextlib.asynccontextmanager
async def _scoped(
    rt: FleetRuntime, client_id: str, account: str | None, marker: SendMarker | None = None
) -> AsyncIterator[TaskScope]:
    """A task's scope with its first permit taken; at the end an unused permit and the marker go back."""
    try:
        permit = await rt.limiter.acquire(client_id, account, max_wait=rt.settings.max_wait)
    except TooLong as exc:
        raise Requeue(exc.wait, "waiting for the rate limit", counted=False) from None
    scope = TaskScope(client_id, account, permit, marker)
    token = current_task.set(scope)
    try:
        yield scope
    finally:
        current_task.reset(token)
        if scope.permit is not None:
            await scope.permit.finish(sent=False)
        if marker is not None:
            await marker.give_back()


def _requeue_or_fail(item: str, exc: FlowError, requests: int) -> TaskResult:
    """A rate-limit wait or a retryable failure goes back to the queue; anything else is the outcome."""
    if isinstance(exc, Deferred):
        raise Requeue(exc.wait, "waiting for the rate limit", counted=False) from exc
    if exc.retryable:
        raise Requeue(0.0, str(exc.code), counted=True) from exc
    return TaskResult(item, "failed", exc.code, requests)


async def refresh(rt: FleetRuntime, spec: object, token_key: object, fingerprint: object) -> TaskResult:
    """Refresh one token, unless it was refreshed since the plan saw ``fingerprint``."""
    checked = _names(rt, "refresh", spec, token_key, fingerprint)
    if checked is None:
        return TaskResult(str(token_key)[:100], "failed", "input_invalid")
    name, key, seen = checked
    engine = await rt.engine(name)
    token = await engine.get_token(key)
    if token is None:
        return TaskResult(key, "skipped", "token_unknown")
    if token.fingerprint != seen:
        return TaskResult(key, "fresh")  # refreshed since it was planned: nothing to do
    if token.dead:
        return TaskResult(key, "skipped", "invalid_grant")
    if not token.refresh_token:
        return TaskResult(key, "skipped", "no_refresh_token")
    marker = SendMarker(engine.store, f"sent:{key}:{seen}", rt.settings.resend_after)
    async with _scoped(rt, engine.client.client_id, str(token.account), marker) as scope:
        try:
            await engine.refresh(token)
        except InvalidGrantError as exc:
            return TaskResult(key, "dead", exc.code, scope.requests)
        except Interrupted as exc:
            return TaskResult(key, "interrupted", exc.code, scope.requests)
        except FlowError as exc:
            return _requeue_or_fail(key, exc, scope.requests)
    return TaskResult(key, "refreshed" if scope.requests else "fresh", None, scope.requests)


async def exchange(rt: FleetRuntime, spec: object, flow_id: object) -> TaskResult:
    """Exchange the code of an ``authorized`` flow (the engine sends a code at most once)."""
    checked = _names(rt, "exchange", spec, flow_id)
    if checked is None:
        return TaskResult(f"flow {str(flow_id)[:100]}", "failed", "input_invalid")
    name, flow = checked
    item = f"flow {flow}"
    engine = await rt.engine(name)
    async with _scoped(rt, engine.client.client_id, None) as scope:
        try:
            done = await engine.exchange(flow)
        except TransportError as exc:
            if exc.sent:  # the flow failed: its code may be spent, it is never sent again
                return TaskResult(item, "failed", exc.code, scope.requests)
            return _requeue_or_fail(item, exc, scope.requests)  # the flow is still authorized
        except FlowError as exc:
            return TaskResult(item, "failed", exc.code, scope.requests)
    code = done.error.code if done.error is not None else None
    return TaskResult(item, _TASK_STATUS.get(done.outcome or "", "failed"), code, scope.requests)


def grant_inputs(path: str | None, spec: str, name: str) -> Mapping[str, str]:
    """The inputs named ``name`` for ``spec`` in the worker's grants file (TOML, one table per set).

    ``[podio-app.app-2002]`` with ``app_id`` and ``app_token``: the secrets stay
    on the worker, the message names the set.
    """
    if path is None:
        raise ConfigError("no grants file: set FLOWENGINE_CELERY_GRANTS", code="credentials_missing")
    file = Path(path)
    if readable_by_others(file):
        log.warning("%s holds grant inputs and is readable by other users; run: chmod 600 %s", file, file)
    try:
        document = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{file}: cannot be read as TOML ({type(exc).__name__})") from None
    table = document.get(spec, {}).get(name) if isinstance(document.get(spec), dict) else None
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ConfigError(f"{file} has no table [{spec}.{name}] of text values", code="credentials_missing")
    return table


async def grant(rt: FleetRuntime, spec: object, grant_name: object, inputs_name: object) -> TaskResult:
    """Run a grant with the inputs the worker's grants file names ``inputs_name``; store its token."""
    checked = _names(rt, "grant", spec, grant_name, inputs_name)
    if checked is None:
        return TaskResult(f"grant {str(inputs_name)[:100]}", "failed", "input_invalid")
    name, chosen, ref = checked
    item = f"grant {ref}"
    try:
        inputs = grant_inputs(rt.settings.grants_file, name, ref)
    except ConfigError as exc:
        return TaskResult(item, "failed", exc.code)
    engine = await rt.engine(name)
    async with _scoped(rt, engine.client.client_id, None) as scope:
        try:
            await engine.grant(chosen, inputs)
        except FlowError as exc:
            return _requeue_or_fail(item, exc, scope.requests)
    return TaskResult(item, "granted", None, scope.requests)
