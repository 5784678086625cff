"""Which documents of a corpus are held out of the index, by one rule every tool shares.

The steering evaluation queries the index with the titles of papers it has never seen, so that a
query cannot simply find itself; the demo leaves the same papers out when it indexes. The rule
depends on the id alone (no seed, no file order, no state), so the indexer and the evaluation
agree on every machine and on any slice of the corpus.
"""

from __future__ import annotations

import hashlib
import math

#: The share of documents held out unless asked otherwise: 5%, as the evaluation's query pool.
DEFAULT_HOLDOUT_FRACTION = 0.05


def held_out(doc_id: str, fraction: float = DEFAULT_HOLDOUT_FRACTION) -> bool:
    """True when the document ``doc_id`` belongs to the held-out share ``fraction`` of its corpus.

    The first 8 bytes of the id's SHA-256 (UTF-8), read as an unsigned integer, are uniform over
    ids, so about ``fraction`` of any large set of ids is held out; ``fraction`` 0 holds out
    nothing and 1 everything. The answer is the same on every run and machine.
    """
    if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise ValueError(f"the held-out fraction must be between 0 and 1, not {fraction!r}")
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64
