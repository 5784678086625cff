"""A tiny in-test encoder servicer on a real loopback GrpcServer, channels to it, and a tiny
installable service for the embedded host."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc import aio
from typing_extensions import override

from featurelens.kit import GrpcServer, InvalidArgumentError, NotFoundError, Peer
from featurelens.kit.context import current_request_id
from featurelens.v1 import common_pb2, encoder_pb2, encoder_pb2_grpc

SERVICE = "featurelens.v1.EncoderService"
DIM = 4


class FakeEncoder(encoder_pb2_grpc.EncoderServiceServicer):
    """Answers by the first text: "invalid", "missing", "library", "boom", "abort" and "slow"
    trigger the matching failure or wait; "echo" refuses the call repeating the second text whole
    (as a careless service might); "relay" waits like "slow", then embeds "hello" by calling its
    own server through ``peer`` (as search calls encoder and sae in ``featurelens up``); anything
    else embeds to a constant row per text. A ``model`` other than "fake" is NOT_FOUND, repeated
    whole."""

    service_names: Sequence[str] = (SERVICE,)

    def __init__(self) -> None:
        self.release_start = asyncio.Event()
        self.slow_call_entered = asyncio.Event()
        self.release_slow_call = asyncio.Event()
        self.closed = False
        # The error type "library" raises; tests set it to a core-library-like error of their own.
        self.library_error: type[Exception] = LookupError
        self.seen_request_ids: list[str | None] = []
        #: The server itself, for "relay"; a test sets it once the server listens.
        self.peer: Peer | None = None
        self.relayed: list[encoder_pb2.EmbedResponse] = []

    def add_to_server(self, server: aio.Server) -> None:
        encoder_pb2_grpc.add_EncoderServiceServicer_to_server(self, server)

    async def start(self) -> None:
        await self.release_start.wait()

    async def close(self) -> None:
        self.closed = True

    async def _answer(self, texts: Sequence[str], context: aio.ServicerContext) -> common_pb2.DenseMatrix:
        self.seen_request_ids.append(current_request_id())
        first = texts[0] if texts else ""
        if first == "invalid":
            raise InvalidArgumentError("texts[0] is empty; every text needs at least one character")
        if first == "missing":
            raise NotFoundError("model 'nope' is not served; ListModels names the served models")
        if first == "library":
            raise self.library_error("the library refused")
        if first == "boom":
            raise RuntimeError("secret internal state: password=hunter2")
        if first == "abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "handler aborted on its own")
        if first == "echo":
            raise InvalidArgumentError(f"texts[1] is not allowed: {texts[1]!r}")
        if first in ("slow", "relay"):
            self.slow_call_entered.set()
            await self.release_slow_call.wait()
        if first == "relay":
            assert self.peer is not None, "set fake.peer to relay"
            stub = encoder_pb2_grpc.EncoderServiceStub(self.peer.channel)
            request = encoder_pb2.EmbedRequest(texts=["hello"])
            self.relayed.append(await self.peer.call(stub.Embed(request, timeout=self.peer.timeout_s)))
        rows = np.ones((len(texts), DIM), dtype="<f4")
        return common_pb2.DenseMatrix(data=rows.tobytes(), dim=DIM, count=len(texts))

    @override
    async def Embed(
        self, request: encoder_pb2.EmbedRequest, context: aio.ServicerContext
    ) -> encoder_pb2.EmbedResponse:
        if request.model not in ("", "fake"):
            raise NotFoundError(f"model {request.model!r} is not served")
        matrix = await self._answer(request.texts, context)
        return encoder_pb2.EmbedResponse(
            embeddings=matrix, model_id="fake", truncated=[False] * len(request.texts)
        )

    @override
    async def EmbedStream(
        self, request_iterator: AsyncIterator[encoder_pb2.EmbedStreamRequest], context: aio.ServicerContext
    ) -> AsyncIterator[encoder_pb2.EmbedStreamResponse]:
        async for request in request_iterator:
            matrix = await self._answer(request.texts, context)
            yield encoder_pb2.EmbedStreamResponse(
                batch_id=request.batch_id, embeddings=matrix, model_id="fake"
            )

    @override
    async def ListModels(
        self, request: encoder_pb2.ListModelsRequest, context: aio.ServicerContext
    ) -> encoder_pb2.ListModelsResponse:
        model = encoder_pb2.ModelInfo(id="fake", backend="wordllama", dim=DIM, is_default=True)
        return encoder_pb2.ListModelsResponse(models=[model])


@pytest.fixture
def fake() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
async def started_server(fake: FakeEncoder) -> AsyncIterator[GrpcServer]:
    """A listening server whose servicer has not finished starting (health NOT_SERVING)."""
    server = GrpcServer([fake], host="127.0.0.1", port=0, grace_period_s=5.0)
    await server.start()
    yield server
    fake.release_start.set()
    fake.release_slow_call.set()
    await server.stop(0)


@pytest.fixture
async def server(started_server: GrpcServer, fake: FakeEncoder) -> GrpcServer:
    """A server whose servicer is ready (health SERVING)."""
    fake.release_start.set()
    await started_server.wait_ready(timeout=10)
    return started_server


@pytest.fixture
async def channel(started_server: GrpcServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(started_server.address) as channel:
        yield channel


@pytest.fixture
def stub(channel: aio.Channel, server: GrpcServer) -> encoder_pb2_grpc.EncoderServiceStub:
    return encoder_pb2_grpc.EncoderServiceStub(channel)


@pytest.fixture
def installed_kitdemo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on the import path holding two services: ``kitdemo`` (``kitdemo_service.py``) and
    ``broken``, whose own dependency is missing. Returns the folder (for a child's PYTHONPATH)."""
    site = tmp_path / "site"
    services = site / "featurelens" / "services"
    for name in ("kitdemo", "broken"):
        (services / name).mkdir(parents=True)
        (services / name / "__init__.py").write_text("")
    shutil.copy(Path(__file__).with_name("kitdemo_service.py"), services / "kitdemo" / "__main__.py")
    (services / "broken" / "__main__.py").write_text("import featurelens_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [
        name
        for name in sys.modules
        if name.startswith(("featurelens.services.kitdemo", "featurelens.services.broken"))
    ]:
        del sys.modules[name]
