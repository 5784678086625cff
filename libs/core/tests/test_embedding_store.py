"""The on-disk embedding store: round trips, refusals, validation, crash recovery and resumable embedding."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from featurelens.corpus import Record
from featurelens.embedding import EmbeddingStore, EmbeddingStoreError, embed_corpus
from featurelens.embedding import store as store_module

DIM = 16
MODEL = "test-model"


def _hash_vectors(texts: list[str], dim: int = DIM) -> npt.NDArray[np.float32]:
    """Deterministic stand-in embeddings: one seeded random unit vector per text."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        row = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
        rows.append(row / np.linalg.norm(row))
    return np.stack(rows) if rows else np.empty((0, dim), dtype=np.float32)


class CountingEmbedder:
    """An embed_fn that counts what it embeds and can fail on a chosen call, like a dying encoder."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls = 0
        self.texts: list[str] = []
        self.fail_on_call = fail_on_call

    def __call__(self, texts: list[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise ConnectionError("encoder went away")
        self.texts.extend(texts)
        return _hash_vectors(texts)


@pytest.fixture
def records(astro_records: list[Record]) -> list[Record]:
    return astro_records[:50]


def _create(path: Path, **kwargs: object) -> EmbeddingStore:
    return EmbeddingStore.create(path, MODEL, DIM, sync=False, **kwargs)  # type: ignore[arg-type]


def test_appended_rows_survive_a_reopen(records: list[Record], tmp_path: Path) -> None:
    ids = [record.id for record in records]
    vectors = _hash_vectors([record.embedding_text for record in records])
    with _create(tmp_path / "store", source_path="arxiv_astro.jsonl.gz") as store:
        store.append(ids[:20], vectors[:20])
        store.append(ids[20:], vectors[20:])

    with EmbeddingStore.open(tmp_path / "store", read_only=True) as reopened:
        assert len(reopened) == 50
        assert reopened.ids == tuple(ids)
        assert reopened.model_id == MODEL
        assert reopened.dim == DIM
        np.testing.assert_array_equal(reopened.vectors(), vectors)
        np.testing.assert_array_equal(reopened.get([ids[7], ids[3]]), vectors[[7, 3]])
        assert ids[0] in reopened
        assert ids[49] in reopened
        assert "nope" not in reopened
        assert reopened.done_ids() == set(ids)
        assert reopened.manifest.source_path == "arxiv_astro.jsonl.gz"
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["count"] == 50
    assert manifest["dtype"] == "float32"
    assert manifest["format_version"] == 1


def test_vectors_are_a_read_only_memory_map(tmp_path: Path) -> None:
    with _create(tmp_path / "s") as store:
        assert store.vectors().shape == (0, DIM)
        store.append(["a", "b"], _hash_vectors(["a", "b"]))
        vectors = store.vectors()
        assert isinstance(vectors, np.memmap)
        assert vectors.shape == (2, DIM)
        assert vectors.dtype == np.float32
        with pytest.raises(ValueError, match="read-only"):
            vectors[0, 0] = 1.0


def test_get_names_a_missing_id(tmp_path: Path) -> None:
    with _create(tmp_path / "s") as store:
        store.append(["a"], _hash_vectors(["a"]))
        with pytest.raises(KeyError, match="'zzz'"):
            store.get(["a", "zzz"])


def test_open_or_create_refuses_another_model_or_dimension(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with EmbeddingStore.open_or_create(path, MODEL, DIM, sync=False) as store:
        store.append(["a"], _hash_vectors(["a"]))

    with pytest.raises(EmbeddingStoreError, match=r"holds model 'test-model' \(dim 16\); refusing"):
        EmbeddingStore.open_or_create(path, "other-model", DIM)
    with pytest.raises(
        EmbeddingStoreError, match=r"refusing to add embeddings of model 'test-model' \(dim 8\)"
    ):
        EmbeddingStore.open_or_create(path, MODEL, 8)
    with EmbeddingStore.open_or_create(path, MODEL, DIM, sync=False) as same:
        assert same.ids == ("a",)


def test_create_refuses_a_directory_that_already_holds_a_store(tmp_path: Path) -> None:
    _create(tmp_path / "s").close()
    with pytest.raises(EmbeddingStoreError, match="already holds an embedding store"):
        _create(tmp_path / "s")


def test_a_second_writer_is_refused_while_the_first_is_open(tmp_path: Path) -> None:
    first = _create(tmp_path / "s")
    with pytest.raises(EmbeddingStoreError, match="already open for writing"):
        EmbeddingStore.open(tmp_path / "s")
    reader = EmbeddingStore.open(tmp_path / "s", read_only=True)
    with pytest.raises(EmbeddingStoreError, match="read-only"):
        reader.append(["a"], _hash_vectors(["a"]))
    first.close()
    EmbeddingStore.open(tmp_path / "s").close()


def test_nan_vectors_are_rejected_with_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    with _create(tmp_path / "s") as store:
        vectors = _hash_vectors(["a", "b", "c"])
        vectors[1, 3] = np.nan
        with pytest.raises(EmbeddingStoreError, match=r"1 vectors contain NaN or infinite values.*'b'"):
            store.append(["a", "b", "c"], vectors)
        assert len(store) == 0
        assert (tmp_path / "s" / "embeddings.f32").stat().st_size == 0


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        (["a", "b"], np.zeros((3, DIM), np.float32), r"shape \(2, 16\) for 2 ids, got \(3, 16\)"),
        (["a"], np.zeros((1, DIM + 1), np.float32), r"shape \(1, 16\)"),
        (["a"], np.zeros((1, DIM), np.int64), "floating-point"),
        (["a", "a"], np.zeros((2, DIM), np.float32), "'a' appears more than once"),
        (["x\ny"], np.zeros((1, DIM), np.float32), "line break"),
        ([""], np.zeros((1, DIM), np.float32), "non-empty strings"),
        (["big"], np.full((1, DIM), 1e300), "infinite"),
    ],
    ids=["too-many-rows", "wrong-dim", "integers", "repeated-id", "line-break", "empty-id", "overflow"],
)
def test_bad_appends_are_refused(tmp_path: Path, ids: list[str], vectors: np.ndarray, message: str) -> None:
    with _create(tmp_path / "s") as store, pytest.raises(EmbeddingStoreError, match=message):
        store.append(ids, vectors)


def test_appending_an_id_that_is_already_stored_is_refused(tmp_path: Path) -> None:
    with _create(tmp_path / "s") as store:
        store.append(["a"], _hash_vectors(["a"]))
        with pytest.raises(EmbeddingStoreError, match=r"already in the store.*'a'"):
            store.append(["b", "a"], _hash_vectors(["b", "a"]))
        assert store.ids == ("a",)


def test_float64_vectors_are_stored_as_float32(tmp_path: Path) -> None:
    with _create(tmp_path / "s") as store:
        store.append(["a"], _hash_vectors(["a"]).astype(np.float64))
        np.testing.assert_array_equal(store.vectors(), _hash_vectors(["a"]))


def test_rows_written_without_a_manifest_update_are_discarded_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with _create(path) as store:
        store.append(["a", "b"], _hash_vectors(["a", "b"]))
    # A crash after the rows and ids were written but before the manifest was replaced.
    with (path / "embeddings.f32").open("ab") as handle:
        handle.write(_hash_vectors(["c"]).tobytes() + b"\x00\x01")
    with (path / "ids.txt").open("ab") as handle:
        handle.write(b"c\nd")

    with EmbeddingStore.open(path, read_only=True) as reader:
        assert reader.ids == ("a", "b")
        assert reader.vectors().shape == (2, DIM)
    with EmbeddingStore.open(path, sync=False) as store:
        assert store.ids == ("a", "b")
        assert (path / "embeddings.f32").stat().st_size == 2 * DIM * 4
        store.append(["c"], _hash_vectors(["c"]))
    with EmbeddingStore.open(path, read_only=True) as reopened:
        assert reopened.ids == ("a", "b", "c")
        np.testing.assert_array_equal(reopened.vectors(), _hash_vectors(["a", "b", "c"]))


def test_an_append_that_fails_before_its_commit_leaves_the_store_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _create(tmp_path / "s") as store:
        store.append(["a"], _hash_vectors(["a"]))

        def disk_full(*args: object) -> None:
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(store_module, "_write_manifest", disk_full)
            with pytest.raises(OSError, match="No space left"):
                store.append(["b", "c"], _hash_vectors(["b", "c"]))
        assert store.ids == ("a",)
        store.append(["d"], _hash_vectors(["d"]))
        np.testing.assert_array_equal(store.vectors(), _hash_vectors(["a", "d"]))
    assert EmbeddingStore.open(tmp_path / "s", read_only=True).ids == ("a", "d")


def test_a_store_whose_files_are_shorter_than_its_manifest_is_reported_damaged(tmp_path: Path) -> None:
    with _create(tmp_path / "s") as store:
        store.append(["a", "b"], _hash_vectors(["a", "b"]))
    (tmp_path / "s" / "embeddings.f32").write_bytes(b"\x00" * 8)

    with pytest.raises(EmbeddingStoreError, match=r"shorter .* than its manifest says"):
        EmbeddingStore.open(tmp_path / "s")


def test_opening_a_directory_without_a_manifest_says_it_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingStoreError, match="is not an embedding store"):
        EmbeddingStore.open(tmp_path)


def test_embed_corpus_embeds_every_record_in_batches(records: list[Record], tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    seen_progress: list[tuple[int, int]] = []
    with _create(tmp_path / "s") as store:
        result = embed_corpus(
            records, store, embedder, batch_size=16, progress=lambda *p: seen_progress.append(p)
        )

        assert result.embedded == 50
        assert result.skipped == 0
        assert embedder.calls == 4
        assert store.ids == tuple(record.id for record in records)
        np.testing.assert_array_equal(store.vectors(), _hash_vectors([r.embedding_text for r in records]))
    assert seen_progress[-1] == (50, 50)
    assert [done for done, _ in seen_progress] == sorted(done for done, _ in seen_progress)


def test_an_interrupted_embed_corpus_resumes_without_re_embedding_done_records(
    records: list[Record], tmp_path: Path
) -> None:
    path = tmp_path / "s"
    dying = CountingEmbedder(fail_on_call=3)
    with EmbeddingStore.open_or_create(path, MODEL, DIM, sync=False) as store:
        with pytest.raises(ConnectionError):
            embed_corpus(records, store, dying, batch_size=10)
        assert len(store) == 20

    resumed = CountingEmbedder()
    with EmbeddingStore.open_or_create(path, MODEL, DIM, sync=False) as store:
        result = embed_corpus(records, store, resumed, batch_size=10)
        assert result.embedded == 30
        assert result.skipped == 20
        assert resumed.calls == 3
        assert resumed.texts == [record.embedding_text for record in records[20:]]
        assert store.ids == tuple(record.id for record in records)

    again = CountingEmbedder()
    with EmbeddingStore.open(path, sync=False) as store:
        assert embed_corpus(records, store, again).embedded == 0
    assert again.calls == 0


def test_embed_corpus_can_embed_another_text_of_each_record(records: list[Record], tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    with _create(tmp_path / "s") as store:
        embed_corpus(records[:3], store, embedder, text_of=lambda record: record.text)
    assert embedder.texts == [record.text for record in records[:3]]


def test_the_fingerprint_depends_only_on_ids_and_vectors(records: list[Record], tmp_path: Path) -> None:
    ids = [record.id for record in records[:10]]
    vectors = _hash_vectors(ids)
    with (
        _create(tmp_path / "one") as one,
        EmbeddingStore.create(tmp_path / "two", "other", DIM, sync=False) as two,
    ):
        one.append(ids, vectors)
        two.append(ids[:4], vectors[:4])
        two.append(ids[4:], vectors[4:])
        assert one.fingerprint() == two.fingerprint()
        assert len(one.fingerprint()) == 64
        fingerprint = one.fingerprint()
    assert EmbeddingStore.open(tmp_path / "one", read_only=True).fingerprint() == fingerprint

    with _create(tmp_path / "three") as three:
        changed = vectors.copy()
        changed[5, 0] += 1e-3
        three.append(ids, changed)
        assert three.fingerprint() != fingerprint
    with EmbeddingStore.open(tmp_path / "one", sync=False) as one:
        one.append(["extra"], _hash_vectors(["extra"]))
        assert one.fingerprint() != fingerprint


def test_iter_batches_covers_every_row_in_order_or_as_a_seeded_shuffle(tmp_path: Path) -> None:
    ids = [f"doc{i}" for i in range(23)]
    vectors = _hash_vectors(ids)
    with _create(tmp_path / "s") as store:
        store.append(ids, vectors)

        batches = list(store.iter_batches(5))
        assert [len(batch) for batch in batches] == [5, 5, 5, 5, 3]
        np.testing.assert_array_equal(np.concatenate(batches), vectors)

        shuffled = np.concatenate(list(store.iter_batches(5, shuffle=True, seed=7)))
        again = np.concatenate(list(store.iter_batches(5, shuffle=True, seed=7)))
        np.testing.assert_array_equal(shuffled, again)
        assert not np.array_equal(shuffled, vectors)
        np.testing.assert_array_equal(np.sort(shuffled, axis=0), np.sort(vectors, axis=0))

        assert [len(batch) for batch in store.iter_batches(5, drop_last=True)] == [5, 5, 5, 5]
