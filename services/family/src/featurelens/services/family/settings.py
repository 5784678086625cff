"""Settings of the family service, read from ``FEATURELENS_FAMILY_<FIELD>`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from featurelens.kit import service_config
from featurelens.kit.stores import StoreSettings

DEFAULT_PORT = 50055


class FamilySettings(StoreSettings):
    """Everything the family service can be configured with (see the service README)."""

    model_config = service_config("FAMILY")

    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port; 0 picks a free one.")

    search_address: str = Field("127.0.0.1:50053", description="host:port of the search service.")
    sae_address: str = Field("127.0.0.1:50052", description="host:port of the sae service.")
    labelling_address: str = Field("127.0.0.1:50054", description="host:port of the labelling service.")
    peer_timeout_s: float = Field(
        60.0, gt=0, description="Deadline of each call to another service, seconds."
    )
    export_timeout_s: float = Field(
        900.0, gt=0, description="Deadline of reading a corpus's activations from search, seconds."
    )
    labelling_timeout_s: float = Field(
        3600.0, gt=0, description="Deadline of labelling the families of one build (LLM calls), seconds."
    )

    edge_path: Path = Field(
        Path(".featurelens/families/qdrant"), description="Folder of the in-process Qdrant data."
    )
    activations_path: Path = Field(
        Path(".featurelens/families/activations"),
        description="Folder of the binary activations of each SAE's last build (a cache FeatureNeighbours "
        "reads co-occurrence from; rebuilt from search when missing).",
    )

    decoder_batch: int = Field(
        2048,
        ge=1,
        le=4096,
        description="Decoder directions asked of the sae service per call (at most its max_batch).",
    )
    decoder_cache: int = Field(
        4, ge=0, le=64, description="Whole decoders kept in memory for neighbours and matching, by SAE."
    )
    max_match_results: int = Field(
        200_000,
        ge=1,
        le=10_000_000,
        description="Most (feature, match) pairs one MatchFeatures answer may hold.",
    )
