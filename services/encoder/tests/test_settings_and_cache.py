"""Settings from the environment, and the in-process cache's bound and value format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from featurelens.services.encoder.__main__ import backend_options, build_cache
from featurelens.services.encoder.cache import (
    MemoryEmbeddingCache,
    RedisEmbeddingCache,
    decode_value,
    encode_value,
)
from featurelens.services.encoder.settings import EncoderSettings


def test_settings_come_from_featurelens_encoder_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURELENS_ENCODER_MODELS", '["wordllama", "openai"]')
    monkeypatch.setenv("FEATURELENS_ENCODER_PORT", "50999")
    monkeypatch.setenv("FEATURELENS_ENCODER_OPENAI_API_KEY", "sk-from-env-1234567890")
    monkeypatch.setenv("FEATURELENS_ENCODER_REDIS_URL", "redis://cache:6379/0")

    settings = EncoderSettings()

    assert settings.models == ["wordllama", "openai"]
    assert settings.port == 50999
    assert settings.openai_api_key.get_secret_value() == "sk-from-env-1234567890"
    assert "sk-from-env" not in repr(settings)
    assert isinstance(build_cache(settings), RedisEmbeddingCache)


def test_defaults_serve_minilm_with_an_in_process_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODELS", "PORT", "REDIS_URL"):
        monkeypatch.delenv(f"FEATURELENS_ENCODER_{name}", raising=False)

    settings = EncoderSettings()

    assert settings.models == ["sentence-transformers"]
    assert settings.port == 50051
    assert (settings.max_texts, settings.max_text_bytes) == (2048, 65536)
    assert settings.cache_ttl_s == 7 * 24 * 3600
    assert settings.engine == "auto"
    assert isinstance(build_cache(settings), MemoryEmbeddingCache)


def test_the_engine_setting_reaches_the_local_model_and_rejects_unknown_engines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEATURELENS_ENCODER_ENGINE", "ONNX-int8")
    monkeypatch.setenv("FEATURELENS_ENCODER_ONNX_THREADS", "2")

    options = backend_options("minilm", EncoderSettings())

    assert options["engine"] == "onnx-int8"
    assert options["threads"] == 2
    assert options["onnx_cache_dir"] == Path(".featurelens/cache/onnx")
    assert EncoderSettings(engine="torch").engine == "torch"
    monkeypatch.setenv("FEATURELENS_ENCODER_ENGINE", "tensorrt")
    with pytest.raises(
        ValidationError, match=r"Unknown sentence-transformers engine 'tensorrt'; use one of auto"
    ):
        EncoderSettings()


def test_openai_options_carry_the_url_model_and_key() -> None:
    settings = EncoderSettings(
        models=["openai"], openai_base_url="http://llm:8000/v1", openai_api_key="sk-abcdefgh12345678"
    )

    options = backend_options("openai", settings)

    assert options["base_url"] == "http://llm:8000/v1"
    assert options["model"] == "text-embedding-3-small"
    assert options["api_key"] == "sk-abcdefgh12345678"


def test_a_cached_value_keeps_the_row_and_the_truncation_flag() -> None:
    row = np.linspace(-1, 1, 6, dtype=np.float32)

    decoded = decode_value(encode_value(row, True), 6)

    assert decoded is not None
    np.testing.assert_array_equal(decoded.vector, row)
    assert decoded.truncated is True
    assert decode_value(encode_value(row, False), 5) is None


async def test_the_in_process_cache_evicts_the_least_recently_used_rows_beyond_its_bound() -> None:
    entry = 4 * 4 + 1 + MemoryEmbeddingCache.ENTRY_OVERHEAD_BYTES
    cache = MemoryEmbeddingCache(max_bytes=3 * entry)
    rows = np.eye(4, dtype=np.float32)
    await cache.put_many("m", ["a", "b", "c"], rows[:3], [False] * 3)
    await cache.get_many("m", ["a"], 4)  # "a" is now the most recently used

    await cache.put_many("m", ["d"], rows[3:], [False])

    found = await cache.get_many("m", ["a", "b", "c", "d"], 4)
    assert [row is not None for row in found] == [True, False, True, True]
    assert len(cache) == 3
