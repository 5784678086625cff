"""``FeaturelensClient`` and ``AsyncFeaturelensClient``: one entry point, one sub-client per service."""

from __future__ import annotations

from types import TracebackType
from typing import Literal, Self

from grpc_health.v1 import health_pb2, health_pb2_grpc

from featurelens.client.encoder import AsyncEncoderClient, EncoderClient
from featurelens.client.errors import NotFoundError
from featurelens.client.families import AsyncFamiliesClient, FamiliesClient
from featurelens.client.labelling import AsyncLabellingClient, LabellingClient
from featurelens.client.options import DEFAULT_TIMEOUT_S, NOT_GIVEN, CallOptions, NotGiven
from featurelens.client.retries import DEFAULT_MAX_RETRIES, Backoff, rpc_path
from featurelens.client.sae import AsyncSaeClient, SaeClient
from featurelens.client.search import AsyncSearchClient, SearchClient
from featurelens.client.security import ChannelSecurity, TlsConfig
from featurelens.client.transport import (
    DEFAULT_ADDRESS,
    DEFAULT_MAX_MESSAGE_BYTES,
    AsyncTransport,
    SyncTransport,
)

HealthStatus = Literal["SERVING", "NOT_SERVING", "UNKNOWN", "SERVICE_UNKNOWN"]
"""A health answer; SERVICE_UNKNOWN means the server does not host that service."""

SERVICE_NAMES = {
    "encoder": "featurelens.v1.EncoderService",
    "sae": "featurelens.v1.SaeService",
    "search": "featurelens.v1.SearchService",
    "labelling": "featurelens.v1.LabellingService",
    "family": "featurelens.v1.FamilyService",
}
"""Short service names and the full names their health is reported under."""

_HEALTH_CHECK = rpc_path("grpc.health.v1.Health", "Check")


def _full_service_name(service: str) -> str:
    return SERVICE_NAMES.get(service, service)


def _status_name(status: int) -> HealthStatus:
    if status == health_pb2.HealthCheckResponse.SERVING:
        return "SERVING"
    if status == health_pb2.HealthCheckResponse.NOT_SERVING:
        return "NOT_SERVING"
    if status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN:
        return "SERVICE_UNKNOWN"
    return "UNKNOWN"


class _Addresses:
    """Which address each service is called at: its own when given, else the shared one."""

    def __init__(
        self,
        address: str,
        encoder: str | None,
        sae: str | None,
        search: str | None,
        labelling: str | None,
        family: str | None,
    ) -> None:
        self.default = address
        self.by_service = {
            "": address,
            SERVICE_NAMES["encoder"]: encoder or address,
            SERVICE_NAMES["sae"]: sae or address,
            SERVICE_NAMES["search"]: search or address,
            SERVICE_NAMES["labelling"]: labelling or address,
            SERVICE_NAMES["family"]: family or address,
        }

    def of(self, service: str) -> str:
        return self.by_service.get(_full_service_name(service), self.default)


