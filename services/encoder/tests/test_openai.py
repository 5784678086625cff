"""The OpenAI backend through the service, against the fake OpenAI-compatible server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from encoder_testing import failure_of, rows_of, serve_encoder
from fake_openai import FakeOpenAI, serve_fake_openai

from featurelens.services.encoder.__main__ import build_servicer
from featurelens.services.encoder.settings import EncoderSettings
from featurelens.v1 import encoder_pb2

API_KEY = "sk-test-0123456789abcdef"
TEXTS = ["Gravitational waves from binary neutron stars.", "Dust attenuation curves of galaxies."]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with serve_fake_openai(dim=32, model="fake-embedding-model", api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "openai_api_key"
    path.write_text(API_KEY + "\n", encoding="utf-8")
    return path


def openai_settings(fake: FakeOpenAI, **overrides: object) -> EncoderSettings:
    return EncoderSettings(
        models=["openai"],
        openai_base_url=fake.base_url,
        openai_model="fake-embedding-model",
        openai_max_retries=0,
        **overrides,  # type: ignore[arg-type]
    )


async def test_embed_goes_through_the_openai_backend_with_the_key_from_a_file(
    fake: FakeOpenAI, key_file: Path
) -> None:
    servicer = build_servicer(openai_settings(fake, openai_api_key_file=key_file))
    async with serve_encoder(servicer) as running:
        models = await running.stub.ListModels(encoder_pb2.ListModelsRequest())
        reply = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))
        calls = fake.embedding_calls
        again = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS))

    assert [(m.id, m.backend, m.dim, m.is_default) for m in models.models] == [
        ("fake-embedding-model", "openai", 32, True)
    ]
    assert reply.model_id == "fake-embedding-model"
    expected = np.array([fake.embedding_for(text) for text in TEXTS], dtype=np.float32)
    np.testing.assert_allclose(rows_of(reply.embeddings), expected, atol=1e-6)
    assert again.cached_count == 2
    assert fake.embedding_calls == calls


async def test_a_wrong_api_key_is_a_failed_precondition_not_a_retry_signal(fake: FakeOpenAI) -> None:
    servicer = build_servicer(openai_settings(fake, openai_api_key="sk-wrong-key-000000000"))
    async with serve_encoder(servicer) as running:
        error = await failure_of(running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS)))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "HTTP 401" in (error.details() or "")
    assert "sk-wrong" not in (error.details() or "")


async def test_an_api_that_keeps_failing_is_unavailable(fake: FakeOpenAI) -> None:
    servicer = build_servicer(openai_settings(fake, openai_api_key=API_KEY))
    async with serve_encoder(servicer) as running:
        fake.fail_next(503, times=5, message="The server is overloaded.")
        error = await failure_of(running.stub.Embed(encoder_pb2.EmbedRequest(texts=TEXTS)))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
