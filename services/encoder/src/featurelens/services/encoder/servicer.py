"""The EncoderService: validates requests, serves rows from the cache, embeds the rest."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from grpc import aio
from typing_extensions import override

from featurelens.embedding.backends import BackendUnavailableError, EmbeddingBackend, EmbeddingBackendError
from featurelens.kit import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    ServiceError,
    UnavailableError,
)
from featurelens.kit.echo import shown
from featurelens.services.encoder import convert
from featurelens.services.encoder.cache import EmbeddingCache
from featurelens.v1 import encoder_pb2, encoder_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name
FLOAT32 = np.dtype(np.float32)
#: Texts of the warm-up batch each model embeds before the service reports SERVING.
WARMUP_TEXTS = (
    "Warm-up: the first batch pays for lazy initialisation.",
    "Dark matter halo mass function at high redshift.",
)

BackendLoader = Callable[[], EmbeddingBackend]
T = TypeVar("T")


@dataclass
class Embedded:
    """Rows for one batch of texts, in request order."""

    vectors: np.ndarray
    truncated: list[bool]
    cached_count: int


@dataclass
class _Model:
    """A loaded backend and the executor its blocking calls run on."""

    spec: str
    backend: EmbeddingBackend
    #: Calls into the backend at once: 1 for a local model (one call already uses every core, and
    #: one at a time keeps a small request from queueing behind many chunks), more for remote APIs.
    concurrency: int
    #: The embedding dimension once known (a remote model of unknown size learns it on its first call).
    dim: int | None = None
    executor: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"embed-{self.spec}")

    @property
    def id(self) -> str:
        return self.backend.model_id


class EncoderServicer(encoder_pb2_grpc.EncoderServiceServicer):
    """Embeds texts with the loaded backends, through an embedding cache.

    ``loaders`` maps each backend spec (e.g. "wordllama") to a function that loads it; the
    loading and one warm-up batch per model happen in ``start()``, off the event loop. A
    request's model is named by its model id or by the spec it was loaded from.
    """

    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(
        self,
        loaders: Mapping[str, BackendLoader],
        cache: EmbeddingCache,
        *,
        default_model: str = "",
        max_texts: int = 2048,
        max_text_bytes: int = 64 * 1024,
        batch_size: int = 64,
        remote_concurrency: int = 4,
        stream_lookahead: int = 2,
    ) -> None:
        if not loaders:
            raise ValueError("an encoder needs at least one model to load")
        self._loaders = dict(loaders)
        self.cache = cache
        self.default_model_name = default_model
        self.max_texts = max_texts
        self.max_text_bytes = max_text_bytes
        self.batch_size = batch_size
        self.remote_concurrency = remote_concurrency
        self.stream_lookahead = stream_lookahead
        self._models: list[_Model] = []
        self._by_name: dict[str, _Model] = {}
        self._default: _Model | None = None

    @property
    def backends(self) -> list[EmbeddingBackend]:
        """The loaded backends, in load order (empty until ``start()`` has loaded them)."""
        return [model.backend for model in self._models]

    # -- lifecycle (the kit's Servicer protocol) --------------------------------------------

    def add_to_server(self, server: aio.Server) -> None:
        encoder_pb2_grpc.add_EncoderServiceServicer_to_server(self, server)

    async def start(self) -> None:
        """Load every model in a worker thread and warm it up with one batch."""
        for spec, load in self._loaders.items():
            backend = await asyncio.to_thread(load)
            concurrency = self.remote_concurrency if backend.backend == "openai" else 1
            model = _Model(spec, backend, concurrency)
            self._models.append(model)
            await self._warm_up(model)
            logger.info("model %s loaded (%s, dim %s, spec %r)", model.id, backend.backend, model.dim, spec)
        self._by_name = {name: m for m in reversed(self._models) for name in (m.spec, m.id)}
        if self.default_model_name:
            default = self._by_name.get(self.default_model_name)
            if default is None:
                raise ValueError(
                    f"default model {self.default_model_name!r} is not among the loaded models "
                    f"({self._available()})"
                )
        else:
            default = self._models[0]
        self._default = default
        ping = getattr(self.cache, "ping", None)
        if ping is not None:
            await ping()  # reports an unreachable Redis at start rather than on the first call

    async def close(self) -> None:
        for model in self._models:
            model.executor.shutdown(wait=False, cancel_futures=True)
            close = getattr(model.backend, "close", None)
            if callable(close):
                close()
        stats = self.cache.stats
        logger.info("embedding cache: %d hits, %d misses, %d errors", stats.hits, stats.misses, stats.errors)
        await self.cache.close()

    async def _warm_up(self, model: _Model) -> None:
        try:
            await self._compute(model, list(WARMUP_TEXTS))
        except Exception as error:
            if model.backend.backend != "openai":
                raise
            # A remote API that is down at start must not keep the local models from serving.
            logger.warning("model %s: warm-up call failed (%s); serving it anyway", model.id, error)

    # -- RPCs ---------------------------------------------------------------------------------

    @override
    async def Embed(
        self, request: encoder_pb2.EmbedRequest, context: aio.ServicerContext
    ) -> encoder_pb2.EmbedResponse:
        return await self.embed(request)

    async def embed(self, request: encoder_pb2.EmbedRequest) -> encoder_pb2.EmbedResponse:
        """Embed as the RPC does; the embedded search service calls this in process, so both routes
        share one validation, one cache and one model."""
        model = self._model(request.model)
        texts = request.texts
        self._validate(texts)
        result = await self._embed(model, texts)
        return convert.embed_response(model.id, result.vectors, result.truncated, result.cached_count)

    @override
    async def EmbedStream(
        self,
        request_iterator: AsyncIterator[encoder_pb2.EmbedStreamRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[encoder_pb2.EmbedStreamResponse]:
        # A reader task takes batches as they arrive and starts each one, so the cache lookup
        # of batch n+1 overlaps the embedding of batch n; answers still leave in order. The
        # queue bounds how far the reader runs ahead of the answers.
        answers: asyncio.Queue[asyncio.Future[encoder_pb2.EmbedStreamResponse] | None] = asyncio.Queue(
            maxsize=self.stream_lookahead
        )
        reader = asyncio.create_task(self._read_stream(request_iterator, answers))
        answer: asyncio.Future[encoder_pb2.EmbedStreamResponse] | None = None
        try:
            while (answer := await answers.get()) is not None:
                yield await answer
        finally:
            # The call ended (done, failed or cancelled by the client): drop the batches ahead.
            reader.cancel()
            abandoned = [answer] + [answers.get_nowait() for _ in range(answers.qsize())]
            for future in abandoned:
                if future is not None:
                    _discard(future)

    @override
    async def ListModels(
        self, request: encoder_pb2.ListModelsRequest, context: aio.ServicerContext
    ) -> encoder_pb2.ListModelsResponse:
        self._require_started()
        return encoder_pb2.ListModelsResponse(
            models=[
                convert.model_info(m.backend, m.dim or 0, is_default=m is self._default) for m in self._models
            ]
        )

    # -- the work -----------------------------------------------------------------------------

    async def _embed(self, model: _Model, texts: Sequence[str]) -> Embedded:
        """Rows for validated texts: cached ones from the cache, the rest computed and stored."""
        count = len(texts)
        dim = await self._dim(model)
        cached = await self.cache.get_many(model.id, texts, dim)
        vectors = np.empty((count, dim), dtype=FLOAT32)
        truncated = [False] * count
        # Each distinct missing text is embedded once, however often the batch repeats it.
        missing: dict[str, int] = {}
        miss_rows: list[int] = []
        miss_sources: list[int] = []
        for row, hit in enumerate(cached):
            if hit is None:
                miss_rows.append(row)
                miss_sources.append(missing.setdefault(texts[row], len(missing)))
            else:
                vectors[row] = hit.vector
                truncated[row] = hit.truncated
        logger.debug(
            "model %s: %d of %d texts to embed, %d cached",
            model.id,
            len(missing),
            count,
            count - len(miss_rows),
        )
        if missing:
            unique = list(missing)
            computed, computed_truncated = await self._compute(model, unique)
            vectors[miss_rows] = computed[miss_sources]
            for row, source in zip(miss_rows, miss_sources, strict=True):
                truncated[row] = computed_truncated[source]
            await self.cache.put_many(model.id, unique, computed, computed_truncated)
        return Embedded(vectors, truncated, count - len(miss_rows))

    async def _compute(self, model: _Model, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        """Embed texts with the backend in chunks of batch_size, on the model's executor.

        Chunks go in one at a time (``concurrency`` at a time for remote APIs), so a small
        request arriving during a large one waits for one chunk, not for the whole request.
        """
        chunks = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        vectors: list[np.ndarray] = []
        truncated: list[bool] = []
        for start in range(0, len(chunks), model.concurrency):
            window = chunks[start : start + model.concurrency]
            results = await asyncio.gather(
                *(self._call(model, model.backend.embed, chunk) for chunk in window)
            )
            dim = await self._dim(model)
            for chunk, result in zip(window, results, strict=True):
                if result.vectors.shape != (len(chunk), dim):
                    raise RuntimeError(
                        f"model {model.id} returned shape {result.vectors.shape} for {len(chunk)} texts"
                    )
                vectors.append(result.vectors)
                truncated.extend(bool(cut) for cut in result.truncated)
        matrix = vectors[0] if len(vectors) == 1 else np.concatenate(vectors)
        return np.asarray(matrix, dtype=FLOAT32), truncated

    async def _dim(self, model: _Model) -> int:
        if model.dim is None:
            # Off the event loop: a remote backend may ask its API.
            model.dim = await self._call(model, lambda: model.backend.dim)
        return model.dim

    async def _call(self, model: _Model, function: Callable[..., T], *args: object) -> T:
        """Run a blocking backend call on the model's executor; backend errors become statuses."""
        try:
            return await asyncio.get_running_loop().run_in_executor(model.executor, function, *args)
        except BackendUnavailableError as error:
            raise UnavailableError(f"model {model.id} is unavailable: {error}") from error
        except EmbeddingBackendError as error:
            raise FailedPreconditionError(f"model {model.id} failed: {error}") from error

    async def _read_stream(
        self,
        requests: AsyncIterator[encoder_pb2.EmbedStreamRequest],
        answers: asyncio.Queue[asyncio.Future[encoder_pb2.EmbedStreamResponse] | None],
    ) -> None:
        stream_model: _Model | None = None
        try:
            async for request in requests:
                try:
                    model = self._model(request.model)
                    if stream_model is None:
                        stream_model = model
                    elif model is not stream_model:
                        named = shown(request.model) if request.model else "(default)"
                        raise InvalidArgumentError(
                            f"model {named} differs from this stream's model {stream_model.id!r}; "
                            "open one stream per model"
                        )
                except ServiceError as error:
                    raise _for_batch(request.batch_id, error) from None
                batch = asyncio.ensure_future(self._embed_batch(model, request))
                try:
                    await answers.put(batch)
                except asyncio.CancelledError:
                    batch.cancel()
                    raise
        except Exception as error:
            failed: asyncio.Future[encoder_pb2.EmbedStreamResponse] = asyncio.Future()
            failed.set_exception(error)
            await answers.put(failed)
            return
        await answers.put(None)

    async def _embed_batch(
        self, model: _Model, request: encoder_pb2.EmbedStreamRequest
    ) -> encoder_pb2.EmbedStreamResponse:
        try:
            self._validate(request.texts)
        except ServiceError as error:
            raise _for_batch(request.batch_id, error) from None
        result = await self._embed(model, request.texts)
        return convert.embed_stream_response(
            request.batch_id, model.id, result.vectors, result.truncated, result.cached_count
        )

    # -- validation ---------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._default is None:
            raise UnavailableError("the encoder is still loading its models; retry shortly")

    def _model(self, name: str) -> _Model:
        self._require_started()
        if not name:
            assert self._default is not None
            return self._default
        model = self._by_name.get(name)
        if model is None:
            raise NotFoundError(f"unknown model {shown(name)}; available: {self._available()}")
        return model

    def _available(self) -> str:
        return ", ".join(m.id for m in self._models)

    def _validate(self, texts: Sequence[str]) -> None:
        if not texts:
            raise InvalidArgumentError("texts is empty; send at least one text")
        if len(texts) > self.max_texts:
            raise ResourceExhaustedError(
                f"{len(texts):,} texts in one call; the limit is {self.max_texts:,} "
                "(split the batch, or stream batches with EmbedStream)"
            )
        limit = self.max_text_bytes
        for index, text in enumerate(texts):
            if not text or text.isspace():
                raise InvalidArgumentError(f"text {index} is empty (or only whitespace)")
            # A str of n characters is n to 4n UTF-8 bytes: encode only when that is undecided.
            if len(text) * 4 > limit:
                size = len(text.encode("utf-8"))
                if size > limit:
                    raise InvalidArgumentError(f"text {index} is {size:,} bytes; the limit is {limit:,}")


def _discard(future: asyncio.Future[Any]) -> None:
    """Cancel a batch nobody will read; a failure it already had is not logged as unretrieved."""
    if future.done():
        if not future.cancelled():
            future.exception()
    else:
        future.cancel()


def _for_batch(batch_id: int, error: ServiceError) -> ServiceError:
    """The same error with the stream batch it concerns named first."""
    return type(error)(f"batch {batch_id}: {error}")
