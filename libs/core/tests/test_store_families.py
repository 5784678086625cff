"""Feature families in the store (``FamilyStore``): what goes in comes back, and bad input is refused.

Each test runs on both adapters (qdrant-edge in a tmp_path, qdrant-client's :memory: mode);
the congruence suite compares their answers side by side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from featurelens.families import Family
from featurelens.store import (
    CollectionNotFoundError,
    DocumentStore,
    EdgeDocumentStore,
    FamilyRecord,
    FamilyStore,
    InvalidQueryError,
    LabelStore,
    PointRecord,
    QdrantServerDocumentStore,
    schema,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect"),
    pytest.mark.filterwarnings("ignore:Local mode performs exact"),
]

DIM = 8
SAE = "astro:topk-64"


def family(root: int, children: tuple[int, ...], sae_id: str = SAE, **fields: Any) -> FamilyRecord:
    """A star: the root is every child's parent (unless ``edges`` says otherwise)."""
    fields.setdefault("edges", tuple((root, child) for child in children))
    fields.setdefault("family_id", f"f{root}-p{fields.get('pass_index', 0)}")
    return FamilyRecord(sae_id=sae_id, root=root, children=children, **fields)


def direction(seed: int, dim: int = DIM) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DocumentStore]:
    impl: DocumentStore
    if request.param == "edge":
        impl = EdgeDocumentStore(tmp_path / "store")
    else:
        impl = QdrantServerDocumentStore(QdrantClient(":memory:"))
    yield impl
    impl.close()


@pytest.fixture
def families(store: DocumentStore) -> FamilyStore:
    return FamilyStore(store)


def test_a_family_comes_back_with_every_field_it_was_put_with(families: FamilyStore) -> None:
    # Binary fractions: qdrant-edge may parse other payload floats back an ulp away.
    full = family(
        10,
        (11, 12, 13, 14),
        edges=((10, 11), (10, 12), (12, 13), (12, 14)),
        pass_index=1,
        nested_in="f3-p0",
        root_density=0.125,
        label="Dark matter",
        corpus="astro",
        threshold=0.0625,
        created_unix=1_700_000_000,
        extra={"label_model": "gpt-4o-mini", "nested": {"k": None}},
    )
    assert families.replace_all(SAE, [(full, direction(0))]) == 1
    assert families.get(SAE, "f10-p1") == full
    assert (full.members, full.size, full.depth) == ((10, 11, 12, 13, 14), 4, 2)


def test_member_densities_and_the_direction_norm_come_back_exactly(families: FamilyStore) -> None:
    built = family(
        10, (11, 12, 13), member_counts=(40, 7, 3, 0), documents=80, direction_norm=1.8125, label="lensing"
    )
    families.replace_all(SAE, [(built, direction(1))])

    back = families.get(SAE, "f10-p0")

    assert back == built
    assert [back.density(f) for f in back.members] == [0.5, 7 / 80, 3 / 80, 0.0]
    with pytest.raises(ValueError, match="not a member"):
        back.density(99)


def test_a_payload_written_before_the_member_counts_existed_reads_as_unknown() -> None:
    payload = family(1, (2, 3, 4)).to_payload()
    for key in ("member_counts", "documents", "direction_norm"):
        del payload[key]

    record = FamilyRecord.from_payload(payload)

    assert (record.member_counts, record.documents, record.direction_norm) == ((), 0, 0.0)
    assert record.density(2) == 0.0


def test_a_core_family_becomes_a_record_with_its_build_metadata() -> None:
    core = Family("f5-p0", 5, (6, 7, 8), ((5, 6), (5, 7), (7, 8)), 0, None, 0.25)
    record = FamilyRecord.of(SAE, core, label="lensing", corpus="astro", threshold=0.1, created_unix=7)
    assert (record.family_id, record.root, record.children, record.edges) == (
        "f5-p0",
        5,
        (6, 7, 8),
        ((5, 6), (5, 7), (7, 8)),
    )
    assert (record.label, record.corpus, record.threshold, record.created_unix) == (
        "lensing",
        "astro",
        0.1,
        7,
    )
    assert FamilyRecord.from_payload(record.to_payload()) == record


