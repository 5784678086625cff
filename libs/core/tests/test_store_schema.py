"""Names, ids and derived payload fields of the stored schema."""

from __future__ import annotations

import re
import uuid

import numpy as np
import pytest

from featurelens.store import InvalidQueryError, PointRecord, SparseVec, schema


def test_point_ids_are_uuid5_of_the_doc_id_and_stable() -> None:
    pid = schema.point_id("2401.01234")
    assert pid == schema.point_id("2401.01234") == str(uuid.uuid5(schema.DOC_NAMESPACE, "2401.01234"))
    assert pid != schema.point_id("2401.01235")


@pytest.mark.parametrize("sae_id", ["topk-6144", "minilm.k32.v2", "a_b", "a.b", "sae:α/β", "x" * 60])
def test_sae_names_are_safe_for_vectors_and_json_paths_and_reversible(sae_id: str) -> None:
    vector = schema.sparse_vector_name(sae_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", vector)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", schema.features_field(sae_id))
    assert schema.sae_id_of(vector) == sae_id


def test_different_sae_ids_never_share_a_name() -> None:
    ids = ["a_b", "a.b", "a_2eb", "a-b", "A-b"]
    assert len({schema.sparse_vector_name(s) for s in ids}) == len(ids)


def test_unknown_vector_names_have_no_sae() -> None:
    assert schema.sae_id_of("dense") is None
    assert schema.sae_id_of("sae_bad_zz") is None


def test_the_payload_gets_doc_id_date_int_sample_key_and_firing_latents() -> None:
    record = PointRecord(
        "d1",
        sparse={"s": SparseVec([9, 3, 5], [0.5, 1.0, 0.0])},
        payload={"title": "T", "date": "2016-02-29", "categories": ("cs.LG",)},
    )
    payload = schema.build_payload(record, ["s"])
    assert payload["doc_id"] == "d1"
    assert payload["date_int"] == 20160229
    assert payload["categories"] == ["cs.LG"]
    assert payload["features_s"] == [3, 9]
    assert 0 <= payload["sample_key"] < 2**52


def test_a_payload_doc_id_that_disagrees_with_the_record_is_rejected() -> None:
    with pytest.raises(InvalidQueryError, match="different 'doc_id'"):
        schema.build_payload(PointRecord("d1", payload={"doc_id": "d2"}), [])


@pytest.mark.parametrize("date", ["2016-2-29", "2017-02-29", "20160229", "2016-02-29T00:00"])
def test_dates_must_be_calendar_days_written_yyyy_mm_dd(date: str) -> None:
    with pytest.raises(InvalidQueryError, match="date"):
        schema.date_int(date)


def test_sparse_vectors_go_to_the_engine_sorted_without_zeros() -> None:
    indices, values = schema.check_sparse(SparseVec([7, 2, 4], [1.5, 0.0, -2.0]), "v")
    assert (indices, values) == ([4, 7], [-2.0, 1.5])


def test_a_sparse_vec_needs_as_many_values_as_indices() -> None:
    with pytest.raises(ValueError, match="as many values"):
        SparseVec([1, 2], [1.0])
    vec = SparseVec.from_dict({3: 0.5, 1: 2.0})
    assert vec.to_dict() == {3: 0.5, 1: 2.0}
    assert vec.indices.dtype == np.int64
    assert not vec.indices.flags.writeable
