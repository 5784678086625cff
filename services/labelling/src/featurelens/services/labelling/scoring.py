"""One ScoreLabel call: a caller's label scored on fresh held-out documents, never stored."""

from __future__ import annotations

from featurelens.interp.examples import gather_examples
from featurelens.interp.labelling import LabelSettings, score_label
from featurelens.interp.records import LabelRecord
from featurelens.kit import FailedPreconditionError, NotFoundError, fields
from featurelens.kit.names import corpus_name
from featurelens.services.labelling import validation
from featurelens.services.labelling.dependencies import EncoderEmbedder, Peers, SearchDocuments
from featurelens.services.labelling.labellers import LabellerFactory
from featurelens.v1 import labelling_pb2


class LabelScorer:
    """Scores labels written by callers, with the server's predictor (or the one a request names)."""

    def __init__(self, peers: Peers, labellers: LabellerFactory, default_domain: str) -> None:
        self.peers = peers
        self.labellers = labellers
        self.default_domain = default_domain

    async def score(self, request: labelling_pb2.ScoreLabelRequest) -> LabelRecord:
        validation.sae_id(request.sae_id)
        corpus = corpus_name(request.corpus)
        label = validation.label_text(request.label)
        examples_config = validation.example_config(0, request.scoring_documents)
        domain = fields.domain(request.domain, self.default_domain)
        plan = self.labellers.plan(request.llm_base_url, "", request.predictor_model, 0.0)
        sae = await self.peers.sae_facts(request.sae_id)
        fields.check_latents([request.feature], sae.num_latents, sae.sae_id)
        facts = await self.peers.corpus(corpus, sae.sae_id)
        counts = await self.peers.firing_counts(corpus, sae.sae_id, sae.num_latents)
        if counts[request.feature] == 0:
            raise NotFoundError(
                f"latent {request.feature} fires on no document of corpus {corpus!r}; nothing to score"
            )
        embedder = EncoderEmbedder(self.peers, facts.embedding_model)
        labellers = plan.build(embedder)
        settings = LabelSettings(
            examples=examples_config, domain=domain, seed=request.seed, threshold=labellers.threshold
        )
        density = float(counts[request.feature]) / max(facts.documents, 1)
        source = SearchDocuments(self.peers, corpus, sae.sae_id)
        try:
            examples = await gather_examples(
                source, request.feature, settings.examples, settings.seed, density
            )
            outcome = await score_label(
                examples,
                label,
                sae_id=sae.sae_id,
                corpus=corpus,
                predictor=labellers.predictor,
                embedder=embedder,
                settings=settings,
                interpreter_model="caller",
                prompt_version=labellers.interpreter.prompt_version,
            )
        except ValueError as error:  # the feature's documents cannot make a test set
            raise FailedPreconditionError(f"feature {request.feature} cannot be scored: {error}") from None
        finally:
            await labellers.aclose()
        return outcome.record
