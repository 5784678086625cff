"""Any OpenAI-compatible embeddings API (text-embedding-3-small, the paper's model, by default)."""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from featurelens.embedding.backends.base import (
    BackendUnavailableError,
    EmbeddingBackendError,
    EmbedResult,
    check_texts,
    normalise_rows,
)
from featurelens.embedding.backends.batching import (
    DEFAULT_CHARS_PER_TOKEN,
    split_batches,
    truncate_to_tokens,
)
from featurelens.embedding.backends.openai_http import error_message, retry_after_seconds

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
KNOWN_DIMS: Mapping[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
"""Native output dimensions of OpenAI's models, so that `dim` is known without a first call."""

# Statuses worth retrying: timeout, conflict, rate limit, and server-side failures.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_DIM_PROBE_TEXT = "dimension probe"


class OpenAIBackend:
    """Embeds through an OpenAI-compatible `/embeddings` endpoint with the official `openai` client.

    Retries are our own (the client's are switched off) so that the policy is explicit: up to
    `max_retries` retries on rate limits (429), timeouts, connection errors and 5xx answers, waiting
    `Retry-After` / `retry-after-ms` when the server sends one, else exponential backoff from
    `backoff_base_s` (capped at `backoff_max_s`) with jitter. Other HTTP errors (400, 401, 404, ...)
    fail at once with `EmbeddingBackendError`; exhausted retries raise `BackendUnavailableError`.

    Batches are split to at most `max_batch_inputs` texts and `max_batch_tokens` estimated tokens
    per request; texts longer than `max_input_tokens` (estimated at `chars_per_token` characters per
    token) are cut and flagged. `api_key=None` sends a placeholder key, for local servers that need
    none. `dim` is the expected output dimension: when None it comes from `KNOWN_DIMS` or, for other
    models, from the first response. `request_dimensions=True` asks the API for `dim`-dimensional
    output (the `dimensions` parameter of text-embedding-3 models).
    """

    backend = "openai"

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        model: str = "text-embedding-3-small",
        api_key: str | None = None,
        *,
        dim: int | None = None,
        request_dimensions: bool = False,
        model_id: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_batch_inputs: int = 2048,
        max_batch_tokens: int = 300_000,
        max_input_tokens: int = 8191,
        chars_per_token: float = DEFAULT_CHARS_PER_TOKEN,
        encoding_format: Literal["base64", "float"] = "base64",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be zero or positive, got {max_retries}")
        if max_batch_inputs <= 0 or max_batch_tokens <= 0 or max_input_tokens <= 0:
            raise ValueError("max_batch_inputs, max_batch_tokens and max_input_tokens must be positive")
        if max_input_tokens > max_batch_tokens:
            raise ValueError("max_input_tokens cannot exceed max_batch_tokens")
        if request_dimensions and dim is None:
            raise ValueError("request_dimensions=True needs dim")
        import openai

        self._openai = openai
        self._client = openai.OpenAI(
            base_url=base_url,
            # A placeholder keeps the client from looking for OPENAI_API_KEY in the environment.
            api_key=api_key or "no-key",
            timeout=timeout_s,
            max_retries=0,
        )
        self._base_url = base_url
        self._model = model
        self._request_dimensions = request_dimensions
        self._dim: int | None = dim if dim is not None else KNOWN_DIMS.get(model)
        self._dim_lock = threading.Lock()
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._max_batch_inputs = max_batch_inputs
        self._max_batch_tokens = max_batch_tokens
        self._chars_per_token = chars_per_token
        self._encoding_format = encoding_format
        self._sleep = sleep
        self._random = random.Random()
        self.max_input_tokens: int = max_input_tokens
        self.model_id: str = model_id or (f"{model}:{dim}" if request_dimensions else model)

    @property
    def dim(self) -> int:
        """Output dimension; for a model of unknown size the first call learns it (a probe if need be)."""
        if self._dim is None:
            self.embed([_DIM_PROBE_TEXT])
        assert self._dim is not None  # set by the call above or it raised
        return self._dim

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed texts in as few requests as the limits allow; rows come back in input order."""
        batch = check_texts(texts)
        if not batch:
            return EmbedResult(np.empty((0, self.dim), dtype=np.float32), [])
        prepared: list[str] = []
        truncated: list[bool] = []
        for text in batch:
            cut, was_cut = truncate_to_tokens(text, self.max_input_tokens, self._chars_per_token)
            prepared.append(cut)
            truncated.append(was_cut)
        runs = split_batches(
            prepared,
            max_inputs=self._max_batch_inputs,
            max_tokens=self._max_batch_tokens,
            chars_per_token=self._chars_per_token,
        )
        parts = [self._embed_with_retries([prepared[i] for i in run]) for run in runs]
        return EmbedResult(normalise_rows(np.concatenate(parts)), truncated)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def _embed_with_retries(self, texts: list[str]) -> npt.NDArray[np.float32]:
        openai = self._openai
        for attempt in range(self._max_retries + 1):
            try:
                response = self._client.embeddings.create(
                    input=texts,
                    model=self._model,
                    encoding_format=self._encoding_format,
                    dimensions=self._dim if self._request_dimensions and self._dim else openai.omit,
                )
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                error: Exception = exc
                retry_after = None
            except openai.APIStatusError as exc:
                if exc.status_code not in _RETRYABLE_STATUSES and exc.status_code < 500:
                    raise EmbeddingBackendError(
                        f"The embeddings API at {self._base_url} refused the request "
                        f"(HTTP {exc.status_code}): {error_message(exc)}"
                    ) from exc
                error = exc
                retry_after = retry_after_seconds(exc.response.headers)
            else:
                return self._parse(response, len(texts))
            if attempt == self._max_retries:
                raise BackendUnavailableError(
                    f"The embeddings API at {self._base_url} failed {attempt + 1} times; "
                    f"last error: {_describe(error)}"
                ) from error
            delay = self._delay(attempt, retry_after)
            logger.warning(
                "Embeddings request failed (%s); retry %d of %d in %.2f s.",
                _describe(error),
                attempt + 1,
                self._max_retries,
                delay,
            )
            self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self._backoff_max_s)
        ceiling = min(self._backoff_base_s * 2**attempt, self._backoff_max_s)
        # "Equal jitter": at least half the backoff, so retries neither stampede nor come too soon.
        return ceiling * (0.5 + 0.5 * self._random.random())

    def _parse(self, response: Any, expected: int) -> npt.NDArray[np.float32]:
        try:
            items = sorted(response.data, key=lambda item: item.index)
            if [item.index for item in items] != list(range(expected)):
                raise EmbeddingBackendError(
                    f"The embeddings API at {self._base_url} answered {len(items)} embeddings with indices "
                    f"{[item.index for item in items][:5]}... for {expected} inputs."
                )
            rows = [_decode_embedding(item.embedding) for item in items]
        except (AttributeError, TypeError, ValueError) as exc:
            if isinstance(exc, EmbeddingBackendError):
                raise
            raise EmbeddingBackendError(
                f"The embeddings API at {self._base_url} sent an unreadable response: {exc}"
            ) from exc
        dims = {len(row) for row in rows}
        if len(dims) != 1:
            raise EmbeddingBackendError(f"The embeddings API returned rows of sizes {sorted(dims)}.")
        dim = dims.pop()
        with self._dim_lock:
            if self._dim is None:
                self._dim = dim
                logger.info("Embeddings model %s has dimension %d.", self._model, dim)
        if dim != self._dim:
            raise EmbeddingBackendError(
                f"The embeddings API returned {dim}-dimensional vectors for model {self._model!r}; "
                f"expected {self._dim}."
            )
        vectors = np.stack(rows)
        if not np.isfinite(vectors).all():
            raise EmbeddingBackendError("The embeddings API returned NaN or infinite values.")
        return vectors


def _decode_embedding(value: object) -> npt.NDArray[np.float32]:
    """One embedding from a response: base64 little-endian float32, or a list of numbers."""
    if isinstance(value, str):
        raw = base64.b64decode(value, validate=True)
        if len(raw) % 4:
            raise ValueError("a base64 embedding is not a whole number of float32 values")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if isinstance(value, list) and value:
        return np.asarray(value, dtype=np.float32)
    raise ValueError(f"an embedding is a {type(value).__name__}, expected a list of floats or base64")


def _describe(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    name = type(error).__name__
    return f"{name} (HTTP {status})" if status else f"{name}: {error}"
