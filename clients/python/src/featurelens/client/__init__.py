"""featurelens Python SDK: typed sync and async clients for the featurelens gRPC services.

from featurelens.client import FeaturelensClient

with FeaturelensClient("127.0.0.1:50051") as client:
    embeddings = client.encoder.embed(["sparse autoencoders on embeddings"])
    print(embeddings.model_id, embeddings.vectors.shape)
"""

from featurelens.client.arrays import ArrayFormatError
from featurelens.client.client import SERVICE_NAMES, AsyncFeaturelensClient, FeaturelensClient, HealthStatus
from featurelens.client.errors import (
    APIStatusError,
    DeadlineExceededError,
    FeaturelensError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from featurelens.client.types import (
    ActivatedDocument,
    ActivationBatch,
    CorpusInfo,
    Decoded,
    DecoderDirections,
    Document,
    Embeddings,
    FeatureContribution,
    Filter,
    Hit,
    IndexProgress,
    Intervention,
    Latents,
    ModelInfo,
    Progress,
    SaeConfig,
    SaeInfo,
    SaeMetrics,
    SearchResult,
    SparseVector,
    Steered,
    TrainProgress,
)

__all__ = [
    "SERVICE_NAMES",
    "APIStatusError",
    "ActivatedDocument",
    "ActivationBatch",
    "ArrayFormatError",
    "AsyncFeaturelensClient",
    "CorpusInfo",
    "DeadlineExceededError",
    "Decoded",
    "DecoderDirections",
    "Document",
    "Embeddings",
    "FeatureContribution",
    "FeaturelensClient",
    "FeaturelensError",
    "Filter",
    "HealthStatus",
    "Hit",
    "IndexProgress",
    "Intervention",
    "InvalidArgumentError",
    "Latents",
    "ModelInfo",
    "NotFoundError",
    "Progress",
    "SaeConfig",
    "SaeInfo",
    "SaeMetrics",
    "SearchResult",
    "SparseVector",
    "Steered",
    "TrainProgress",
    "UnavailableError",
]
