"""Feature families: trees of co-occurring features, neighbours, and matching across SAE sizes.

The paper's method (O'Neill et al. 2024, section 5), rebuilt on sparse matrices and with its bugs
fixed: binary top-k activations → co-occurrence C = AᵀA (sparse) → a symmetric normalisation →
one threshold → a maximum spanning forest oriented from dense to sparse features → families
(roots with many children, nested families inside them) over several passes → size filter and
Jaccard deduplication. A plain library: numpy, scipy and networkx only.
"""

from featurelens.families.cooccurrence import (
    Cooccurrence,
    GraphConfig,
    GraphEdges,
    activations_from_topk,
    binarise,
    cooccurrence,
    normalise,
    thresholded_edges,
)
from featurelens.families.dedup import deduplicate, jaccard
from featurelens.families.directions import family_directions
from featurelens.families.extract import ExtractionConfig, extract_families, families_in_forest
from featurelens.families.family import Family, family_id
from featurelens.families.forest import orient, spanning_forest
from featurelens.families.matching import FeatureMatch, cosine_histogram, match_features, splitting_map
from featurelens.families.neighbours import Neighbours, cooccurrence_neighbours, decoder_neighbours, unit_rows
from featurelens.families.stats import FamilyStats, family_stats

__all__ = [
    "Cooccurrence",
    "ExtractionConfig",
    "Family",
    "FamilyStats",
    "FeatureMatch",
    "GraphConfig",
    "GraphEdges",
    "Neighbours",
    "activations_from_topk",
    "binarise",
    "cooccurrence",
    "cooccurrence_neighbours",
    "cosine_histogram",
    "decoder_neighbours",
    "deduplicate",
    "extract_families",
    "families_in_forest",
    "family_directions",
    "family_id",
    "family_stats",
    "jaccard",
    "match_features",
    "normalise",
    "orient",
    "spanning_forest",
    "splitting_map",
    "thresholded_edges",
    "unit_rows",
]
