"""The vectors a Train request names, other than an embedding store: a collection of the server's
Qdrant store (``QdrantSource``) or a .npy / .parquet file (``FileSource``).

``open_source`` checks the request against the source (cheap: names, kinds, row count) and maps
the core's sentences to status codes; ``featurelens.embedding.sources.sample_rows`` then reads it
in one pass into at most ``max_rows`` float32 rows under the server's work folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from featurelens.embedding.sources import (
    Source,
    SourceEmptyError,
    SourceInvalidError,
    SourceNotFoundError,
    file_source,
    qdrant_source,
)
from featurelens.kit import FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError
from featurelens.kit.echo import shown
from featurelens.kit.paths import allowed_path
from featurelens.store import StoreError, StoreUnavailableError
from featurelens.store.vectors import VectorReader
from featurelens.v1 import sae_pb2

NO_STORE = (
    "this server has no Qdrant store configured (set FEATURELENS_SAE_TRAIN_FROM_STORE=true and its "
    "FEATURELENS_SAE_STORAGE / _EDGE_PATH / _QDRANT_URL)"
)


def max_rows(requested: int, limit: int, field: str) -> int:
    """The rows a source is reduced to: ``requested`` (0: the server's limit), at most ``limit``."""
    if requested > limit:
        raise InvalidArgumentError(
            f"{field} {requested:,} is above this server's limit of {limit:,} "
            "(FEATURELENS_SAE_MAX_TRAIN_ROWS)"
        )
    return requested or limit


def open_qdrant(message: sae_pb2.QdrantSource, store: VectorReader | None) -> Source:
    """The collection's vector a QdrantSource names, checked; statuses for every bad input."""
    if store is None:
        raise FailedPreconditionError(NO_STORE)
    if not message.collection:
        raise InvalidArgumentError("qdrant.collection is empty; name a collection of the server's store")
    try:
        return qdrant_source(store, message.collection, message.vector_name)
    except SourceNotFoundError as error:
        raise NotFoundError(str(error)) from None
    except SourceInvalidError as error:
        raise InvalidArgumentError(str(error)) from None
    except SourceEmptyError as error:
        raise FailedPreconditionError(str(error)) from None
    except StoreUnavailableError as error:
        raise UnavailableError(str(error)) from None
    except StoreError as error:
        raise InvalidArgumentError(f"qdrant {shown(message.collection)} cannot be read: {error}") from None


def open_file(message: sae_pb2.FileSource, roots: Sequence[Path]) -> Source:
    """The file a FileSource names, inside the train data roots, checked."""
    path = allowed_path(message.path, roots, field="file.path", setting="FEATURELENS_SAE_TRAIN_DATA_ROOTS")
    if not path.is_file():
        raise InvalidArgumentError(f"file.path {shown(message.path)} is not a file")
    try:
        return file_source(path, message.column)
    except SourceInvalidError as error:
        raise InvalidArgumentError(str(error)) from None
    except SourceEmptyError as error:
        raise FailedPreconditionError(str(error)) from None


def sampling_error(error: Exception) -> Exception:
    """The status of an error met while reading a source's rows (after its checks passed)."""
    if isinstance(error, SourceEmptyError):
        return FailedPreconditionError(str(error))
    if isinstance(error, SourceInvalidError):
        return InvalidArgumentError(str(error))
    if isinstance(error, StoreUnavailableError):
        return UnavailableError(str(error))
    return error
