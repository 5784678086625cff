"""The gateway tests' real stack, served from a thread of its own for the whole session.

encoder (wordllama), sae (an SAE trained on real abstracts), search (the corpus in qdrant-edge),
labelling (the offline labeller) and family in one gRPC server on loopback, as the embedded mode
hosts them; every feature labelled and the families built once; and the gateway itself, a real
uvicorn on a loopback port, whose tests call it with a real HTTP client (httpx) from the test
thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from family_testing import serve_family
from search_testing import CORPUS, CountingBackend

from featurelens.client import AsyncFeaturelensClient
from featurelens.embedding.backends import EmbeddingBackend
from featurelens.services.gateway.server import Gateway, bind
from featurelens.services.gateway.settings import GatewaySettings

#: Files of a stand-in explorer, served by the gateway under test.
EXPLORER_FILES = {
    "index.html": "<!doctype html><title>featurelens explorer</title><script src='/app.js'></script>\n",
    "app.js": "document.title = 'featurelens';\n",
    "style.css": "body { font-family: sans-serif; }\n",
}


@dataclass
class RunningGateway:
    """The gateway's URL, what was built behind it, and the gRPC address of the services."""

    url: str
    grpc_address: str
    sae_id: str
    corpus: str
    static_dir: Path
    labelled: int
    families: list[str] = field(default_factory=list)


def write_explorer(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in EXPLORER_FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


async def _prepare(client: AsyncFeaturelensClient, sae_id: str) -> tuple[int, list[str]]:
    """Label every feature (offline labeller) and build the families; the labels and family ids."""
    labelled = 0
    async for message in client.labelling.label_features(sae_id, CORPUS):
        labelled += message.label is not None
    async for _ in client.families.build_families(CORPUS, sae_id=sae_id):
        pass
    page = await client.families.list_families(sae_id, page_size=1000)
    return labelled, [family.family_id for family in page.items]


@contextmanager
def running_gateway(
    backend: EmbeddingBackend,
    models_dir: Path,
    edge: Path,
    folder: Path,
    sae_id: str,
    static_dir: Path | None = None,
) -> Iterator[RunningGateway]:
    """The stack and the gateway in a thread of their own until the ``with`` block ends; the gateway
    serves ``static_dir`` (the real explorer, for the browser tests) or else a stand-in explorer."""
    web = static_dir if static_dir is not None else write_explorer(folder / "web")
    ready: threading.Event = threading.Event()
    found: list[RunningGateway | BaseException] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with serve_family(CountingBackend(backend), models_dir, edge, folder) as stack:
                address = stack.search.server.address
                async with AsyncFeaturelensClient(address) as client:
                    labelled, families = await _prepare(client, sae_id)
                settings = GatewaySettings(
                    host="127.0.0.1",
                    port=0,
                    encoder_address=address,
                    sae_address=address,
                    search_address=address,
                    labelling_address=address,
                    family_address=address,
                    static_dir=web,
                    max_body_bytes=64 * 1024,
                    grace_period_s=1.0,
                )
                gateway = Gateway(settings, bind("127.0.0.1", 0))
                gateway.start()
                await gateway.wait_started()
                found.append(
                    RunningGateway(
                        url=f"http://127.0.0.1:{gateway.port}",
                        grpc_address=address,
                        sae_id=sae_id,
                        corpus=CORPUS,
                        static_dir=web,
                        labelled=labelled,
                        families=families,
                    )
                )
                ready.set()
                await stop.wait()
                await gateway.stop()
        except BaseException as error:
            found.append(error)
            ready.set()
            raise

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException:  # reported to the test thread through `found`
            pass
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="gateway-stack", daemon=True)
    thread.start()
    ready.wait(timeout=600)
    assert found, "the stack did not start in 10 minutes"
    result = found[0]
    if isinstance(result, BaseException):
        thread.join(timeout=30)
        raise result
    try:
        yield result
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)
