"""Run the sae service: ``python -m featurelens.services.sae``.

This is the only module that reads the environment (through ``SaeSettings``).
``build_servicer`` is also what the embedded mode (``featurelens up``) calls.
"""

from __future__ import annotations

from functools import partial

import torch

from featurelens.kit import run_service
from featurelens.services.sae.registry import SaeRegistry
from featurelens.services.sae.servicer import SaeServicer
from featurelens.services.sae.settings import SaeSettings
from featurelens.store.vectors import VectorReader


def build_registry(settings: SaeSettings) -> SaeRegistry:
    """The checkpoint registry per the settings (nothing is read until the server starts)."""
    return SaeRegistry(
        settings.checkpoints_dir,
        device=settings.device,
        dtype=getattr(torch, settings.dtype),
        max_loaded=settings.max_loaded_saes,
        pinned_default=settings.default_sae_id,
    )


def open_vector_store(settings: SaeSettings) -> VectorReader:
    """The Qdrant store whose collections Train may read (both adapters read any collection)."""
    store = settings.open_store()
    if not isinstance(store, VectorReader):
        raise TypeError(f"the {type(store).__name__} store cannot read a collection's vectors")
    return store


def build_servicer(settings: SaeSettings) -> SaeServicer:
    """An sae servicer per the settings; the default SAE loads when the server starts it."""
    return SaeServicer(
        build_registry(settings),
        max_batch=settings.max_batch,
        batch_window_ms=settings.batch_window_ms,
        batch_max_rows=settings.batch_max_rows,
        train_data_roots=settings.train_data_roots,
        max_num_latents=settings.max_num_latents,
        max_train_parameters=settings.max_train_parameters,
        max_train_epochs=settings.max_train_epochs,
        max_train_batch_size=settings.max_train_batch_size,
        train_progress_interval_s=settings.train_progress_interval_s,
        inference_threads=settings.inference_threads,
        open_vector_store=partial(open_vector_store, settings) if settings.train_from_store else None,
        max_train_rows=settings.max_train_rows,
        work_dir=settings.data_dir / "train-work",
    )


def main() -> None:
    run_service(SaeSettings(), build_servicer)


if __name__ == "__main__":
    main()
