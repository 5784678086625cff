"""A ``DocumentSource`` over arrays in memory: texts, unit embeddings and a sparse latent matrix.

The search service reads a feature's documents from Qdrant; benchmarks, ``featurelens eval`` and
tests read them from here. Both answer the same four questions (strongest firing documents, a
seeded random sample of firing or non-firing ones, nearest non-firing ones by cosine), so the
example selection cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from featurelens.interp.types import ExampleDocument, Vector


class ArraySource:
    """A corpus's documents and their SAE latents, held in memory.

    ``latents`` is an (n_docs, num_latents) sparse matrix of activations; a latent fires on a
    document where its value is above 0. Embeddings are made unit norm on the way in.
    """

    def __init__(
        self,
        doc_ids: Sequence[str],
        texts: Sequence[str],
        embeddings: npt.ArrayLike,
        latents: sparse.csr_matrix | sparse.csr_array,
    ) -> None:
        n_docs = len(doc_ids)
        if n_docs == 0:
            raise ValueError("doc_ids is empty; an ArraySource needs at least one document")
        if len(set(doc_ids)) != n_docs:
            raise ValueError("doc_ids holds duplicates; every document needs its own id")
        if len(texts) != n_docs:
            raise ValueError(f"texts has {len(texts)} entries for {n_docs} doc_ids")
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != n_docs:
            raise ValueError(f"embeddings has shape {vectors.shape}; expected ({n_docs}, dim)")
        if not np.isfinite(vectors).all():
            raise ValueError("embeddings holds NaN or infinite values")
        norms = np.linalg.norm(vectors, axis=1)
        zero = np.flatnonzero(norms == 0)
        if zero.size:
            raise ValueError(f"embeddings of {doc_ids[int(zero[0])]!r} is all zeros; it has no direction")
        if not sparse.issparse(latents):
            raise ValueError("latents must be a scipy.sparse matrix (n_docs x num_latents)")
        matrix = sparse.csr_matrix(latents, dtype=np.float32)
        if matrix.shape[0] != n_docs:
            raise ValueError(f"latents has {matrix.shape[0]} rows for {n_docs} documents")
        if matrix.nnz and not np.isfinite(matrix.data).all():
            raise ValueError("latents holds NaN or infinite activations")
        if matrix.nnz and (matrix.data < 0).any():
            raise ValueError("latents holds negative activations; top-k SAE activations are >= 0")
        matrix.eliminate_zeros()
        self._ids = list(doc_ids)
        self._texts = list(texts)
        self._embeddings = (vectors / norms[:, None]).astype(np.float32)
        self._latents = matrix
        # Column access (the documents one latent fires on) is what every question asks.
        self._by_latent = matrix.tocsc()
        self._by_latent.sort_indices()

    @classmethod
    def from_rows(
        cls,
        doc_ids: Sequence[str],
        texts: Sequence[str],
        embeddings: npt.ArrayLike,
        indices: Sequence[npt.ArrayLike] | npt.NDArray[Any],
        values: Sequence[npt.ArrayLike] | npt.NDArray[Any],
        num_latents: int,
    ) -> ArraySource:
        """Build a source from each document's sparse code: the latent ids that fire and their values.

        ``indices[i]`` and ``values[i]`` are parallel 1-D arrays for document i (a top-k SAE's
        (n_docs, k) outputs work as they are). A latent may appear once per document.
        """
        if isinstance(num_latents, bool) or not isinstance(num_latents, int) or num_latents <= 0:
            raise ValueError(f"num_latents must be a positive integer, got {num_latents!r}")
        if len(indices) != len(doc_ids) or len(values) != len(doc_ids):
            raise ValueError(
                f"indices and values need one row per document: {len(indices)} and {len(values)} rows "
                f"for {len(doc_ids)} documents"
            )
        index_rows = [_index_row(row) for row in indices]
        value_rows = [np.asarray(row, dtype=np.float32).reshape(-1) for row in values]
        for i, (index_row, value_row) in enumerate(zip(index_rows, value_rows, strict=True)):
            if index_row.shape != value_row.shape:
                raise ValueError(
                    f"row {i} ({doc_ids[i]!r}) has {index_row.size} indices and {value_row.size} values"
                )
        lengths = np.array([row.size for row in index_rows], dtype=np.int64)
        flat_index = np.concatenate(index_rows) if index_rows else np.empty(0)
        flat_values = np.concatenate(value_rows) if value_rows else np.empty(0, dtype=np.float32)
        if flat_index.size and not np.issubdtype(flat_index.dtype, np.integer):
            raise ValueError(f"indices must be integers, got {flat_index.dtype}")
        flat_index = flat_index.astype(np.int64)
        if flat_index.size and (flat_index.min() < 0 or flat_index.max() >= num_latents):
            raise ValueError(
                f"indices must lie in [0, {num_latents}); got {flat_index.min()}..{flat_index.max()}"
            )
        rows = np.repeat(np.arange(len(index_rows), dtype=np.int64), lengths)
        keys = rows * num_latents + flat_index
        if np.unique(keys).size != keys.size:
            raise ValueError("a latent appears twice in one document's row; each may appear once")
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        matrix = sparse.csr_matrix((flat_values, flat_index, indptr), shape=(len(index_rows), num_latents))
        return cls(doc_ids, texts, embeddings, matrix)

    @property
    def num_documents(self) -> int:
        return len(self._ids)

    @property
    def num_latents(self) -> int:
        return int(self._latents.shape[1])

    @property
    def latents(self) -> sparse.csr_matrix:
        """The (n_docs, num_latents) activations, zeros removed."""
        return self._latents

    def densities(self) -> npt.NDArray[np.float64]:
        """Per latent, the fraction of documents on which it fires."""
        return np.diff(self._by_latent.indptr).astype(np.float64) / self.num_documents

    def live_features(self) -> npt.NDArray[np.int64]:
        """Ids of the latents that fire on at least one document, ascending."""
        return np.flatnonzero(np.diff(self._by_latent.indptr) > 0).astype(np.int64)

    def document(self, row: int, activation: float = 0.0) -> ExampleDocument:
        """Document ``row`` as an example, with its embedding."""
        return ExampleDocument(self._ids[row], self._texts[row], float(activation), self._embeddings[row])

    def _firing(self, feature: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        if isinstance(feature, bool) or not isinstance(feature, int | np.integer):
            raise ValueError(f"feature must be an integer latent id, got {feature!r}")
        if not 0 <= feature < self.num_latents:
            raise ValueError(
                f"feature {feature} is out of range: the latents have {self.num_latents} columns"
            )
        start, end = self._by_latent.indptr[feature], self._by_latent.indptr[feature + 1]
        return self._by_latent.indices[start:end], self._by_latent.data[start:end]

    @staticmethod
    def _check_count(n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")

    async def top(self, feature: int, n: int) -> list[ExampleDocument]:
        """The ``n`` documents on which the feature fires most strongly, strongest first."""
        self._check_count(n)
        rows, values = self._firing(feature)
        # A stable sort on the negated values keeps corpus order among equal activations.
        order = np.argsort(-values, kind="stable")[:n]
        return [self.document(int(rows[i]), float(values[i])) for i in order]

    async def sample(self, feature: int, n: int, firing: bool, seed: int) -> list[ExampleDocument]:
        """A random sample of ``n`` firing (or non-firing) documents, seeded by (seed, feature).

        The feature is part of the seed, so two features given the same seed still get
        independent negatives (the paper's code gave every feature the same "random" ones).
        """
        self._check_count(n)
        rows, values = self._firing(feature)
        rng = np.random.default_rng((int(seed), int(feature), int(firing)))
        if firing:
            picks = rng.permutation(rows.size)[:n]
            return [self.document(int(rows[i]), float(values[i])) for i in picks]
        mask = np.ones(self.num_documents, dtype=bool)
        mask[rows] = False
        candidates = np.flatnonzero(mask)
        chosen = rng.choice(candidates, size=min(n, candidates.size), replace=False)
        return [self.document(int(row)) for row in chosen]

    async def nearest_non_firing(self, feature: int, vector: Vector, n: int) -> list[ExampleDocument]:
        """The ``n`` documents nearest ``vector`` by cosine on which the feature does not fire."""
        self._check_count(n)
        rows, _ = self._firing(feature)
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self._embeddings.shape[1]:
            raise ValueError(
                f"vector has {query.shape[0]} dimensions; the embeddings have {self._embeddings.shape[1]}"
            )
        norm = float(np.linalg.norm(query))
        if not np.isfinite(norm) or norm == 0:
            raise ValueError("vector is zero or not finite; it has no direction")
        similarity = self._embeddings @ (query / norm)
        similarity[rows] = -np.inf
        available = self.num_documents - rows.size
        n = min(n, available)
        if n == 0:
            return []
        nearest = np.argpartition(-similarity, n - 1)[:n]
        nearest = nearest[np.argsort(-similarity[nearest], kind="stable")]
        return [self.document(int(row)) for row in nearest]


def _index_row(row: npt.ArrayLike) -> npt.NDArray[np.generic]:
    """One row of latent ids as a 1-D array (an empty row as integers, not numpy's default floats)."""
    array = np.asarray(row).reshape(-1)
    return array.astype(np.int64) if array.size == 0 else array
