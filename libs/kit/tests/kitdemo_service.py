"""A tiny service the embedded-host tests install as ``featurelens.services.kitdemo``.

The tests copy this file to ``<tmp>/featurelens/services/kitdemo/__main__.py`` and put ``<tmp>``
on the import path (``featurelens`` is a namespace package), so the kit discovers it by name
exactly as it discovers the real services. ``FEATURELENS_KITDEMO_START`` says how its start goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from grpc import aio
from pydantic import Field

from featurelens.kit import ServiceSettings, service_config


class KitDemoSettings(ServiceSettings):
    model_config = service_config("KITDEMO")

    start: str = Field("ok", description='"ok", "fail" (raises) or "hang" (never finishes).')
    encoder_address: str = "127.0.0.1:50051"
    sae_address: str = "127.0.0.1:50052"
    edge_path: Path = Path(".featurelens/qdrant")
    cache_dir: Path = Path("/var/cache/kitdemo")
    corpus_roots: list[Path] = Field(default_factory=list)
    redis_url: str = ""


class KitDemoServicer:
    service_names: Sequence[str] = ("featurelens.test.KitDemoService",)

    def __init__(self, settings: KitDemoSettings) -> None:
        self.settings = settings

    def add_to_server(self, server: aio.Server) -> None:
        pass

    async def start(self) -> None:
        if self.settings.start == "fail":
            raise RuntimeError("the kit demo service refused to start")
        if self.settings.start == "hang":
            await asyncio.Event().wait()

    async def close(self) -> None:
        pass


def build_servicer(settings: KitDemoSettings) -> KitDemoServicer:
    return KitDemoServicer(settings)
