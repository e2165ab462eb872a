"""The driver's OpenID Connect part: discovery, the issuer's keys, and the steps a held token waits for.

The core never fetches: a spec with ``discovery`` gets its endpoints from the issuer's
metadata, fetched here (through the transport hook) and kept in a ``DiscoveryCache`` as
long as its HTTP caching headers allow; each issuer gets its own ``FlowCore`` over the
endpoints it names (the spec's written endpoints, and the engine's re-pointed ones, win).
An ID token's keys come from a ``JwksCache`` (fetched when missing or stale, refetched at
most once per interval for an unknown ``kid``) and are fed back to the core as
``KeysAnswer``; a userinfo request is sent and its answer fed back as ``AccountAnswer``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from flowengine import _templates
from flowengine._client import Client
from flowengine._client_auth import ClientKey, load_client_key
from flowengine._clock import Clock
from flowengine._core import FlowCore
from flowengine._discovery import DiscoveryCache, ProviderMetadata, check_issuer, discovery_request
from flowengine._entropy import new_token
from flowengine._errors import ConfigError, ErrorCode, FlowError, IdTokenError, ProviderError, TransportError
from flowengine._http import HttpRequest, HttpResponse, TransportConfig
from flowengine._jwks import JwksCache, JwsHeader, KeysFound, SigningKey
from flowengine._machine import CompiledFlow
from flowengine._records import Flow, Token, evolve
from flowengine._spec import DISCOVERED_ENDPOINTS, FlowSpec
from flowengine._steps import AccountAnswer, KeysAnswer, ResolveKeys, SendRequest, Step

__all__ = ["OpenIdOperations", "load_key", "new_assertion_id", "used_endpoints"]

log = logging.getLogger("flowengine")
_T = TypeVar("_T")
#: Issuers whose discovered core an engine keeps (a generic spec takes them from its callers).
_MAX_CORES = 256


def new_assertion_id() -> str:
    """A fresh ``jti`` for a signed client assertion (RFC 7523: each is good once), from ``_entropy``."""
    return new_token()


def load_key(client: Client) -> ClientKey | None:
    """The client's private key for ``private_key_jwt``, read once (a file, PEM text or a JWK)."""
    material: Any = client.private_key
    if material is None:
        return None
    if isinstance(material, os.PathLike):
        try:
            with open(material, "rb") as handle:
                material = handle.read(1024 * 1024)
        except OSError as exc:
            raise ConfigError(
                f"cannot read the client's private key file: {exc.strerror}",
                code=ErrorCode.CLIENT_KEY_INVALID,
            ) from None
    return load_client_key(material, kid=client.private_key_id, password=client.private_key_password)


def used_endpoints(spec: FlowSpec) -> frozenset[str]:
    """Every endpoint name the spec's requests use (those discovery must supply when unwritten)."""
    names = {rule.endpoint for rule in spec.grants.values()}
    if spec.authorization is not None:
        names.add(spec.authorization.endpoint)
    for rule in (spec.revocation, spec.device):
        if rule is not None:
            names.add(rule.endpoint)
    if spec.openid is not None:
        names |= {spec.openid.jwks} | ({spec.openid.userinfo} if spec.openid.userinfo else set())
    if spec.token.account is not None and spec.token.account.userinfo is not None:
        names.add(spec.token.account.userinfo)
    return frozenset(names)


def _discovered_templates(metadata: ProviderMetadata) -> dict[str, str]:
    """The endpoints the document names, as endpoint templates (a brace in a URL stays a brace)."""
    out = {}
    for name, field in DISCOVERED_ENDPOINTS.items():
        url = getattr(metadata, field)
        if url is not None:
            out[name] = url.replace("{", "{{").replace("}", "}}")
    return out


