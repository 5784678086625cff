"""Embedding backends: OpenAI-compatible API through the real client and a local fake server,
WordLlama, and (one test) MiniLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
from fake_openai import FakeOpenAI, serve_fake_openai

from featurelens.corpus import Record
from featurelens.embedding.backends import (
    BackendUnavailableError,
    EmbeddingBackend,
    EmbeddingBackendError,
    OpenAIBackend,
    SentenceTransformerBackend,
    WordLlamaBackend,
    load_backend,
    resolve_api_key,
    split_batches,
)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with serve_fake_openai(dim=32, api_key="sk-test") as server:
        yield server


class RecordedSleeps(list[float]):
    """A `sleep` stand-in that remembers the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _backend(fake: FakeOpenAI, **options: object) -> OpenAIBackend:
    settings: dict[str, object] = {"model": "fake-embedding-model", "api_key": "sk-test", "timeout_s": 5.0}
    settings.update(options)
    return OpenAIBackend(fake.base_url, **settings)  # type: ignore[arg-type]


def _expected(fake: FakeOpenAI, texts: list[str]) -> np.ndarray:
    return np.array([fake.embedding_for(text) for text in texts], dtype=np.float32)


def test_openai_backend_embeds_real_abstracts_through_the_openai_client(
    fake: FakeOpenAI, astro_records: list[Record]
) -> None:
    texts = [record.embedding_text for record in astro_records[:20]]
    backend = _backend(fake)

    result = backend.embed(texts)

    assert isinstance(backend, EmbeddingBackend)
    assert result.vectors.shape == (20, 32)
    assert result.vectors.dtype == np.float32
    np.testing.assert_allclose(result.vectors, _expected(fake, texts), atol=1e-6)
    assert result.truncated == [False] * 20
    assert backend.dim == 32
    assert backend.model_id == "fake-embedding-model"
    assert backend.backend == "openai"
    request = fake.requests[-1]
    assert request.body is not None
    assert request.body["input"] == texts
    assert request.body["encoding_format"] == "base64"
    assert request.headers["authorization"] == "Bearer sk-test"
    backend.close()


def test_float_responses_are_read_too(fake: FakeOpenAI) -> None:
    result = _backend(fake, encoding_format="float").embed(["alpha", "beta"])
    np.testing.assert_allclose(result.vectors, _expected(fake, ["alpha", "beta"]), atol=1e-6)


def test_a_rate_limit_is_retried_after_the_servers_retry_after(fake: FakeOpenAI) -> None:
    fake.fail_next(429, headers={"retry-after-ms": "20"})
    sleeps = RecordedSleeps()

    result = _backend(fake, sleep=sleeps).embed(["one", "two"])

    assert fake.embedding_calls == 2
    assert sleeps == [pytest.approx(0.02)]
    np.testing.assert_allclose(result.vectors, _expected(fake, ["one", "two"]), atol=1e-6)


def test_server_errors_back_off_exponentially_until_retries_run_out(fake: FakeOpenAI) -> None:
    fake.fail_next(503, times=4, message="overloaded")
    sleeps = RecordedSleeps()
    backend = _backend(fake, max_retries=3, backoff_base_s=1.0, backoff_max_s=3.0, sleep=sleeps)

    with pytest.raises(BackendUnavailableError, match=r"failed 4 times.*HTTP 503"):
        backend.embed(["x"])

    assert fake.embedding_calls == 4
    assert len(sleeps) == 3
    for wait, ceiling in zip(sleeps, [1.0, 2.0, 3.0], strict=True):
        assert ceiling / 2 <= wait <= ceiling


def test_a_slow_server_times_out_and_becomes_unavailable(fake: FakeOpenAI) -> None:
    fake.delay_s = 2.0
    backend = _backend(fake, timeout_s=0.2, max_retries=1, sleep=RecordedSleeps())

    with pytest.raises(BackendUnavailableError, match=r"failed 2 times.*APITimeoutError"):
        backend.embed(["slow"])

    assert fake.embedding_calls == 2


def test_a_refused_request_fails_at_once_without_retries(fake: FakeOpenAI) -> None:
    backend = _backend(fake, api_key="sk-wrong", sleep=RecordedSleeps())

    with pytest.raises(EmbeddingBackendError, match=r"HTTP 401.*Incorrect API key") as caught:
        backend.embed(["x"])

    assert not isinstance(caught.value, BackendUnavailableError)
    assert fake.embedding_calls == 1


def test_an_unreachable_server_is_unavailable() -> None:
    with serve_fake_openai() as server:
        base_url = server.base_url
    backend = OpenAIBackend(base_url, model="m", dim=8, max_retries=1, sleep=RecordedSleeps())

    with pytest.raises(BackendUnavailableError, match="APIConnectionError"):
        backend.embed(["x"])


def test_large_batches_are_split_by_input_count_in_order(fake: FakeOpenAI) -> None:
    texts = [f"text number {i}" for i in range(7)]

    result = _backend(fake, max_batch_inputs=3).embed(texts)

    assert fake.embedding_calls == 3
    assert [len(request.body["input"]) for request in fake.requests if request.body] == [3, 3, 1]
    np.testing.assert_allclose(result.vectors, _expected(fake, texts), atol=1e-6)


def test_large_batches_are_split_by_estimated_tokens(fake: FakeOpenAI) -> None:
    texts = ["a" * 300, "b" * 300, "c" * 300]  # about 100 tokens each at 3 characters per token

    _backend(fake, max_batch_tokens=250, max_input_tokens=200).embed(texts)

    assert fake.embedding_calls == 2


