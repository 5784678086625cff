"""The ONNX Runtime engine for all-MiniLM-L6-v2: same vectors as PyTorch on real abstracts, a cached
export that survives corruption, and the one rule that picks the engine.

Real parts throughout: the packaged model, its export, ONNX Runtime, and abstracts of the corpus.
Each export takes about 20 s on 2 cores; the module exports fp32 and int8 once each and shares them.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from featurelens.corpus import Record
from featurelens.embedding.backends import (
    ENGINES,
    SentenceTransformerBackend,
    check_engine,
    load_backend,
    load_sentence_transformer_backend,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from featurelens.embedding.backends.engine import choose_onnx_engine
from featurelens.embedding.backends.onnx_backend import (
    AGREEMENT_TEXTS,
    MIN_AGREEMENT,
    OnnxSentenceTransformerBackend,
    int8_reduce_range,
)

ABSTRACTS = 50


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_backend() -> SentenceTransformerBackend:
    return SentenceTransformerBackend()


@pytest.fixture(scope="module")
def abstracts(astro_records: list[Record]) -> list[str]:
    """Title + abstract of 50 real papers (most past 256 tokens), plus a short query."""
    return [record.embedding_text for record in astro_records[:ABSTRACTS]] + ["dark matter halo"]


@pytest.mark.parametrize("quantize", [False, True], ids=["fp32", "int8"])
def test_onnx_vectors_agree_with_pytorch_on_real_abstracts(
    quantize: bool, cache_dir: Path, torch_backend: SentenceTransformerBackend, abstracts: list[str]
) -> None:
    onnx = OnnxSentenceTransformerBackend(quantize=quantize, cache_dir=cache_dir, batch_size=16)
    expected = torch_backend.embed(abstracts)

    got = onnx.embed(abstracts)

    assert (onnx.model_id, onnx.dim, onnx.max_input_tokens) == (
        torch_backend.model_id,
        torch_backend.dim,
        torch_backend.max_input_tokens,
    )
    assert onnx.backend == torch_backend.backend == "sentence-transformers"
    assert got.vectors.shape == expected.vectors.shape
    assert got.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got.vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(got.vectors * expected.vectors, axis=1)
    assert cosines.min() >= MIN_AGREEMENT, f"lowest cosine {cosines.min():.4f} (text {cosines.argmin()})"
    if not quantize:
        assert cosines.min() >= 0.9999
    assert got.truncated == expected.truncated
    assert any(got.truncated)
    assert not all(got.truncated)
    assert onnx.agreement >= MIN_AGREEMENT
    # Rows come back in input order whatever order the length-sorted batches ran in.
    np.testing.assert_allclose(onnx.embed(abstracts[::-1]).vectors[::-1], got.vectors, atol=1e-5)
    # A text's vector does not depend on the texts embedded with it (int8 runs them one by one).
    np.testing.assert_allclose(onnx.embed(abstracts[3:4]).vectors[0], got.vectors[3], atol=1e-5)
    assert onnx.embed([]).vectors.shape == (0, 384)
    with pytest.raises(ValueError, match="text 1 is empty"):
        onnx.embed(["fine", ""])


def test_the_export_is_cached_and_a_second_load_does_not_export_again(cache_dir: Path) -> None:
    first = OnnxSentenceTransformerBackend(cache_dir=cache_dir)
    model_file = first.cache_path / "model.onnx"
    stamp = model_file.stat().st_mtime_ns

    second = OnnxSentenceTransformerBackend(cache_dir=cache_dir)

    assert second.exported is False
    assert second.cache_path == first.cache_path
    assert model_file.stat().st_mtime_ns == stamp
    assert sorted(path.name for path in second.cache_path.iterdir()) == ["meta.json", "model.onnx"]
    np.testing.assert_allclose(
        second.embed(list(AGREEMENT_TEXTS)).vectors, first.embed(list(AGREEMENT_TEXTS)).vectors, atol=1e-6
    )


def test_fp32_and_int8_exports_are_cached_apart(cache_dir: Path) -> None:
    fp32 = OnnxSentenceTransformerBackend(cache_dir=cache_dir)
    int8 = OnnxSentenceTransformerBackend(cache_dir=cache_dir, quantize=True)

    assert (fp32.engine, int8.engine) == ("onnx", "onnx-int8")
    assert fp32.cache_path != int8.cache_path
    # int8 weights in the dense layers; the word embeddings (half the model) stay fp32.
    int8_size = (int8.cache_path / "model.onnx").stat().st_size
    assert int8_size < 0.8 * (fp32.cache_path / "model.onnx").stat().st_size


def test_the_exports_keep_residual_adds_apart_from_layer_norms_and_int8_quantises_attention_on_fast_int8_cpus(
    cache_dir: Path,
) -> None:
    import onnx

    def ops(backend: OnnxSentenceTransformerBackend) -> set[str]:
        return {node.op_type for node in onnx.load(backend.cache_path / "model.onnx").graph.node}

    fp32 = ops(OnnxSentenceTransformerBackend(cache_dir=cache_dir))
    int8_backend = OnnxSentenceTransformerBackend(cache_dir=cache_dir, quantize=True)
    int8 = ops(int8_backend)

    assert "SkipLayerNormalization" not in fp32 | int8
    assert {"Attention", "LayerNormalization", "BiasGelu", "EmbedLayerNormalization"} <= fp32
    assert {"MatMulInteger", "LayerNormalization"} <= int8
    # The query/key/value projection gets int8 weights only where the CPU has an int8 dot product.
    assert ("QAttention" in int8) is not int8_backend.reduce_range
    assert ("Attention" in int8) is int8_backend.reduce_range


@pytest.mark.parametrize("damage", ["truncated model", "garbage model", "broken meta"])
def test_a_corrupt_cached_export_is_exported_again_not_crashed_on(
    damage: str, cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = OnnxSentenceTransformerBackend(cache_dir=cache_dir, quantize=True)
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir, copy)
    folder = copy / good.cache_path.name
    model_file = folder / "model.onnx"
    if damage == "truncated model":
        os.truncate(model_file, model_file.stat().st_size // 2)
    elif damage == "garbage model":
        model_file.write_bytes(b"not an onnx model" * 100)
    else:
        (folder / "meta.json").write_text('{"reference": [[0.1, ')

    with caplog.at_level(logging.WARNING):
        repaired = OnnxSentenceTransformerBackend(cache_dir=copy, quantize=True)

    assert repaired.exported is True
    assert "exporting it again" in caplog.text
    assert repaired.agreement >= MIN_AGREEMENT
    np.testing.assert_allclose(
        repaired.embed(list(AGREEMENT_TEXTS)).vectors, good.embed(list(AGREEMENT_TEXTS)).vectors, atol=1e-5
    )
    assert OnnxSentenceTransformerBackend(cache_dir=copy, quantize=True).exported is False


def test_auto_picks_onnx_on_cpu_when_it_is_installed_and_agrees(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="featurelens.embedding.backends.engine"):
        backend = load_backend("sentence-transformers", onnx_cache_dir=cache_dir)

    assert isinstance(backend, OnnxSentenceTransformerBackend)
    assert backend.engine in ("onnx", "onnx-int8")
    assert backend.model_id == "all-MiniLM-L6-v2"
    assert backend.agreement >= MIN_AGREEMENT
    line = f"Embedding engine for all-MiniLM-L6-v2: {backend.engine} (auto: on CPU with onnxruntime"
    assert line in caplog.text
    # Both engines were timed, and the log says how fast each ran.
    assert re.search(r"onnx-int8 [0-9.]+ texts/s, onnx [0-9.]+ texts/s", caplog.text)


def test_auto_takes_int8_only_when_it_is_clearly_faster_than_fp32() -> None:
    assert choose_onnx_engine({"onnx-int8": 24.0, "onnx": 10.0}) == "onnx-int8"
    assert choose_onnx_engine({"onnx-int8": 12.0, "onnx": 10.0}) == "onnx-int8"
    assert choose_onnx_engine({"onnx-int8": 11.9, "onnx": 10.0}) == "onnx"  # less exact, not faster enough
    assert choose_onnx_engine({"onnx-int8": 9.0, "onnx": 10.0}) == "onnx"
    assert choose_onnx_engine({"onnx": 10.0}) == "onnx"  # int8 did not agree with PyTorch
    assert choose_onnx_engine({"onnx-int8": 5.0}) == "onnx-int8"  # fp32 did not load
    with pytest.raises(ValueError, match="no ONNX engine"):
        choose_onnx_engine({})


def test_int8_weights_use_seven_bits_on_cpus_without_an_int8_dot_product(tmp_path: Path) -> None:
    avx2_only = tmp_path / "avx2"
    avx2_only.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma f16c\n")
    vnni = tmp_path / "vnni"
    vnni.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")

    assert int8_reduce_range(avx2_only) is True
    assert int8_reduce_range(vnni) is False
    assert int8_reduce_range(arm) is False
    assert int8_reduce_range(tmp_path / "missing") is True  # unknown CPU: the safe choice


def test_explicit_engines_are_honoured(cache_dir: Path) -> None:
    torch_backend = load_sentence_transformer_backend(engine="torch")
    onnx = load_sentence_transformer_backend(engine="ONNX", onnx_cache_dir=cache_dir)

    assert isinstance(torch_backend, SentenceTransformerBackend)
    assert isinstance(onnx, OnnxSentenceTransformerBackend)
    assert onnx.engine == "onnx"
    with pytest.raises(ValueError, match="runs on CPU only"):
        load_sentence_transformer_backend(engine="onnx-int8", device="cuda")


def test_unknown_engines_are_rejected_with_the_choices() -> None:
    assert ENGINES == ("auto", "torch", "onnx", "onnx-int8")
    assert check_engine(" Onnx_Int8 ") == "onnx-int8"
    with pytest.raises(
        ValueError, match=r"Unknown sentence-transformers engine 'tensorrt'; use one of auto, torch"
    ):
        check_engine("tensorrt")
    with pytest.raises(ValueError, match="Unknown sentence-transformers engine"):
        load_backend("minilm", engine="openvino")
