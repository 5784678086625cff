"""Helpers of the family tests: the five services in one server on loopback, as the embedded mode
hosts them, and small readers of BuildFamilies streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_testing import CountingBackend, Stack, serve_stack

from featurelens.services.family.__main__ import build_servicer
from featurelens.services.family.servicer import FamilyServicer
from featurelens.services.family.settings import FamilySettings
from featurelens.services.labelling.__main__ import build_servicer as build_labelling
from featurelens.services.labelling.settings import LabellingSettings
from featurelens.v1 import family_pb2, family_pb2_grpc, labelling_pb2_grpc

CORPUS = "astro"


@dataclass
class FamilyStack:
    """The running services, the family servicer and stubs of the family and labelling services."""

    search: Stack
    family: FamilyServicer
    stub: family_pb2_grpc.FamilyServiceStub
    labelling: labelling_pb2_grpc.LabellingServiceStub

    async def build(self, **fields: Any) -> list[family_pb2.BuildFamiliesResponse]:
        """Run one BuildFamilies job to its end (corpus "astro" unless named); all its messages."""
        request = family_pb2.BuildFamiliesRequest(**({"corpus": CORPUS} | fields))
        return [message async for message in self.stub.BuildFamilies(request)]

    async def families(self, sae_id: str) -> list[family_pb2.Family]:
        """Every family of the SAE, through ListFamilies' pages."""
        found: list[family_pb2.Family] = []
        token = ""
        while True:
            page = await self.stub.ListFamilies(
                family_pb2.ListFamiliesRequest(sae_id=sae_id, page_size=7, page_token=token)
            )
            found.extend(page.families)
            token = page.next_page_token
            if not token:
                return found


@asynccontextmanager
async def serve_family(
    backend: CountingBackend,
    models_dir: Path,
    edge: Path,
    folder: Path,
    *,
    labelling_address: str | None = None,
    **settings: Any,
) -> AsyncIterator[FamilyStack]:
    """encoder + sae + search + labelling + family in one GrpcServer on 127.0.0.1:0, their data in
    ``folder``; ``labelling_address`` points the family service at another labelling service."""
    labelling = build_labelling(
        LabellingSettings(storage="edge", edge_path=folder / "labels", peer_timeout_s=30.0, concurrency=8)
    )
    options: dict[str, Any] = {"peer_timeout_s": 30.0} | settings
    family = build_servicer(
        FamilySettings(
            storage="edge",
            edge_path=folder / "families",
            activations_path=folder / "activations",
            **options,
        )
    )
    async with serve_stack(backend, models_dir, edge, also=[labelling, family]) as stack:
        address = stack.server.address
        for peer in (labelling.peers.search, labelling.peers.encoder, labelling.peers.sae):
            peer.address = address
        family.peers.search.address = address
        family.peers.sae.address = address
        family.peers.labelling.address = labelling_address or address
        yield FamilyStack(
            stack,
            family,
            family_pb2_grpc.FamilyServiceStub(stack.channel),
            labelling_pb2_grpc.LabellingServiceStub(stack.channel),
        )


def final(messages: Sequence[family_pb2.BuildFamiliesResponse]) -> family_pb2.BuildFamiliesResponse:
    """The last message of a build (the one with the counts and statistics)."""
    assert messages, "the build streamed nothing"
    return messages[-1]
