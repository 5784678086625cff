"""Hand-written helpers beside the generated ``featurelens.v1`` stubs (never generated, never edited
by ``make protos``): the conversions that both sides of the wire share, SDK and services alike.

Imports only protobuf, numpy and the generated stubs.
"""

from featurelens.wire.arrays import (
    FLOAT32_LE,
    MAX_ABS_VALUE,
    ArrayFormatError,
    from_dense_matrix,
    from_dense_vector,
    from_sparse_rows,
    from_sparse_vector,
    require_bounded,
    to_dense_matrix,
    to_dense_vector,
    to_sparse_rows,
    to_sparse_vector,
)

__all__ = [
    "FLOAT32_LE",
    "MAX_ABS_VALUE",
    "ArrayFormatError",
    "from_dense_matrix",
    "from_dense_vector",
    "from_sparse_rows",
    "from_sparse_vector",
    "require_bounded",
    "to_dense_matrix",
    "to_dense_vector",
    "to_sparse_rows",
    "to_sparse_vector",
]
