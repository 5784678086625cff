"""Run the search service: ``python -m featurelens.services.search``.

This is the only module that reads the environment (through ``SearchSettings``).
``build_servicer`` is also what the embedded mode (``featurelens up``) calls, with the encoder,
sae and labelling addresses pointing at its own port.
"""

from __future__ import annotations

from featurelens.kit import run_service
from featurelens.services.search.dependencies import Dependencies
from featurelens.services.search.labelling import LabellingLabels, LabellingPhrases
from featurelens.services.search.servicer import SearchServicer
from featurelens.services.search.settings import SearchSettings
from featurelens.store import DocumentStore


def open_store(settings: SearchSettings) -> DocumentStore:
    """The document store the settings name (blocking: opens files or connects)."""
    return settings.open_store(settings.edge_search_threads)


def build_servicer(settings: SearchSettings) -> SearchServicer:
    """A search servicer per the settings; the store opens when the server starts it. Labels and
    phrase interventions come from the labelling service."""
    dependencies = Dependencies.at(
        settings.encoder_address,
        settings.sae_address,
        settings.encoder_timeout_s,
        settings.sae_timeout_s,
        labelling_address=settings.labelling_address,
        labelling_timeout_s=settings.labelling_timeout_s,
    )
    return SearchServicer(
        lambda: open_store(settings),
        dependencies,
        settings,
        labels=LabellingLabels(dependencies.labelling),
        phrases=LabellingPhrases(dependencies.labelling),
    )


def main() -> None:
    run_service(SearchSettings(), build_servicer)


if __name__ == "__main__":
    main()
