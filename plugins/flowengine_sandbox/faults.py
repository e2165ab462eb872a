"""Fault injection: the sandbox misbehaves the way real providers and networks do.

A test cannot prove that the engine survives a flaky provider against a sandbox
that always answers well, and faking the failure at the transport seam skips the
very code (the httpx transport, its timeouts and size cap) that must cope with it.
So the sandbox itself fails, over real loopback HTTP, when a test asks it to:

- ``status``: an error status (503 by default) in Podio's JSON envelope;
- ``rate_limit``: HTTP 420 with ``X-Rate-Limit-Limit``/``-Remaining`` and, when
  given, ``Retry-After``;
- ``latency``: the request is served normally, ``delay`` seconds late;
- ``read_timeout``: no answer at all until the client gives up (or ``delay``);
- ``reset``: the response starts, then the connection is closed mid-body;
- ``html``: an HTML page instead of JSON (a proxy's error page, a login page);
- ``endless``: a 200 whose body never ends (bounded here by ``max_bytes``);
- ``content_type``: the real answer under a wrong ``Content-Type``;
- ``respond``: any status, content type and body the test writes;
- ``trickle``: the answer arrives one byte every ``interval`` seconds, its
  ``part`` ``"body"`` (the default) or its ``"headers"`` (status line and
  headers: needs the sandbox server, see ``_trickle.py``), for ``delay``
  seconds at most (30 by default); no single read ever waits long.

Each ``Fault`` applies to requests whose path starts with one of its ``paths``
(the token endpoints by default; ``/_sandbox/`` never), to the next ``times``
of them (every one when None), each with probability ``share`` drawn from the
plan's seeded RNG, so a run with a share is reproducible. ``stage`` says whether
the request reaches the real endpoint first: ``before`` (the default for answers
that replace the endpoint: nothing is processed, no code is spent) or ``after``
(the default for broken deliveries: the endpoint processed the request, spent
the code and recorded it, and its answer is lost).

Set a plan in-process (``settings.faults = FaultPlan([Fault("rate_limit",
times=2)], seed=7)`` or ``settings.faults.add(...)``) or over HTTP with
``POST /_sandbox/faults`` (the same fields as JSON); ``GET /_sandbox/faults``
shows the plan and every fault injected so far, oldest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args

from attrs import asdict, field, frozen, validators

from flowengine_sandbox._trickle import TrickleLog, WireAccess, trickle

if TYPE_CHECKING:  # Starlette is imported only when the sandbox serves (settings.py imports this)
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "STAGES",
    "Fault",
    "FaultInjection",
    "FaultKind",
    "FaultPlan",
    "InjectedFault",
    "Stage",
    "TricklePart",
    "WireAccess",
]

FaultKind = Literal[
    "status",
    "rate_limit",
    "latency",
    "read_timeout",
    "reset",
    "html",
    "endless",
    "content_type",
    "respond",
    "trickle",
]
TricklePart = Literal["headers", "body"]
Stage = Literal["before", "after"]
STAGES: tuple[Stage, ...] = ("before", "after")
_KINDS: tuple[str, ...] = get_args(FaultKind)

#: Where a fault applies unless told otherwise: both token endpoints.
TOKEN_PATHS = ("/oauth/token",)
#: A broken delivery loses an answer the endpoint already gave; the others replace it.
_DEFAULT_STAGE: dict[str, Stage] = {
    "read_timeout": "after",
    "reset": "after",
    "endless": "after",
    "content_type": "after",
    "trickle": "after",
}
_DEFAULT_STATUS = {"status": 503, "rate_limit": 420, "html": 200, "respond": 200, "trickle": 200}
_ERROR_NAMES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    420: "rate_limit",
    429: "rate_limit",
    500: "server_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}
_HTML = "<!doctype html><html><head><title>Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
_CHUNK = b" " * 65536  # whitespace: a JSON document that never gets to its first value


def _status(_instance: Any, attribute: Any, value: object) -> None:
    valid = isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= 599
    if value is not None and not valid:
        raise ValueError(f"{attribute.name} must be an HTTP status from 200 to 599, got {value!r}")


def _seconds(_instance: Any, attribute: Any, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise ValueError(f"{attribute.name} must be a number of seconds from 0 to 3600, got {value!r}")


def _interval(_instance: Any, attribute: Any, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ValueError(f"{attribute.name} must be a number of seconds above 0, at most 3600, got {value!r}")


def _share(_instance: Any, _attribute: Any, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"share must be a probability from 0 to 1, got {value!r}")


def _count(_instance: Any, attribute: Any, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{attribute.name} must be a whole number >= 0, got {value!r}")


def _paths(_instance: Any, _attribute: Any, value: tuple[str, ...]) -> None:
    if not value or not all(isinstance(p, str) and p.startswith("/") for p in value):
        raise ValueError(f"paths must be a non-empty list of paths starting with '/', got {value!r}")
    if any(p.startswith("/_sandbox") for p in value):
        raise ValueError("the /_sandbox/ routes never fail: a test must always be able to reach them")


def _headers(_instance: Any, _attribute: Any, value: Mapping[str, str]) -> None:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("headers must map header names to strings")


@frozen
class Fault:
    """One way to fail, where, how often and at which stage; see the module docstring."""

    kind: FaultKind = field(validator=validators.in_(_KINDS))
    paths: tuple[str, ...] = field(default=TOKEN_PATHS, converter=tuple, validator=_paths)
    times: int | None = field(default=None, validator=_count)
    share: float = field(default=1.0, validator=_share)
    stage: Stage | None = field(default=None, validator=validators.optional(validators.in_(STAGES)))
    status: int | None = field(default=None, validator=_status)
    delay: float = field(default=0.0, validator=_seconds)
    retry_after: int | None = field(default=None, validator=_count)
    content_type: str | None = field(default=None, validator=validators.optional(validators.instance_of(str)))
    body: str | None = field(default=None, validator=validators.optional(validators.instance_of(str)))
    headers: Mapping[str, str] = field(factory=dict, converter=dict, validator=_headers)
    max_bytes: int = field(default=64 << 20, validator=_count)
    part: TricklePart = field(default="body", validator=validators.in_(("headers", "body")))
    interval: float = field(default=1.0, validator=_interval)

    @property
    def effective_stage(self) -> Stage:
        """``stage``, or the kind's default when None."""
        return self.stage or _DEFAULT_STAGE.get(self.kind, "before")

    def applies_to(self, path: str) -> bool:
        """True when this fault is for ``path``."""
        return not path.startswith("/_sandbox/") and any(path.startswith(p) for p in self.paths)

    @classmethod
    def from_json(cls, data: object) -> Fault:
        """A fault from its JSON form (the field names above); ``ValueError`` says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("each fault is a JSON object")
        unknown = sorted(set(data) - {f.name for f in cls.__attrs_attrs__})
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(map(str, unknown))}")
        if "kind" not in data:
            raise ValueError("a fault needs a kind")
        if "paths" in data and not isinstance(data["paths"], list):
            raise ValueError("paths must be a list")
        if "headers" in data and not isinstance(data["headers"], dict):
            raise ValueError("headers must be an object")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            # attrs' `in_` validator puts the message first in a tuple of details.
            first = error.args[0] if error.args else error
            raise ValueError(first if isinstance(first, str) else str(error)) from None

    def to_json(self) -> dict[str, Any]:
        """The JSON form of the fault."""
        data = asdict(self)
        data["paths"] = list(self.paths)
        return data


@frozen
class InjectedFault:
    """A fault the sandbox injected: which kind, at which stage, on which request."""

    kind: FaultKind
    stage: Stage
    method: str
    path: str
    at: float


class FaultPlan:
    """The faults a sandbox injects, consulted on every request; safe across threads.

    The server thread draws from it while a test thread changes it, so every
    access holds one lock. A deep copy (how the test fixtures reset settings)
    is a fresh plan: same faults and seed, full counts, no record.
    """

    def __init__(self, faults: Iterable[Fault] = (), *, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._left: list[int | None] = []
        self._seed = seed
        self._rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
        self._injected: list[InjectedFault] = []
        #: Every trickle fault's outcome (bytes trickled, whether the client hung up).
        self.trickles = TrickleLog()
        self.add(*faults)

    @property
    def seed(self) -> int:
        """The seed of the RNG that decides each ``share``."""
        return self._seed

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults, in the order they are tried."""
        with self._lock:
            return tuple(self._faults)

    def add(self, *faults: Fault) -> None:
        """Append faults; the first one that applies to a request wins."""
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        with self._lock:
            for fault in faults:
                self._faults.append(fault)
                self._left.append(fault.times)

    def clear(self) -> None:
        """Remove every fault and forget what was injected; the RNG starts over."""
        with self._lock:
            self._faults.clear()
            self._left.clear()
            self._injected.clear()
            self.trickles = TrickleLog()
            self._rng = random.Random(self._seed)  # noqa: S311

    def pick(self, method: str, path: str) -> Fault | None:
        """The fault to inject into this request, or None; counts it and records it."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                left = self._left[index]
                if (left is not None and left <= 0) or not fault.applies_to(path):
                    continue
                if fault.share < 1 and self._rng.random() >= fault.share:
                    continue
                if left is not None:
                    self._left[index] = left - 1
                entry = InjectedFault(fault.kind, fault.effective_stage, method, path, time.time())
                self._injected.append(entry)
                return fault
            return None

    def injected(self) -> list[InjectedFault]:
        """Every fault injected so far, oldest first."""
        with self._lock:
            return list(self._injected)

    def to_json(self) -> dict[str, Any]:
        """The plan and its record as JSON data."""
        with self._lock:
            return {
                "seed": self._seed,
                "faults": [
                    {**fault.to_json(), "left": left}
                    for fault, left in zip(self._faults, self._left, strict=True)
                ],
                "injected": [asdict(entry) for entry in self._injected],
                "trickled": [asdict(entry) for entry in self.trickles.records()],
            }

    @classmethod
    def from_json(cls, data: object) -> FaultPlan:
        """A plan from ``{"faults": [...], "seed": N}``; ``ValueError`` says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError('send a JSON object: {"faults": [...], "seed": 0}')
        unknown = sorted(set(data) - {"faults", "seed"})
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(map(str, unknown))}")
        faults, seed = data.get("faults", []), data.get("seed", 0)
        if not isinstance(faults, list):
            raise ValueError("faults must be a list")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError("seed must be an integer")
        return cls([Fault.from_json(item) for item in faults], seed=seed)

    def __deepcopy__(self, _memo: dict[int, object]) -> FaultPlan:
        return FaultPlan(self.faults, seed=self._seed)

    def __repr__(self) -> str:
        return f"FaultPlan({list(self.faults)!r}, seed={self._seed})"


