"""Settings of the encoder service, read from ``FEATURELENS_ENCODER_<FIELD>`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from featurelens.embedding.backends import ENGINES, check_engine
from featurelens.kit import ServiceSettings, service_config

DEFAULT_PORT = 50051
SEVEN_DAYS_S = 7 * 24 * 3600


class EncoderSettings(ServiceSettings):
    """Everything the encoder service can be configured with (see the service README)."""

    model_config = service_config("ENCODER")

    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    models: list[str] = Field(
        default_factory=lambda: ["sentence-transformers"],
        description='Backend specs to load, as a JSON list, e.g. ["sentence-transformers", "openai"].',
    )
    default_model: str = Field(
        "", description="Model id (or backend spec) used when a request names none; empty = the first model."
    )
    batch_size: int = Field(64, ge=1, description="Texts per call into a model (the unit of scheduling).")
    device: str = Field("cpu", description='Torch device of the sentence-transformers model, e.g. "cuda".')
    engine: str = Field(
        "auto",
        description=(
            f"What runs the sentence-transformers model: {' | '.join(ENGINES)}. auto = ONNX Runtime "
            "(int8, else fp32) on CPU when it is installed and agrees with PyTorch (cosine >= 0.99 "
            "per text on fixed texts), else PyTorch; the server log says which and why."
        ),
    )
    onnx_cache_dir: Path = Field(
        Path(".featurelens/cache/onnx"), description="Folder of the models exported to ONNX (once each)."
    )
    onnx_threads: int = Field(0, ge=0, description="ONNX Runtime's intra-op threads; 0 = every usable core.")

    openai_base_url: str = Field("", description="OpenAI-compatible API base URL; empty = api.openai.com.")
    openai_model: str = Field("text-embedding-3-small", description="Embedding model name at the API.")
    openai_api_key: SecretStr = Field(SecretStr(""), description="API key (prefer openai_api_key_file).")
    openai_api_key_file: Path | None = Field(
        None, description="File holding the API key (a mounted secret); set this or openai_api_key."
    )
    openai_timeout_s: float = Field(30.0, gt=0, description="Seconds per API request.")
    openai_max_retries: int = Field(3, ge=0, description="Retries of a failed API request (with backoff).")
    openai_concurrency: int = Field(4, ge=1, description="API requests in flight at once.")

    max_texts: int = Field(2048, ge=1, description="Most texts in one Embed call or one stream batch.")
    max_text_bytes: int = Field(64 * 1024, ge=1, description="Longest text accepted, in UTF-8 bytes.")

    redis_url: str = Field("", description="Redis for the embedding cache; empty = an in-process LRU cache.")
    cache_ttl_s: int = Field(SEVEN_DAYS_S, ge=1, description="Seconds a cached embedding lives in Redis.")
    cache_timeout_s: float = Field(
        0.5, gt=0, description="Seconds a Redis operation may take before the cache is skipped."
    )
    redis_max_connections: int = Field(32, ge=1, description="Size of the blocking Redis connection pool.")
    memory_cache_bytes: int = Field(
        256 * 1024 * 1024, ge=0, description="Bound of the in-process cache in bytes; 0 disables it."
    )

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        return check_engine(value)
