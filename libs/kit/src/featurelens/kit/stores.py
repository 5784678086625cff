"""Where a service keeps its Qdrant data: the settings and the one way to open the store.

``StoreSettings`` holds the fields every service with a store shares (search keeps the corpora,
labelling the labels); each service adds its own ``edge_path`` default and calls ``open_store``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from featurelens.kit.settings import ServiceSettings
from featurelens.store import DocumentStore, EdgeDocumentStore, QdrantServerDocumentStore

Storage = Literal["edge", "server"]


class StoreSettings(ServiceSettings):
    """The storage fields of a service with a Qdrant store (``edge_path`` is the service's own)."""

    storage: Storage = Field(
        "edge",
        description='"edge": Qdrant in process, in edge_path; "server": a Qdrant server at qdrant_url.',
    )
    edge_path: Path = Field(Path(".featurelens/qdrant"), description="Folder of the in-process Qdrant data.")
    qdrant_url: str = Field("http://127.0.0.1:6333", description="REST URL of the Qdrant server.")
    qdrant_api_key: SecretStr = Field(
        SecretStr(""), description="API key of the Qdrant server, if it has one."
    )
    qdrant_prefer_grpc: bool = Field(True, description="Talk to the Qdrant server over gRPC (port 6334).")
    qdrant_timeout_s: float = Field(10.0, gt=0, description="Seconds per Qdrant server request.")
    qdrant_shard_number: int = Field(
        0,
        ge=0,
        description="Shards of each corpus collection this service creates on a Qdrant cluster; 0: the "
        "server's default (one per node present when it is created).",
    )
    qdrant_replication_factor: int = Field(
        0,
        ge=0,
        description="Copies of each shard of a collection this service creates; 0: the server's default.",
    )

    def open_store(self, edge_search_threads: int = 1) -> DocumentStore:
        """The store (blocking: opens files or connects). ``edge_search_threads`` 0 = one per CPU."""
        if self.storage == "server":
            return QdrantServerDocumentStore.from_url(
                self.qdrant_url,
                api_key=self.qdrant_api_key.get_secret_value() or None,
                prefer_grpc=self.qdrant_prefer_grpc,
                timeout=self.qdrant_timeout_s,
                shard_number=self.qdrant_shard_number or None,
                replication_factor=self.qdrant_replication_factor or None,
            )
        return EdgeDocumentStore(self.edge_path, max_search_threads=edge_search_threads or None)