class FeaturelensClient:
    """A blocking client of the featurelens services.

    By default every service is called at ``address`` (the embedded ``featurelens up`` mode);
    give ``encoder_address`` & co. when services run on their own ports (docker compose; the family
    service's default port is 50055).
    ``timeout_s`` bounds each unary call, retries included (None for no bound); a call's own
    ``timeout=`` overrides it, and streams are bound only by their own ``timeout=``. Calls that
    change nothing on the server are retried up to ``max_retries`` times when the server cannot
    be reached (see ``featurelens.client.retries``), waiting as ``backoff`` says in between.
    ``api_key`` is sent with every call as ``authorization: Bearer <key>``; ``tls`` connects over
    TLS (a ``TlsConfig``, or True for the system's CA roots). Left out, both come from the
    environment: ``FEATURELENS_API_KEY``, ``FEATURELENS_TLS_CA_FILE`` (and ``FEATURELENS_TLS_CERT_FILE``
    / ``FEATURELENS_TLS_KEY_FILE`` for mutual TLS); see ``featurelens.client.security``.
    Use as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        encoder_address: str | None = None,
        sae_address: str | None = None,
        search_address: str | None = None,
        labelling_address: str | None = None,
        family_address: str | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        backoff: Backoff | None = None,
        api_key: str | None = None,
        tls: TlsConfig | bool | None = None,
    ) -> None:
        options = CallOptions(timeout_s, max_retries, backoff or Backoff())
        security = ChannelSecurity.resolve(api_key, tls)
        addresses = _Addresses(
            address, encoder_address, sae_address, search_address, labelling_address, family_address
        )
        transports = {
            target: SyncTransport.open(
                target, options=options, max_message_bytes=max_message_bytes, security=security
            )
            for target in dict.fromkeys(addresses.by_service.values())
        }
        self._wire(addresses, transports, options)

    def _wire(
        self, addresses: _Addresses, transports: dict[str, SyncTransport], options: CallOptions
    ) -> None:
        self._addresses = addresses
        self._transports = transports
        self._options = options
        self.encoder = EncoderClient(self._transport("encoder"))
        """The encoder service: text to dense embeddings."""
        self.sae = SaeClient(self._transport("sae"))
        """The sae service: sparse latents, steering, training."""
        self.search = SearchClient(self._transport("search"))
        """The search service: indexing and (steered) search."""
        self.labelling = LabellingClient(self._transport("labelling"))
        """The labelling service: scored feature labels, features found by meaning."""
        self.families = FamiliesClient(self._transport("family"))
        """The family service: feature families, feature neighbours, matching across SAEs."""

    def _transport(self, service: str) -> SyncTransport:
        return self._transports[self._addresses.of(service)]

    @property
    def timeout_s(self) -> float | None:
        """The bound on each unary call, seconds (None: no bound)."""
        return self._options.timeout_s

    @property
    def max_retries(self) -> int:
        """How many times a call that changes nothing is retried when the server cannot be reached."""
        return self._options.max_retries

    def with_options(
        self, *, timeout: float | NotGiven | None = NOT_GIVEN, max_retries: int | NotGiven = NOT_GIVEN
    ) -> Self:
        """A client on the same channels with another ``timeout`` (seconds) or ``max_retries``.

        Cheap: nothing is connected again. The two clients share their channels, so closing
        either closes both; close the one you made first.
        """
        options = self._options.replace(timeout=timeout, max_retries=max_retries)
        clone = type(self).__new__(type(self))
        transports = {target: t.with_options(options) for target, t in self._transports.items()}
        clone._wire(self._addresses, transports, options)
        return clone

    def health(self, service: str = "", *, timeout: float | NotGiven | None = NOT_GIVEN) -> HealthStatus:
        """The health of a service ("encoder", "sae", ... or a full name) or, for "", of the server.

        Raises ``APIConnectionError`` (an ``UnavailableError``) when the server cannot be reached.
        """
        transport = self._transport(service)
        stub = health_pb2_grpc.HealthStub(transport.channel)
        request = health_pb2.HealthCheckRequest(service=_full_service_name(service))
        try:
            reply = transport.unary(stub.Check, request, rpc=_HEALTH_CHECK, timeout=timeout)
        except NotFoundError:
            return "SERVICE_UNKNOWN"
        return _status_name(reply.status)

    def close(self) -> None:
        """Close the channels; the client cannot be used afterwards."""
        for transport in self._transports.values():
            transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncFeaturelensClient:
    """An asyncio client of the featurelens services; mirrors ``FeaturelensClient``.

    Channels open on first use inside the running event loop, so the client may be built
    anywhere; waits between retries never block the loop. Use as an async context manager, or
    ``await close()``.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        encoder_address: str | None = None,
        sae_address: str | None = None,
        search_address: str | None = None,
        labelling_address: str | None = None,
        family_address: str | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        backoff: Backoff | None = None,
        api_key: str | None = None,
        tls: TlsConfig | bool | None = None,
    ) -> None:
        options = CallOptions(timeout_s, max_retries, backoff or Backoff())
        security = ChannelSecurity.resolve(api_key, tls)
        addresses = _Addresses(
            address, encoder_address, sae_address, search_address, labelling_address, family_address
        )
        transports = {
            target: AsyncTransport.open(
                target, options=options, max_message_bytes=max_message_bytes, security=security
            )
            for target in dict.fromkeys(addresses.by_service.values())
        }
        self._wire(addresses, transports, options)

    def _wire(
        self, addresses: _Addresses, transports: dict[str, AsyncTransport], options: CallOptions
    ) -> None:
        self._addresses = addresses
        self._transports = transports
        self._options = options
        self.encoder = AsyncEncoderClient(self._transport("encoder"))
        """The encoder service: text to dense embeddings."""
        self.sae = AsyncSaeClient(self._transport("sae"))
        """The sae service: sparse latents, steering, training."""
        self.search = AsyncSearchClient(self._transport("search"))
        """The search service: indexing and (steered) search."""
        self.labelling = AsyncLabellingClient(self._transport("labelling"))
        """The labelling service: scored feature labels, features found by meaning."""
        self.families = AsyncFamiliesClient(self._transport("family"))
        """The family service: feature families, feature neighbours, matching across SAEs."""

    def _transport(self, service: str) -> AsyncTransport:
        return self._transports[self._addresses.of(service)]

    @property
    def timeout_s(self) -> float | None:
        """The bound on each unary call, seconds (None: no bound)."""
        return self._options.timeout_s

    @property
    def max_retries(self) -> int:
        """How many times a call that changes nothing is retried when the server cannot be reached."""
        return self._options.max_retries

    def with_options(
        self, *, timeout: float | NotGiven | None = NOT_GIVEN, max_retries: int | NotGiven = NOT_GIVEN
    ) -> Self:
        """A client on the same channels with another ``timeout`` (seconds) or ``max_retries``.

        Cheap: nothing is connected again. The two clients share their channels, so closing
        either closes both; close the one you made first.
        """
        options = self._options.replace(timeout=timeout, max_retries=max_retries)
        clone = type(self).__new__(type(self))
        transports = {target: t.with_options(options) for target, t in self._transports.items()}
        clone._wire(self._addresses, transports, options)
        return clone

    async def health(
        self, service: str = "", *, timeout: float | NotGiven | None = NOT_GIVEN
    ) -> HealthStatus:
        """The health of a service ("encoder", "sae", ... or a full name) or, for "", of the server.

        Raises ``APIConnectionError`` (an ``UnavailableError``) when the server cannot be reached.
        """
        transport = self._transport(service)
        stub = transport.stub("health", lambda channel: health_pb2_grpc.HealthStub(channel))
        request = health_pb2.HealthCheckRequest(service=_full_service_name(service))
        try:
            reply = await transport.unary(stub.Check, request, rpc=_HEALTH_CHECK, timeout=timeout)
        except NotFoundError:
            return "SERVICE_UNKNOWN"
        return _status_name(reply.status)

    async def close(self) -> None:
        """Close the channels; using the client again opens new ones."""
        for transport in self._transports.values():
            await transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


__all__ = ["SERVICE_NAMES", "AsyncFeaturelensClient", "FeaturelensClient", "HealthStatus"]
