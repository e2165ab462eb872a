"""``RequestsAuth``: a ``requests`` auth that attaches an engine's token and keeps it fresh.

requests is an optional dependency (the ``auth`` extra): it is imported only when
``flowengine.auth.RequestsAuth`` is first used.
"""

from __future__ import annotations

from typing import Any

try:
    import requests
    from requests.auth import AuthBase
except ModuleNotFoundError as missing:  # pragma: no cover - the dev extra installs it
    raise ModuleNotFoundError(
        "flowengine.auth.RequestsAuth needs requests: pip install 'flowengine[auth]'", name="requests"
    ) from missing

from flowengine import Engine, Token
from flowengine.auth._keeper import DEFAULT_MARGIN, TokenKeeper, refreshes_after, should_retry

__all__ = ["RequestsAuth"]


def _replayable(request: requests.PreparedRequest) -> bool:
    """A body requests holds as bytes or text (``data=b"…"``, a dict, ``json=``, ``files=``).

    A generator or a file object is read as it is sent: not replayed.
    """
    return request.body is None or isinstance(request.body, bytes | str)


class _RetryOnce:
    """The response hook of one request: after a 401, refresh and send it once more."""

    def __init__(self, keeper: TokenKeeper, sent: Token) -> None:
        self._keeper = keeper
        self._sent = sent

    def __call__(self, response: requests.Response, **send_options: Any) -> requests.Response:
        # requests re-sends a redirect with this hook, to another origin too (Authorization
        # stripped): only a 401 to a request that carried our token to our origin is ours.
        request = response.request
        if not refreshes_after(response.status_code, self._sent) or not self._keeper.carried(
            str(request.url), request.headers.get("Authorization"), self._sent
        ):
            return response
        try:
            fresh = self._keeper.after_401_sync(self._sent)
        except BaseException:
            response.close()
            raise
        if not should_retry(self._sent, fresh, replayable=_replayable(request)):
            return response
        retry = request.copy()
        # The adapter runs no hooks, but a redirect after the retry is re-sent by the Session with
        # the retry's hooks (copy() shares their lists): without this one, nothing is retried twice.
        retry.hooks = {**retry.hooks, "response": [h for h in retry.hooks["response"] if h is not self]}
        retry.headers["Authorization"] = fresh.authorization_header()
        _ = response.content  # read the 401 out, so its connection goes back to the pool
        response.close()
        again: requests.Response = response.connection.send(retry, **send_options)
        again.history.append(response)
        again.request = retry
        return again


class RequestsAuth(AuthBase):
    """Sends each request with the token under ``key``, refreshed ahead of expiry and after a 401.

    ``session.auth = RequestsAuth(engine, key=token.key)`` or ``requests.get(url,
    auth=...)``, with the sync ``Engine`` (an ``AsyncEngine`` is a ``ConfigError``:
    requests has no event loop to run it on). The token goes only to the origin of
    the first request this auth authenticates, and only a 401 from that origin to a
    request that carried it is acted upon. See docs/using-tokens.md.
    """

    def __init__(self, engine: Engine, *, key: str, margin: float = DEFAULT_MARGIN) -> None:
        self._keeper = TokenKeeper(engine, key=key, margin=margin)
        self._keeper.sync_engine()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Attach the token and the hook that retries once after a 401."""
        if "Authorization" in request.headers or not self._keeper.serves(str(request.url)):
            return request  # the caller chose its own credentials, or another origin
        sent = self._keeper.current_sync()
        request.headers["Authorization"] = sent.authorization_header()
        request.hooks["response"].append(_RetryOnce(self._keeper, sent))
        return request
