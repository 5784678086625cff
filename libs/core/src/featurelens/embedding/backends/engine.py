"""Which engine runs a local sentence-transformers model: PyTorch or ONNX Runtime. One rule, here.

- ``torch``: ``SentenceTransformerBackend`` (any device).
- ``onnx`` / ``onnx-int8``: ``OnnxSentenceTransformerBackend``, fp32 or int8 weights (CPU only); an
  export that does not agree with PyTorch (cosine < 0.99 on a fixed text) is an error.
- ``auto`` (the default): on CPU, when onnxruntime and onnx are importable, the engines of
  ``AUTO_ORDER`` that load and agree with PyTorch (cosine >= 0.99 per text on the fixed texts)
  are timed on full-length texts (``measure_texts_per_s``); int8 is taken when it is at least
  ``INT8_MIN_SPEEDUP`` times as fast as fp32 (it is a little less exact, so it has to earn its
  place: on a CPU without a fast int8 instruction it is not faster at all), else fp32; PyTorch
  when neither agrees. One log line says
  which engine was chosen and why.

Every engine reports the same ``model_id``: see ``OnnxSentenceTransformerBackend`` for why
stores and caches keyed by it stay valid.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from featurelens.embedding.backends.base import EmbeddingBackend, EmbeddingBackendError

if TYPE_CHECKING:
    from featurelens.embedding.backends.onnx_backend import OnnxSentenceTransformerBackend

logger = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx", "onnx-int8")

AUTO_ORDER = ("onnx-int8", "onnx")
"""What ``auto`` tries on CPU; each must agree with PyTorch to be taken."""

INT8_MIN_SPEEDUP = 1.2
"""How much faster than fp32 (``measure_texts_per_s``) int8 must run for ``auto`` to take it."""


def check_engine(engine: str) -> str:
    """The engine name, normalised; `ValueError` naming the choices for anything else."""
    name = engine.strip().lower().replace("_", "-")
    if name not in ENGINES:
        raise ValueError(f"Unknown sentence-transformers engine {engine!r}; use one of {', '.join(ENGINES)}.")
    return name


def onnx_available() -> bool:
    """Whether the ONNX engine's libraries (onnxruntime to run, onnx to export) are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def load_sentence_transformer_backend(
    model_path: Path | str | None = None,
    *,
    model_id: str | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    engine: str = "auto",
    onnx_cache_dir: Path | str | None = None,
    threads: int | None = None,
) -> EmbeddingBackend:
    """A sentence-transformers model on the engine that ``engine`` names (see the module docstring)."""
    from featurelens.embedding.backends.sentence_transformers_backend import SentenceTransformerBackend

    name = check_engine(engine)

    def torch_backend(reason: str) -> EmbeddingBackend:
        backend = SentenceTransformerBackend(
            model_path, model_id=model_id, device=device, batch_size=batch_size
        )
        logger.info("Embedding engine for %s: torch (%s).", backend.model_id, reason)
        return backend

    def onnx_backend(kind: str) -> OnnxSentenceTransformerBackend:
        from featurelens.embedding.backends.onnx_backend import MIN_AGREEMENT, OnnxSentenceTransformerBackend

        backend = OnnxSentenceTransformerBackend(
            model_path,
            model_id=model_id,
            batch_size=batch_size,
            quantize=kind == "onnx-int8",
            cache_dir=onnx_cache_dir,
            threads=threads,
        )
        if backend.agreement < MIN_AGREEMENT:
            raise EmbeddingBackendError(
                f"the {kind} export of {backend.model_id} agrees with PyTorch only at cosine "
                f"{backend.agreement:.4f} (< {MIN_AGREEMENT}) on a fixed text"
            )
        return backend

    if name == "torch":
        return torch_backend("asked for")
    if name in ("onnx", "onnx-int8"):
        if device != "cpu":
            raise ValueError(f"the {name} engine runs on CPU only; use engine 'torch' for device {device!r}")
        if not onnx_available():
            raise EmbeddingBackendError(f"the {name} engine needs onnxruntime and onnx; pip install them")
        backend = onnx_backend(name)
        logger.info("Embedding engine for %s: %s (asked for).", backend.model_id, name)
        return backend
    # auto
    if device != "cpu":
        return torch_backend(f"auto: device {device!r} is not the CPU")
    if not onnx_available():
        return torch_backend("auto: onnxruntime or onnx is not installed")
    failures = []
    rates: dict[str, tuple[OnnxSentenceTransformerBackend, float]] = {}
    for kind in AUTO_ORDER:
        try:
            backend = onnx_backend(kind)
        except Exception as error:  # any failure to export, load or agree falls back to the next engine
            logger.warning("Embedding engine %s unusable (%s).", kind, error)
            failures.append(f"{kind}: {error}")
            continue
        rates[kind] = (backend, backend.measure_texts_per_s())
    if not rates:
        return torch_backend("auto: " + "; ".join(failures))
    chosen = choose_onnx_engine({kind: rate for kind, (_, rate) in rates.items()})
    for kind, (backend, _) in rates.items():
        if kind != chosen:
            backend.close()
    backend = rates[chosen][0]
    timings = ", ".join(f"{kind} {rate:.1f} texts/s" for kind, (_, rate) in rates.items())
    logger.info(
        "Embedding engine for %s: %s (auto: on CPU with onnxruntime, min cosine %.4f to PyTorch on %d "
        "fixed texts; %s%s).",
        backend.model_id,
        chosen,
        backend.agreement,
        backend.agreement_texts,
        timings,
        "".join(f"; {failure}" for failure in failures),
    )
    return backend


def choose_onnx_engine(texts_per_s: dict[str, float]) -> str:
    """Which of the ONNX engines that agree with PyTorch ``auto`` takes, from their measured texts/s:
    int8 when it is at least ``INT8_MIN_SPEEDUP`` times as fast as fp32 (or fp32 did not agree)."""
    if not texts_per_s:
        raise ValueError("no ONNX engine to choose from")
    int8, fp32 = texts_per_s.get("onnx-int8"), texts_per_s.get("onnx")
    if fp32 is None or (int8 is not None and int8 >= INT8_MIN_SPEEDUP * fp32):
        return "onnx-int8"
    return "onnx"
