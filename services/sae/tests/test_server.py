"""The sae service as a gRPC server: health while loading, reflection, the default SAE, listing."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sae_testing import SERVICE, Running, failure_of, matrix, serve_sae, vectors

from featurelens.kit import GrpcServer
from featurelens.services.sae.registry import LoadedSae, SaeRegistry
from featurelens.services.sae.servicer import SaeServicer
from featurelens.v1 import sae_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class GatedRegistry(SaeRegistry):
    """A registry whose loads wait (in the loading thread) until the test releases them."""

    def __init__(self, models_dir: Path) -> None:
        super().__init__(models_dir)
        self.entered = threading.Event()
        self.released = threading.Event()

    def load(self, sae_id: str) -> LoadedSae:
        self.entered.set()
        if not self.released.wait(timeout=30):
            raise TimeoutError("the test never released the load")
        return super().load(sae_id)


async def health_of(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def test_health_is_not_serving_until_the_default_sae_is_loaded_and_warm(models_dir: Path) -> None:
    registry = GatedRegistry(models_dir)
    async with serve_sae(SaeServicer(registry), wait_ready=False) as running:
        await asyncio.to_thread(registry.entered.wait, 10)
        assert await health_of(running.channel) == NOT_SERVING
        assert await health_of(running.channel, SERVICE) == NOT_SERVING
        early = await failure_of(running.stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(vectors(1)))))

        registry.released.set()
        await running.server.wait_ready(timeout=30)

        assert await health_of(running.channel) == SERVING
        assert await health_of(running.channel, SERVICE) == SERVING
        batcher = running.servicer.batcher(registry.loaded(registry.default_id() or ""))  # type: ignore[arg-type]
        assert batcher.stats.forward_passes == 1  # the warm-up encode
    assert early.code() == grpc.StatusCode.UNAVAILABLE
    assert "still loading" in (early.details() or "")


async def test_health_is_serving_at_once_when_there_is_no_sae_yet(tmp_path: Path) -> None:
    async with serve_sae(tmp_path / "empty") as running:
        assert await health_of(running.channel, SERVICE) == SERVING
        listed = await running.stub.ListSaes(sae_pb2.ListSaesRequest())
    assert list(listed.saes) == []


async def test_reflection_lists_the_sae_service(running: Running) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    replies = [
        reply
        async for reply in reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    ]

    names = {service.name for service in replies[0].list_services_response.service}
    assert SERVICE in names


async def test_list_saes_shows_every_checkpoint_with_config_and_the_default(
    running: Running, sae_id: str, other_id: str
) -> None:
    listed = await running.stub.ListSaes(sae_pb2.ListSaesRequest())

    by_id = {info.sae_id: info for info in listed.saes}
    assert set(by_id) == {sae_id, other_id}
    assert by_id[sae_id].is_default
    assert not by_id[other_id].is_default
    assert by_id[sae_id].config.d_in == 32
    assert by_id[sae_id].config.num_latents == 256
    assert by_id[sae_id].config.k == 8
    assert by_id[sae_id].embedding_model == "test-model"
    assert by_id[sae_id].created_unix > 1_700_000_000


async def test_get_sae_without_an_id_returns_the_default(running: Running, sae_id: str) -> None:
    reply = await running.stub.GetSae(sae_pb2.GetSaeRequest())

    assert reply.sae.sae_id == sae_id
    assert reply.sae.is_default


async def test_the_default_sae_id_setting_wins_over_the_marker_file(models_dir: Path, other_id: str) -> None:
    async with serve_sae(models_dir, pinned_default=other_id) as running:
        reply = await running.stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(vectors(1))))

    assert reply.sae_id == other_id


async def test_a_pinned_default_that_does_not_exist_fails_the_start(models_dir: Path) -> None:
    servicer = SaeServicer(SaeRegistry(models_dir, pinned_default="sae-000000000000"))
    server = GrpcServer([servicer], host="127.0.0.1", port=0)
    await server.start()
    try:
        with pytest.raises(Exception, match="sae-000000000000"):
            await server.wait_ready(timeout=30)
    finally:
        await server.stop(0)


async def test_a_cuda_device_without_cuda_fails_the_start_with_a_clear_message(models_dir: Path) -> None:
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    servicer = SaeServicer(SaeRegistry(models_dir, device="cuda"))
    server = GrpcServer([servicer], host="127.0.0.1", port=0)
    await server.start()
    try:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            await server.wait_ready(timeout=30)
    finally:
        await server.stop(0)


async def test_an_sae_unloaded_by_the_lru_is_loaded_again_on_demand(
    models_dir: Path, sae_id: str, other_id: str
) -> None:
    async with serve_sae(models_dir, max_loaded=1) as running:
        first = await running.stub.Encode(sae_pb2.EncodeRequest(sae_id=other_id, vectors=matrix(vectors(2))))
        default = await running.stub.Encode(sae_pb2.EncodeRequest(vectors=matrix(vectors(2))))
        again = await running.stub.Encode(sae_pb2.EncodeRequest(sae_id=other_id, vectors=matrix(vectors(2))))
        loaded = running.servicer.registry.loaded_ids()

    assert first.rows == again.rows
    assert default.sae_id == sae_id
    # The default is never evicted, so it stays beside the SAE last loaded.
    assert sae_id in loaded