def test_all_families_come_largest_first_with_ties_by_pass_then_root(families: FamilyStore) -> None:
    built = [
        family(1, (2, 3, 4)),
        family(20, (21, 22, 23, 24, 25)),
        family(9, (30, 31, 32)),
        family(5, (6, 7, 8), pass_index=1),
        family(40, (41, 42, 43, 44, 45)),
    ]
    families.replace_all(SAE, [(f, direction(i)) for i, f in enumerate(built)])
    assert [f.family_id for f in families.all_families(SAE)] == [
        "f20-p0",
        "f40-p0",
        "f1-p0",
        "f9-p0",
        "f5-p1",
    ]
    assert families.count(SAE) == 5


def test_all_families_page_past_one_scroll_page(families: FamilyStore) -> None:
    built = [family(4 * i, (4 * i + 1, 4 * i + 2, 4 * i + 3)) for i in range(1100)]
    assert families.replace_all(SAE, [(f, direction(i)) for i, f in enumerate(built)]) == 1100
    assert families.count(SAE) == 1100
    assert [f.root for f in families.all_families(SAE)] == [f.root for f in built]


def test_a_feature_belongs_to_each_family_it_is_the_root_or_a_child_of(families: FamilyStore) -> None:
    outer = family(1, (2, 3, 4, 5, 6), edges=((1, 2), (1, 3), (2, 4), (2, 5), (2, 6)))
    inner = family(2, (4, 5, 6), nested_in="f1-p0")
    elsewhere = family(7, (8, 9, 10))
    families.replace_all(SAE, [(outer, direction(1)), (inner, direction(2)), (elsewhere, direction(3))])
    assert [f.family_id for f in families.families_of_feature(SAE, 5)] == ["f1-p0", "f2-p0"]
    assert [f.family_id for f in families.families_of_feature(SAE, 2)] == ["f1-p0", "f2-p0"]
    assert families.families_of_feature(SAE, 1) == [outer]
    assert families.families_of_feature(SAE, 7) == [elsewhere]
    assert families.families_of_feature(SAE, 99) == []


def test_the_direction_comes_back_at_unit_length(families: FamilyStore) -> None:
    raw = 3.0 * direction(4)
    families.replace_all(SAE, [(family(1, (2, 3, 4)), raw)])
    stored = families.direction(SAE, "f1-p0")
    assert stored is not None
    assert stored.tolist() == pytest.approx(direction(4).tolist(), abs=1e-6)
    assert families.direction(SAE, "f9-p0") is None


def test_a_rebuild_replaces_every_family_and_keeps_none_of_the_old_ones(families: FamilyStore) -> None:
    families.replace_all(SAE, [(family(1, (2, 3, 4)), direction(1)), (family(5, (6, 7, 8)), direction(2))])
    relabelled = family(5, (6, 7, 8, 9), label="new")
    assert (
        families.replace_all(SAE, [(relabelled, -direction(2)), (family(10, (11, 12, 13)), direction(3))])
        == 2
    )
    assert [f.family_id for f in families.all_families(SAE)] == ["f5-p0", "f10-p0"]
    assert families.get(SAE, "f1-p0") is None
    assert families.get(SAE, "f5-p0") == relabelled
    stored = families.direction(SAE, "f5-p0")
    assert stored is not None
    assert float(stored @ -direction(2)) == pytest.approx(1.0, abs=1e-5)
    assert families.families_of_feature(SAE, 2) == []


def test_a_rebuild_that_finds_no_families_leaves_the_sae_with_none(families: FamilyStore) -> None:
    families.replace_all(SAE, [(family(1, (2, 3, 4)), direction(1))])
    assert families.replace_all(SAE, []) == 0
    assert (families.has(SAE), families.count(SAE), families.all_families(SAE)) == (True, 0, [])


def test_a_first_build_that_finds_no_families_is_recorded_only_when_told_the_dimension(
    families: FamilyStore,
) -> None:
    assert families.replace_all("empty-a", []) == 0
    assert families.has("empty-a") is False
    assert families.replace_all("empty-b", [], dim=DIM) == 0
    assert (families.has("empty-b"), families.dim("empty-b"), families.count("empty-b")) == (True, DIM, 0)


def test_labels_are_set_after_the_build_and_leave_the_tree_and_direction_alone(families: FamilyStore) -> None:
    built = family(1, (2, 3, 4), edges=((1, 2), (2, 3), (2, 4)))
    families.replace_all(SAE, [(built, direction(1)), (family(5, (6, 7, 8)), direction(2))])
    assert families.set_labels(SAE, {"f1-p0": "galaxy clusters", "f404-p0": "nowhere"}) == 1
    assert families.get(SAE, "f1-p0") == dataclasses.replace(built, label="galaxy clusters")
    stored = families.direction(SAE, "f1-p0")
    assert stored is not None
    assert float(stored @ direction(1)) == pytest.approx(1.0, abs=1e-5)
    assert families.get(SAE, "f5-p0") == family(5, (6, 7, 8))


