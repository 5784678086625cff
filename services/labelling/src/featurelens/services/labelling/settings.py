"""Settings of the labelling service, read from ``FEATURELENS_LABELLING_<FIELD>`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from featurelens.kit import service_config
from featurelens.kit.stores import StoreSettings

DEFAULT_PORT = 50054


class LabellingSettings(StoreSettings):
    """Everything the labelling service can be configured with (see the service README)."""

    model_config = service_config("LABELLING")

    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port; 0 picks a free one.")

    search_address: str = Field("127.0.0.1:50053", description="host:port of the search service.")
    encoder_address: str = Field("127.0.0.1:50051", description="host:port of the encoder service.")
    sae_address: str = Field("127.0.0.1:50052", description="host:port of the sae service.")
    peer_timeout_s: float = Field(
        60.0, gt=0, description="Deadline of each call to another service, seconds."
    )

    edge_path: Path = Field(Path(".featurelens/labels"), description="Folder of the in-process Qdrant data.")

    default_domain: str = Field(
        "documents", min_length=1, max_length=200, description="What the corpus is, when a job names nothing."
    )
    concurrency: int = Field(
        32,
        ge=1,
        le=256,
        description="Features labelled at once in one job (each waits on LLM calls most of the time).",
    )

    llm_base_url: str = Field(
        "",
        description="OpenAI-compatible endpoint (e.g. https://api.openai.com/v1); empty: the offline "
        "labeller unless a job names an allowed endpoint.",
    )
    llm_allowed_base_urls: list[str] = Field(
        default_factory=list,
        description="Other endpoints a job may name (JSON list); llm_base_url is always allowed.",
    )
    llm_allow_loopback: bool = Field(
        True,
        description="Let a job name any endpoint on 127.0.0.1 / localhost / ::1 (a local vLLM, Ollama or "
        "llama.cpp server). The image turns it off: in a container, loopback is the container itself.",
    )
    llm_api_key: SecretStr = Field(
        SecretStr(""), description="API key of the endpoint (prefer llm_api_key_file)."
    )
    llm_api_key_file: Path | None = Field(
        None, description="File holding the API key (a mounted secret); set this or llm_api_key."
    )
    interpreter_model: str = Field("gpt-4o-mini", description="Interpreter model when a job names none.")
    predictor_model: str = Field("gpt-4o-mini", description="Predictor model when a job names none.")
    llm_timeout_s: float = Field(60.0, gt=0, description="Seconds per LLM call.")
    llm_max_retries: int = Field(5, ge=0, le=20, description="Retries of a call on 429, 5xx and timeouts.")
    llm_max_concurrency: int = Field(
        64,
        ge=1,
        le=1024,
        description="LLM calls in flight at once, per job (a feature's predictor batches run together).",
    )
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="US dollars per million input and output tokens, by model "
        '(JSON: {"my-model": [0.2, 0.8]}); added to the prices of the known models.',
    )
    budget_usd: float = Field(
        5.0, ge=0, le=100_000, description="Most dollars one job may spend, when it names no budget."
    )
    max_budget_usd: float = Field(100.0, ge=0, le=100_000, description="Most dollars a job may ask to spend.")

    redis_url: str = Field("", description="Redis for the LLM answer cache; empty = an in-process cache.")
    llm_cache_ttl_s: int = Field(30 * 24 * 3600, ge=1, description="Seconds a cached LLM answer is kept.")

    @field_validator("llm_api_key_file", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        """An empty variable (compose's ``${VAR:-}``) means no file."""
        return None if value == "" else value
