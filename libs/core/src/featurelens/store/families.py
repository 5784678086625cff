"""Durable feature families: one collection per SAE, on whichever store adapter holds the corpora.

An SAE's families live in the collection ``families.<key>`` (``schema.families_collection``):
one point per family, its id derived from the family id (the store's point id of the family id),
``FamilyRecord.to_payload()`` as the payload (next to the store's own ``doc_id`` and
``sample_key``, which ``FamilyRecord.from_payload`` ignores), and no sparse vectors.

The dense vector (cosine) is the family's **direction**: the normalised mean of its members'
decoder directions, which the caller computes (the family service has the decoder). The store
needs a real, non-zero vector for every point, and this one earns its place: it is the
direction that steering by the whole family adds (the normalised sum of the members' decoder
directions points the same way), ``FamilyStore.direction`` reads it back, and it lives in the
embedding space, so a query embedding's cosine with it means something. The engine keeps cosine
vectors at unit length, so it comes back normalised.

``FamilyStore`` is written over the ``DocumentStore`` port, so it runs on both adapters (edge and
server) with the same answers, as the congruence suite checks. The ``.`` in the collection name
keeps families apart from corpora (no corpus name contains one, and ``list_collections`` leaves
the collection out, so ListCorpora never shows it), and the ``families.`` prefix keeps them apart
from the SAE's labels (``features.<key>``).

This module is independent of ``featurelens.families`` (the algorithm): ``FamilyRecord`` holds
plain types, and ``FamilyRecord.of`` takes anything shaped like a core ``Family``.

Float fields come back from qdrant-edge within one ulp of what was put; the server adapter
returns them exactly. Sync, like the store and ``LabelStore``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from featurelens.store import schema
from featurelens.store.errors import CollectionNotFoundError, InvalidQueryError
from featurelens.store.port import DocumentStore
from featurelens.store.scan import scan
from featurelens.store.types import PayloadSelector, PointRecord, StoredPoint

__all__ = ["KIND", "PAYLOAD_VERSION", "FamilyLike", "FamilyRecord", "FamilyStore"]

logger = logging.getLogger(__name__)

#: The ``kind`` in a families collection's metadata (the name is what the store goes by).
KIND = "feature_families"

#: Bumped when the payload's fields change meaning. Fields added later (``member_counts``,
#: ``documents``, ``direction_norm``) read as unknown from an older payload, so adding them kept 1.
PAYLOAD_VERSION = 1

# Points per scroll page and per upsert / delete batch.
_PAGE = 1024


class FamilyLike(Protocol):
    """What ``FamilyRecord.of`` reads from a family (the core ``featurelens.families.Family``)."""

    @property
    def family_id(self) -> str: ...
    @property
    def root(self) -> int: ...
    @property
    def children(self) -> Sequence[int]: ...
    @property
    def edges(self) -> Sequence[tuple[int, int]]: ...
    @property
    def pass_index(self) -> int: ...
    @property
    def nested_in(self) -> str | None: ...
    @property
    def root_density(self) -> float: ...


@dataclass(frozen=True)
class FamilyRecord:
    """One stored family of one SAE: its tree, its label, and the build that found it."""

    sae_id: str
    family_id: str
    """Unique within the SAE (the core's ``f<root>-p<pass>``)."""
    root: int
    """The parent feature."""
    children: tuple[int, ...]
    """Every member but the root, sorted."""
    edges: tuple[tuple[int, int], ...]
    """The tree's (parent, child) edges: every child exactly once, the root never as a child."""
    pass_index: int = 0
    nested_in: str | None = None
    """The id of the family this one is nested in, or None for a top-level family."""
    root_density: float = 0.0
    """Fraction of the corpus's documents on which the root fires."""
    label: str = ""
    """The family's label; empty before labelling."""
    corpus: str = ""
    """The corpus whose activations the families were built from."""
    threshold: float = 0.0
    """The co-occurrence threshold of the build."""
    created_unix: int = 0
    """When the build ran (seconds since the epoch)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (JSON-ready), e.g. how the label was written."""
    member_counts: tuple[int, ...] = ()
    """Documents of the corpus on which each member fires, in ``members`` order (root first);
    empty when unknown. Counts rather than fractions: integers come back exactly from both store
    adapters, and ``density`` divides them by ``documents``."""
    documents: int = 0
    """Documents the build counted (the denominator of every density); 0 when unknown."""
    direction_norm: float = 0.0
    """Length of the sum of the members' unit decoder directions (steering the family by weight w
    steers each member by w / direction_norm); 0 when unknown."""

    def __post_init__(self) -> None:
        what = f"family {self.family_id!r}"
        if not isinstance(self.sae_id, str) or not self.sae_id:
            raise ValueError(f"{what}: sae_id must be a non-empty string")
        if not isinstance(self.family_id, str) or not self.family_id:
            raise ValueError(f"family id {self.family_id!r} must be a non-empty string")
        object.__setattr__(self, "root", _latent(self.root, what, "the root"))
        children = tuple(_latent(c, what, "a child") for c in self.children)
        if list(children) != sorted(set(children)):
            raise ValueError(f"{what}: children must be sorted and without repeats")
        if self.root in children:
            raise ValueError(f"{what}: children must not contain the root {self.root}")
        object.__setattr__(self, "children", children)
        edges = tuple((_latent(p, what, "an edge"), _latent(c, what, "an edge")) for p, c in self.edges)
        object.__setattr__(self, "edges", edges)
        _tree_depth(self.root, children, edges, what)  # raises unless the edges are a tree
        if isinstance(self.pass_index, bool) or not isinstance(self.pass_index, int) or self.pass_index < 0:
            raise ValueError(f"{what}: pass_index must be a non-negative integer")
        if self.nested_in is not None and (not isinstance(self.nested_in, str) or not self.nested_in):
            raise ValueError(f"{what}: nested_in must be a family id or None")
        if self.nested_in == self.family_id:
            raise ValueError(f"{what} cannot be nested in itself")
        density, threshold = _number(self.root_density, what), _number(self.threshold, what)
        if not 0.0 <= density <= 1.0:
            raise ValueError(f"{what}: root_density must be a fraction in [0, 1], got {density}")
        if not math.isfinite(threshold):
            raise ValueError(f"{what}: threshold must be a finite number, got {threshold}")
        object.__setattr__(self, "root_density", density)
        object.__setattr__(self, "threshold", threshold)
        if isinstance(self.created_unix, bool) or not isinstance(self.created_unix, int | np.integer):
            raise ValueError(f"{what}: created_unix must be an integer")
        object.__setattr__(self, "created_unix", int(self.created_unix))
        if not isinstance(self.label, str) or not isinstance(self.corpus, str):
            raise ValueError(f"{what}: label and corpus must be strings")
        documents = _count(self.documents, what, "documents")
        counts = tuple(_count(c, what, "a member count") for c in self.member_counts)
        if counts and len(counts) != len(children) + 1:
            raise ValueError(
                f"{what}: member_counts has {len(counts)} entries for {len(children) + 1} members"
            )
        if counts and max(counts) > documents:
            raise ValueError(f"{what}: a member fires on more documents than the {documents} counted")
        object.__setattr__(self, "documents", documents)
        object.__setattr__(self, "member_counts", counts)
        norm = _number(self.direction_norm, what)
        if not (math.isfinite(norm) and norm >= 0.0):
            raise ValueError(f"{what}: direction_norm must be a finite number >= 0, got {norm}")
        object.__setattr__(self, "direction_norm", norm)

    @classmethod
    def of(
        cls,
        sae_id: str,
        family: FamilyLike,
        *,
        label: str = "",
        corpus: str = "",
        threshold: float = 0.0,
        created_unix: int = 0,
        extra: Mapping[str, Any] | None = None,
        member_counts: Sequence[int] = (),
        documents: int = 0,
        direction_norm: float = 0.0,
    ) -> FamilyRecord:
        """The record of a core ``Family`` (or anything with its fields) built for ``sae_id``."""
        return cls(
            sae_id=sae_id,
            family_id=family.family_id,
            root=family.root,
            children=tuple(family.children),
            edges=tuple((p, c) for p, c in family.edges),
            pass_index=family.pass_index,
            nested_in=family.nested_in,
            root_density=float(family.root_density),
            label=label,
            corpus=corpus,
            threshold=float(threshold),
            created_unix=int(created_unix),
            extra=dict(extra or {}),
            member_counts=tuple(int(c) for c in member_counts),
            documents=int(documents),
            direction_norm=float(direction_norm),
        )

    @property
    def members(self) -> tuple[int, ...]:
        """The root followed by the children."""
        return (self.root, *self.children)

    @property
    def size(self) -> int:
        """Number of children (the paper's family size)."""
        return len(self.children)

    def density(self, feature: int) -> float:
        """Fraction of the corpus's documents on which a member fires (0.0 when the build did not
        record its counts); ValueError for a feature that is not a member."""
        try:
            index = self.members.index(feature)
        except ValueError:
            raise ValueError(f"feature {feature} is not a member of family {self.family_id!r}") from None
        if not self.member_counts or not self.documents:
            return 0.0
        return self.member_counts[index] / self.documents

    @property
    def depth(self) -> int:
        """Depth of the tree below the root (1 = a root with children only; 0 = no children)."""
        return _tree_depth(self.root, self.children, self.edges, f"family {self.family_id!r}")

    def to_payload(self) -> dict[str, Any]:
        """The record as a JSON-ready payload (tuples as lists, the payload version added)."""
        return {
            "sae_id": self.sae_id,
            "family_id": self.family_id,
            "root": self.root,
            "children": list(self.children),
            "edges": [[p, c] for p, c in self.edges],
            "pass_index": self.pass_index,
            "nested_in": self.nested_in,
            "root_density": float(self.root_density),
            "label": self.label,
            "corpus": self.corpus,
            "threshold": float(self.threshold),
            "created_unix": int(self.created_unix),
            "extra": dict(self.extra),
            "member_counts": list(self.member_counts),
            "documents": int(self.documents),
            "direction_norm": float(self.direction_norm),
            "payload_version": PAYLOAD_VERSION,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> FamilyRecord:
        """The record a payload holds; unknown keys (the store's own, newer writers') are ignored."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in payload.items() if key in known}
        values["children"] = tuple(values.get("children", ()))
        values["edges"] = tuple((int(p), int(c)) for p, c in values.get("edges", ()))
        values["extra"] = dict(values.get("extra") or {})
        values["member_counts"] = tuple(values.get("member_counts", ()))
        return cls(**values)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{what}: {value!r} is not a number")
    return float(value)


def _count(value: Any, what: str, role: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{what}: {role} {value!r} is not a count (a non-negative integer)")
    return int(value)


def _latent(value: Any, what: str, role: str) -> int:
    # bool is an int, but True is no latent id.
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{what}: {role} {value!r} is not a latent id (a non-negative integer)")
    return int(value)


def _tree_depth(root: int, children: tuple[int, ...], edges: tuple[tuple[int, int], ...], what: str) -> int:
    below: dict[int, list[int]] = {}
    parent_of: dict[int, int] = {}
    members = {root, *children}
    for parent, child in edges:
        if parent not in members or child not in members:
            raise ValueError(f"{what}: edge ({parent}, {child}) leaves the family")
        if child == root or child in parent_of:
            raise ValueError(f"{what}: feature {child} has more than one parent (or is the root)")
        parent_of[child] = parent
        below.setdefault(parent, []).append(child)
    depth, level, reached = 0, [root], 1
    while True:
        level = [c for p in level for c in below.get(p, ())]
        if not level:
            break
        depth += 1
        reached += len(level)
    if reached != len(members):
        raise ValueError(f"{what}: the edges do not join every child to the root")
    return depth


def _order(record: FamilyRecord) -> tuple[int, int, int, str]:
    # Largest first; ties by pass, then root feature, then id, so the order never depends on the engine.
    return (-record.size, record.pass_index, record.root, record.family_id)


class FamilyStore:
    """Feature families of each SAE, with their directions, in a ``DocumentStore``.

    Reads of an SAE that has no families collection find nothing: ``get`` and ``direction``
    return None, ``all_families`` and ``families_of_feature`` empty lists, ``count`` 0.
    ``replace_all`` creates the collection. Malformed input (a vector of the wrong dimension,
    NaN, a record of another SAE, a family id given twice) is an ``InvalidQueryError`` naming the
    SAE and the family.
    """

    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    @property
    def store(self) -> DocumentStore:
        """The document store holding the families."""
        return self._store

    # -- collections -------------------------------------------------------------------------

    def has(self, sae_id: str) -> bool:
        """Whether the SAE's families were built (there may be none)."""
        return self.dim(sae_id) is not None

    def dim(self, sae_id: str) -> int | None:
        """The dimension of the SAE's family directions, or None if it has no families collection."""
        try:
            return self._store.collection_info(schema.families_collection(sae_id)).dense_dim
        except CollectionNotFoundError:
            return None

    def count(self, sae_id: str) -> int:
        """How many families the SAE has."""
        try:
            return self._store.count(schema.families_collection(sae_id))
        except CollectionNotFoundError:
            return 0

    def drop(self, sae_id: str) -> bool:
        """Delete the SAE's families; False if it had none."""
        dropped = self._store.drop_collection(schema.families_collection(sae_id))
        if dropped:
            logger.info("dropped the families of SAE %r", sae_id)
        return dropped

    # -- writes ------------------------------------------------------------------------------

    def replace_all(
        self,
        sae_id: str,
        items: Sequence[tuple[FamilyRecord, npt.ArrayLike]],
        dim: int | None = None,
    ) -> int:
        """Make ``items`` (records with their directions) the SAE's families; returns how many.

        Every item is checked before any is written. The new families are written first, then
        the SAE's families that are not among them are deleted: a reader during a rebuild sees
        the old and the new families side by side, never none, and a family that survives a
        rebuild (same id) is never missing. ``dim`` (the decoder's dimension) is only needed to
        record a build that found no families for an SAE without a collection; otherwise it
        defaults to the vectors' length and must agree with the stored one.
        """
        name = schema.families_collection(sae_id)  # validates the sae_id
        stored = self.dim(sae_id)
        if dim is not None and stored is not None and dim != stored:
            raise InvalidQueryError(
                f"the families of SAE {sae_id!r} hold {stored}-dim directions, not {dim}: drop them "
                "to store families of another decoder"
            )
        want = stored if stored is not None else dim
        if want is None and items:
            want = int(np.asarray(items[0][1]).reshape(-1).shape[0])
        points: list[PointRecord] = []
        seen: set[str] = set()
        for record, vector in items:
            if not isinstance(record, FamilyRecord):
                raise InvalidQueryError(f"families are stored as FamilyRecord, got {type(record).__name__}")
            if record.sae_id != sae_id:
                raise InvalidQueryError(
                    f"family {record.family_id!r} belongs to SAE {record.sae_id!r}, not {sae_id!r}"
                )
            if record.family_id in seen:
                raise InvalidQueryError(f"family {record.family_id!r} of SAE {sae_id!r} is given twice")
            seen.add(record.family_id)
            assert want is not None  # items is not empty
            direction = _vector(vector, want, sae_id, f"the direction of family {record.family_id!r}")
            points.append(PointRecord(record.family_id, dense=direction, payload=record.to_payload()))
        if want is None:
            return 0  # nothing built, nothing to say what the dimension is: leave no trace
        metadata = {"kind": KIND, "sae_id": sae_id, "payload_version": PAYLOAD_VERSION}
        self._store.ensure_collection(name, want, metadata=metadata)
        for start in range(0, len(points), _PAGE):
            self._store.upsert(name, points[start : start + _PAGE])
        stale = [point.doc_id for point in self._scan(sae_id, False) if point.doc_id not in seen]
        for start in range(0, len(stale), _PAGE):
            self._store.delete(name, stale[start : start + _PAGE])
        logger.info("stored %d families of SAE %r (%d stale ones deleted)", len(points), sae_id, len(stale))
        return len(points)

    def set_labels(self, sae_id: str, labels: Mapping[str, str]) -> int:
        """Set the labels of stored families (``family_id -> label``); returns how many were found.

        Unknown family ids are skipped. Families are labelled after they are built, so this
        leaves their trees and directions as they are.
        """
        for family_id, label in labels.items():
            _family_id(family_id)
            if not isinstance(label, str):
                raise InvalidQueryError(f"the label of family {family_id!r} must be a string")
        if not self.has(sae_id):
            raise CollectionNotFoundError(f"SAE {sae_id!r} has no families: build them first")
        name = schema.families_collection(sae_id)
        return sum(self._store.set_payload(name, [fid], {"label": label}) for fid, label in labels.items())

    # -- reads -------------------------------------------------------------------------------

    def get(self, sae_id: str, family_id: str) -> FamilyRecord | None:
        """The family, or None if the SAE has no family of that id."""
        try:
            points = self._store.retrieve(schema.families_collection(sae_id), [_family_id(family_id)])
        except CollectionNotFoundError:
            return None
        return FamilyRecord.from_payload(points[0].payload) if points else None

    def direction(self, sae_id: str, family_id: str) -> npt.NDArray[np.float32] | None:
        """The family's stored direction (unit length), or None if the SAE has no such family."""
        name = schema.families_collection(sae_id)
        try:
            points = self._store.retrieve(name, [_family_id(family_id)], with_payload=False, with_dense=True)
        except CollectionNotFoundError:
            return None
        return points[0].dense if points else None

    def all_families(self, sae_id: str) -> list[FamilyRecord]:
        """Every family of the SAE, largest first (ties: pass, root feature, id)."""
        return sorted((FamilyRecord.from_payload(p.payload) for p in self._scan(sae_id, True)), key=_order)

    def families_of_feature(self, sae_id: str, feature: int) -> list[FamilyRecord]:
        """The families the feature belongs to (as root or child), largest first.

        A scan of the roots and children only (an SAE has hundreds to a few thousand families,
        one or two pages); the full records are fetched for the matches alone.
        """
        latent = _feature(feature)
        ids = [
            point.doc_id
            for point in self._scan(sae_id, ["root", "children"])
            if point.payload.get("root") == latent or latent in point.payload.get("children", ())
        ]
        if not ids:
            return []
        try:
            points = self._store.retrieve(schema.families_collection(sae_id), ids)
        except CollectionNotFoundError:  # dropped since the scan
            return []
        return sorted((FamilyRecord.from_payload(p.payload) for p in points), key=_order)

    # -- helpers -----------------------------------------------------------------------------

    def _scan(self, sae_id: str, with_payload: PayloadSelector) -> Iterator[StoredPoint]:
        return scan(self._store, schema.families_collection(sae_id), with_payload, _PAGE)


def _family_id(family_id: Any) -> str:
    if not isinstance(family_id, str) or not family_id:
        raise InvalidQueryError(f"family id {family_id!r} is invalid: it must be a non-empty string")
    return family_id


def _feature(feature: Any) -> int:
    if isinstance(feature, bool) or not isinstance(feature, int | np.integer) or feature < 0:
        raise InvalidQueryError(f"feature {feature!r} is not a latent id (a non-negative integer)")
    return int(feature)


def _vector(vector: npt.ArrayLike, dim: int, sae_id: str, what: str) -> npt.NDArray[np.float32]:
    try:
        array = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidQueryError(f"{what} is not a vector of numbers") from None
    if array.ndim != 1 or array.shape[0] != dim:
        raise InvalidQueryError(
            f"{what} has shape {tuple(array.shape)}, but the families of SAE {sae_id!r} hold "
            f"{dim}-dim directions"
        )
    if not np.isfinite(array).all():
        raise InvalidQueryError(f"{what} contains NaN or infinite values")
    if not np.any(array):
        raise InvalidQueryError(f"{what} is all zeros, so it points nowhere")
    return array
