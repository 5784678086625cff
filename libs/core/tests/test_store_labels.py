"""Feature labels in the store (``LabelStore``): what goes in comes back, and bad input is refused.

Each test runs on both adapters (qdrant-edge in a tmp_path, qdrant-client's :memory: mode);
the congruence suite compares their answers side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from featurelens.interp.records import LabelRecord
from featurelens.store import (
    CollectionNotFoundError,
    DocumentStore,
    EdgeDocumentStore,
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


def record(feature: int, label: str | None = None, sae_id: str = SAE, **fields: Any) -> LabelRecord:
    return LabelRecord(sae_id=sae_id, feature=feature, label=label or f"label of feature {feature}", **fields)


def embedding(seed: int, dim: int = DIM) -> np.ndarray:
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
def labels(store: DocumentStore) -> LabelStore:
    made = LabelStore(store)
    made.ensure(SAE, DIM)
    return made


def test_a_label_comes_back_with_every_field_it_was_put_with(labels: LabelStore) -> None:
    # Binary fractions: qdrant-edge may parse other payload floats back an ulp away.
    full = record(
        12,
        "Dark matter halos",
        pearson_r=None,
        f1=0.5,
        auroc=0.875,
        auroc_hard=0.625,
        balanced_accuracy=0.75,
        embedding_auroc=0.9375,
        interpreter_model="gpt-4o-mini",
        predictor_model="gpt-4o-mini",
        prompt_version="interp-v1",
        density=0.0078125,
        created_unix=1_700_000_000,
        cost_usd=0.25,
        tokens=1234,
        parse_failures=2,
        scored_documents=20,
        example_ids=("2401.00001", "2401.00002"),
        test_ids=("2401.00003",),
        score_note="predictions were constant",
        corpus="astro",
        domain="astrophysics abstracts",
        extra={"quantiles": [0.5, 0.9], "nested": {"k": None}},
    )
    assert labels.put(SAE, [(full, embedding(0))]) == 1
    assert labels.get(SAE, [12]) == [full]


def test_putting_a_feature_again_replaces_its_label_and_embedding(labels: LabelStore) -> None:
    labels.put(SAE, [(record(3, "old label"), embedding(1)), (record(4), embedding(2))])
    labels.put(SAE, [(record(3, "new label"), -embedding(1))])
    assert [r.label for r in labels.get(SAE, [3])] == ["new label"]
    assert labels.count(SAE) == 2
    best, score = labels.search(SAE, -embedding(1), top_k=1)[0]
    assert (best.feature, score) == (3, pytest.approx(1.0, abs=1e-5))


def test_the_last_of_a_feature_given_twice_in_one_put_wins(labels: LabelStore) -> None:
    assert labels.put(SAE, [(record(5, "first"), embedding(1)), (record(5, "second"), embedding(2))]) == 1
    assert [r.label for r in labels.all_labels(SAE)] == ["second"]


def test_get_returns_labels_in_the_order_asked_once_each_and_skips_unlabelled_features(
    labels: LabelStore,
) -> None:
    labels.put(SAE, [(record(f), embedding(f)) for f in (1, 7, 30)])
    assert [r.feature for r in labels.get(SAE, [30, 2, 1, 30, 7])] == [30, 1, 7]
    assert labels.get(SAE, []) == []


def test_labelled_features_count_and_all_labels_page_past_one_scroll_page(labels: LabelStore) -> None:
    features = list(range(0, 2400, 2))  # 1,200 labels: more than one scroll page of 1,024
    labels.put(SAE, [(record(f), embedding(f)) for f in features])
    assert labels.labelled_features(SAE) == set(features)
    assert labels.count(SAE) == len(features)
    assert [r.feature for r in labels.all_labels(SAE)] == features


def test_search_ranks_labels_by_cosine_similarity_best_first(labels: LabelStore) -> None:
    vectors = np.stack([embedding(seed) for seed in range(40)])
    labels.put(SAE, [(record(f), vectors[f]) for f in range(40)])
    query = vectors[17] + 0.3 * embedding(99)
    hits = labels.search(SAE, query, top_k=5)
    cosines = vectors @ (query / np.linalg.norm(query))
    assert [r.feature for r, _ in hits] == np.argsort(-cosines)[:5].tolist()
    assert [s for _, s in hits] == pytest.approx(np.sort(cosines)[::-1][:5].tolist(), rel=1e-4)
    assert hits[0][0].feature == 17


def test_substring_ignores_case_orders_by_feature_and_stops_at_the_limit(labels: LabelStore) -> None:
    texts = {9: "Dark Matter halos", 2: "galaxy clusters", 4: "dark-matter?", 6: "DARK MATTER annihilation"}
    labels.put(SAE, [(record(f, t), embedding(f)) for f, t in texts.items()])
    assert [r.feature for r in labels.substring(SAE, "dark matter", limit=10)] == [6, 9]
    assert [r.feature for r in labels.substring(SAE, "DARK", limit=2)] == [4, 6]
    assert labels.substring(SAE, "quasar", limit=10) == []


@pytest.mark.parametrize(
    ("text", "limit", "says"), [("", 5, "empty"), ("   ", 5, "empty"), ("dark", 0, "limit")]
)
def test_substring_refuses_an_empty_text_or_a_limit_below_one(
    labels: LabelStore, text: str, limit: int, says: str
) -> None:
    with pytest.raises(InvalidQueryError, match=says):
        labels.substring(SAE, text, limit)


def test_an_sae_without_labels_reads_as_empty_everywhere(store: DocumentStore) -> None:
    labels = LabelStore(store)
    assert labels.has("never-labelled") is False
    assert labels.get("never-labelled", [1, 2]) == []
    assert labels.all_labels("never-labelled") == []
    assert labels.labelled_features("never-labelled") == set()
    assert labels.count("never-labelled") == 0
    assert labels.search("never-labelled", embedding(0), top_k=3) == []
    assert labels.substring("never-labelled", "dark", 3) == []
    assert labels.drop("never-labelled") is False


def test_an_ensured_sae_has_labels_collection_even_before_its_first_label(labels: LabelStore) -> None:
    assert labels.has(SAE) is True
    assert labels.count(SAE) == 0
    assert labels.search(SAE, embedding(0), top_k=3) == []


def test_putting_labels_before_ensure_names_the_sae_and_says_what_to_call(store: DocumentStore) -> None:
    with pytest.raises(CollectionNotFoundError, match=r"SAE 'sae-new' has no labels collection.*ensure"):
        LabelStore(store).put("sae-new", [(record(1, sae_id="sae-new"), embedding(1))])


def test_ensure_is_idempotent_and_refuses_another_embedding_dimension(labels: LabelStore) -> None:
    labels.put(SAE, [(record(1), embedding(1))])
    labels.ensure(SAE, DIM)
    assert labels.count(SAE) == 1
    with pytest.raises(InvalidQueryError, match=rf"SAE '{SAE}' hold {DIM}-dim embeddings, not 16"):
        labels.ensure(SAE, 16)


def test_a_label_embedding_of_the_wrong_dimension_is_refused_and_nothing_of_its_batch_is_written(
    labels: LabelStore,
) -> None:
    batch = [(record(1), embedding(1)), (record(2), embedding(2, dim=DIM + 1))]
    with pytest.raises(InvalidQueryError, match=rf"feature 2's label has shape \(9,\).*{DIM}-dim"):
        labels.put(SAE, batch)
    assert labels.count(SAE) == 0


def test_a_query_vector_of_the_wrong_dimension_is_refused_naming_the_sae(labels: LabelStore) -> None:
    labels.put(SAE, [(record(1), embedding(1))])
    with pytest.raises(InvalidQueryError, match=rf"query embedding has shape \(4,\).*SAE '{SAE}'.*{DIM}-dim"):
        labels.search(SAE, np.ones(4), top_k=3)


@pytest.mark.parametrize(
    ("vector", "says"),
    [
        (np.full(DIM, np.nan), "NaN"),
        (np.zeros(DIM), "all zeros"),
        (np.ones((2, DIM)), r"shape \(2, 8\)"),
    ],
)
def test_embeddings_that_have_no_cosine_are_refused(
    labels: LabelStore, vector: np.ndarray, says: str
) -> None:
    with pytest.raises(InvalidQueryError, match=says):
        labels.put(SAE, [(record(1), vector)])
    with pytest.raises(InvalidQueryError, match=says):
        labels.search(SAE, vector)


def test_a_label_of_another_sae_is_refused(labels: LabelStore) -> None:
    with pytest.raises(InvalidQueryError, match="feature 1 belongs to SAE 'other', not"):
        labels.put(SAE, [(record(1, sae_id="other"), embedding(1))])


@pytest.mark.parametrize("feature", [-1, 1.5, "3", True])
def test_a_feature_that_is_not_a_latent_id_is_refused(labels: LabelStore, feature: object) -> None:
    with pytest.raises(InvalidQueryError, match="is not a latent id"):
        labels.get(SAE, [feature])  # type: ignore[list-item]


@pytest.mark.parametrize("top_k", [0, 10_001])
def test_search_refuses_a_top_k_out_of_range(labels: LabelStore, top_k: int) -> None:
    with pytest.raises(InvalidQueryError, match="top_k"):
        labels.search(SAE, embedding(0), top_k=top_k)


def test_saes_whose_ids_differ_only_in_punctuation_keep_separate_labels(store: DocumentStore) -> None:
    labels = LabelStore(store)
    sae_ids = ["a:b", "a/b", "a.b", "a_b", "a-b"]
    for i, sae_id in enumerate(sae_ids):
        labels.ensure(sae_id, DIM)
        labels.put(sae_id, [(record(i, f"label in {sae_id}", sae_id=sae_id), embedding(i))])
    assert [[r.label for r in labels.all_labels(s)] for s in sae_ids] == [[f"label in {s}"] for s in sae_ids]
    assert len({schema.labels_collection(s) for s in sae_ids}) == len(sae_ids)


def test_drop_deletes_one_saes_labels_and_leaves_the_others(labels: LabelStore) -> None:
    labels.ensure("other", DIM)
    labels.put(SAE, [(record(1), embedding(1))])
    labels.put("other", [(record(1, sae_id="other"), embedding(1))])
    assert labels.drop(SAE) is True
    assert (labels.has(SAE), labels.get(SAE, [1])) == (False, [])
    assert labels.count("other") == 1
    assert labels.drop(SAE) is False


# -- kept apart from corpora -------------------------------------------------------------------


def test_labels_collections_are_not_listed_as_corpora(store: DocumentStore) -> None:
    store.ensure_collection("astro", DIM)
    store.upsert("astro", [PointRecord("d1", embedding(5), payload={"title": "A halo"})])
    labels = LabelStore(store)
    labels.ensure(SAE, DIM)
    labels.put(SAE, [(record(1), embedding(1))])
    assert store.list_collections() == ["astro"]
    assert store.count("astro") == 1
    assert labels.count(SAE) == 1


@pytest.mark.parametrize("sae_id", ["astro", "topk-64", "a:b/c.d", "x" * 60, "ü"])
def test_no_corpus_name_is_ever_a_labels_collection_name(sae_id: str) -> None:
    name = schema.labels_collection(sae_id)
    assert schema.is_labels_collection(name)
    assert not schema.is_corpus_name(name)
    with pytest.raises(InvalidQueryError, match="collection name"):
        schema.check_collection_name(name)
    assert not schema.is_labels_collection(sae_id)


def test_a_labels_collection_takes_no_sae_latents(store: DocumentStore) -> None:
    with pytest.raises(InvalidQueryError, match="holds feature labels or families and takes no SAE latents"):
        store.ensure_collection(schema.labels_collection(SAE), DIM, ["sae-a"])


def test_labels_survive_closing_and_reopening_the_edge_folder(tmp_path: Path) -> None:
    kept = record(7, "Gravitational waves", pearson_r=0.5, example_ids=("2401.00001",))
    with EdgeDocumentStore(tmp_path) as store:
        labels = LabelStore(store)
        labels.ensure(SAE, DIM)
        labels.put(SAE, [(kept, embedding(7)), (record(8), embedding(8))])
    with EdgeDocumentStore(tmp_path) as reopened:
        labels = LabelStore(reopened)
        assert reopened.list_collections() == []
        assert labels.get(SAE, [7]) == [kept]
        assert labels.search(SAE, embedding(7), top_k=1)[0][0].feature == 7
        assert [r.feature for r in labels.all_labels(SAE)] == [7, 8]
