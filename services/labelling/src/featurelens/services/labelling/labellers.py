"""Which interpreter and predictor a job uses: the offline labeller, or an LLM endpoint.

- No endpoint (the embedded default): the offline keyphrase labeller writes the label and the
  embedding predictor scores it ("offline" / "embedding").
- An endpoint (the server's ``llm_base_url``, or one the job names that the server allows): the
  LLM interpreter and predictor, through one ``ChatClient`` per job with the job's budget, the
  shared answer cache (Redis, or in process) and the server's price table. A job may still ask
  for ``predictor_model="embedding"`` to score an LLM's labels without LLM calls.

The API key is the server's own (setting or file), registered for redaction, never logged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from featurelens.embedding.backends import resolve_api_key
from featurelens.interp.budget import Budget
from featurelens.interp.embedding_scorer import EmbeddingPredictor
from featurelens.interp.llm import ChatCache, ChatClient, InMemoryChatCache, LlmConfig
from featurelens.interp.llm_labeller import LlmInterpreter, LlmPredictor
from featurelens.interp.offline import OFFLINE_EXAMPLES, OfflineInterpreter
from featurelens.interp.pricing import DEFAULT_PRICES, ModelPrice, PriceTable
from featurelens.interp.types import Embedder, ExampleDocument, Interpreter, Predictor, Usage
from featurelens.kit import FailedPreconditionError, InvalidArgumentError, fields, register_secret
from featurelens.services.labelling import validation
from featurelens.services.labelling.cache import RedisChatCache
from featurelens.services.labelling.settings import LabellingSettings

logger = logging.getLogger(__name__)

OFFLINE = "offline"
EMBEDDING = "embedding"


@dataclass(frozen=True)
class Labellers:
    """The interpreter and predictor of one job, and what its LLM calls have cost so far."""

    interpreter: Interpreter
    predictor: Predictor
    #: 0.5 for LLM predictions (scores 0–10, scaled), None for the embedding predictor (ranks).
    threshold: float | None
    description: str
    #: The job's chat client (None offline): its stats are the job's LLM spending.
    client: ChatClient | None = None

    def spend(self) -> Usage:
        """Calls, cache hits, tokens and dollars of the job's LLM calls so far (failed features too)."""
        return self.client.stats.usage if self.client is not None else Usage()

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


@dataclass(frozen=True)
class LabellerPlan:
    """A checked choice of labellers for one job; ``build`` makes them once the corpus is known."""

    factory: LabellerFactory
    endpoint: str
    interpreter_model: str
    predictor_model: str
    budget_usd: float

    @property
    def offline(self) -> bool:
        return not self.endpoint

    @property
    def default_top_documents(self) -> int:
        """Firing documents shown when a job names none: the keyphrase labeller reads more."""
        return OFFLINE_EXAMPLES.top_documents if self.offline else validation.DEFAULT_TOP_DOCUMENTS

    def chat_client(self) -> ChatClient | None:
        """The job's chat client (None offline), for a job that needs only the interpreter model:
        naming families calls no predictor and reads no documents, so it needs no ``build``."""
        if not self.endpoint:
            return None
        return self.factory.client(self.endpoint, self.budget_usd)

    def build(self, embedder: Embedder, background: Sequence[ExampleDocument] = ()) -> Labellers:
        """The labellers; ``background`` (random corpus documents, with embeddings) helps the
        offline labeller tell what is special about a feature's documents."""
        if not self.endpoint:
            return Labellers(
                offline_interpreter(embedder, background),
                EmbeddingPredictor(embedder),
                None,
                "the offline labeller (keyphrases, scored by embedding)",
            )
        client = self.factory.client(self.endpoint, self.budget_usd)
        interpreter: Interpreter = LlmInterpreter(client, self.interpreter_model)
        predictor: Predictor
        threshold: float | None = 0.5
        if self.predictor_model == EMBEDDING:
            predictor, threshold = EmbeddingPredictor(embedder), None
        else:
            predictor = LlmPredictor(client, self.predictor_model)
        description = (
            f"{self.interpreter_model} (predictor {self.predictor_model}) at {self.endpoint}, "
            f"budget ${self.budget_usd:g}"
        )
        return Labellers(interpreter, predictor, threshold, description, client)


def offline_interpreter(embedder: Embedder, background: Sequence[ExampleDocument]) -> OfflineInterpreter:
    """The keyphrase labeller, told what the corpus at large looks like when a background is given."""
    if not background:
        return OfflineInterpreter(embedder)
    return OfflineInterpreter(
        embedder,
        background=np.stack([d.embedding for d in background if d.embedding is not None]),
        background_texts=[d.text for d in background],
    )


