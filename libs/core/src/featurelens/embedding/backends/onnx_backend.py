"""A sentence-transformers model run by ONNX Runtime: the same model, faster on many CPUs.

The ONNX model is exported locally from the sentence-transformers model folder (nothing is
downloaded): the transformer and the mean pooling go into one graph (input ids, attention mask
and token type ids in, the pooled sentence vector out, dynamic batch and sequence axes), BERT's
attention, layer norms and GELU are fused by ONNX Runtime's transformer optimiser, and for
``quantize=True`` the dense layers get int8 weights (dynamic quantisation, per output channel):
those outside attention everywhere, and on CPUs with an int8 dot-product instruction attention's
query/key/value projection too; 7-bit weights on CPUs without one (see ``int8_reduce_range``).
The L2 normalisation of the pipeline's ``Normalize`` module happens here, in numpy. The
tokenizer and ``max_seq_length`` are the model's own, so the inputs are token for token those of
the PyTorch path.

The export runs once per model, library versions and quantisation and lands in a cache folder
(``<cache_dir>/<model id>-<engine>-<key>/``): ``model.onnx`` and ``meta.json``, each written to a
temporary name and renamed into place, ``meta.json`` last. ``meta.json`` holds the PyTorch
vectors of ``AGREEMENT_TEXTS``; every load embeds those texts with the ONNX model and compares
(cosine per text). A cached model that does not load, or no longer agrees, is exported again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from featurelens.embedding.backends.base import (
    EmbeddingBackendError,
    EmbedResult,
    check_texts,
    normalise_rows,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path(".featurelens") / "cache" / "onnx"
"""Where exported models go when no ``cache_dir`` is given (relative to the working directory, like
the project's other ``.featurelens/cache`` folders)."""

MIN_AGREEMENT = 0.99
"""Lowest cosine between the ONNX and the PyTorch vector of one text for the ONNX model to count as
the same model."""

EXPORT_FORMAT = 3
"""Bumped whenever the export recipe changes, so that older cached exports are not reused."""

SKIP_LAYER_NORM_FUSION = "SkipLayerNormFusion"
"""ONNX Runtime's optimiser that fuses a residual add and the layer norm after it; left out at export
and at load, where it is slower than the two ops it replaces (``_fuse``)."""

ONNX_OPSET = 17

AGREEMENT_TEXTS: tuple[str, ...] = (
    "dark matter halo",
    "We present new observations and a statistical analysis of a large sample.",
    "The cosmic microwave background anisotropies constrain the Hubble constant and the matter density.",
    "Gravitational waves from a binary neutron star merger were detected together with a short "
    "gamma-ray burst, opening multi-messenger astronomy.",
    "A survey of exoplanet transits with the Kepler telescope: occurrence rates of Earth-sized planets "
    "in the habitable zones of Sun-like stars, corrected for detection efficiency and false positives.",
    # Longer than the model's 256 tokens, so the truncated path is checked too.
    " ".join(
        [
            "Galaxy clusters are the largest gravitationally bound structures in the Universe; their "
            "abundance as a function of mass and redshift is a sensitive probe of the growth of "
            "structure, of the dark energy equation of state and of the sum of the neutrino masses."
        ]
        * 8
    ),
)
"""Fixed texts (short queries to an over-long abstract) on which every load checks the ONNX model
against the PyTorch vectors recorded at export."""

_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class OnnxSentenceTransformerBackend:
    """Embeds with a sentence-transformers model exported to ONNX and run by ONNX Runtime on CPU.

    Same model, same tokenizer, same 256-token limit and same ``model_id`` as
    ``SentenceTransformerBackend``: a text's vector agrees with the PyTorch one at cosine >= 0.99
    (checked on every load against vectors recorded at export; in the tests, on real abstracts;
    about 0.9999+ for fp32, about 0.995 for int8). Caches and stores keyed by model id therefore
    stay valid across the two engines: the difference is far below the distance between two
    different texts and changes no search result that matters, the same order of difference that
    a change of CPU, BLAS library or batch composition makes in the PyTorch path itself.

    ``quantize=True`` uses int8 weights for the dense layers (``_quantize`` says which; a little
    less exact: see ``agreement``; faster where the CPU multiplies int8 quickly, ~2.5x fp32 on a
    2-core AVX-512 VNNI EPYC by ``benchmarks/encoder.py``, no faster on an AVX2-only EPYC:
    ``measure_texts_per_s`` tells).
    ``threads`` runs go side by side, one thread each (default: the cores this process may use).
    fp32: texts are sorted by token length and embedded in batches of ``batch_size``, so a batch
    pads to similar lengths. int8: one text per run, because dynamic quantisation scales
    activations by the range of the whole batch, so a text's vector would otherwise depend on the
    texts batched with it (by up to ~0.01 in cosine); one text at a time costs ~10% of the
    throughput and pads nothing.
    """

    backend = "sentence-transformers"

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        model_id: str | None = None,
        batch_size: int = 64,
        quantize: bool = False,
        cache_dir: Path | str | None = None,
        threads: int | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        import onnxruntime

        from featurelens.embedding.backends.sentence_transformers_backend import resolve_model

        model_path, model_id = resolve_model(model_path, model_id)
        self.model_path = model_path
        if not self.model_path.is_dir():
            raise EmbeddingBackendError(
                f"Sentence-transformers model folder {self.model_path} does not exist."
            )
        self.model_id: str = model_id or self.model_path.name
        self.engine: str = "onnx-int8" if quantize else "onnx"
        self.quantize = quantize
        self._batch_size = 1 if quantize else batch_size
        self._threads = threads or available_cores()
        # One single-threaded run per core, side by side (ONNX Runtime releases the GIL): on 2 cores
        # this embeds ~1.5-2x the texts/s of one run using both cores, whose small per-text matrix
        # products do not split well. The tokenizer is not thread-safe: one embed call at a time.
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="onnx-run")
        self._lock = threading.Lock()
        self._ort = onnxruntime

        config = read_pipeline_config(self.model_path)
        self.max_input_tokens: int = config.max_seq_length
        self.dim: int = config.dim
        self._tokenizer = load_tokenizer(self.model_path)

        self.reduce_range = quantize and int8_reduce_range()
        key = export_key(self.model_path, self.quantize, self.reduce_range)
        self.cache_path = Path(cache_dir or DEFAULT_CACHE_DIR) / f"{self.model_id}-{self.engine}-{key}"
        self.agreement_texts = len(AGREEMENT_TEXTS)
        self.exported = False
        """True when this load exported the model (False: a cached export was reused)."""
        self.agreement = self._load_or_export()
        logger.info(
            "Loaded %s through ONNX Runtime (%s, dim %d, %d tokens, %d threads, min cosine to PyTorch %.4f "
            "on %d fixed texts, %s).",
            self.model_id,
            self.engine,
            self.dim,
            self.max_input_tokens,
            self._threads,
            self.agreement,
            len(AGREEMENT_TEXTS),
            "exported now" if self.exported else f"cached at {self.cache_path}",
        )

    # -- embedding ---------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed texts into unit-norm rows, flagging those longer than the model's token limit."""
        batch = check_texts(texts)
        if not batch:
            return EmbedResult(np.empty((0, self.dim), dtype=np.float32), [])
        with self._lock:
            vectors, truncated = self._embed(batch)
        return EmbedResult(vectors, truncated)

    def _embed(self, texts: list[str]) -> tuple[npt.NDArray[np.float32], list[bool]]:
        limit = self.max_input_tokens
        # One token past the limit tells truncation apart, and the lengths give the batching order.
        lengths = [
            len(ids)
            for ids in self._tokenizer(
                texts,
                add_special_tokens=True,
                truncation=True,
                max_length=limit + 1,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
        ]
        order = np.argsort([-min(length, limit) for length in lengths], kind="stable")
        # Every core gets work even when a call brings fewer than workers x batch_size texts.
        size = max(1, min(self._batch_size, -(-len(texts) // self._threads)))
        groups = [order[start : start + size] for start in range(0, len(texts), size)]
        feeds = [self._feeds([texts[row] for row in rows]) for rows in groups]
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        for rows, pooled in zip(groups, self._pool.map(self._run, feeds), strict=True):
            vectors[rows] = pooled
        return normalise_rows(vectors), [length > limit for length in lengths]

    def _feeds(self, texts: list[str]) -> dict[str, npt.NDArray[np.int64]]:
        encoded = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_input_tokens, return_tensors="np"
        )
        return {name: np.asarray(encoded[name], dtype=np.int64) for name in self._input_names}

    def _run(self, feeds: dict[str, npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        (pooled,) = self._session.run(["sentence_embedding"], feeds)
        return np.asarray(pooled, dtype=np.float32)

    # -- the cached export ---------------------------------------------------------------------

    def _load_or_export(self) -> float:
        """Load the cached export, or export (again) when there is none or it is broken; the agreement."""
        model_file = self.cache_path / "model.onnx"
        meta_file = self.cache_path / "meta.json"
        if meta_file.exists():
            try:
                return self._open(model_file, json.loads(meta_file.read_text()))
            except Exception as error:  # a half-written, truncated or foreign file: export again
                logger.warning(
                    "Cached ONNX model at %s is unusable (%s); exporting it again.", self.cache_path, error
                )
        self.exported = True
        try:
            meta = export_model(
                self.model_path, self.cache_path, quantize=self.quantize, reduce_range=self.reduce_range
            )
        except PermissionError as error:  # a read-only cache folder (e.g. in a container): export to /tmp
            fallback = Path(tempfile.gettempdir()) / "featurelens-onnx" / self.cache_path.name
            logger.warning(
                "Cannot write the ONNX cache at %s (%s); exporting to %s.", self.cache_path, error, fallback
            )
            self.cache_path, model_file = fallback, fallback / "model.onnx"
            meta = export_model(
                self.model_path, self.cache_path, quantize=self.quantize, reduce_range=self.reduce_range
            )
        return self._open(model_file, meta)

    def _open(self, model_file: Path, meta: dict[str, Any]) -> float:
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = self._ort.InferenceSession(
            str(model_file),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=[SKIP_LAYER_NORM_FUSION],
        )
        graph_inputs = {item.name for item in self._session.get_inputs()}
        self._input_names = [name for name in _INPUT_NAMES if name in graph_inputs]
        reference = np.asarray(meta["reference"], dtype=np.float32)
        if reference.shape != (len(AGREEMENT_TEXTS), self.dim) or meta.get("texts") != list(AGREEMENT_TEXTS):
            raise EmbeddingBackendError("the recorded reference vectors do not match the agreement texts")
        vectors, _ = self._embed(list(AGREEMENT_TEXTS))
        return float(np.min(np.sum(vectors * normalise_rows(reference), axis=1)))

    def measure_texts_per_s(self, repeats: int = 2) -> float:
        """Texts/s embedding full-length texts (the over-long agreement text, two per thread, so no
        run pads and both engines do the same work per text), the best of ``repeats`` runs: a quick
        gauge of this engine on this machine, for choosing between engines."""
        texts = [AGREEMENT_TEXTS[-1]] * (2 * self._threads)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            self.embed(texts)
            best = min(best, time.perf_counter() - started)
        return len(texts) / best

    def close(self) -> None:
        """Stop the worker threads (the servicer calls this at shutdown)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- export ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineConfig:
    max_seq_length: int
    dim: int


def read_pipeline_config(model_path: Path) -> PipelineConfig:
    """The parts of a sentence-transformers folder the ONNX graph reproduces; `EmbeddingBackendError`
    when its pipeline is not Transformer -> mean Pooling -> Normalize (the only one exported)."""
    try:
        modules = json.loads((model_path / "modules.json").read_text())
        kinds = [module["type"].rsplit(".", 1)[-1] for module in modules]
        pooling_folder = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
        pooling = json.loads((model_path / pooling_folder / "config.json").read_text())
        bert_config = json.loads((model_path / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError, StopIteration) as error:
        raise EmbeddingBackendError(
            f"{model_path} is not a readable sentence-transformers folder: {error}"
        ) from error
    modes = sorted(key for key, on in pooling.items() if key.startswith("pooling_mode") and on)
    if kinds != ["Transformer", "Pooling", "Normalize"] or modes != ["pooling_mode_mean_tokens"]:
        raise EmbeddingBackendError(
            f"the ONNX engine exports Transformer -> mean Pooling -> Normalize pipelines; {model_path} has "
            f"{' -> '.join(kinds)} with {', '.join(modes) or 'no pooling mode'}"
        )
    return PipelineConfig(int(bert_config["max_seq_length"]), int(pooling["word_embedding_dimension"]))


def load_tokenizer(model_path: Path) -> Any:
    """The model's own (fast) tokenizer, from its folder, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)


def export_key(model_path: Path, quantize: bool, reduce_range: bool) -> str:
    """A short hash of everything the exported file depends on: the model files, the versions of the
    libraries that export, optimise and quantise it, the recipe and the quantisation flags."""
    files = sorted(
        (entry.name, entry.stat().st_size, int(entry.stat().st_mtime))
        for entry in model_path.iterdir()
        if entry.is_file()
    )
    parts = {
        "format": EXPORT_FORMAT,
        "model": str(model_path.resolve()),
        "files": files,
        "versions": {name: _version(name) for name in ("torch", "transformers", "onnx", "onnxruntime")},
        "quantize": quantize,
        "reduce_range": quantize and reduce_range,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def export_model(
    model_path: Path, target: Path, *, quantize: bool, reduce_range: bool = False
) -> dict[str, Any]:
    """Export the sentence-transformers model at ``model_path`` into ``target`` (model.onnx, meta.json).

    Loads the PyTorch model (offline), traces transformer + mean pooling, fuses it for BERT models,
    quantises when asked, and records the PyTorch vectors of ``AGREEMENT_TEXTS`` in meta.json.
    Files are renamed into place, meta.json last, so a reader sees a whole export or none.
    """
    from featurelens.embedding.backends.sentence_transformers_backend import load_sentence_transformer

    started = time.monotonic()
    target.mkdir(parents=True, exist_ok=True)
    model = load_sentence_transformer(model_path, device="cpu")
    reference = model.encode(
        list(AGREEMENT_TEXTS), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )
    with tempfile.TemporaryDirectory(dir=target, prefix=".export-") as scratch:
        work = Path(scratch)
        traced = work / "traced.onnx"
        _trace(model, traced)
        fused = _fuse(traced, work / "fused.onnx", model)
        final = fused
        if quantize:
            final = work / "int8.onnx"
            _quantize(fused, final, reduce_range=reduce_range)
        os.replace(final, target / "model.onnx")
    meta = {
        "format": EXPORT_FORMAT,
        "quantize": quantize,
        "reduce_range": quantize and reduce_range,
        "versions": {name: _version(name) for name in ("torch", "transformers", "onnx", "onnxruntime")},
        "texts": list(AGREEMENT_TEXTS),
        "reference": np.asarray(reference, dtype=np.float32).round(7).tolist(),
    }
    with _atomic_file(target / "meta.json") as handle:
        handle.write(json.dumps(meta).encode())
    logger.info("Exported %s to ONNX at %s in %.1f s.", model_path.name, target, time.monotonic() - started)
    return meta


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[Any]:
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
        os.chmod(name, 0o644)  # mkstemp makes it 0600; the cache is as readable as the model it came from
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _trace(model: SentenceTransformer, path: Path) -> None:
    import warnings

    import torch

    first: Any = model[0]  # sentence_transformers' Transformer module
    transformer: Any = first.auto_model
    # Eager attention traces to the MatMul/Softmax pattern that ONNX Runtime fuses into Attention.
    transformer.set_attn_implementation("eager")
    transformer.eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            # sentence_transformers.models.Pooling, mean mode: masked mean, count clamped at 1e-9.
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    sample = model.tokenizer(
        ["an example", "a second, longer example text"], padding=True, return_tensors="pt"
    )
    if "token_type_ids" not in sample:
        sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
    axes = {name: {0: "batch", 1: "sequence"} for name in _INPUT_NAMES}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python bools of shapes; checked by agreement
        torch.onnx.export(
            MeanPooled().eval(),
            (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
            str(path),
            input_names=list(_INPUT_NAMES),
            output_names=["sentence_embedding"],
            dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def _fuse(source: Path, target: Path, model: SentenceTransformer) -> Path:
    """ONNX Runtime's BERT fusions (attention, embedding + layer norm, bias GELU); the unfused graph
    when the model is no BERT or the optimiser fails.

    The residual add and layer norm stay two ops (``SKIP_LAYER_NORM_FUSION``): ONNX Runtime's
    fused SkipLayerNormalization kernel took ~6 ms of a 250-token abstract's ~35 ms (int8, one
    thread), Add + LayerNormalization ~1.3 ms; end to end 1.19x the texts/s with int8 weights,
    1.07x fp32 (a one-off measurement, alternating, on a 2-core AVX-512 VNNI EPYC, 60 real
    abstracts).
    """
    first: Any = model[0]
    config = first.auto_model.config
    if getattr(config, "model_type", "") != "bert":
        return source
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        options = FusionOptions("bert")
        options.enable_skip_layer_norm = False
        optimised = optimize_model(
            str(source),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=1,
            optimization_options=options,
        )
        optimised.save_model_to_file(str(target))
    except Exception as error:
        logger.warning("ONNX Runtime's BERT fusion failed (%s); using the unfused graph.", error)
        return source
    return target


def _quantize(source: Path, target: Path, *, reduce_range: bool) -> None:
    """int8 weights (per output channel) for the MatMuls outside attention and, where the CPU has an
    int8 dot-product instruction (``reduce_range`` False), for attention's fused query/key/value
    projection too (ONNX Runtime's QAttention; the attention products themselves stay fp32).

    A one-off measurement on a 2-core AVX-512 VNNI EPYC, one thread, 300 real cs abstracts: outside
    attention only, 24.1 texts/s at min cosine 0.9933 to PyTorch; with the projection, 30.1 texts/s
    at 0.9923 (the fused fp32 Attention op had taken 53% of the int8 model's time). Without a
    dot-product instruction the int8 products are no faster than fp32 ones and 7-bit weights
    already cost accuracy, so attention stays fp32 there. ``reduce_range``: 7-bit weights (see
    ``int8_reduce_range``).
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=reduce_range,
        op_types_to_quantize=["MatMul"] if reduce_range else ["MatMul", "Attention"],
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


INT8_DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})
"""CPU flags (Linux ``/proc/cpuinfo``) of the instructions that multiply-add int8 without an int16
intermediate: x86 VNNI and AMX, Arm's dot product."""


def int8_reduce_range(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether int8 weights should use 7 bits: on CPUs without an int8 dot-product instruction
    (``INT8_DOT_PRODUCT_FLAGS``), ONNX Runtime's uint8 x int8 kernel adds pairs of products in int16,
    which saturates on full-range weights (on an AVX2-only EPYC, the real-abstract test of this
    engine saw a min cosine to PyTorch of 0.989 with 8-bit weights; ``benchmarks/encoder.py`` 0.992
    over 512 abstracts with 7-bit ones). True when the flags cannot be read.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return True
    lines = [line for line in text.splitlines() if line.startswith(("flags", "Features"))]
    flags = {flag for line in lines for flag in line.split()}
    return not flags & INT8_DOT_PRODUCT_FLAGS