class OpenIdOperations:
    """Discovery, keys and held tokens for ``AsyncEngine`` (which provides the attributes below)."""

    spec: FlowSpec
    client: Client
    core: FlowCore
    compiled: CompiledFlow
    clock: Clock
    endpoints: dict[str, str]
    transport_config: TransportConfig
    _pm: pluggy.PluginManager | None

    if TYPE_CHECKING:

        async def send_with_retry(
            self,
            request: HttpRequest,
            what: str,
            sent_secrets: tuple[str, ...],
            read: Callable[[HttpResponse], _T],
        ) -> _T: ...

        async def single_flight(self, key: str, work: Callable[[], Awaitable[_T]]) -> _T: ...

    def _init_openid(self) -> None:
        self.discovery_cache = DiscoveryCache()
        self.jwks_cache = JwksCache()
        self._cores: dict[str, FlowCore] = {}
        #: Discovery runs only when the spec uses an endpoint nobody wrote or re-pointed.
        self._undiscovered = (
            used_endpoints(self.spec) - set(self.endpoints)
            if self.spec.discovery is not None
            else frozenset()
        )

    async def core_for(self, connection: Mapping[str, str] | None) -> FlowCore:
        """The core for a flow with these (checked) connection values: discovered ones for its issuer."""
        if not self._undiscovered:
            return self.core
        assert self.spec.issuer is not None
        issuer = _templates.render(self.spec.issuer, dict(connection or {}))
        if issuer is None:
            raise ConfigError("the spec's issuer needs connection values", code=ErrorCode.CONNECTION_INVALID)
        check_issuer(issuer)
        metadata = await self.discover(issuer)
        # An endpoint the metadata lacks fails only the request that needs it (a provider
        # without a device endpoint still logs people in): ``discovery_endpoint_missing``.
        endpoints = {**_discovered_templates(metadata), **self.endpoints}
        cached = self._cores.get(issuer)
        if cached is not None and cached.endpoints == endpoints and cached.metadata == metadata:
            return cached
        core = FlowCore(
            self.spec,
            self.compiled,
            self.client,
            endpoints,
            user_agent=self.transport_config.user_agent,
            device_compiled=self.core.device_compiled,
            metadata=metadata,
            client_key=self.core.client_key,
        )
        self._cores.pop(issuer, None)
        self._cores[issuer] = core
        while len(self._cores) > _MAX_CORES:
            del self._cores[next(iter(self._cores))]
        return core

    async def discover(self, issuer: str) -> ProviderMetadata:
        """The issuer's checked metadata: cached while fresh, else fetched (once for concurrent callers).

        A fetch that fails while a stale document is held uses the stale one (logged).
        """
        fresh = self.discovery_cache.get(issuer, self.clock())
        if fresh is not None:
            return fresh
        return await self.single_flight(f"discovery:{issuer}", lambda: self._fetch_metadata(issuer))

    async def _fetch_metadata(self, issuer: str) -> ProviderMetadata:
        form = self.spec.discovery or "openid"
        request = discovery_request(issuer, form, self.transport_config.user_agent)
        try:
            return await self.send_with_retry(
                request,
                "discovery",
                (),
                lambda r: self.discovery_cache.accept(r, issuer=issuer, now=self.clock(), form=form),
            )
        except (ProviderError, TransportError) as exc:
            stale = self.discovery_cache.get(issuer, self.clock(), allow_stale=True)
            if stale is None:
                raise
            log.warning("discovery of %s failed (%s): using the document held", issuer, exc.code)
            return stale

    async def issuer_keys(
        self, jwks_uri: str, header: JwsHeader
    ) -> tuple[tuple[SigningKey, ...], FlowError | None]:
        """The issuer's keys for a JWS header, fetched or refetched as the key cache allows; or why not."""
        cache = self.jwks_cache
        for _ in range(2):
            try:
                answer = cache.resolve(
                    jwks_uri, jwks_uri, header, self.clock(), user_agent=self.transport_config.user_agent
                )
            except FlowError as exc:
                return (), exc
            if isinstance(answer, KeysFound):
                return cache.keys(jwks_uri), None
            try:
                response = await self.send_with_retry(answer.request, "jwks", (), lambda r: r)
                cache.accept(jwks_uri, jwks_uri, response, self.clock())
            except (ProviderError, TransportError) as exc:
                if not cache.keys(jwks_uri):
                    return (), exc
                log.warning(
                    "the key set at %s could not be refreshed (%s): using the one held", jwks_uri, exc.code
                )
        unknown = IdTokenError(
            "no key of the issuer's key set fits the token", code=ErrorCode.ID_TOKEN_UNKNOWN_KEY
        )
        return (), unknown

    async def settle(self, core: FlowCore, flow: Flow, step: Step) -> Step:
        """Carry a held token through what it waits for (its ID token's keys, its userinfo)."""
        while step.held is not None:
            held, ask = step.held, step.intents[0]
            if isinstance(ask, ResolveKeys):
                found, error = await self.issuer_keys(ask.jwks_uri, ask.header)
                step = core.step(flow, KeysAnswer(held, ask.id_token, found, error), self.clock())
                continue
            assert isinstance(ask, SendRequest)
            step = core.step(flow, await self._userinfo_answer(core, held, ask), self.clock())
        return step

    async def _userinfo_answer(self, core: FlowCore, held: Token, ask: SendRequest) -> AccountAnswer:
        """Send the userinfo request a held token waits for (safe to repeat); None when it failed."""
        try:
            response: HttpResponse | None = await self.send_with_retry(
                ask.request, "userinfo", ask.sent_secrets, lambda r: r
            )
        except (ProviderError, TransportError) as exc:
            log.warning("userinfo failed (%s): the token keeps what it had", exc.code)
            response = None
        keys: tuple[SigningKey, ...] = ()
        if self.spec.openid is not None:
            keys = self.jwks_cache.keys(core.jwks_url({**held.connection, **held.kept}))
        return AccountAnswer(held, response, keys)


def device_view(spec: FlowSpec) -> FlowSpec | None:
    """The spec with the ``device`` preset as its machine (compiled for device flows), or None."""
    if spec.device is None:
        return None
    from flowengine._presets import DEVICE, PRESETS

    return evolve(spec, machine=PRESETS[DEVICE])