def test_labelling_the_families_of_an_sae_never_built_names_the_sae(families: FamilyStore) -> None:
    with pytest.raises(CollectionNotFoundError, match="SAE 'sae-new' has no families: build them first"):
        families.set_labels("sae-new", {"f1-p0": "x"})


def test_an_sae_without_families_reads_as_empty_everywhere(families: FamilyStore) -> None:
    assert families.has("never-built") is False
    assert families.dim("never-built") is None
    assert families.get("never-built", "f1-p0") is None
    assert families.direction("never-built", "f1-p0") is None
    assert families.all_families("never-built") == []
    assert families.families_of_feature("never-built", 1) == []
    assert families.count("never-built") == 0
    assert families.drop("never-built") is False


def test_drop_deletes_one_saes_families_and_leaves_the_others(families: FamilyStore) -> None:
    families.replace_all(SAE, [(family(1, (2, 3, 4)), direction(1))])
    families.replace_all("other", [(family(1, (2, 3, 4), sae_id="other"), direction(1))])
    assert families.drop(SAE) is True
    assert (families.has(SAE), families.get(SAE, "f1-p0")) == (False, None)
    assert families.count("other") == 1
    assert families.drop(SAE) is False


def test_saes_whose_ids_differ_only_in_punctuation_keep_separate_families(families: FamilyStore) -> None:
    sae_ids = ["a:b", "a/b", "a.b", "a_b", "a-b"]
    for i, sae_id in enumerate(sae_ids):
        families.replace_all(sae_id, [(family(1, (2, 3, 4), sae_id=sae_id, label=sae_id), direction(i))])
    assert [[f.label for f in families.all_families(s)] for s in sae_ids] == [[s] for s in sae_ids]
    assert len({schema.families_collection(s) for s in sae_ids}) == len(sae_ids)


# -- refused input -----------------------------------------------------------------------------


def test_a_direction_of_the_wrong_dimension_is_refused_and_nothing_of_its_batch_is_written(
    families: FamilyStore,
) -> None:
    batch = [(family(1, (2, 3, 4)), direction(1)), (family(5, (6, 7, 8)), direction(2, dim=DIM + 1))]
    with pytest.raises(InvalidQueryError, match=rf"family 'f5-p0' has shape \(9,\).*SAE '{SAE}'.*{DIM}-dim"):
        families.replace_all(SAE, batch)
    assert (families.has(SAE), families.count(SAE)) == (False, 0)


def test_a_rebuild_for_another_decoder_dimension_is_refused_naming_the_sae(families: FamilyStore) -> None:
    families.replace_all(SAE, [(family(1, (2, 3, 4)), direction(1))])
    with pytest.raises(InvalidQueryError, match=rf"family 'f5-p0' has shape \(16,\).*{DIM}-dim"):
        families.replace_all(SAE, [(family(5, (6, 7, 8)), direction(1, dim=16))])
    with pytest.raises(InvalidQueryError, match=rf"SAE '{SAE}' hold {DIM}-dim directions, not 16"):
        families.replace_all(SAE, [], dim=16)
    assert [f.family_id for f in families.all_families(SAE)] == ["f1-p0"]


@pytest.mark.parametrize(
    ("vector", "says"),
    [(np.full(DIM, np.nan), "NaN"), (np.zeros(DIM), "all zeros"), (np.ones((2, DIM)), r"shape \(2, 8\)")],
)
def test_directions_that_point_nowhere_are_refused(
    families: FamilyStore, vector: np.ndarray, says: str
) -> None:
    with pytest.raises(InvalidQueryError, match=says):
        families.replace_all(SAE, [(family(1, (2, 3, 4)), vector)], dim=DIM)


def test_a_family_of_another_sae_is_refused(families: FamilyStore) -> None:
    with pytest.raises(InvalidQueryError, match=f"family 'f1-p0' belongs to SAE 'other', not '{SAE}'"):
        families.replace_all(SAE, [(family(1, (2, 3, 4), sae_id="other"), direction(1))])


def test_a_family_id_given_twice_in_one_build_is_refused(families: FamilyStore) -> None:
    twice = [(family(1, (2, 3, 4)), direction(1)), (family(1, (2, 3, 5)), direction(2))]
    with pytest.raises(InvalidQueryError, match=f"family 'f1-p0' of SAE '{SAE}' is given twice"):
        families.replace_all(SAE, twice)


