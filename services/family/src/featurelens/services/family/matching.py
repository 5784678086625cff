"""The best ``top_k`` decoder-cosine matches in one SAE of some features of another.

With ``top_k`` 1 this is the core's ``match_features`` (argmax, the smallest id on ties). For more
matches per feature the cosines are computed a chunk of source rows at a time (never n_A × n_B
at once) and the best ``top_k`` of each row picked with ``argpartition``, then ordered best first,
the smaller id first on ties.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from featurelens.families import match_features
from featurelens.families.neighbours import unit_rows

#: Source rows per chunk: chunk × n_B float32 cosines (40 MB at 10k target latents).
CHUNK = 1024


def top_matches(
    source: npt.NDArray[np.float32], target: npt.NDArray[np.float32], top_k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """(len(source), top_k) target ids and cosines, best first; decoders are (latents, d_in)."""
    if top_k == 1:
        match = match_features(source, target, CHUNK)
        return match.best[:, None], match.cosine[:, None]
    a, b = unit_rows(source), unit_rows(target)
    ids = np.empty((a.shape[0], top_k), dtype=np.int64)
    cosines = np.empty((a.shape[0], top_k), dtype=np.float32)
    bt = np.ascontiguousarray(b.T)
    for start in range(0, a.shape[0], CHUNK):
        sims = a[start : start + CHUNK] @ bt
        if top_k < sims.shape[1]:
            candidates = np.argpartition(-sims, top_k - 1, axis=1)[:, :top_k]
        else:
            candidates = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
        for row in range(sims.shape[0]):
            chosen = candidates[row]
            scores = sims[row, chosen]
            order = np.lexsort((chosen, -scores))
            ids[start + row] = chosen[order]
            cosines[start + row] = scores[order]
    return ids, cosines
