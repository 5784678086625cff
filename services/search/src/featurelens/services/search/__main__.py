"""Run the search service: ``python -m featurelens.services.search``.

This is the only module that reads the environment (through ``SearchSettings``).
``build_servicer`` is also what the embedded mode (``featurelens up``) calls, with the addresses
of the services it hosts (encoder, sae, labelling, family) pointing at its own port.
"""

from __future__ import annotations

from featurelens.kit import run_service
from featurelens.services.search.dependencies import Dependencies
from featurelens.services.search.families import FamilyExpander, FamilyService, NoFamilies
from featurelens.services.search.labelling import LabellingLabels, LabellingPhrases
from featurelens.services.search.servicer import SearchServicer
from featurelens.services.search.settings import SearchSettings
from featurelens.store import DocumentStore


def open_store(settings: SearchSettings) -> DocumentStore:
    """The document store the settings name (blocking: opens files or connects)."""
    return settings.open_store(settings.edge_search_threads)


def build_servicer(settings: SearchSettings) -> SearchServicer:
    """A search servicer per the settings; the store opens when the server starts it. Labels and
    phrase interventions come from the labelling service, family interventions and the families
    of explaining features from the family service (none when its address is empty)."""
    dependencies = Dependencies.at(
        settings.encoder_address,
        settings.sae_address,
        settings.encoder_timeout_s,
        settings.sae_timeout_s,
        labelling_address=settings.labelling_address,
        labelling_timeout_s=settings.labelling_timeout_s,
        family_address=settings.family_address,
        family_timeout_s=settings.family_timeout_s,
    )
    families: FamilyExpander = FamilyService(dependencies.family) if settings.family_address else NoFamilies()
    return SearchServicer(
        lambda: open_store(settings),
        dependencies,
        settings,
        labels=LabellingLabels(dependencies.labelling),
        families=families,
        phrases=LabellingPhrases(dependencies.labelling),
    )


def main() -> None:
    run_service(SearchSettings(), build_servicer)


if __name__ == "__main__":
    main()
