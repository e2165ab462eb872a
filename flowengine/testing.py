"""Test tools for flowengine's users and its own suite: a handler transport and a fake clock.

``MockTransport`` is the seam as a test tool, as ``httpx.MockTransport`` is:
give it a function from request to response (or to an error it raises) and the
engine's requests go there, with no socket and no server. ``FakeClock`` is time
you move by hand: the engine's deadlines, backoffs and expiry read it, and
``await clock.sleep(s)`` just moves it on, so a test of a 60-second deadline
takes no time and has no timing window.

    from flowengine import AsyncEngine, Client, HttpResponse
    from flowengine.testing import FakeClock, MockTransport, json_response

    def provider(request):
        return json_response({"access_token": "at", "token_type": "bearer", "expires_in": 60})

    engine = AsyncEngine("podio", client=Client("id", "secret", "https://app.example/cb"),
                         transport=MockTransport(provider), clock=FakeClock())
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from flowengine._entropy import use_source
from flowengine._errors import FlowError
from flowengine._http import HttpRequest, HttpResponse

__all__ = ["FakeClock", "Handler", "MockTransport", "json_response", "seeded_randomness"]

#: What a MockTransport calls: a request in; a response out (or awaited), or a FlowError raised.
Handler = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]


class MockTransport:
    """A Transport that hands every request to ``handler``; ``sent`` keeps the requests in order."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sent: list[HttpRequest] = []
        self.closed = False

    async def send(self, request: HttpRequest) -> HttpResponse:
        """The handler's answer to ``request`` (a FlowError it raises propagates as the transport's)."""
        self.sent.append(request)
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if not isinstance(answer, HttpResponse):
            raise TypeError(f"the MockTransport handler returned {type(answer).__name__}, not HttpResponse")
        return answer

    async def aclose(self) -> None:
        """Nothing to release; remembered for tests that check the engine closed it."""
        self.closed = True

    @classmethod
    def script(cls, *answers: HttpResponse | FlowError) -> MockTransport:
        """A transport answering each request with the next of ``answers`` (raising the errors).

        Past the script, each request is answered with the last answer again.
        """
        queue = list(answers)
        if not queue:
            raise ValueError("MockTransport.script needs at least one answer")

        def next_answer(_request: HttpRequest) -> HttpResponse:
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            if isinstance(answer, FlowError):
                raise answer
            return answer

        return cls(next_answer)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> HttpResponse:
    """An ``HttpResponse`` carrying ``body`` as JSON."""
    return HttpResponse(
        status, {"content-type": "application/json", **(headers or {})}, json.dumps(body).encode()
    )


class FakeClock:
    """Time that moves only when told: ``clock()`` reads it, ``advance`` and ``sleep`` move it.

    ``await clock.sleep(s)`` moves time on by ``s`` at once and yields to the event
    loop, so code waiting on a deadline or a backoff runs through it instantly and
    in the same order every time.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``."""
        if seconds < 0:
            raise ValueError("time does not go back")
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Move time on by ``seconds`` (recorded in ``slept``), and let other tasks run."""
        self.slept.append(seconds)
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r})"


@contextlib.contextmanager
def seeded_randomness(seed: int) -> Iterator[None]:
    """While the block runs, every random value an engine draws comes from ``random.Random(seed)``.

    Flow ids, ``state``, PKCE verifiers, nonces and client assertion ids all come from
    the engine's one source of randomness: seeded, two runs of a test start the same
    flows (the same authorization URLs). For tests only: these values are then guessable.
    """
    previous = use_source(random.Random(seed).randbytes)  # noqa: S311 - a test's repeatable values
    try:
        yield
    finally:
        use_source(previous)