class FaultInjection:
    """ASGI middleware: asks the app's ``sandbox_settings.faults`` about each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        plan: FaultPlan = scope["app"].state.sandbox_settings.faults
        fault = plan.pick(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        await _inject(fault, self.app, scope, receive, send)


async def _inject(fault: Fault, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    answer: list[Message] = []
    if fault.kind == "latency":
        if fault.effective_stage == "before":
            await asyncio.sleep(fault.delay)
            await app(scope, receive, send)
        else:
            answer = await _served(app, scope, receive)
            if await _until_disconnect(receive, fault.delay):
                return  # the client gave up waiting: nobody is left to answer
            for message in answer:
                await send(message)
        return
    if fault.effective_stage == "after":
        answer = await _served(app, scope, receive)
    else:
        await _drain(receive)
    if fault.kind == "content_type":
        await _relabelled(answer, fault.content_type or "text/html; charset=utf-8", send)
    elif fault.kind == "read_timeout":
        await _until_disconnect(receive, fault.delay or 30.0)
    elif fault.kind == "reset":
        await _broken_off(fault, send)
    elif fault.kind == "endless":
        await _endless(fault, receive, send)
    elif fault.kind == "trickle":
        answer = answer or _as_messages(*_answer_of(fault, scope))
        record = await trickle(fault.part, fault.interval, fault.delay or 30.0, answer, scope, receive, send)
        scope["app"].state.sandbox_settings.faults.trickles.add(record)
    else:
        status, headers, body = _answer_of(fault, scope)
        await _respond(send, status, headers, body)


def _answer_of(fault: Fault, scope: Scope) -> tuple[int, dict[str, str], bytes]:
    status = fault.status or _DEFAULT_STATUS[fault.kind]
    headers = {"cache-control": "no-store", **{k.lower(): v for k, v in fault.headers.items()}}
    if fault.retry_after is not None:
        headers["retry-after"] = str(fault.retry_after)
    if fault.kind in ("status", "rate_limit"):
        if fault.kind == "rate_limit":
            headers.setdefault("x-rate-limit-limit", "1000")
            headers.setdefault("x-rate-limit-remaining", "0")
        error = _ERROR_NAMES.get(status, "error")
        headers["content-type"] = "application/json"
        body = json.dumps(_envelope(error, f"Injected fault: HTTP {status}", scope)).encode()
    elif fault.kind == "html":
        headers["content-type"] = fault.content_type or "text/html; charset=utf-8"
        body = (fault.body if fault.body is not None else _HTML).encode()
    else:  # respond, or a trickle at stage "before": the body the test wrote, or an empty object
        headers["content-type"] = fault.content_type if fault.content_type is not None else "application/json"
        body = (fault.body or ("{}" if fault.kind == "trickle" else "")).encode("utf-8", "surrogateescape")
    return status, headers, body


def _as_messages(status: int, headers: Mapping[str, str], body: bytes) -> list[Message]:
    """An answer as the ASGI messages an endpoint would have sent (what a trickle reads)."""
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return [
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": body},
    ]


def _envelope(error: str, description: str, scope: Scope) -> dict[str, object]:
    """Podio's error body, as the real endpoints answer it (``_web.error_response``)."""
    from starlette.requests import Request

    request = Request(scope)
    return {
        "error": error,
        "error_description": description,
        "error_detail": None,
        "error_parameters": {},
        "error_propagate": False,
        "request": {
            "url": str(request.url.replace(query="")),
            "query_string": request.url.query,
            "method": request.method,
        },
    }


