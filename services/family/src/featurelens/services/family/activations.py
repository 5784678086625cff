"""The binary activations of each SAE's last build, kept on disk for FeatureNeighbours.

Co-occurrence neighbours need C = AᵀA, which the build computes from the corpus's activations
(read from search's ExportActivations) and then drops. Keeping A itself is cheap (a binary CSR
with at most k entries a row: about 8 MB at 60k documents × k 32) and answers any feature's
neighbours in milliseconds (one row of C), so each build writes it to
``<activations_path>/<families collection name>/activations.npz`` with ``build.json`` beside it
(corpus and document count). It is a cache, not the truth: when it is missing (a new
container, a deleted folder) the servicer reads the activations again from search, for the
corpus the stored families were built from, and writes it anew. The last few are also kept
in memory.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import scipy.sparse as sp

from featurelens.families import Cooccurrence, cooccurrence
from featurelens.store import schema as store_schema

logger = logging.getLogger(__name__)

MATRIX_FILE = "activations.npz"
BUILD_FILE = "build.json"
#: Co-occurrences kept in memory (about 2 × 8 MB each at 60k documents × k 32).
KEPT = 4


class ActivationFiles:
    """Each SAE's binary activations, on disk and (the last few) in memory. Blocking calls."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._kept: OrderedDict[str, Cooccurrence] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, sae_id: str) -> Path:
        # The collection name is the SAE id made safe for a name: letters, digits, '-', '_', '.'.
        return self.folder / store_schema.families_collection(sae_id)

    def save(self, sae_id: str, corpus: str, cooc: Cooccurrence) -> None:
        """Write the build's activations (replacing the last build's file whole)."""
        folder = self.path(sae_id)
        folder.mkdir(parents=True, exist_ok=True)
        matrix, build = folder / MATRIX_FILE, folder / BUILD_FILE
        partial = folder / f".{MATRIX_FILE}.partial.npz"
        sp.save_npz(partial, cooc.activations, compressed=False)
        os.replace(partial, matrix)
        partial_build = folder / f".{BUILD_FILE}.partial"
        partial_build.write_text(json.dumps({"sae_id": sae_id, "corpus": corpus, "documents": cooc.num_docs}))
        os.replace(partial_build, build)
        self._keep(sae_id, cooc)
        logger.info("kept the activations of SAE %r (%d documents) in %s", sae_id, cooc.num_docs, folder)

    def load(self, sae_id: str, num_latents: int) -> Cooccurrence | None:
        """The co-occurrence of the SAE's last build, or None when there is no usable file."""
        with self._lock:
            kept = self._kept.get(sae_id)
            if kept is not None:
                self._kept.move_to_end(sae_id)
                return kept
        matrix = self.path(sae_id) / MATRIX_FILE
        if not matrix.is_file():
            return None
        try:
            activations = sp.csr_array(sp.load_npz(matrix))
        except (OSError, ValueError) as error:
            logger.warning("the activations file %s is unreadable (%s); it will be rebuilt", matrix, error)
            return None
        if activations.shape[1] != num_latents:
            return None
        cooc = cooccurrence(activations)
        self._keep(sae_id, cooc)
        return cooc

    def _keep(self, sae_id: str, cooc: Cooccurrence) -> None:
        with self._lock:
            self._kept[sae_id] = cooc
            self._kept.move_to_end(sae_id)
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
