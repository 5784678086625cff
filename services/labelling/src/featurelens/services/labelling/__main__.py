"""Run the labelling service: ``python -m featurelens.services.labelling``.

This is the only module that reads the environment (through ``LabellingSettings``).
``build_servicer`` is also what the embedded mode (``featurelens up``) calls, with the search,
encoder and sae addresses pointing at its own port.
"""

from __future__ import annotations

from featurelens.kit import run_service
from featurelens.services.labelling.dependencies import Peers
from featurelens.services.labelling.labellers import LabellerFactory
from featurelens.services.labelling.labels import Labels
from featurelens.services.labelling.servicer import LabellingServicer
from featurelens.services.labelling.settings import LabellingSettings
from featurelens.store import DocumentStore


def open_store(settings: LabellingSettings) -> DocumentStore:
    """The store the labels live in (blocking: opens files or connects)."""
    return settings.open_store()


def build_servicer(settings: LabellingSettings) -> LabellingServicer:
    """A labelling servicer per the settings; the label store opens when the server starts it."""
    peers = Peers.at(
        settings.search_address, settings.encoder_address, settings.sae_address, settings.peer_timeout_s
    )
    return LabellingServicer(
        Labels(lambda: open_store(settings)), peers, LabellerFactory.from_settings(settings), settings
    )


def main() -> None:
    run_service(LabellingSettings(), build_servicer)


if __name__ == "__main__":
    main()
