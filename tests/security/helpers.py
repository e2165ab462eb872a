"""What the SECURITY.md checks share: reading URLs, counting what reached the sandbox, spec variants."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import flowengine as fe
import yaml
from flowengine._presets import PRESETS
from flowengine.testing import MockTransport

from tests.conftest import SandboxFixture

TOKEN_PATH = "/oauth/token"
_T = TypeVar("_T")


def query_of(url: str) -> dict[str, str]:
    """The query parameters of a URL (the last value of a repeated one)."""
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def token_attempts(sandbox: SandboxFixture) -> int:
    """Requests that reached the token endpoints: recorded ones, and those a fault answered first.

    A fault injected at the ``before`` stage answers in place of the endpoint, so the
    endpoint's own record does not hold that request; the fault record does.
    """
    answered_by_fault = [
        f for f in sandbox.settings.faults.injected() if f.stage == "before" and f.path.startswith(TOKEN_PATH)
    ]
    return len(sandbox.token_requests()) + len(answered_by_fault)


def assert_nothing_sent(sandbox: SandboxFixture) -> None:
    """The sandbox's own record: no token request reached it (SECURITY.md: every reject case)."""
    assert sandbox.token_requests() == []
    assert token_attempts(sandbox) == 0


def podio_data() -> dict[str, Any]:
    """``specs/podio.yaml`` as a fresh mapping, its preset machine written out, to change and load again."""
    return copy.deepcopy(_podio_data())


@functools.cache
def _podio_data() -> dict[str, Any]:
    """Read and parsed once per run (a few tens of ms each time); callers get a deep copy."""
    with open(fe.load_spec("podio").source, encoding="utf-8") as f:
        data: dict[str, Any] = yaml.safe_load(f)
    machine = PRESETS["authorization_code"]
    data["machine"] = {
        "states": list(machine.states),
        "initial": machine.initial,
        "final": {state: str(outcome) for state, outcome in machine.final.items()},
        "ttl": machine.ttl,
        "transitions": [
            {
                "trigger": t.trigger,
                "source": list(t.source),
                "dest": t.dest,
                "when": list(t.when),
                "do": list(t.do),
            }
            for t in machine.transitions
        ],
    }
    return data


def podio_variant(change: Callable[[dict[str, Any]], None]) -> fe.FlowSpec:
    """Podio's spec with ``change`` applied to its mapping, validated like any spec."""
    data = podio_data()
    change(data)
    return fe.load_spec(data)


def with_pkce(data: dict[str, Any]) -> None:
    """Turn PKCE on in a Podio mapping (the sandbox supports S256)."""
    data["pkce"] = True
    data["authorization"]["params"]["code_challenge"] = "{code_challenge}"
    data["authorization"]["params"]["code_challenge_method"] = "{code_challenge_method}"
    data["grants"]["authorization_code"]["params"]["code_verifier"] = "{code_verifier}"


def token_body(**fields: Any) -> dict[str, Any]:
    """A Podio token response; a field given as ``...`` is left out."""
    body: dict[str, Any] = {
        "access_token": "at-" + "a" * 125,
        "token_type": "bearer",
        "expires_in": 28800,
        "refresh_token": "rt-" + "r" * 61,
        "scope": "global:all",
        "ref": {"type": "user", "id": 1001},
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


def ScriptedTransport(*answers: fe.HttpResponse | fe.FlowError) -> MockTransport:
    """A MockTransport answering each request with the next of ``answers`` (raising errors), then a token."""
    queue = list(answers)

    def answer(_request: fe.HttpRequest) -> fe.HttpResponse:
        reply = queue.pop(0) if queue else json_response(token_body())
        if isinstance(reply, fe.FlowError):
            raise reply
        return reply

    return MockTransport(answer)


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> fe.HttpResponse:
    """A JSON ``HttpResponse``."""
    return fe.HttpResponse(
        status, {"content-type": "application/json", **(headers or {})}, json.dumps(body).encode()
    )
