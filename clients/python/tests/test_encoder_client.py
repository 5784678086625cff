"""The SDK's encoder sub-client against the real encoder service (wordllama) on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
import numpy as np
import pytest

from featurelens.client import (
    APIStatusError,
    AsyncFeaturelensClient,
    DeadlineExceededError,
    Embeddings,
    FeaturelensClient,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)

MODEL_ID = "wordllama-l2-supercat-256"
TEXTS = [
    "Dark matter halo mass function at high redshift.",
    "Sparse autoencoders find interpretable features in dense embeddings.",
    "A survey of retrieval-augmented generation.",
]


@pytest.fixture
def client(encoder_address: str) -> Iterator[FeaturelensClient]:
    with FeaturelensClient(encoder_address) as client:
        yield client


@pytest.fixture
async def aclient(encoder_address: str) -> AsyncIterator[AsyncFeaturelensClient]:
    async with AsyncFeaturelensClient(encoder_address) as client:
        yield client


def assert_same_embeddings(a: Embeddings, b: Embeddings) -> None:
    assert a.model_id == b.model_id
    assert a.truncated == b.truncated
    np.testing.assert_array_equal(a.vectors, b.vectors)


def test_embed_returns_one_unit_float32_row_per_text_in_order(client: FeaturelensClient) -> None:
    embeddings = client.encoder.embed(TEXTS)

    assert embeddings.vectors.shape == (3, 256)
    assert embeddings.vectors.dtype == np.float32
    assert (len(embeddings), embeddings.dim, embeddings.model_id) == (3, 256, MODEL_ID)
    assert embeddings.truncated == (False, False, False)
    np.testing.assert_allclose(np.linalg.norm(embeddings.vectors, axis=1), 1.0, rtol=1e-5)
    single = client.encoder.embed([TEXTS[1]])
    np.testing.assert_allclose(single.vectors[0], embeddings.vectors[1], rtol=1e-5, atol=1e-6)


def test_a_repeated_embed_is_served_from_the_cache(client: FeaturelensClient) -> None:
    texts = ["a text embedded twice by the cache test"]
    client.encoder.embed(texts)

    assert client.encoder.embed(texts).cached_count == 1


async def test_sync_and_async_clients_give_the_same_embeddings_and_models(
    client: FeaturelensClient, aclient: AsyncFeaturelensClient
) -> None:
    assert_same_embeddings(client.encoder.embed(TEXTS), await aclient.encoder.embed(TEXTS))
    assert client.encoder.list_models() == await aclient.encoder.list_models()


def test_list_models_names_the_default_model(client: FeaturelensClient) -> None:
    [model] = client.encoder.list_models()

    assert (model.id, model.backend, model.dim, model.is_default) == (MODEL_ID, "wordllama", 256, True)


def test_a_model_can_be_named_by_its_id(client: FeaturelensClient) -> None:
    assert client.encoder.embed(TEXTS[:1], model=MODEL_ID).model_id == MODEL_ID


async def test_embed_stream_answers_each_batch_in_order_like_embed(
    client: FeaturelensClient, aclient: AsyncFeaturelensClient
) -> None:
    batches = [TEXTS[:2], TEXTS[2:], TEXTS]

    def lazily() -> Iterator[Sequence[str]]:
        yield from batches

    async def asynchronously() -> AsyncIterator[Sequence[str]]:
        for batch in batches:
            yield batch

    sync_results = list(client.encoder.embed_stream(lazily()))
    async_results = [e async for e in aclient.encoder.embed_stream(asynchronously())]
    async_from_list = [e async for e in aclient.encoder.embed_stream(batches)]

    assert [len(e) for e in sync_results] == [2, 1, 3]
    for batch, streamed, from_async, from_list in zip(
        batches, sync_results, async_results, async_from_list, strict=True
    ):
        assert_same_embeddings(streamed, client.encoder.embed(batch))
        assert_same_embeddings(streamed, from_async)
        assert_same_embeddings(streamed, from_list)


def test_a_bare_string_is_refused_before_anything_is_sent(client: FeaturelensClient) -> None:
    with pytest.raises(TypeError, match="wrap a single text in a list"):
        client.encoder.embed("not a list")


def test_an_empty_text_is_an_invalid_argument_error_with_the_servers_sentence(
    client: FeaturelensClient,
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.encoder.embed(["fine", "   "])

    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "text 1 is empty" in caught.value.details
    assert caught.value.request_id is not None
    assert caught.value.request_id in str(caught.value)


async def test_async_errors_map_to_the_same_classes(aclient: AsyncFeaturelensClient) -> None:
    with pytest.raises(InvalidArgumentError, match="text 0 is empty"):
        await aclient.encoder.embed([""])
    with pytest.raises(NotFoundError, match="unknown model 'nope'"):
        await aclient.encoder.embed(["x"], model="nope")


def test_an_unknown_model_is_a_not_found_error(client: FeaturelensClient) -> None:
    with pytest.raises(NotFoundError, match="unknown model 'nope'"):
        client.encoder.embed(["x"], model="nope")


def test_too_many_texts_is_an_api_status_error_with_its_code(client: FeaturelensClient) -> None:
    with pytest.raises(APIStatusError) as caught:
        client.encoder.embed(["x"] * 2049)

    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_errors_in_a_stream_map_like_unary_errors(client: FeaturelensClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        list(client.encoder.embed_stream([["fine"], [""]]))

    assert caught.value.request_id


def test_a_server_that_is_not_there_is_unavailable(closed_address: str) -> None:
    with FeaturelensClient(closed_address, timeout_s=5) as client, pytest.raises(UnavailableError):
        client.encoder.embed(["x"])


async def test_a_server_that_is_not_there_is_unavailable_to_the_async_client(closed_address: str) -> None:
    async with AsyncFeaturelensClient(closed_address, timeout_s=5) as client:
        with pytest.raises(UnavailableError):
            await client.encoder.list_models()


def test_a_call_past_its_timeout_is_a_deadline_exceeded_error(services_address: str) -> None:
    with FeaturelensClient(services_address, timeout_s=0.2) as client, pytest.raises(DeadlineExceededError):
        client.sae.get_sae("slow")


async def test_an_async_call_past_its_timeout_is_a_deadline_exceeded_error(services_address: str) -> None:
    async with AsyncFeaturelensClient(services_address, timeout_s=0.2) as client:
        with pytest.raises(DeadlineExceededError):
            await client.sae.get_sae("slow")


def test_health_reports_the_server_and_the_hosted_services(client: FeaturelensClient) -> None:
    assert client.health() == "SERVING"
    assert client.health("encoder") == "SERVING"
    assert client.health("sae") == "SERVICE_UNKNOWN"


async def test_async_health_matches_sync_health(
    client: FeaturelensClient, aclient: AsyncFeaturelensClient
) -> None:
    for service in ("", "encoder", "search"):
        assert await aclient.health(service) == client.health(service)


def test_a_bad_batch_in_a_stream_raises_its_own_error_not_a_status(client: FeaturelensClient) -> None:
    with pytest.raises(TypeError, match="wrap a single text in a list"):
        list(client.encoder.embed_stream([["fine"], "a bare string"]))


async def test_a_bad_batch_in_an_async_stream_raises_its_own_error(aclient: AsyncFeaturelensClient) -> None:
    not_texts: list[Any] = [["fine"], [3]]
    with pytest.raises(TypeError, match=r"texts\[0\] is a int"):
        [e async for e in aclient.encoder.embed_stream(not_texts)]


async def test_leaving_a_stream_early_leaves_the_client_usable(aclient: AsyncFeaturelensClient) -> None:
    async for embeddings in aclient.encoder.embed_stream([TEXTS[:1], TEXTS[1:2], TEXTS[2:]]):
        assert len(embeddings) == 1
        break

    assert len(await aclient.encoder.embed(TEXTS)) == 3


def test_an_answer_larger_than_max_message_bytes_is_refused(encoder_address: str) -> None:
    # 16 rows of 256 float32 are 16 KiB, over the 4 KiB this client accepts.
    with (
        FeaturelensClient(encoder_address, max_message_bytes=4096) as client,
        pytest.raises(APIStatusError) as caught,
    ):
        client.encoder.embed([f"text number {i}" for i in range(16)])

    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
