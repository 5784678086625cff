"""Run the search service: ``python -m featurelens.services.search``.

This is the only module that reads the environment (through ``SearchSettings``).
``build_servicer`` is also what the embedded mode (``featurelens up``) calls, with the encoder
and sae addresses pointing at its own port.
"""

from __future__ import annotations

from featurelens.kit import run_service
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
    return EdgeDocumentStore(settings.edge_path, max_search_threads=settings.edge_search_threads or None)


def build_servicer(settings: SearchSettings) -> SearchServicer:
    """A search servicer per the settings; the store opens when the server starts it."""
    dependencies = Dependencies.at(
        settings.encoder_address, settings.sae_address, settings.encoder_timeout_s, settings.sae_timeout_s
    )
    return SearchServicer(lambda: open_store(settings), dependencies, settings)


def main() -> None:
    run_service(SearchSettings(), build_servicer)


if __name__ == "__main__":
    main()
