"""Which SAE a request means: a named one must be indexed in the corpus; no name means the
corpus's only SAE, or else the sae service's default SAE."""

from __future__ import annotations

from featurelens.kit import FailedPreconditionError
from featurelens.services.search.corpora import Corpus
from featurelens.services.search.dependencies import Dependencies


async def resolve_sae(corpus: Corpus, requested: str, dependencies: Dependencies) -> str:
    """The sae_id to use in ``corpus``; NOT_FOUND when that SAE is not indexed there."""
    if requested:
        corpus.require_sae(requested)
        return requested
    if len(corpus.sae_ids) == 1:
        return corpus.sae_ids[0]
    if not corpus.sae_ids:
        raise FailedPreconditionError(
            f"corpus {corpus.name!r} has no SAE latents yet; index it with an SAE (IndexDocuments with "
            "sae_ids, or sparse_only to add one)"
        )
    saes = await dependencies.list_saes()
    default = next((sae for sae in saes if sae.is_default), None)
    if default is None:
        raise FailedPreconditionError(
            f"the sae service has no default SAE; name one with sae_id (corpus {corpus.name!r} has "
            f"{', '.join(corpus.sae_ids)})"
        )
    corpus.require_sae(default.sae_id)
    return default.sae_id