class LabellerFactory:
    """Makes the labellers of each job from the server's settings."""

    def __init__(
        self,
        rules: validation.EndpointRules,
        api_key: str | None,
        config: LlmConfig,
        prices: PriceTable,
        cache: ChatCache,
        default_models: tuple[str, str],
        budget_usd: float,
        max_budget_usd: float,
    ) -> None:
        self.rules = rules
        self.api_key = api_key
        self.config = config
        self.prices = prices
        self.cache = cache
        self.default_models = default_models
        self.budget_usd = budget_usd
        self.max_budget_usd = max_budget_usd
        self._warned_unpriced: set[str] = set()

    @classmethod
    def from_settings(cls, settings: LabellingSettings) -> LabellerFactory:
        api_key = resolve_api_key(settings.llm_api_key.get_secret_value(), settings.llm_api_key_file)
        if api_key:
            register_secret(api_key)
        prices = DEFAULT_PRICES.with_prices(
            {model: ModelPrice(inp, out) for model, (inp, out) in settings.llm_prices.items()}
        )
        cache: ChatCache = (
            RedisChatCache(settings.redis_url, ttl_s=settings.llm_cache_ttl_s)
            if settings.redis_url
            else InMemoryChatCache()
        )
        # The endpoint is set per job (``client``); this one only carries the shared settings.
        config = LlmConfig(
            base_url="http://endpoint.invalid/v1",
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            max_concurrency=settings.llm_max_concurrency,
        )
        rules = validation.EndpointRules(
            settings.llm_base_url.rstrip("/"),
            tuple(settings.llm_allowed_base_urls),
            settings.llm_allow_loopback,
        )
        return cls(
            rules,
            api_key,
            config,
            prices,
            cache,
            (settings.interpreter_model, settings.predictor_model),
            settings.budget_usd,
            settings.max_budget_usd,
        )

    def describe_default(self) -> str:
        if self.rules.default:
            return f"LLM endpoint {self.rules.default} ({self.default_models[0]} / {self.default_models[1]})"
        return "offline labeller by default (no LLM endpoint set)"

    def plan(
        self, endpoint: str, interpreter_model: str, predictor_model: str, budget_usd: float
    ) -> LabellerPlan:
        """The job's labellers, checked: INVALID_ARGUMENT / FAILED_PRECONDITION before any work."""
        interpreter_model = fields.model_name(interpreter_model, "interpreter_model")
        predictor_model = fields.model_name(predictor_model, "predictor_model")
        budget = validation.budget(budget_usd, self.budget_usd, self.max_budget_usd)
        chosen = self.rules.choose(endpoint)
        if interpreter_model == OFFLINE or (not chosen and not interpreter_model):
            if chosen and endpoint:
                raise InvalidArgumentError(
                    "interpreter_model 'offline' takes no llm_base_url; leave one of them empty"
                )
            if predictor_model not in ("", EMBEDDING):
                raise FailedPreconditionError(
                    f"predictor_model {predictor_model!r} needs an LLM endpoint, and the offline labeller "
                    "uses none; "
                    "leave predictor_model empty or name llm_base_url"
                )
            return LabellerPlan(self, "", OFFLINE, EMBEDDING, 0.0)
        if not chosen:
            raise FailedPreconditionError(
                f"interpreter_model {interpreter_model!r} needs an LLM endpoint and this server has none; "
                "name "
                "llm_base_url, or leave interpreter_model empty for the offline labeller"
            )
        interpreter_model = interpreter_model or self.default_models[0]
        predictor_model = predictor_model or self.default_models[1]
        for model in (interpreter_model, predictor_model):
            if model != EMBEDDING and not self.prices.is_priced(model) and model not in self._warned_unpriced:
                self._warned_unpriced.add(model)
                logger.warning("no price known for model %r: its calls are counted as costing $0", model)
        return LabellerPlan(self, chosen, interpreter_model, predictor_model, budget)

    def client(self, endpoint: str, budget_usd: float) -> ChatClient:
        """A chat client of one job: its own budget, the shared cache and prices."""
        config = dataclasses.replace(self.config, base_url=endpoint, api_key=self.api_key)
        return ChatClient(config, self.prices, Budget(budget_usd), self.cache)

    async def close(self) -> None:
        close = getattr(self.cache, "close", None)
        if close is not None:
            await close()