@pytest.mark.parametrize("feature", [-1, 1.5, "3", True])
def test_a_feature_that_is_not_a_latent_id_is_refused(families: FamilyStore, feature: object) -> None:
    with pytest.raises(InvalidQueryError, match="is not a latent id"):
        families.families_of_feature(SAE, feature)  # type: ignore[arg-type]


@pytest.mark.parametrize("family_id", ["", 3, None])
def test_a_family_id_that_is_not_a_string_is_refused(families: FamilyStore, family_id: object) -> None:
    with pytest.raises(InvalidQueryError, match=r"family id .* must be a non-empty string"):
        families.get(SAE, family_id)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"children": (3, 2, 4)}, "sorted"),
        ({"children": (1, 2, 3)}, "must not contain the root"),
        ({"children": (2, -3)}, "not a latent id"),
        ({"edges": ((1, 2), (1, 3), (1, 9))}, r"edge \(1, 9\) leaves the family"),
        ({"edges": ((1, 2), (1, 3), (2, 3))}, "feature 3 has more than one parent"),
        ({"edges": ((1, 2), (3, 4), (4, 3))}, "more than one parent|do not join"),
        ({"edges": ((1, 2), (1, 3))}, "do not join every child to the root"),
        ({"root_density": 1.5}, r"root_density must be a fraction in \[0, 1\]"),
        ({"threshold": float("inf")}, "threshold must be a finite number"),
        ({"nested_in": "f1-p0"}, "cannot be nested in itself"),
        ({"pass_index": -1}, "pass_index"),
        ({"member_counts": (5, 1, 1), "documents": 10}, "member_counts has 3 entries for 4 members"),
        ({"member_counts": (5, 1, 1, 11), "documents": 10}, "fires on more documents than the 10"),
        ({"member_counts": (5, 1, -1, 1), "documents": 10}, "not a count"),
        ({"direction_norm": float("nan")}, "direction_norm must be a finite number"),
        ({"direction_norm": -1.0}, "direction_norm must be a finite number >= 0"),
    ],
)
def test_a_malformed_family_cannot_be_made(fields: dict[str, Any], says: str) -> None:
    fields.setdefault("children", (2, 3, 4))
    with pytest.raises(ValueError, match=says):
        family(1, **fields)


# -- kept apart from corpora and labels --------------------------------------------------------


def test_families_collections_are_not_listed_as_corpora_and_leave_labels_alone(store: DocumentStore) -> None:
    store.ensure_collection("astro", DIM)
    store.upsert("astro", [PointRecord("d1", direction(5), payload={"title": "A halo"})])
    labels = LabelStore(store)
    labels.ensure(SAE, DIM)
    families = FamilyStore(store)
    families.replace_all(SAE, [(family(1, (2, 3, 4)), direction(1))])
    assert store.list_collections() == ["astro"]
    assert (store.count("astro"), labels.count(SAE), families.count(SAE)) == (1, 0, 1)
    assert families.drop(SAE) is True
    assert labels.has(SAE) is True


@pytest.mark.parametrize("sae_id", ["astro", "topk-64", "a:b/c.d", "x" * 60, "ü"])
def test_no_corpus_or_labels_name_is_ever_a_families_collection_name(sae_id: str) -> None:
    name = schema.families_collection(sae_id)
    assert schema.is_families_collection(name)
    assert not schema.is_labels_collection(name)
    assert not schema.is_families_collection(schema.labels_collection(sae_id))
    assert not schema.is_corpus_name(name)
    assert schema.check_store_name(name) == name
    with pytest.raises(InvalidQueryError, match="collection name"):
        schema.check_collection_name(name)
    assert not schema.is_families_collection(sae_id)


def test_families_survive_closing_and_reopening_the_edge_folder(tmp_path: Path) -> None:
    kept = family(7, (8, 9, 10), label="Gravitational waves", root_density=0.25)
    with EdgeDocumentStore(tmp_path) as store:
        FamilyStore(store).replace_all(SAE, [(kept, direction(7)), (family(1, (2, 3, 4, 5)), direction(1))])
    with EdgeDocumentStore(tmp_path) as reopened:
        families = FamilyStore(reopened)
        assert reopened.list_collections() == []
        assert families.get(SAE, "f7-p0") == kept
        assert [f.family_id for f in families.all_families(SAE)] == ["f1-p0", "f7-p0"]
        assert families.families_of_feature(SAE, 9) == [kept]