def test_texts_over_the_input_limit_are_cut_and_flagged(fake: FakeOpenAI) -> None:
    long_text = "galaxy " * 100

    result = _backend(fake, max_input_tokens=50).embed(["short", long_text])

    assert result.truncated == [False, True]
    sent = fake.requests[-1].body
    assert sent is not None
    assert sent["input"][1] == long_text[:150]


def test_an_unknown_models_dimension_is_learnt_from_the_first_response(fake: FakeOpenAI) -> None:
    backend = _backend(fake)
    assert backend.dim == 32
    assert fake.embedding_calls == 1

    known = OpenAIBackend(fake.base_url, model="text-embedding-3-small", api_key="sk-test")
    assert known.dim == 1536
    assert fake.embedding_calls == 1


def test_a_response_of_the_wrong_dimension_is_an_error(fake: FakeOpenAI) -> None:
    with pytest.raises(EmbeddingBackendError, match=r"returned 32-dimensional vectors.*expected 1536"):
        _backend(fake, model="text-embedding-3-small").embed(["x"])


def test_request_dimensions_asks_the_api_for_shorter_vectors(fake: FakeOpenAI) -> None:
    backend = _backend(fake, dim=8, request_dimensions=True)

    result = backend.embed(["x"])

    assert result.vectors.shape == (1, 8)
    assert backend.model_id == "fake-embedding-model:8"
    assert fake.requests[-1].body is not None
    assert fake.requests[-1].body["dimensions"] == 8


def test_empty_texts_are_refused_before_any_request(fake: FakeOpenAI) -> None:
    with pytest.raises(ValueError, match="text 1 is empty"):
        _backend(fake).embed(["fine", ""])
    assert fake.embedding_calls == 0
    assert _backend(fake, dim=32).embed([]).vectors.shape == (0, 32)


def test_the_fake_server_answers_chat_completions_through_the_openai_client() -> None:
    with serve_fake_openai() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        messages: list[dict[str, str]] = [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "hello"},
        ]

        echoed = client.chat.completions.create(model="fake-chat", messages=messages)  # type: ignore[arg-type]
        server.responder = lambda body: f"label for {len(body['messages'])} messages"
        answered = client.chat.completions.create(model="fake-chat", messages=messages)  # type: ignore[arg-type]

        assert echoed.choices[0].message.content == "hello"
        assert answered.choices[0].message.content == "label for 2 messages"
        assert answered.usage is not None
        assert answered.usage.total_tokens > 0
        assert server.chat_calls == 2


def test_split_batches_keeps_order_and_respects_both_limits() -> None:
    texts = ["x" * 30] * 5 + ["y" * 600] + ["z"]
    runs = split_batches(texts, max_inputs=2, max_tokens=100, chars_per_token=3.0)
    assert [list(run) for run in runs] == [[0, 1], [2, 3], [4], [5], [6]]


def test_resolve_api_key_reads_a_value_or_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("sk-from-file\n")
    assert resolve_api_key(" sk-value ", None) == "sk-value"
    assert resolve_api_key(None, secret) == "sk-from-file"
    assert resolve_api_key("", None) is None
    with pytest.raises(ValueError, match="not both"):
        resolve_api_key("sk", secret)
    with pytest.raises(ValueError, match="Cannot read the API key file"):
        resolve_api_key(None, tmp_path / "missing")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        resolve_api_key(None, tmp_path / "empty")


@pytest.fixture(scope="module")
def wordllama() -> WordLlamaBackend:
    return WordLlamaBackend()


def test_wordllama_embeds_unit_vectors_deterministically(
    wordllama: WordLlamaBackend, astro_records: list[Record]
) -> None:
    texts = [record.embedding_text for record in astro_records[:100]]

    first = wordllama.embed(texts)
    second = wordllama.embed(list(reversed(texts)))

    assert isinstance(wordllama, EmbeddingBackend)
    assert wordllama.model_id == "wordllama-l2-supercat-256"
    assert (wordllama.dim, wordllama.max_input_tokens, wordllama.backend) == (256, 0, "wordllama")
    assert first.vectors.shape == (100, 256)
    assert first.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first.vectors, second.vectors[::-1], atol=1e-6)
    assert first.truncated == [False] * 100


def test_wordllama_can_use_a_shorter_matryoshka_dimension() -> None:
    backend = load_backend("wordllama", dim=64)
    result = backend.embed(["dark matter halo", "galaxy cluster"])
    assert backend.model_id == "wordllama-l2-supercat-64"
    assert result.vectors.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)


def test_wordllama_refuses_empty_texts_and_accepts_an_empty_batch(wordllama: WordLlamaBackend) -> None:
    with pytest.raises(ValueError, match="text 0 is empty"):
        wordllama.embed([""])
    assert wordllama.embed([]).vectors.shape == (0, 256)


def test_load_backend_names_the_known_backends_for_an_unknown_one() -> None:
    with pytest.raises(ValueError, match=r"use 'sentence-transformers'.*'wordllama' or 'openai'"):
        load_backend("word2vec")


def test_minilm_embeds_384_unit_vectors_that_put_similar_texts_closer(astro_records: list[Record]) -> None:
    backend = SentenceTransformerBackend()
    texts = [
        "Dark matter halos of dwarf galaxies",
        "The dark matter content of small galaxies",
        "A recipe for baking sourdough bread",
        " ".join(record.text for record in astro_records[:3]),  # far past 256 tokens
    ]

    result = backend.embed(texts)

    assert (backend.model_id, backend.dim, backend.max_input_tokens) == ("all-MiniLM-L6-v2", 384, 256)
    assert backend.backend == "sentence-transformers"
    assert result.vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    similarity = result.vectors @ result.vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    assert result.truncated == [False, False, False, True]
