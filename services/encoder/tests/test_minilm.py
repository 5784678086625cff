"""End to end with the real default model, all-MiniLM-L6-v2 (loads in about 5 s on 2 cores)."""

from __future__ import annotations

import numpy as np
import pytest
from encoder_testing import rows_of, serve_encoder

from featurelens.services.encoder.__main__ import build_servicer
from featurelens.services.encoder.settings import EncoderSettings
from featurelens.v1 import encoder_pb2


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


async def test_the_default_settings_serve_minilm_with_truncation_flags() -> None:
    texts = [
        "Dark matter halos of dwarf galaxies.",
        "The dark matter content of dwarf galaxies.",
        "A recipe for sourdough bread.",
        "galaxy " * 400,  # far past MiniLM's 256 tokens
    ]
    servicer = build_servicer(EncoderSettings(models=["sentence-transformers"], redis_url=""))
    async with serve_encoder(servicer) as running:
        models = await running.stub.ListModels(encoder_pb2.ListModelsRequest())
        reply = await running.stub.Embed(encoder_pb2.EmbedRequest(texts=texts))
        direct = running.servicer.backends[0].embed(texts)

    assert [(m.id, m.dim, m.max_input_tokens) for m in models.models] == [("all-MiniLM-L6-v2", 384, 256)]
    rows = rows_of(reply.embeddings)
    np.testing.assert_allclose(rows, direct.vectors, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert list(reply.truncated) == [False, False, False, True]
    assert rows[0] @ rows[1] > rows[0] @ rows[2]
