"""Helpers of the labelling tests: the four services in one server on loopback, as the embedded
mode hosts them, and small readers of LabelFeatures and LabelFamilies streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_testing import CountingBackend, Stack, serve_stack

from featurelens.services.labelling.__main__ import build_servicer
from featurelens.services.labelling.servicer import LabellingServicer
from featurelens.services.labelling.settings import LabellingSettings
from featurelens.v1 import labelling_pb2, labelling_pb2_grpc

CORPUS = "astro"


@dataclass
class LabellingStack:
    """The running services, the labelling servicer and a labelling stub."""

    search: Stack
    labelling: LabellingServicer
    stub: labelling_pb2_grpc.LabellingServiceStub

    async def label(self, **fields: Any) -> list[labelling_pb2.LabelFeaturesResponse]:
        """Run one LabelFeatures job to its end (corpus "astro" unless named); all its messages."""
        request = labelling_pb2.LabelFeaturesRequest(**({"corpus": CORPUS} | fields))
        return [message async for message in self.stub.LabelFeatures(request)]

    async def name_families(self, **fields: Any) -> list[labelling_pb2.LabelFamiliesResponse]:
        """Run one LabelFamilies job to its end; all its messages."""
        request = labelling_pb2.LabelFamiliesRequest(**fields)
        return [message async for message in self.stub.LabelFamilies(request)]


@asynccontextmanager
async def serve_labelling(
    backend: CountingBackend, models_dir: Path, edge: Path, labels_path: Path, **settings: Any
) -> AsyncIterator[LabellingStack]:
    """encoder + sae + search + labelling in one GrpcServer on 127.0.0.1:0 (labels in ``labels_path``)."""
    options: dict[str, Any] = {"peer_timeout_s": 30.0, "concurrency": 8} | settings
    labelling = build_servicer(LabellingSettings(storage="edge", edge_path=labels_path, **options))
    async with serve_stack(backend, models_dir, edge, also=[labelling]) as stack:
        for peer in (labelling.peers.search, labelling.peers.encoder, labelling.peers.sae):
            peer.address = stack.server.address
        yield LabellingStack(stack, labelling, labelling_pb2_grpc.LabellingServiceStub(stack.channel))


def labels_of(messages: Sequence[labelling_pb2.LabelFeaturesResponse]) -> list[labelling_pb2.FeatureLabel]:
    """The labels a job streamed, in the order they finished."""
    return [m.label for m in messages if m.HasField("label")]


def family_names_of(messages: Sequence[labelling_pb2.LabelFamiliesResponse]) -> dict[str, str]:
    """family_id → label of every family a LabelFamilies job reported ("" when it named none)."""
    return {m.family_id: m.label for m in messages if m.family_id}
