"""Settings of the search service, read from ``FEATURELENS_SEARCH_<FIELD>`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from featurelens.kit import service_config
from featurelens.kit.stores import StoreSettings

DEFAULT_PORT = 50053


class SearchSettings(StoreSettings):
    """Everything the search service can be configured with (see the service README)."""

    model_config = service_config("SEARCH")

    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port; 0 picks a free one.")

    encoder_address: str = Field("127.0.0.1:50051", description="host:port of the encoder service.")
    sae_address: str = Field("127.0.0.1:50052", description="host:port of the sae service.")
    encoder_timeout_s: float = Field(30.0, gt=0, description="Deadline of each call to the encoder, seconds.")
    sae_timeout_s: float = Field(30.0, gt=0, description="Deadline of each call to the sae service, seconds.")
    labelling_address: str = Field(
        "127.0.0.1:50054",
        description="host:port of the labelling service: feature labels in explanations and steered "
        "features, and the features that phrase interventions name.",
    )
    labelling_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Deadline of each call to the labelling service, seconds (a label lookup that "
        "misses it leaves the labels out rather than failing the search).",
    )

    family_address: str = Field(
        "127.0.0.1:50055",
        description="host:port of the family service: the members of family interventions and the "
        "families of explaining features; empty: none (family targets are refused).",
    )
    family_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Deadline of each call to the family service, seconds (a lookup for an explanation "
        "that misses it leaves the families out; a family intervention fails).",
    )

    edge_search_threads: int = Field(
        1,
        ge=0,
        description="Search threads per corpus of the in-process Qdrant; 0 = one per CPU. An optimized "
        "corpus is one segment, so more threads only add work.",
    )

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
