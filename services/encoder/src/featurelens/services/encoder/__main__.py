"""Run the encoder service: ``python -m featurelens.services.encoder``.

This is the only module that reads the environment (through ``EncoderSettings``).
``build_servicer`` is also what the embedded mode (``featurelens up``) calls.
"""

from __future__ import annotations

import functools
from typing import Any

from featurelens.embedding.backends import load_backend, resolve_api_key
from featurelens.kit import register_secret, run_service
from featurelens.services.encoder.cache import EmbeddingCache, MemoryEmbeddingCache, RedisEmbeddingCache
from featurelens.services.encoder.servicer import BackendLoader, EncoderServicer
from featurelens.services.encoder.settings import EncoderSettings


def backend_options(spec: str, settings: EncoderSettings) -> dict[str, Any]:
    """Keyword arguments of ``load_backend`` for one spec."""
    kind = spec.strip().lower()
    if kind == "openai":
        api_key = resolve_api_key(settings.openai_api_key.get_secret_value(), settings.openai_api_key_file)
        # A key read from a file is no setting the kit sees: redact it from logs and answers too.
        register_secret(api_key)
        options: dict[str, Any] = {
            "model": settings.openai_model,
            "api_key": api_key,
            "timeout_s": settings.openai_timeout_s,
            "max_retries": settings.openai_max_retries,
        }
        if settings.openai_base_url:
            options["base_url"] = settings.openai_base_url
        return options
    if kind in ("sentence-transformers", "sentence_transformers", "minilm"):
        return {
            "device": settings.device,
            "batch_size": settings.batch_size,
            "engine": settings.engine,
            "onnx_cache_dir": settings.onnx_cache_dir,
            "threads": settings.onnx_threads or None,
        }
    return {"batch_size": settings.batch_size}


def build_cache(settings: EncoderSettings) -> EmbeddingCache:
    """Redis when a URL is set, else a bounded in-process LRU."""
    if settings.redis_url:
        return RedisEmbeddingCache(
            settings.redis_url,
            ttl_s=settings.cache_ttl_s,
            timeout_s=settings.cache_timeout_s,
            max_connections=settings.redis_max_connections,
        )
    return MemoryEmbeddingCache(settings.memory_cache_bytes)


def build_servicer(settings: EncoderSettings) -> EncoderServicer:
    """An encoder servicer per the settings; models load when the server starts it."""
    loaders: dict[str, BackendLoader] = {
        spec: functools.partial(load_backend, spec, **backend_options(spec, settings))
        for spec in settings.models
    }
    return EncoderServicer(
        loaders,
        build_cache(settings),
        default_model=settings.default_model,
        max_texts=settings.max_texts,
        max_text_bytes=settings.max_text_bytes,
        batch_size=settings.batch_size,
        remote_concurrency=settings.openai_concurrency,
    )


def main() -> None:
    run_service(EncoderSettings(), build_servicer)


if __name__ == "__main__":
    main()
