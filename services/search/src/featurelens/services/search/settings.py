"""Settings of the search service, read from ``FEATURELENS_SEARCH_<FIELD>`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from featurelens.kit import ServiceSettings, service_config

DEFAULT_PORT = 50053

Storage = Literal["edge", "server"]


class SearchSettings(ServiceSettings):
    """Everything the search service can be configured with (see the service README)."""

    model_config = service_config("SEARCH")

    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port; 0 picks a free one.")

    encoder_address: str = Field("127.0.0.1:50051", description="host:port of the encoder service.")
    sae_address: str = Field("127.0.0.1:50052", description="host:port of the sae service.")
    encoder_timeout_s: float = Field(30.0, gt=0, description="Deadline of each call to the encoder, seconds.")
    sae_timeout_s: float = Field(30.0, gt=0, description="Deadline of each call to the sae service, seconds.")

    storage: Storage = Field(
        "edge",
        description='"edge": Qdrant in process, in edge_path; "server": a Qdrant server at qdrant_url.',
    )
    edge_path: Path = Field(Path(".featurelens/qdrant"), description="Folder of the in-process Qdrant data.")
    edge_search_threads: int = Field(
        1,
        ge=0,
        description="Search threads per corpus of the in-process Qdrant; 0 = one per CPU. An optimized "
        "corpus is one segment, so more threads only add work.",
    )
    qdrant_url: str = Field("http://127.0.0.1:6333", description="REST URL of the Qdrant server.")
    qdrant_api_key: SecretStr = Field(
        SecretStr(""), description="API key of the Qdrant server, if it has one."
    )
    qdrant_prefer_grpc: bool = Field(True, description="Talk to the Qdrant server over gRPC (port 6334).")
    qdrant_timeout_s: float = Field(10.0, gt=0, description="Seconds per Qdrant server request.")

    corpus_roots: list[Path] = Field(
        default_factory=list,
        description="Server folders that IndexSetup.corpus_path and embeddings_path may name (JSON list); "
        "empty: no server-side files may be read.",
    )

    index_batch_size: int = Field(256, ge=1, le=2048, description="Documents per batch when a job sets none.")
    optimize_after_docs: int = Field(
        10_000,
        ge=0,
        description="Build the vector indexes after a job that wrote at least this many documents.",
    )
    max_top_k: int = Field(1000, ge=1, le=10_000, description="Most hits one search may ask for.")
    max_offset: int = Field(10_000, ge=0, description="Deepest page offset one search may ask for.")
