"""Run the family service: ``python -m featurelens.services.family``.

This is the only module that reads the environment (through ``FamilySettings``).
``build_servicer`` is also what the embedded mode (``featurelens up``) calls, with the search,
sae and labelling addresses pointing at its own port.
"""

from __future__ import annotations

from featurelens.kit import run_service
from featurelens.kit.peers import Peer
from featurelens.services.family.activations import ActivationFiles
from featurelens.services.family.dependencies import Peers
from featurelens.services.family.servicer import FamilyServicer
from featurelens.services.family.settings import FamilySettings
from featurelens.services.family.stored import StoredFamilies


def build_servicer(settings: FamilySettings) -> FamilyServicer:
    """A family servicer per the settings; the family store opens when the server starts it."""
    timeout = settings.peer_timeout_s
    size = settings.max_message_bytes
    peers = Peers(
        Peer("search", settings.search_address, timeout, max_message_bytes=size),
        Peer("sae", settings.sae_address, timeout, max_message_bytes=size),
        Peer("labelling", settings.labelling_address, timeout, max_message_bytes=size),
        export_timeout_s=settings.export_timeout_s,
        labelling_timeout_s=settings.labelling_timeout_s,
        decoder_batch=settings.decoder_batch,
        decoder_cache=settings.decoder_cache,
    )
    return FamilyServicer(
        StoredFamilies(settings.open_store), ActivationFiles(settings.activations_path), peers, settings
    )


def main() -> None:
    run_service(FamilySettings(), build_servicer)


if __name__ == "__main__":
    main()