async def _respond(send: Send, status: int, headers: Mapping[str, str], body: bytes) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items() if k != "content-length"]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _served(app: ASGIApp, scope: Scope, receive: Receive) -> list[Message]:
    """Run the real endpoint and keep its answer instead of sending it."""
    answer: list[Message] = []

    async def keep(message: Message) -> None:
        answer.append(message)

    await app(scope, receive, keep)
    return answer


async def _drain(receive: Receive) -> None:
    """Read the request body, so the client has sent everything before the fault shows."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _relabelled(answer: list[Message], content_type: str, send: Send) -> None:
    for message in answer:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-type"]
            headers.append((b"content-type", content_type.encode("latin-1")))
            message = {**message, "headers": headers}
        await send(message)


async def _until_disconnect(receive: Receive, limit: float) -> bool:
    """Answer nothing until the client hangs up (True: it timed out) or ``limit`` seconds pass."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            while (await receive())["type"] != "http.disconnect":
                pass
            return True
    return False


async def _broken_off(fault: Fault, send: Send) -> None:
    """Promise a body, send half of it, and stop: the server closes the connection."""
    body = (fault.body or '{"access_token": "' + "x" * 120 + '", "token_type": "bearer"}').encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": fault.status or 200, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})


async def _endless(fault: Fault, receive: Receive, send: Send) -> None:
    """A 200 whose body goes on until the client hangs up, ``max_bytes``, or ``delay`` seconds."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        headers = [(b"content-type", (fault.content_type or "application/json").encode("latin-1"))]
        await send({"type": "http.response.start", "status": fault.status or 200, "headers": headers})
        deadline = time.monotonic() + (fault.delay or 30.0)
        sent = 0
        while not gone.is_set() and sent < fault.max_bytes and time.monotonic() < deadline:
            await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
            sent += len(_CHUNK)
            await asyncio.sleep(0)
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()
