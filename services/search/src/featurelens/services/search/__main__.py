"""Run the search service: ``python -m featurelens.services.search``.

This is the only module that reads the environment (through ``SearchSettings``).
``build_servicer`` is also what the embedded mode (``featurelens up``) calls, with the encoder
and sae addresses pointing at its own port.
"""

from __future__ import annotations

import asyncio

from featurelens.kit import GrpcServer, configure_logging
from featurelens.services.search.dependencies import Dependencies
from featurelens.services.search.servicer import SearchServicer
from featurelens.services.search.settings import SearchSettings
from featurelens.store import DocumentStore, EdgeDocumentStore, QdrantServerDocumentStore


def open_store(settings: SearchSettings) -> DocumentStore:
    """The document store the settings name (blocking: opens files or connects)."""
    if settings.storage == "server":
        return QdrantServerDocumentStore.from_url(
            settings.qdrant_url,
            api_key=settings.qdrant_api_key.get_secret_value() or None,
            prefer_grpc=settings.qdrant_prefer_grpc,
            timeout=settings.qdrant_timeout_s,
        )
    return EdgeDocumentStore(settings.edge_path)


def build_servicer(settings: SearchSettings) -> SearchServicer:
    """A search servicer per the settings; the store opens when the server starts it."""
    dependencies = Dependencies.at(
        settings.encoder_address, settings.sae_address, settings.encoder_timeout_s, settings.sae_timeout_s
    )
    return SearchServicer(lambda: open_store(settings), dependencies, settings)


async def serve(settings: SearchSettings) -> None:
    """Serve until SIGTERM or SIGINT, then drain and stop."""
    # Built inside the running loop: a grpc.aio server binds to the loop it is created in.
    server = GrpcServer(
        [build_servicer(settings)],
        host=settings.host,
        port=settings.port,
        grace_period_s=settings.grace_period_s,
        max_message_bytes=settings.max_message_bytes,
    )
    await server.serve_until_signalled()


def main() -> None:
    settings = SearchSettings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
